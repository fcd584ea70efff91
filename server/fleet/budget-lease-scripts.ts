/**
 * The Redis side of fleet budget leases (docs/fleet.md): atomic Lua scripts over one virtual
 * key's counters. Per key and window, a hash `portcullis:{<key-id>}:budget:d:<day>` (and
 * `…:m:<month>`) holds what has been granted to replicas, net of returns: `t` tokens and `u`
 * micro-dollars; `ok` is 1 once the counters are complete, 0 while they wait to be rebuilt
 * from the ledger (`since`, Redis time in ms). `portcullis:{<key-id>}:budget:epoch` names the
 * key's counters: it changes when Redis lost them. Every script touches only keys with the
 * same hash tag, so Redis Cluster routes it to one slot. The only other key is the fleet-wide
 * `portcullis:budget:boot` marker (its own script), whose loss says Redis was emptied.
 *
 * Invariant: a grant never takes a counter past its limit, so the sum of what replicas hold
 * and spent stays within the budget. Scripts read the clock with TIME (Redis 5+ replicates
 * script effects, so this is allowed).
 */
import type { Redis } from "ioredis";

const BOOT_KEY = "portcullis:budget:boot";
/** The epoch key outlives any window it names (a month plus margin). */
const EPOCH_TTL_MS = 40 * 86_400_000;

/**
 * KEYS: day hash, month hash, epoch. ARGV[1] epoch candidate, ARGV[2..3] TTLs. A missing window of a
 * key whose epoch exists is new (starts at 0); without the epoch, the key's counters may have been
 * lost, so the window waits for its rebuild from the ledger (a brand-new key too: its ledger is empty).
 */
const OPEN = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local epoch = redis.call('GET', KEYS[3])
local fresh = epoch ~= false
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[3], epoch)
end
redis.call('PEXPIRE', KEYS[3], ${EPOCH_TTL_MS})
local function open(k, ttl)
  if redis.call('EXISTS', k) == 0 then
    if fresh then redis.call('HSET', k, 't', 0, 'u', 0, 'ok', 1)
    else redis.call('HSET', k, 't', 0, 'u', 0, 'ok', 0, 'since', now) end
    redis.call('PEXPIRE', k, ttl)
  end
end
open(KEYS[1], ARGV[2])
open(KEYS[2], ARGV[3])
local hk = {KEYS[1], KEYS[2], KEYS[1], KEYS[2]}
local f = {'t', 't', 'u', 'u'}
`;

/**
 * take-lease. ARGV[4] share, ARGV[5..8] limits (tokens day, tokens month, µ$ day, µ$ month;
 * 0 = none), ARGV[9..12] need (one waiting request), ARGV[13..16] ask, ARGV[17] cap per grant.
 * Grants every limited dimension min(ask, max(remainder / share, need), remainder, cap), or
 * nothing when one dimension's remainder is below its need.
 * Returns {0, epoch, g1..g4} granted, {1, epoch, dimension, remainder} exhausted, or
 * {2, epoch, ms waiting} while the counters wait for their rebuild from the ledger.
 */
const TAKE = `${OPEN}
for i = 1, 2 do
  if (tonumber(ARGV[4 + i]) > 0 or tonumber(ARGV[6 + i]) > 0) and redis.call('HGET', KEYS[i], 'ok') ~= '1' then
    return {2, epoch, now - tonumber(redis.call('HGET', KEYS[i], 'since'))}
  end
end
local share = tonumber(ARGV[4])
local cap = tonumber(ARGV[17])
local g = {0, 0, 0, 0}
for i = 1, 4 do
  local lim = tonumber(ARGV[4 + i])
  if lim > 0 then
    local r = lim - tonumber(redis.call('HGET', hk[i], f[i]))
    local need = tonumber(ARGV[8 + i])
    if r <= 0 or r < need then return {1, epoch, i - 1, r} end
    g[i] = math.min(tonumber(ARGV[12 + i]), math.max(math.floor(r / share), need), r, cap)
  end
end
for i = 1, 4 do
  if g[i] > 0 then redis.call('HINCRBY', hk[i], f[i], g[i]) end
end
return {0, epoch, g[1], g[2], g[3], g[4]}
`;

/**
 * return-unused (ARGV[4] = the epoch the amounts were granted under; "" = any) and report
 * (re-register after a loss, or spend made while leases were not used): ARGV[5] "1" = add,
 * "0" = subtract (never below 0); ARGV[6..9] amounts per dimension. An epoch that no longer
 * matches changes nothing (the holder re-registers instead). Returns {0|3, epoch}.
 */
const ADJUST = `${OPEN}
if ARGV[4] ~= '' and ARGV[4] ~= epoch then return {3, epoch} end
for i = 1, 4 do
  local a = tonumber(ARGV[5 + i])
  if a > 0 then
    if ARGV[5] == '1' then redis.call('HINCRBY', hk[i], f[i], a)
    else
      local v = tonumber(redis.call('HGET', hk[i], f[i]))
      redis.call('HINCRBY', hk[i], f[i], -math.min(a, v))
    end
  end
