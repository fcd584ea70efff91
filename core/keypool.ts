/**
 * Upstream key pools: a provider may hold several keys (`api_keys` / `api_key_envs`), each
 * with a weight and its own rpm/tpm. Each attempt picks a key; a key that answers 429 is
 * rested for its retry-after and the call tries the next key at once (server/call.ts), so
 * one busy key does not fail a request while another key has room.
 *
 * State every acceptor thread shares lives in two SharedArrayBuffers: per key its rest
 * and bad deadlines (Clock32 ms) and two 64-bit counters, and the per-key rpm/tpm GCRA
 * buckets of core/ratelimit.ts (the same limiter the client keys use, on its own buffer).
 *
 * Choice: among keys that are neither resting, nor bad, nor already tried by this request,
 * and under their own rpm/tpm. A request with a session (x-claude-code-session-id, else
 * metadata.user_id) ranks the keys by weighted rendezvous hashing, as core/balance.ts
 * ranks deployments: the prompt cache is per organisation/key, so a session stays on its
 * key while that key is healthy, and only the sessions of a resting key move. Without a
 * session, a key drawn by weight. A bad key (it answered 401/403) is set aside for
 * BAD_MS or until it serves a success; it is tried only when no good key is left, so a
 * provider-wide auth failure looks as it does with one key. No allocation per pick.
 */
import { read64 } from "./atomic64.js";
import { mix, sessionHash } from "./balance.js";

/**
 * A session's hash for key affinity: sessionHash with the sign bit cleared, so every session
 * is >= 0 and -1 can mean "no session" (sessionHash itself is signed 32 bits).
 */
export function keySession(id: string): number {
  return sessionHash(id) & 0x7fffffff;
}
import type { Clock } from "./clock.js";
import type { ProviderConfig } from "./config.js";
import { RateLimiter, type Limits } from "./ratelimit.js";

/** One key of a pool, as validated at start-up (core/keypool-config.ts). */
export interface PoolKey {
  /** Its name in logs and metric labels: the env var's name, or `#i` for a literal key. Never the key. */
  readonly label: string;
  readonly key: string;
  readonly weight: number;
  readonly rpm: number;
  readonly tpm: number;
}

/** The longest a key can be rested (also the bound that tells a stale deadline across the clock's wrap). */
export const MAX_REST_MS = 3_600_000;
/** How long a key that answered 401/403 is set aside (unless it serves a success first). */
export const BAD_MS = 600_000;
/** `r` of a pick is a whole number below this (an integer, not a fraction: a small int is never boxed). */
export const R_RANGE = 0x40000000;
/** Keys per provider: a request's tried keys are one 32-bit mask. */
export const MAX_POOL_KEYS = 32;

// Int32 slots per key: rest-until, bad-until, rested_total (lo, hi), bad_total (lo, hi).
const S_REST = 0,
  S_BAD = 1,
  S_RESTED = 2,
  S_BADS = 4,
  STRIDE = 6;
// After every key, per pool: a bit per key that may be resting, and one per key that may be
// bad. A pick reads these two words first; while both are 0 it reads neither clock nor deadline.
const M_REST = 0,
  M_BAD = 1;
/** "No key is coming back" while a pick looks for the soonest wait (a small integer, not Infinity: no boxing). */
const NO_WAIT = 0x7fffffff;

export interface KeyPoolBuffers {
  readonly state: SharedArrayBuffer;
  readonly rate: SharedArrayBuffer;
}

/** Every pool key in provider order, with its provider's name (the metric labels; slot = position). */
export function poolKeyLabels(providers: readonly ProviderConfig[]): { provider: string; key: string }[] {
  const out: { provider: string; key: string }[] = [];
  for (const p of providers) for (const k of p.keys ?? []) out.push({ provider: p.name, key: k.label });
  return out;
}

export function keyPoolBuffers(providers: readonly ProviderConfig[]): KeyPoolBuffers {
  const n = poolKeyLabels(providers).length;
  const pools = providers.filter((p) => (p.keys ?? null) !== null).length;
  return { state: new SharedArrayBuffer(Math.max(1, n * STRIDE + pools * 2) * 4), rate: RateLimiter.bufferFor(n) };
}

