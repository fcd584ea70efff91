/**
 * Per-key rate limits (requests and tokens per minute) as GCRA token buckets: one
 * "theoretical arrival time" (TAT) per bucket in a SharedArrayBuffer, advanced with a
 * compare-and-swap, so all threads share one limit without locks. Burst = the whole
 * minute's allowance. A token debt is capped at MAX_AHEAD (30 minutes) ahead.
 *
 * Time is microseconds (so even very high limits are exact) from a non-wrapping clock,
 * but a slot is 32 bits, which wraps every ~71.6 minutes: a TAT from long ago would read
 * as one in the future (a key idle 36-71 minutes was refused). So each bucket has two
 * slots: the TAT's low 32 bits, advanced by CAS, and the minute of the last write, raised
 * (never lowered) BEFORE that CAS and read AFTER the TAT. A TAT is at most MAX_AHEAD past
 * its write, so if the last write is more than MAX_AHEAD old the TAT is in the past,
 * whatever its bits say; otherwise it lies within ±31 minutes of now and the 32-bit
 * difference is exact. No BigInt (it would allocate on every call).
 *
 * Requests are charged at admission. Tokens are charged when the real usage is known
 * (after the response); admission only checks that the token bucket is not in debt.
 *
 * Fleet mode (server/fleet/rate-lease.ts, docs/fleet.md) switches a key to **lease mode**:
 * the main thread leases request units from a fleet-wide GCRA bucket in Redis and adds them
 * to the key's LEASE slot; admission spends one with a CAS (no Redis on the request's path).
 * The requests TAT slot then mirrors the fleet bucket (written by the main thread), so a
 * refusal's retry-after and reset reflect the fleet. When the lease is empty the hot path
 * raises NEED and may overdraw up to `leaseCap` units while the mirror shows room (charged to
 * the fleet at the next renewal): a replica's first request after a quiet spell is not refused.
 * Tokens are still charged to the local bucket, and also added to UNREPORTED for the main
 * thread to report; it raises the local bucket to the fleet's debt. Mode 0 is today's code.
 */
import type { Clock } from "./clock.js";

const MINUTE = 60_000_000; // µs
const MAX_AHEAD_MINUTES = 30;
const MAX_AHEAD = MAX_AHEAD_MINUTES * MINUTE;

// Per key (at k * STRIDE): [requests TAT, its last-write minute, tokens TAT (S_TPM), its last-write minute,
// MODE (1 = lease mode), LEASE (request units held; < 0 = overdrawn), NEED (1 = the hot path wants more),
// UNREPORTED (tokens charged here, not yet reported to the fleet)]. After the keys, a header of H_SIZE slots.
const S_TPM = 2,
  S_MODE = 4,
  S_LEASE = 5,
  S_NEED = 6,
  S_UNREPORTED = 7,
  STRIDE = 8;
// Header: [fleet leases configured, Redis up, renewals (a counter), failures (a counter)].
const H_ON = 0,
  H_UP = 1,
  H_RENEWALS = 2,
  H_FAILURES = 3,
  H_SIZE = 4;

/**
 * The most request units a replica holds, and the most it may overdraw, for one key:
 * 1/30 of a minute's allowance, so three replicas strand at most ~10% of a minute.
 */
export function leaseCap(perMinute: number): number {
  return Math.max(1, Math.floor(perMinute / 30));
}

export interface Limits {
  requestsPerMinute: number; // 0 = unlimited
  tokensPerMinute: number; // 0 = unlimited
}

export interface Verdict {
  ok: boolean;
  /** Which limit refused: "requests" | "tokens". */
  limit: "requests" | "tokens" | null;
  retryAfterMs: number;
  /** Remaining allowance in the bucket (for anthropic-ratelimit-*-remaining). */
  remaining: number;
  /** Ms until the bucket is full again (for *-reset). */
  resetMs: number;
}