end
return {0, epoch}
`;

/**
 * Rebuild one window's counters after a loss: KEYS[1] the hash; ARGV[1] how long it must have
 * waited (ms: the replicas re-registered and flushed their rows), ARGV[2..3] the ledger's spend
 * of the key in the window (tokens, µ$), ARGV[4] when that read started (the rebuilder's clock, kept
 * as `at`: other replicas report what they admitted after it). Returns 1 done, 0 already complete, -1 too early.
 */
const REBUILD = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if redis.call('HGET', KEYS[1], 'ok') ~= '0' then return 0 end
if now - tonumber(redis.call('HGET', KEYS[1], 'since')) < tonumber(ARGV[1]) then return -1 end
redis.call('HINCRBY', KEYS[1], 't', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'u', ARGV[3])
redis.call('HSET', KEYS[1], 'ok', 1, 'at', ARGV[4])
return 1
`;

/** The fleet-wide marker: {its value (Redis ms when set), now}; set when missing (Redis was emptied, or first use). */
const BOOT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if not v then
  v = tostring(now)
  redis.call('SET', KEYS[1], v)
end
return {v, now}
`;

export type TakeReply = [0, string, number, number, number, number, number] | [1, string, number, number] | [2, string, number];

interface LeaseCommands {
  budgetTake(...args: (string | number)[]): Promise<TakeReply>;
  budgetAdjust(...args: (string | number)[]): Promise<[number, string]>;
  budgetRebuild(key: string, waitMs: number, tok: number, usd: number, at: number): Promise<number>;
  budgetBoot(key: string): Promise<[string, number]>;
}
export type LeaseRedis = Redis & LeaseCommands;

/** Register the scripts on a client (ioredis runs them by EVALSHA, loading them again after a Redis restart). */
export function withLeaseScripts(r: Redis): LeaseRedis {
  r.defineCommand("budgetTake", { numberOfKeys: 3, lua: TAKE });
  r.defineCommand("budgetAdjust", { numberOfKeys: 3, lua: ADJUST });
  r.defineCommand("budgetRebuild", { numberOfKeys: 1, lua: REBUILD });
  r.defineCommand("budgetBoot", { numberOfKeys: 1, lua: BOOT });
  return r as LeaseRedis;
}

/** One key's windows: the Redis keys and their lifetimes (the window's end plus two days). */
export interface Window {
  day: number;
  month: number;
  dayKey: string;
  monthKey: string;
  epochKey: string;
  dayTtl: number;
  monthTtl: number;
}

const DAY_MS = 86_400_000;
const MARGIN_MS = 2 * DAY_MS;

export function windowOf(keyId: string, now: number): Window {
  const d = new Date(now);
  const day = Math.floor(now / DAY_MS);
  const month = (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  const tag = `portcullis:{${keyId}}:budget`;
  return {
    day,
    month,
    dayKey: `${tag}:d:${day}`,
    monthKey: `${tag}:m:${month}`,
    epochKey: `${tag}:epoch`,
    dayTtl: (day + 1) * DAY_MS - now + MARGIN_MS,
    monthTtl: Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1) - now + MARGIN_MS,
  };
}

/** Limit order everywhere: tokens day, tokens month, µ$ day, µ$ month. */
export type Four = [number, number, number, number];

export function take(
  r: LeaseRedis,
  w: Window,
  epoch: string,
  share: number,
  limits: Four,
  need: Four,
  ask: Four,
  cap: number,
): Promise<TakeReply> {
  return r.budgetTake(w.dayKey, w.monthKey, w.epochKey, epoch, w.dayTtl, w.monthTtl, share, ...limits, ...need, ...ask, cap);
}

/** Add (re-register, report) or subtract (return) amounts; `expect` = the epoch they belong to, "" = any. */
export function adjust(r: LeaseRedis, w: Window, epoch: string, expect: string, add: boolean, amounts: Four) {
  return r.budgetAdjust(w.dayKey, w.monthKey, w.epochKey, epoch, w.dayTtl, w.monthTtl, expect, add ? 1 : 0, ...amounts);
}

export function rebuild(r: LeaseRedis, key: string, waitMs: number, tok: number, usd: number, at = 0): Promise<number> {
  return r.budgetRebuild(key, waitMs, tok, usd, at);
}

export async function boot(r: LeaseRedis): Promise<{ boot: string; now: number }> {
  const [v, now] = await r.budgetBoot(BOOT_KEY);
  return { boot: String(v), now: Number(now) };
}
