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
 *
 * Fleet mode (docs/fleet.md, server/fleet/budget-lease.ts): the main thread holds leases on
 * the key's budget from Redis and publishes what this replica may still spend as four Int32
 * "available" slots per key (tokens and micro-dollars, day and month), each tagged with the
 * window it belongs to. Admission then takes its reservation out of them (Atomics.sub, put
 * back when one falls short) instead of comparing with limit - spend; settlement puts back the
 * unspent part. A shortfall sets the slot's "need more" flag for the main thread (one store).
 * A request parked while the lease is renewed (server/fleet/budget-park.ts) is counted in the
 * slot (the main thread sizes the grant for all of them) and rings a doorbell the main thread
 * waits on (Atomics.waitAsync), so it renews at once instead of at its next tick.
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
// Fleet leases (Int32): available per dimension, the day and month they belong to, the
// "need more" flag, the last shortfall's size, a reservation counter, the exhausted bits and the
// requests parked waiting for this key's lease (server/fleet/budget-park.ts).
const A_TOK_DAY = 18,
  A_USD_DAY = 19,
  A_TOK_MON = 20,
  A_USD_MON = 21,
  L_DAY = 22,
  L_MON = 23,
  F_NEED = 24,
  F_WANT_TOK = 25,
  F_WANT_USD = 26,
  F_USES = 27,
  F_EXHAUSTED = 28,
  F_PARKED = 29;
const STRIDE = 30;
/** Header after the slots: the mode word, the parking doorbell, "Redis unreachable" (fleet leases). */
const HEADER = 4;
const H_DOOR = 1,
  H_REDIS_DOWN = 2;
/** Budgets.mode(): limit - spend on this replica (one box, or fleet mode degraded to it), or leases. */
export const MODE_LOCAL = 0,
  MODE_LEASE = 1;