export class RateLimiter {
  readonly i32: Int32Array;
  /** Microseconds, not wrapping (MicroClock). */
  private readonly clock: Clock;
  /** Reused result object: the hot path does not allocate. Read it before the next call. */
  readonly v: Verdict = { ok: true, limit: null, retryAfterMs: 0, remaining: 0, resetMs: 0 };

  constructor(sab: SharedArrayBuffer, clock: Clock) {
    this.i32 = new Int32Array(sab);
    this.clock = clock;
  }

  static bufferFor(keys: number): SharedArrayBuffer {
    return new SharedArrayBuffer((Math.max(1, keys) * STRIDE + H_SIZE) * 4);
  }

  /** How far (µs, >= 0) the TAT `tat0` of the bucket at `slot` is ahead of now (0 = in the past). */
  private ahead(slot: number, tat0: number, now32: number, minute: number): number {
    if (minute - Atomics.load(this.i32, slot + 1) > MAX_AHEAD_MINUTES) return 0;
    return Math.max((tat0 - now32) | 0, 0);
  }

  /** Raise the bucket's last-write minute to `minute` (before the CAS that writes its TAT). */
  private stamp(slot: number, minute: number): void {
    const h = Atomics.load(this.i32, slot + 1);
    if (minute > h) Atomics.compareExchange(this.i32, slot + 1, h, minute);
  }

  /**
   * GCRA: charge `cost` units of a bucket with `perMinute` allowance. Returns false and
   * fills `v` when it would exceed the burst. `dryRun` (cost 0) only checks for debt.
   */
  private take(slot: number, perMinute: number, cost: number, dryRun: boolean): boolean {
    const i = this.i32;
    const T = MINUTE / perMinute; // µs per unit
    const tau = MINUTE; // burst tolerance: a full minute
    const now = this.clock.now();
    const now32 = now | 0,
      minute = Math.floor(now / MINUTE);
    for (;;) {
      const tat0 = Atomics.load(i, slot);
      const was = this.ahead(slot, tat0, now32, minute);
      const ahead = was + Math.ceil(cost * T);
      if (ahead > tau) {
        this.v.ok = false;
        this.v.retryAfterMs = Math.ceil((ahead - tau) / 1000);
        this.v.remaining = 0;
        this.v.resetMs = Math.ceil(was / 1000);
        return false;
      }
      if (dryRun) {
        this.v.remaining = Math.floor((tau - was) / T);
        this.v.resetMs = Math.ceil(was / 1000);
        return true;
      }
      this.stamp(slot, minute);
      if (Atomics.compareExchange(i, slot, tat0, (now32 + ahead) | 0) === tat0) {
        this.v.remaining = Math.floor((tau - ahead) / T);
        this.v.resetMs = Math.ceil(ahead / 1000);
        return true;
      }
    }
  }

  /** Admission for key `k`: one request, and the token bucket must not be in debt. */
  admit(k: number, l: Limits): Verdict {
    const v = this.v;
    v.ok = true;
    v.limit = null;
    v.retryAfterMs = 0;
    if (l.tokensPerMinute > 0 && !this.take(k * STRIDE + S_TPM, l.tokensPerMinute, 0, true)) {
      v.limit = "tokens";
      return v;
    }
    if (l.requestsPerMinute > 0) {
      const base = k * STRIDE;
      if (
        Atomics.load(this.i32, base + S_MODE) === 1
          ? !this.spendLease(base, l.requestsPerMinute)
          : !this.take(base, l.requestsPerMinute, 1, false)
      ) {
        v.limit = "requests";
        return v;
      }
    }
    return v;
  }

