/**
 * The Redis side of fleet rate limits (docs/fleet.md): one GCRA bucket per key and kind,
 * `portcullis:{<key-id>}:rl:req` and `…:rl:tok`, holding the theoretical arrival time (TAT)
 * in µs of Redis's own `TIME`, so the replicas' clocks do not matter. Three atomic scripts,
 * each touching the one key named (its hash tag keeps a Redis Cluster happy):
 *
 * - take-lease: charge `force` units already spent (an overdraft) unconditionally, then grant
 *   the k ≤ want units the burst allows, advancing the TAT by k·T; returns [k, TAT − now].
 * - return-unused: move the TAT back by n·T, never before now; returns TAT − now.
 * - report-spend: charge n tokens (the TAT at most MAX_AHEAD past now); returns TAT − now.
 *
 * ioredis's defined commands run by EVALSHA and reload the script after a Redis restart.
 */
import type { Redis } from "ioredis";

const NOW = `local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
`;
// The TAT is a µs timestamp (~1.8e15): exact in Lua's doubles, written without exponent.
const SAVE = `redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.floor((tat - now) / 1000) + 1000)
`;

const TAKE = `${NOW}local T = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local force = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = math.min(tat + force * T, now + tonumber(ARGV[5]))
local k = math.floor((now + tau - tat) / T)
if k > want then k = want end
if k < 0 then k = 0 end
tat = tat + k * T
${SAVE}return {k, math.floor(tat - now)}
`;

const GIVE_BACK = `${NOW}local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local tat = tonumber(v) - tonumber(ARGV[2]) * tonumber(ARGV[1])
if tat < now then tat = now end
${SAVE}return math.floor(tat - now)
`;

const SPEND = `${NOW}local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
tat = math.min(tat + tonumber(ARGV[2]) * tonumber(ARGV[1]), now + tonumber(ARGV[3]))
${SAVE}return math.floor(tat - now)
`;

export const MINUTE_US = 60_000_000;
/** A bucket's burst tolerance: a whole minute, as on one box (core/ratelimit.ts). */
const TAU = MINUTE_US;
/** The furthest a TAT may run ahead (token debt, overdrafts): 30 minutes, as on one box. */
const MAX_AHEAD = 30 * MINUTE_US;

export function bucketKey(keyId: string, kind: "req" | "tok"): string {
  return `portcullis:{${keyId}}:rl:${kind}`;
}

type Cmd = (key: string, ...args: (string | number)[]) => Promise<unknown>;

export class RateScripts {
  private readonly take: Cmd;
  private readonly back: Cmd;
  private readonly spend: Cmd;

  constructor(redis: Redis) {
    redis.defineCommand("portcullisRlTake", { numberOfKeys: 1, lua: TAKE });
    redis.defineCommand("portcullisRlBack", { numberOfKeys: 1, lua: GIVE_BACK });
    redis.defineCommand("portcullisRlSpend", { numberOfKeys: 1, lua: SPEND });
    const r = redis as unknown as Record<string, Cmd>;
    this.take = r.portcullisRlTake!.bind(redis);
    this.back = r.portcullisRlBack!.bind(redis);
    this.spend = r.portcullisRlSpend!.bind(redis);
  }

  /** Lease up to `want` requests of a `perMinute` key after charging `force` already spent: [granted, TAT − now µs]. */
  async takeLease(keyId: string, perMinute: number, want: number, force: number): Promise<[number, number]> {
    const r = (await this.take(bucketKey(keyId, "req"), MINUTE_US / perMinute, TAU, want, force, MAX_AHEAD)) as [number, number];
    return [Number(r[0]), Number(r[1])];
  }

  /** Give back `n` unused requests; returns TAT − now µs. */
  async returnUnused(keyId: string, perMinute: number, n: number): Promise<number> {
    return Number(await this.back(bucketKey(keyId, "req"), MINUTE_US / perMinute, n));
  }

  /** Charge `n` tokens spent (0 only reads); returns TAT − now µs. */
  async reportSpend(keyId: string, perMinute: number, n: number): Promise<number> {
    return Number(await this.spend(bucketKey(keyId, "tok"), MINUTE_US / perMinute, n, MAX_AHEAD));
  }
}
