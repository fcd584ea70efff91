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
 */
import type { Clock } from "./clock.js";

const MINUTE = 60_000_000; // µs
const MAX_AHEAD_MINUTES = 30;
const MAX_AHEAD = MAX_AHEAD_MINUTES * MINUTE;

// Per key (at k * STRIDE): [requests TAT, its last-write minute, tokens TAT (S_TPM), its last-write minute].
const S_TPM = 2,
  STRIDE = 4;

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
    return new SharedArrayBuffer(Math.max(1, keys) * STRIDE * 4);
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
    if (l.requestsPerMinute > 0 && !this.take(k * STRIDE, l.requestsPerMinute, 1, false)) {
      v.limit = "requests";
      return v;
    }
    return v;
  }

  /** Charge the real token usage after a response (may put the bucket in debt, up to MAX_AHEAD). */
  chargeTokens(k: number, l: Limits, tokens: number): void {
    if (l.tokensPerMinute <= 0 || tokens <= 0) return;
    const i = this.i32,
      slot = k * STRIDE + S_TPM;
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