/** Ms left on a deadline (0 when passed); a remainder beyond `bound` is a deadline from before the clock wrapped. */
function left(until: number, now: number, bound: number): number {
  const d = (until - now) | 0;
  return d > 0 && d <= bound ? d : 0;
}

/** One provider's keys, seen from one thread. */
export class KeyPool {
  readonly n: number;
  readonly labels: readonly string[];
  /** Auth headers per key, built once. */
  readonly auth: readonly (readonly string[])[];
  /** After pick() returned -1: ms until the first resting or rate-limited key is usable (0 = none is coming back). */
  waitMs = 0;
  private readonly base: number;
  /** This pool's two mask words (M_REST, M_BAD). */
  private readonly mask: number;
  private readonly i32: Int32Array;
  private readonly u32: Uint32Array;
  private readonly weights: Float64Array;
  private readonly seeds: Uint32Array;
  private readonly equal: boolean;
  private readonly limits: readonly Limits[];
  private readonly limited: boolean;
  private readonly scores: Float64Array;
  /** The smallest rate-limit wait the current pick() met. */
  private limitWait = NO_WAIT;
  private readonly limiter: RateLimiter;
  private readonly clock: Clock;

  constructor(keys: readonly PoolKey[], auth: (key: string) => string[], base: number, mask: number, shared: KeyPoolShared) {
    this.n = keys.length;
    this.labels = keys.map((k) => k.label);
    this.auth = keys.map((k) => Object.freeze(auth(k.key)));
    this.base = base;
    this.mask = mask;
    this.i32 = shared.i32;
    this.u32 = shared.u32;
    this.weights = Float64Array.from(keys, (k) => k.weight);
    this.seeds = Uint32Array.from(keys, (k) => sessionHash(k.label));
    this.equal = keys.every((k) => k.weight === keys[0]!.weight);
    this.limits = keys.map((k) => Object.freeze({ requestsPerMinute: k.rpm, tokensPerMinute: k.tpm }));
    this.limited = keys.some((k) => k.rpm > 0 || k.tpm > 0);
    this.scores = new Float64Array(keys.length);
    this.limiter = shared.limiter;
    this.clock = shared.clock;
  }

  /**
   * The key for the next attempt: `session` is a keySession (or -1 for none), `r` a whole
   * number uniform in [0, R_RANGE) for a draw by weight, `tried` the mask of keys this request already used. Charges
   * the key's rpm when `charge`. Returns -1 when every key is tried, resting or at its limit
   * (then `waitMs` says when one comes back).
   */
  pick(session: number, r: number, tried: number, charge: boolean): number {
    const s = this.scores,
      i32 = this.i32;
    const restM = Atomics.load(i32, this.mask + M_REST),
      badM = Atomics.load(i32, this.mask + M_BAD);
    const now = (restM | badM) === 0 ? 0 : this.clock.now();
    let wait = NO_WAIT,
      bad = 0;
    this.limitWait = NO_WAIT;
    for (let k = 0; k < this.n; k++) {
      s[k] = -1;
      const bit = 1 << k,
        o = (this.base + k) * STRIDE;
      if ((restM & bit) !== 0) {
        const rest = this.until(o + S_REST, M_REST, bit, now, MAX_REST_MS);
        if (rest > 0) {
          if (rest < wait) wait = rest;
          continue;
        }
      }
      if ((tried & bit) !== 0) continue;
      if ((badM & bit) !== 0 && this.until(o + S_BAD, M_BAD, bit, now, BAD_MS) > 0) {
        bad |= bit;
        continue;
      }
      s[k] = this.score(k, session);
    }
    let k = this.choose(session, r, charge);
    if (k < 0 && bad !== 0) {
      // No good key left: the bad ones rather than nothing (the first that works again is back).
      for (let j = 0; j < this.n; j++) if ((bad >>> j) & 1) s[j] = this.score(j, session);
      k = this.choose(session, r, charge);
    }
    if (k >= 0) return k;
    if (this.limitWait < wait) wait = this.limitWait;
    this.waitMs = wait === NO_WAIT ? 0 : wait;
    return -1;
  }