  /** Lease mode: spend one leased unit; when none is left, overdraw while the fleet (as mirrored) has room. */
  private spendLease(base: number, perMinute: number): boolean {
    const i = this.i32;
    for (;;) {
      const x = Atomics.load(i, base + S_LEASE);
      if (x <= 0) {
        if (Atomics.load(i, base + S_NEED) === 0) Atomics.store(i, base + S_NEED, 1);
        if (x <= -leaseCap(perMinute)) {
          // Overdrawn to the cap: wait for the renewal (the mirror says when the fleet has room again).
          if (this.take(base, perMinute, 1, true)) {
            this.v.ok = false;
            this.v.retryAfterMs = Math.ceil(MINUTE / perMinute / 1000);
            this.v.remaining = 0;
          }
          return false;
        }
        // The mirror's own CAS counts this replica's overdraft until the renewal overwrites it.
        if (!this.take(base, perMinute, 1, false)) return false;
      }
      if (Atomics.compareExchange(i, base + S_LEASE, x, x - 1) === x) {
        this.v.remaining = Math.max(0, x - 1);
        return true;
      }
    }
  }

  /** Do this replica's limits hold across the fleet right now (leases configured and Redis up)? */
  fleetWide(): boolean {
    const h = this.i32.length - H_SIZE;
    return Atomics.load(this.i32, h + H_ON) === 1 && Atomics.load(this.i32, h + H_UP) === 1;
  }

  /** Charge the real token usage after a response (may put the bucket in debt, up to MAX_AHEAD). */
  chargeTokens(k: number, l: Limits, tokens: number): void {
    if (l.tokensPerMinute <= 0 || tokens <= 0) return;
    const i = this.i32,
      slot = k * STRIDE + S_TPM;
    if (Atomics.load(i, k * STRIDE + S_MODE) === 1) Atomics.add(i, k * STRIDE + S_UNREPORTED, Math.min(tokens, 1 << 30));
    const T = MINUTE / l.tokensPerMinute;
    const now = this.clock.now();
    const now32 = now | 0,
      minute = Math.floor(now / MINUTE);
    for (;;) {
      const tat0 = Atomics.load(i, slot);
      const ahead = Math.min(this.ahead(slot, tat0, now32, minute) + Math.ceil(tokens * T), MAX_AHEAD);
      this.stamp(slot, minute);
      if (Atomics.compareExchange(i, slot, tat0, (now32 + ahead) | 0) === tat0) return;
    }
  }
}

/**
 * The main thread's side of lease mode (server/fleet/rate-lease.ts): grants, reclaims and
 * the fleet mirrors of a key's slots, plus the header the metrics and readiness read.
 * Not on a request's path.
 */
export class RateLeaseSlots {
  private readonly i32: Int32Array;
  private readonly clock: Clock;
  private readonly h: number;

  constructor(sab: SharedArrayBuffer, clock: Clock) {
    this.i32 = new Int32Array(sab);
    this.clock = clock;
    this.h = this.i32.length - H_SIZE;
  }

  /** Fleet leases are configured (REDIS_URL with fleet mode): the metrics and readiness say so. */
  configure(): void {
    Atomics.store(this.i32, this.h + H_ON, 1);
  }

  setUp(up: boolean): void {
    Atomics.store(this.i32, this.h + H_UP, up ? 1 : 0);
  }

  counted(renewals: number, failures: number): void {
    if (renewals > 0) Atomics.add(this.i32, this.h + H_RENEWALS, renewals);
    if (failures > 0) Atomics.add(this.i32, this.h + H_FAILURES, failures);
  }

  /** Lease mode on (a fresh, empty lease) or off (the local GCRA from the mirrored state). */
  setMode(k: number, on: boolean): void {
    const b = k * STRIDE;
    if (on) {
      Atomics.store(this.i32, b + S_LEASE, 0);
      Atomics.store(this.i32, b + S_NEED, 0);
      Atomics.store(this.i32, b + S_UNREPORTED, 0);
    }
    Atomics.store(this.i32, b + S_MODE, on ? 1 : 0);
  }

  /** Units held (< 0: overdrawn, to be charged to the fleet). */
  lease(k: number): number {
    return Atomics.load(this.i32, k * STRIDE + S_LEASE);
  }

