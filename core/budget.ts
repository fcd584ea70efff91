/**
 * Per-key budgets in one SharedArrayBuffer, shared by every acceptor thread: tokens and
 * micro-dollars spent in the current UTC day and month, and the reservations in flight.
 * Everything is Atomics on integer slots: no lock, no allocation on the hot path.
 *
 * Counters are 64-bit as two Uint32 slots (lo, hi) with a carry, like core/metrics.ts, and
 * only ever grow within their window: reservations are two growing counters (reserved,
 * released) whose difference is what is in flight. Growing-only counters need no signed
 * 64-bit arithmetic. Known limit (the same as metrics): in the few nanoseconds between a
 * writer's wrap of lo and its carry into hi, a reader can see a value 2^32 low, once per
 * 2^32 tokens or micro-dollars ($4,295) that pass through one key.
 *
 * Admission reserves first and then checks, including its own reservation, and gives it
 * back when over: two threads can never both pass on the same headroom, so spend can only
 * exceed a limit by what admitted requests used beyond their reservations.
 *
 * Windows are UTC days and months. Each slot stores the day and month it counts; the first
 * thread to see a new window swaps the epoch (compare-and-swap) and zeroes that window's
 * counters; a window only moves forward. A settlement racing that reset may land in either
 * window (or, in the nanoseconds between the swap and the zeroing, be zeroed with the old).
 */
import { add64, read64 } from "./atomic64.js";

// Per slot (at slot * STRIDE): the day it counts (offset 0), the month, then 64-bit counters.
const W_MONTH = 1;
const C_DAY_TOK = 2,
  C_DAY_USD = 4,
  C_MON_TOK = 6,
  C_MON_USD = 8;
const C_RES_TOK = 10,
  C_RES_USD = 12,
  C_REL_TOK = 14,
  C_REL_USD = 16;
const STRIDE = 18;
const DAY_MS = 86_400_000;

/** Budget limits of one key; 0 = unlimited. USD limits are in micro-dollars. */
export interface BudgetLimits {
  tokensPerDay: number;
  tokensPerMonth: number;
  microsPerDay: number;
  microsPerMonth: number;
}

/** Which limit refused (index into LIMIT_NAMES), or OK. */
export const OK = -1;
export const L_TOKENS_DAY = 0,
  L_TOKENS_MONTH = 1,
  L_USD_DAY = 2,
  L_USD_MONTH = 3;
export const LIMIT_NAMES = ["tokens_per_day", "tokens_per_month", "usd_per_day", "usd_per_month"] as const;

export function hasBudget(l: BudgetLimits): boolean {
  return l.tokensPerDay > 0 || l.tokensPerMonth > 0 || l.microsPerDay > 0 || l.microsPerMonth > 0;
}

