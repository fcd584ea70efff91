/**
 * Per-key rate limits (requests and tokens per minute) as GCRA token buckets: one
 * "theoretical arrival time" per bucket in a SharedArrayBuffer, advanced with a
 * compare-and-swap, so all threads share one limit without locks. Burst = the whole
 * minute's allowance. Times are MicroClock32 microseconds, so even very high limits are
 * exact; a token debt is capped at 30 minutes ahead (inside the clock's wrap-safe span).
 *
 * Requests are charged at admission. Tokens are charged when the real usage is known
 * (after the response); admission only checks that the token bucket is not in debt.
 */
import { after, type MicroClock32 } from "./clock.js";

const MINUTE = 60_000_000; // µs
const MAX_AHEAD = 30 * MINUTE;

const S_RPM = 0, S_TPM = 1, STRIDE = 2;

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
  private readonly clock: MicroClock32;
  /** Reused result object: the hot path does not allocate. Read it before the next call. */
  readonly v: Verdict = { ok: true, limit: null, retryAfterMs: 0, remaining: 0, resetMs: 0 };

  constructor(sab: SharedArrayBuffer, clock: MicroClock32) {
    this.i32 = new Int32Array(sab);
    this.clock = clock;
  }

  static bufferFor(keys: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, keys) * STRIDE * 4);
  }

  /**
   * GCRA: charge `cost` units of a bucket with `perMinute` allowance. Returns false and
   * fills `v` when it would exceed the burst. `dryRun` only checks for debt.
   */
  private take(slot: number, perMinute: number, cost: number, dryRun: boolean): boolean {
    const i = this.i32;
    const T = MINUTE / perMinute; // µs per unit
    const tau = MINUTE; // burst tolerance: a full minute
    const now = this.clock.now();
    for (;;) {
      const tat0 = Atomics.load(i, slot);
      const tat = tat0 === 0 || after(now, tat0) ? now : tat0; // 0 = never used
      const newTat = (tat + Math.ceil(cost * T)) | 0;
      const ahead = (newTat - now) | 0;
      if (ahead > tau && (!dryRun || ((tat - now) | 0) > tau)) {
        this.v.ok = false;
        this.v.retryAfterMs = Math.ceil((dryRun ? ((tat - now) | 0) - tau : ahead - tau) / 1000);
        this.v.remaining = 0;
        this.v.resetMs = Math.ceil(((tat - now) | 0) / 1000);
        return false;
      }
      if (dryRun) {
        this.v.remaining = Math.max(0, Math.floor((tau - ((tat - now) | 0)) / T));
        this.v.resetMs = Math.max(0, Math.ceil(((tat - now) | 0) / 1000));
        return true;
      }
      if (Atomics.compareExchange(i, slot, tat0, newTat === 0 ? 1 : newTat) === tat0) {
        this.v.remaining = Math.max(0, Math.floor((tau - ahead) / T));
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
    if (l.requestsPerMinute > 0 && !this.take(k * STRIDE + S_RPM, l.requestsPerMinute, 1, false)) {
      v.limit = "requests";
      return v;
    }
    return v;
  }

  /** Charge the real token usage after a response (may put the bucket in debt). */
  chargeTokens(k: number, l: Limits, tokens: number): void {
    if (l.tokensPerMinute <= 0 || tokens <= 0) return;
    const i = this.i32, slot = k * STRIDE + S_TPM;
    const T = MINUTE / l.tokensPerMinute;
    const now = this.clock.now();
    for (;;) {
      const tat0 = Atomics.load(i, slot);
      const tat = tat0 === 0 || after(now, tat0) ? now : tat0;
      const ahead = Math.min(((tat - now) | 0) + Math.ceil(tokens * T), MAX_AHEAD);
      const newTat = (now + ahead) | 0;
      if (Atomics.compareExchange(i, slot, tat0, newTat === 0 ? 1 : newTat) === tat0) return;
    }
  }
}