  grant(k: number, n: number): void {
    if (n !== 0) Atomics.add(this.i32, k * STRIDE + S_LEASE, n);
  }

  /** Did the hot path ask for more since the last call? (Clears the flag.) */
  needed(k: number): boolean {
    return Atomics.exchange(this.i32, k * STRIDE + S_NEED, 0) === 1;
  }

  /** Take back every unit held (to return them to the fleet); 0 when none or overdrawn. */
  reclaim(k: number): number {
    const at = k * STRIDE + S_LEASE;
    for (;;) {
      const x = Atomics.load(this.i32, at);
      if (x <= 0) return 0;
      if (Atomics.compareExchange(this.i32, at, x, 0) === x) return x;
    }
  }

  /** Tokens charged here since the last call (to report to the fleet). */
  drainTokens(k: number): number {
    return Atomics.exchange(this.i32, k * STRIDE + S_UNREPORTED, 0);
  }

  /** Mirror the fleet's requests bucket: its TAT is `aheadUs` past now. */
  mirrorRequests(k: number, aheadUs: number): void {
    this.write(k * STRIDE, aheadUs, false);
  }

  /** Raise the local tokens bucket to the fleet's (never lower it: local charges may not be reported yet). */
  mirrorTokens(k: number, aheadUs: number): void {
    this.write(k * STRIDE + S_TPM, aheadUs, true);
  }

  private write(slot: number, aheadUs: number, raiseOnly: boolean): void {
    const i = this.i32;
    const now = this.clock.now();
    const now32 = now | 0,
      minute = Math.floor(now / MINUTE);
    const ahead = Math.min(Math.max(0, Math.round(aheadUs)), MAX_AHEAD);
    for (;;) {
      const tat0 = Atomics.load(i, slot);
      if (raiseOnly) {
        const stale = minute - Atomics.load(i, slot + 1) > MAX_AHEAD_MINUTES;
        if (!stale && ((tat0 - now32) | 0) >= ahead) return;
      }
      const h = Atomics.load(i, slot + 1);
      if (minute > h) Atomics.compareExchange(i, slot + 1, h, minute);
      if (Atomics.compareExchange(i, slot, tat0, (now32 + ahead) | 0) === tat0) return;
    }
  }
}

/** The lease header of a rate-limit buffer, for /metrics and /health/ready (any thread). */
export function leaseState(sab: SharedArrayBuffer): { on: boolean; up: boolean; renewals: number; failures: number } {
  const i = new Int32Array(sab),
    h = i.length - H_SIZE;
  return {
    on: Atomics.load(i, h + H_ON) === 1,
    up: Atomics.load(i, h + H_UP) === 1,
    renewals: Atomics.load(i, h + H_RENEWALS) >>> 0,
    failures: Atomics.load(i, h + H_FAILURES) >>> 0,
  };
}

/** The lease series for /metrics, only when fleet leases are configured (else nothing: one box shows no change). */
export function renderLeasePrometheus(sab: SharedArrayBuffer): string {
  const s = leaseState(sab);
  if (!s.on) return "";
  return [
    "# HELP ratelimit_lease_redis_up 1 while rate limits are leased from Redis (fleet-wide); 0 = per-replica limits.",
    "# TYPE ratelimit_lease_redis_up gauge",
    `ratelimit_lease_redis_up ${s.up ? 1 : 0}`,
    "# HELP ratelimit_lease_renewals_total Request leases taken from the fleet's buckets in Redis.",
    "# TYPE ratelimit_lease_renewals_total counter",
    `ratelimit_lease_renewals_total ${s.renewals}`,
    "# HELP ratelimit_lease_failures_total Lease, return or token-report calls to Redis that failed.",
    "# TYPE ratelimit_lease_failures_total counter",
    `ratelimit_lease_failures_total ${s.failures}`,
    "",
  ].join("\n");
}