/** reserve(): the lease on hand is short and the fleet is not known to be out (the main thread is renewing). */
export const LEASE_SHORT = 4;
/** Largest amount one available slot holds (Int32 with room for settlements). */
export const LEASE_CAP = 0x3fffffff;
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
  private readonly modeAt: number;
  /** The parking doorbell's index in `i32` (ring(), doorbell()). */
  readonly doorAt: number;
  /** Set by reserve(): the day whose lease the reservation came from, or -1 (not leased). */
  leaseDay = -1;
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
    this.modeAt = this.i32.length - HEADER;
    this.doorAt = this.modeAt + H_DOOR;
  }

  static bufferFor(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer((Math.max(1, slots) * STRIDE + HEADER) * 4);
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
    const b = this.roll(slot);
    return Atomics.load(this.i32, this.modeAt) === MODE_LEASE ? this.leaseOut(b, l) : this.over(b, l, 1);
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
    this.leaseDay = -1;
    let v: number;
    if (Atomics.load(this.i32, this.modeAt) === MODE_LEASE) v = this.take(b, l, tok, mic);
    else if ((v = this.over(b, l, 0)) === OK) Atomics.add(this.i32, b + F_USES, 1); // fleet mode on the local check: sizes the next lease
    if (v !== OK) {
      add64(u, b + C_REL_TOK, tok);
      add64(u, b + C_REL_USD, mic);
    }
    return v;
  }

  /**
   * Lease mode before the body: refuse only a limit the fleet reported used up (the main
   * thread's exhausted bit) while this replica holds nothing of it; a short lease is left
   * to reserve(), which asks for more.
   */
  private leaseOut(b: number, l: BudgetLimits): number {
    const i = this.i32;
    const x = Atomics.load(i, b + F_EXHAUSTED);
    if (x === 0) return OK;
    const d = Atomics.load(i, b + L_DAY) === this.day,
      m = Atomics.load(i, b + L_MON) === this.month;
    let v = OK;
    if (l.tokensPerDay > 0 && (x & 1) !== 0 && (!d || Atomics.load(i, b + A_TOK_DAY) < 1)) v = L_TOKENS_DAY;
    else if (l.tokensPerMonth > 0 && (x & 2) !== 0 && (!m || Atomics.load(i, b + A_TOK_MON) < 1)) v = L_TOKENS_MONTH;
    else if (l.microsPerDay > 0 && (x & 4) !== 0 && (!d || Atomics.load(i, b + A_USD_DAY) < 1)) v = L_USD_DAY;
    else if (l.microsPerMonth > 0 && (x & 8) !== 0 && (!m || Atomics.load(i, b + A_USD_MON) < 1)) v = L_USD_MONTH;
    // The main thread asks again (throttled): budget returned by other replicas, or a raised limit, ends the refusal.
    if (v !== OK) Atomics.store(i, b + F_NEED, 1);
    return v;
  }

  /**
   * Lease mode: take the reservation out of what this replica holds, for every limit set.
   * All or nothing: a dimension that falls short puts back what was taken, records the
   * request's size and raises "need more". A success that leaves less than the same request
   * again raises it too, so the main thread renews before the lease runs dry.
   */
  private take(b: number, l: BudgetLimits, tok: number, mic: number): number {
    const i = this.i32;
    const d = Atomics.load(i, b + L_DAY) === this.day,
      m = Atomics.load(i, b + L_MON) === this.month;
    let short = OK,
      low = false,
      left = 0;
    if (l.tokensPerDay > 0) {
      left = d ? Atomics.sub(i, b + A_TOK_DAY, tok) - tok : -1;
      if (left < 0) short = L_TOKENS_DAY;
      low = left < tok;
    }
    if (short === OK && l.tokensPerMonth > 0) {
      left = m ? Atomics.sub(i, b + A_TOK_MON, tok) - tok : -1;
      if (left < 0) short = L_TOKENS_MONTH;
      low ||= left < tok;
    }
    if (short === OK && l.microsPerDay > 0) {
      left = d ? Atomics.sub(i, b + A_USD_DAY, mic) - mic : -1;
      if (left < 0) short = L_USD_DAY;
      low ||= left < mic;
    }
    if (short === OK && l.microsPerMonth > 0) {
      left = m ? Atomics.sub(i, b + A_USD_MON, mic) - mic : -1;
      if (left < 0) short = L_USD_MONTH;
      low ||= left < mic;
    }
    if (low) {
      Atomics.store(i, b + F_WANT_TOK, tok < LEASE_CAP ? tok : LEASE_CAP);
      Atomics.store(i, b + F_WANT_USD, mic < LEASE_CAP ? mic : LEASE_CAP);
      Atomics.store(i, b + F_NEED, 1);
    }
    if (short === OK) {
      Atomics.add(i, b + F_USES, 1);
      this.leaseDay = this.day;
      return OK;
    }
    // Put back what was taken: the dimensions before the short one, and the short one if it was subtracted.
    if (l.tokensPerDay > 0 && d && short >= L_TOKENS_DAY) Atomics.add(i, b + A_TOK_DAY, tok);
    if (l.tokensPerMonth > 0 && m && short >= L_TOKENS_MONTH) Atomics.add(i, b + A_TOK_MON, tok);
    if (l.microsPerDay > 0 && d && short >= L_USD_DAY) Atomics.add(i, b + A_USD_DAY, mic);
    if (l.microsPerMonth > 0 && m && short >= L_USD_MONTH) Atomics.add(i, b + A_USD_MON, mic);
    return (Atomics.load(i, b + F_EXHAUSTED) & (1 << short)) !== 0 ? short : LEASE_SHORT;
  }

  /**
   * Lease mode, after the reply: put the unspent part of a leased reservation back into the
   * lease it came from (or take the overrun out of it), unless that window has ended.
   */
  settleLease(slot: number, l: BudgetLimits, day: number, resTok: number, resMic: number, tok: number, mic: number): void {
    if (day < 0) return;
    const b = slot * STRIDE,
      i = this.i32;
    const dt = resTok - tok,
      du = resMic - mic;
    if (Atomics.load(i, b + L_DAY) === day) {
      if (l.tokensPerDay > 0) Atomics.add(i, b + A_TOK_DAY, dt);
      if (l.microsPerDay > 0) Atomics.add(i, b + A_USD_DAY, du);
    }
    // The month of the reservation's day: the cached one almost always (no Date allocated on the hot path).
    if (Atomics.load(i, b + L_MON) === (day === this.day ? this.month : monthEpoch(day * DAY_MS))) {
      if (l.tokensPerMonth > 0) Atomics.add(i, b + A_TOK_MON, dt);
      if (l.microsPerMonth > 0) Atomics.add(i, b + A_USD_MON, du);
    }
  }

  // ---- the main thread's side of the leases (server/fleet/budget-lease.ts)

  mode(): number {
    return Atomics.load(this.i32, this.modeAt);
  }
  setMode(m: number): void {
    Atomics.store(this.i32, this.modeAt, m);
  }

  /** What the slot holds on lease, in limit order (tokens day, tokens month, USD day, USD month), and its windows. */
  held(slot: number): { day: number; month: number; avail: number[] } {
    const b = slot * STRIDE,
      i = this.i32;
    return {
      day: Atomics.load(i, b + L_DAY),
      month: Atomics.load(i, b + L_MON),
      avail: AVAIL.map((a) => Atomics.load(i, b + a)),
    };
  }

  /** Read and clear "need more"; with the last short request's tokens and micro-dollars and the requests parked. */
  takeNeed(slot: number): { need: boolean; tok: number; mic: number; uses: number; parked: number } {
    const b = slot * STRIDE,
      i = this.i32;
    return {
      need: Atomics.exchange(i, b + F_NEED, 0) === 1,
      tok: Atomics.load(i, b + F_WANT_TOK),
      mic: Atomics.load(i, b + F_WANT_USD),
      uses: Atomics.load(i, b + F_USES),
      parked: Math.max(0, Atomics.load(i, b + F_PARKED)),
    };
  }

  /** "Need more" is raised (read without clearing it): the main thread's renewal between ticks. */
  needRaised(slot: number): boolean {
    return Atomics.load(this.i32, slot * STRIDE + F_NEED) === 1;
  }

  // ---- parking (server/fleet/budget-park.ts): acceptor threads park, the main thread renews

  /** A request of the slot's key was parked (+1) or left the park (-1). */
  parked(slot: number, delta: number): void {
    Atomics.add(this.i32, slot * STRIDE + F_PARKED, delta);
  }
  /** Wake the main thread's renewal (a request is parked): one add and one notify, only on the parking path. */
  ring(): void {
    Atomics.add(this.i32, this.doorAt, 1);
    Atomics.notify(this.i32, this.doorAt);
  }
  /** The doorbell's current count (the main thread waits at `i32[doorAt]` for it to change). */
  doorbell(): number {
    return Atomics.load(this.i32, this.doorAt);
  }
  /** The lease loop cannot reach Redis (set and cleared by the main thread): with BUDGET_FAIL_MODE=closed nothing parks. */
  setRedisDown(down: boolean): void {
    Atomics.store(this.i32, this.modeAt + H_REDIS_DOWN, down ? 1 : 0);
  }
  redisDown(): boolean {
    return Atomics.load(this.i32, this.modeAt + H_REDIS_DOWN) === 1;
  }

  /**
   * Start the slot's leases for a new day (or month): what was left of the old window's
   * lease is dropped (and returned); in-flight settlements of the old window no longer land.
   */
  openWindow(slot: number, day: number, month: number): number[] {
    const b = slot * STRIDE,
      i = this.i32;
    const old = [0, 0, 0, 0];
    if (Atomics.load(i, b + L_DAY) !== day) {
      Atomics.store(i, b + L_DAY, -1);
      old[0] = Atomics.exchange(i, b + A_TOK_DAY, 0);
      old[2] = Atomics.exchange(i, b + A_USD_DAY, 0);
      Atomics.and(i, b + F_EXHAUSTED, ~5); // a new day: its limits are not used up
      Atomics.store(i, b + L_DAY, day);
    }
    if (Atomics.load(i, b + L_MON) !== month) {
      Atomics.store(i, b + L_MON, -1);
      old[1] = Atomics.exchange(i, b + A_TOK_MON, 0);
      old[3] = Atomics.exchange(i, b + A_USD_MON, 0);
      Atomics.and(i, b + F_EXHAUSTED, ~10);
      Atomics.store(i, b + L_MON, month);
    }
    return old;
  }

  /** Add a grant to limit `which`'s lease. */
  grant(slot: number, which: number, amount: number): void {
    if (amount > 0) Atomics.add(this.i32, slot * STRIDE + AVAIL[which]!, amount);
  }

  /** Take up to `amount` back out of limit `which`'s lease (to return it); what was taken. */
  reclaim(slot: number, which: number, amount: number): number {
    const at = slot * STRIDE + AVAIL[which]!;
    for (;;) {
      const old = Atomics.load(this.i32, at);
      const x = Math.min(old, amount);
      if (x <= 0) return 0;
      if (Atomics.compareExchange(this.i32, at, old, old - x) === old) return x;
    }
  }

  /** The limits the fleet reported used up (bit = 1 << limit index). */
  setExhausted(slot: number, bits: number): void {
    Atomics.store(this.i32, slot * STRIDE + F_EXHAUSTED, bits);
  }
  raiseNeed(slot: number): void {
    Atomics.store(this.i32, slot * STRIDE + F_NEED, 1);
  }
  exhaustedBits(slot: number): number {
    return Atomics.load(this.i32, slot * STRIDE + F_EXHAUSTED);
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

/** The available slot of each limit, in limit order. */
const AVAIL = [A_TOK_DAY, A_TOK_MON, A_USD_DAY, A_USD_MON] as const;

/** Input tokens are estimated from the body size at this many bytes per token. */
export const BYTES_PER_TOKEN = 3;

/** Input tokens of a request, estimated from its body size (an upper bound for text). */
export function estimateInputTokens(bodyBytes: number): number {
  return Math.ceil(bodyBytes / BYTES_PER_TOKEN);
}