/** Start of the UTC month after the one containing `ms`. */
export function nextMonthStart(ms: number): number {
  const d = new Date(ms);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
}
/** Months since 1970-01 (UTC). */
export function monthEpoch(ms: number): number {
  const d = new Date(ms);
  return (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
}

export interface Spend {
  dayTokens: number;
  dayMicros: number;
  monthTokens: number;
  monthMicros: number;
  reservedTokens: number;
  reservedMicros: number;
}

export class Budgets {
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  private readonly now: () => number;
  /** Cached window: valid while now < until (recomputed once a day, the only allocation). */
  private day = 0;
  private month = 0;
  private until = 0;
  /** When the current day / month end (ms since epoch), for messages and headers. */
  dayEndsAt = 0;
  monthEndsAt = 0;

  constructor(sab: SharedArrayBuffer, now: () => number = Date.now) {
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
    this.now = now;
  }

  static bufferFor(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, slots) * STRIDE * 4);
  }

  /** Bring the slot's windows up to date with the clock. */
  private roll(slot: number): number {
    const t = this.now();
    if (t >= this.until) {
      this.day = Math.floor(t / DAY_MS);
      this.month = monthEpoch(t);
      this.dayEndsAt = (this.day + 1) * DAY_MS;
      this.monthEndsAt = nextMonthStart(t);
      this.until = this.dayEndsAt;
    }
    const b = slot * STRIDE,
      i = this.i32;
    const d = Atomics.load(i, b);
    // "Newer than", not "different": a thread whose clock is still before midnight must
    // not roll the window back and zero the counters another thread just started.
    if (this.day > d && Atomics.compareExchange(i, b, d, this.day) === d) {
      Atomics.store(i, b + C_DAY_TOK, 0);
      Atomics.store(i, b + C_DAY_TOK + 1, 0);
      Atomics.store(i, b + C_DAY_USD, 0);
      Atomics.store(i, b + C_DAY_USD + 1, 0);
    }
    const m = Atomics.load(i, b + W_MONTH);
    if (this.month > m && Atomics.compareExchange(i, b + W_MONTH, m, this.month) === m) {
      Atomics.store(i, b + C_MON_TOK, 0);
      Atomics.store(i, b + C_MON_TOK + 1, 0);
      Atomics.store(i, b + C_MON_USD, 0);
      Atomics.store(i, b + C_MON_USD + 1, 0);
    }
    return b;
  }

  /**
   * Which limit is over (OK if none): spend + what is in flight, plus `strict` = 1 for
   * "already used up" (>=) or 0 for "would pass it" (>). In flight = reserved - released, read released FIRST: both only grow,
   * so a reservation and its release landing between the two reads can only make the
   * check see more in flight (err on refusing), never less.
   */
  private over(b: number, l: BudgetLimits, strict: number): number {
    const u = this.u32;
    const relT = read64(u, b + C_REL_TOK); // released first: a race then sees more in flight, not less
    const rt = read64(u, b + C_RES_TOK) - relT + strict;
    if (l.tokensPerDay > 0 && read64(u, b + C_DAY_TOK) + rt > l.tokensPerDay) return L_TOKENS_DAY;
    if (l.tokensPerMonth > 0 && read64(u, b + C_MON_TOK) + rt > l.tokensPerMonth) return L_TOKENS_MONTH;
    const relM = read64(u, b + C_REL_USD);
    const rm = read64(u, b + C_RES_USD) - relM + strict;
    if (l.microsPerDay > 0 && read64(u, b + C_DAY_USD) + rm > l.microsPerDay) return L_USD_DAY;
    if (l.microsPerMonth > 0 && read64(u, b + C_MON_USD) + rm > l.microsPerMonth) return L_USD_MONTH;
    return OK;
  }

  /**
   * Cheap check before the body is read: is a limit already used up by spend and
   * reservations? (A request that gets past it still reserves after validation.)
   */
  exhausted(slot: number, l: BudgetLimits): number {
    return this.over(this.roll(slot), l, 1);
  }

  /**
   * Reserve `tok` tokens and `mic` micro-dollars for one request. Returns OK, or the
   * limit that refused (then nothing stays reserved).
   */
  reserve(slot: number, l: BudgetLimits, tok: number, mic: number): number {
    const b = this.roll(slot);
    const u = this.u32;
    add64(u, b + C_RES_TOK, tok);
    add64(u, b + C_RES_USD, mic);
    const v = this.over(b, l, 0);
    if (v !== OK) {
      add64(u, b + C_REL_TOK, tok);
      add64(u, b + C_REL_USD, mic);
    }
    return v;
  }

  /** Give a reservation back (settle and refund both start here). */
  release(slot: number, tok: number, mic: number): void {
    const b = slot * STRIDE,
      u = this.u32;
    add64(u, b + C_REL_TOK, tok);
    add64(u, b + C_REL_USD, mic);
  }

  /** Count real usage in the current day and month. */
  charge(slot: number, tok: number, mic: number): void {
    const b = this.roll(slot),
      u = this.u32; // add64 ignores 0 and negatives
    add64(u, b + C_DAY_TOK, tok);
    add64(u, b + C_MON_TOK, tok);
    add64(u, b + C_DAY_USD, mic);
    add64(u, b + C_MON_USD, mic);
  }

  /** Load spend rebuilt from the ledger at start-up (adds to the current windows). */
  seed(slot: number, dayTokens: number, dayMicros: number, monthTokens: number, monthMicros: number): void {
    const b = this.roll(slot),
      u = this.u32;
    add64(u, b + C_DAY_TOK, dayTokens);
    add64(u, b + C_DAY_USD, dayMicros);
    add64(u, b + C_MON_TOK, monthTokens);
    add64(u, b + C_MON_USD, monthMicros);
  }

  /** Zero a slot (a fresh key takes it). */
  clear(slot: number): void {
    const b = slot * STRIDE;
    for (let k = 0; k < STRIDE; k++) Atomics.store(this.u32, b + k, 0);
  }

  spend(slot: number): Spend {
    const b = this.roll(slot),
      u = this.u32;
    const relT = read64(u, b + C_REL_TOK),
      relM = read64(u, b + C_REL_USD);
    return {
      dayTokens: read64(u, b + C_DAY_TOK),
      dayMicros: read64(u, b + C_DAY_USD),
      monthTokens: read64(u, b + C_MON_TOK),
      monthMicros: read64(u, b + C_MON_USD),
      reservedTokens: read64(u, b + C_RES_TOK) - relT,
      reservedMicros: read64(u, b + C_RES_USD) - relM,
    };
  }

  /** When the window of limit `which` resets (ms since epoch). */
  resetsAt(which: number): number {
    return which === L_TOKENS_DAY || which === L_USD_DAY ? this.dayEndsAt : this.monthEndsAt;
  }
}

/** Input tokens are estimated from the body size at this many bytes per token. */
export const BYTES_PER_TOKEN = 3;

/** Input tokens of a request, estimated from its body size (an upper bound for text). */
export function estimateInputTokens(bodyBytes: number): number {
  return Math.ceil(bodyBytes / BYTES_PER_TOKEN);
}