  /** Ms left on a key's deadline; a passed one has its mask bit cleared (and set again if another thread renewed it meanwhile). */
  private until(slot: number, m: number, bit: number, now: number, bound: number): number {
    const i32 = this.i32;
    const d = left(Atomics.load(i32, slot), now, bound);
    if (d > 0) return d;
    Atomics.and(i32, this.mask + m, ~bit);
    if (left(Atomics.load(i32, slot), now, bound) > 0) Atomics.or(i32, this.mask + m, bit);
    return 0;
  }

  private score(k: number, session: number): number {
    if (session < 0) return this.weights[k]!;
    const x = mix(session, this.seeds[k]!);
    // Weighted rendezvous, as core/balance.ts: w / -ln(u) grows with u, so equal weights rank by u alone.
    return this.equal ? x : this.weights[k]! / -Math.log((x + 0.5) / 4294967296);
  }

  /** The best (session) or a weighted draw among scored keys, skipping those at their rpm/tpm. */
  private choose(session: number, r: number, charge: boolean): number {
    const s = this.scores;
    for (;;) {
      let k = -1;
      if (session >= 0) {
        for (let j = 0; j < this.n; j++) if (s[j]! >= 0 && (k < 0 || s[j]! > s[k]!)) k = j;
      } else {
        let total = 0;
        for (let j = 0; j < this.n; j++) if (s[j]! > 0) total += s[j]!;
        let x = (r / R_RANGE) * total;
        for (let j = 0; j < this.n; j++) {
          if (s[j]! <= 0) continue;
          k = j;
          x -= s[j]!;
          if (x < 0) break;
        }
      }
      if (k < 0 || !this.limited || !charge) return k;
      const v = this.limiter.admit(this.base + k, this.limits[k]!);
      if (v.ok) return k;
      if (v.retryAfterMs < this.limitWait) this.limitWait = v.retryAfterMs;
      s[k] = -1;
    }
  }

  /**
   * Key `k` answered 429: rest it for `ms` (the provider's retry-after, clamped by the caller),
   * never shortening a longer rest another thread set.
   */
  rest(k: number, ms: number): void {
    const o = (this.base + k) * STRIDE,
      i32 = this.i32;
    const now = this.clock.now();
    const until = (now + Math.min(Math.max(ms, 1), MAX_REST_MS)) | 0;
    for (;;) {
      const cur = Atomics.load(i32, o + S_REST);
      if (left(cur, now, MAX_REST_MS) >= ((until - now) | 0)) break;
      if (Atomics.compareExchange(i32, o + S_REST, cur, until) === cur) break;
    }
    Atomics.or(i32, this.mask + M_REST, 1 << k);
    addCount(this.u32, o + S_RESTED);
  }

  /** Key `k` answered 401/403. True for the one call that turned it bad (that caller logs it). */
  markBad(k: number): boolean {
    const o = (this.base + k) * STRIDE,
      i32 = this.i32;
    const now = this.clock.now();
    const cur = Atomics.load(i32, o + S_BAD);
    if (left(cur, now, BAD_MS) > 0) return false;
    if (Atomics.compareExchange(i32, o + S_BAD, cur, (now + BAD_MS) | 0) !== cur) return false;
    Atomics.or(i32, this.mask + M_BAD, 1 << k);
    addCount(this.u32, o + S_BADS);
    return true;
  }

  /** Key `k` served a success: a bad mark (a transient 401) is lifted. */
  served(k: number): void {
    if ((Atomics.load(this.i32, this.mask + M_BAD) & (1 << k)) === 0) return;
    const o = (this.base + k) * STRIDE + S_BAD,
      now = this.clock.now();
    const cur = Atomics.load(this.i32, o);
    if (left(cur, now, BAD_MS) > 0) Atomics.compareExchange(this.i32, o, cur, now | 0);
    this.until(o, M_BAD, 1 << k, now, BAD_MS);
  }

  /** The tokens a response used, charged to its key's tpm. */
  chargeTokens(k: number, tokens: number): void {
    if (this.limited) this.limiter.chargeTokens(this.base + k, this.limits[k]!, tokens);
  }
}

/** Two Uint32 slots (lo, hi) as one 64-bit counter. */
function addCount(u32: Uint32Array, i: number): void {
  if (Atomics.add(u32, i, 1) === 0xffffffff) Atomics.add(u32, i + 1, 1);
}

interface KeyPoolShared {
  i32: Int32Array;
  u32: Uint32Array;
  limiter: RateLimiter;
  clock: Clock;
}

/** The pools of every provider that has one, by provider index. */
export class KeyPools {
  private readonly byIndex: (KeyPool | null)[] = [null];

  /**
   * `providers`: core/providers.ts's runtimes, in config order (index i + 1).
   * `clock`: Clock32 milliseconds; `micro`: the rate limiter's microseconds (MicroClock).
   */
  constructor(
    providers: readonly { readonly config: ProviderConfig; readonly adapter: { auth(key: string): string[] } }[],
    bufs: KeyPoolBuffers,
    clock: Clock,
    micro: Clock,
  ) {
    const shared: KeyPoolShared = {
      i32: new Int32Array(bufs.state),
      u32: new Uint32Array(bufs.state),
      limiter: new RateLimiter(bufs.rate, micro),
      clock,
    };
    let base = 0;
    for (const p of providers) base += p.config.keys?.length ?? 0;
    let mask = base * STRIDE;
    base = 0;
    for (const p of providers) {
      const keys = p.config.keys ?? null;
      this.byIndex.push(keys === null ? null : new KeyPool(keys, p.adapter.auth, base, mask, shared));
      if (keys !== null) mask += 2;
      base += keys?.length ?? 0;
    }
  }

  /** The pool of the provider with this index, or null when it has one key (or none). */
  pool(providerIndex: number): KeyPool | null {
    return this.byIndex[providerIndex] ?? null;
  }
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/**
 * Prometheus lines for the pools (render worker): per key how often it was rested and
 * set aside as bad, per provider how many keys rest or are bad now. `now` is Clock32 ms.
 */
export function renderKeyPoolPrometheus(
  state: SharedArrayBuffer,
  labels: readonly { provider: string; key: string }[],
  now: number,
): string {
  if (labels.length === 0) return "";
  const i32 = new Int32Array(state),
    u32 = new Uint32Array(state);
  const rested: string[] = [],
    bads: string[] = [];
  const resting = new Map<string, number>(),
    bad = new Map<string, number>();
  labels.forEach((l, i) => {
    const o = i * STRIDE,
      lab = `provider="${esc(l.provider)}",key="${esc(l.key)}"`;
    rested.push(`upstream_key_rested_total{${lab}} ${read64(u32, o + S_RESTED)}`);
    bads.push(`upstream_key_bad_total{${lab}} ${read64(u32, o + S_BADS)}`);
    resting.set(l.provider, (resting.get(l.provider) ?? 0) + (left(Atomics.load(i32, o + S_REST), now, MAX_REST_MS) > 0 ? 1 : 0));
    bad.set(l.provider, (bad.get(l.provider) ?? 0) + (left(Atomics.load(i32, o + S_BAD), now, BAD_MS) > 0 ? 1 : 0));
  });
  const gauge = (m: Map<string, number>) => [...m].map(([p, v]) => `{provider="${esc(p)}"} ${v}`);
  return [
    "# HELP upstream_key_rested_total Times a pool key answered 429 and was rested for its retry-after (docs/providers.md).",
    "# TYPE upstream_key_rested_total counter",
    ...rested,
    "# HELP upstream_key_bad_total Times a pool key answered 401/403 and was set aside.",
    "# TYPE upstream_key_bad_total counter",
    ...bads,
    "# HELP upstream_keys_resting Pool keys resting now (after a 429), by provider.",
    "# TYPE upstream_keys_resting gauge",
    ...gauge(resting).map((l) => `upstream_keys_resting${l}`),
    "# HELP upstream_keys_bad Pool keys set aside now (after a 401/403), by provider.",
    "# TYPE upstream_keys_bad gauge",
    ...gauge(bad).map((l) => `upstream_keys_bad${l}`),
    "",
  ].join("\n");
}
