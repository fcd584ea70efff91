/**
 * Circuit breakers, one per provider, as slots in a SharedArrayBuffer so every acceptor
 * thread sees one state. Policy: CONSECUTIVE failures (CIRCUIT_BREAKER_FAILURE_THRESHOLD).
 * We chose consecutive failures over a failure ratio because LLM traffic per provider is
 * often thin and bursty: a ratio window needs volume to mean anything, while N failures in
 * a row with no success between them is a clear signal at any rate, and it costs one
 * counter. Only failures that are the provider's fault count: 5xx, 529, timeouts and
 * connection errors, never a client's 4xx (nor a 429, which is a per-key quota).
 *
 * Closed: admit. Open: fail fast until CIRCUIT_BREAKER_TIMEOUT has passed. Half-open:
 * admit at most `halfOpenProbes` concurrent probes; CIRCUIT_BREAKER_SUCCESS_THRESHOLD
 * successes close it, one failure reopens it. The closed check is one Atomics.load.
 */
import { after, type Clock32 } from "./clock.js";

export const CLOSED = 0, OPEN = 1, HALF_OPEN = 2;
export const STATE_NAMES = ["closed", "open", "half_open"] as const;

// Int32 slots per breaker.
const S_STATE = 0, S_FAILURES = 1, S_SUCCESSES = 2, S_PROBES = 3, S_OPEN_UNTIL = 4, S_OPENED_TOTAL = 5;
const STRIDE = 8;

export interface BreakerSettings {
  failureThreshold: number;
  timeoutMs: number;
  successThreshold: number;
  halfOpenProbes: number;
}

/** Verdicts of `admit`. */
export const ADMIT = 0, ADMIT_PROBE = 1, REJECT = 2;

export type Transition = (index: number, from: number, to: number) => void;

export class Breakers {
  readonly i32: Int32Array;
  readonly settings: BreakerSettings;
  private readonly clock: Clock32;
  /** Called by the thread that made a state change (for the log). */
  onTransition: Transition | null = null;

  constructor(sab: SharedArrayBuffer, settings: BreakerSettings, clock: Clock32) {
    this.i32 = new Int32Array(sab);
    this.settings = settings;
    this.clock = clock;
  }

  static bufferFor(count: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, count) * STRIDE * 4);
  }

  state(b: number): number {
    return Atomics.load(this.i32, b * STRIDE + S_STATE);
  }

  /** Remaining open time in ms (0 unless open). */
  retryAfterMs(b: number): number {
    if (this.state(b) !== OPEN) return 0;
    const left = (Atomics.load(this.i32, b * STRIDE + S_OPEN_UNTIL) - this.clock.now()) | 0;
    return left > 0 ? left : 0;
  }

  /** May a request go to this provider now? ADMIT, ADMIT_PROBE (call `release` semantics via record*) or REJECT. */
  admit(b: number): number {
    const i = this.i32, o = b * STRIDE;
    const st = Atomics.load(i, o + S_STATE);
    if (st === CLOSED) return ADMIT;
    if (st === OPEN) {
      if (!after(this.clock.now(), Atomics.load(i, o + S_OPEN_UNTIL))) return REJECT;
      if (Atomics.compareExchange(i, o + S_STATE, OPEN, HALF_OPEN) === OPEN) {
        Atomics.store(i, o + S_SUCCESSES, 0);
        Atomics.store(i, o + S_PROBES, 0);
        this.onTransition?.(b, OPEN, HALF_OPEN);
      }
    }
    // Half-open: a bounded number of probes in flight.
    if (Atomics.add(i, o + S_PROBES, 1) < this.settings.halfOpenProbes) return ADMIT_PROBE;
    Atomics.sub(i, o + S_PROBES, 1);
    return REJECT;
  }

  recordSuccess(b: number, probe: boolean): void {
    const i = this.i32, o = b * STRIDE;
    if (Atomics.load(i, o + S_FAILURES) !== 0) Atomics.store(i, o + S_FAILURES, 0);
    if (!probe) return;
    Atomics.sub(i, o + S_PROBES, 1);
    if (Atomics.load(i, o + S_STATE) !== HALF_OPEN) return;
    if (Atomics.add(i, o + S_SUCCESSES, 1) + 1 >= this.settings.successThreshold) {
      if (Atomics.compareExchange(i, o + S_STATE, HALF_OPEN, CLOSED) === HALF_OPEN) {
        Atomics.store(i, o + S_FAILURES, 0);
        this.onTransition?.(b, HALF_OPEN, CLOSED);
      }
    }
  }

  recordFailure(b: number, probe: boolean): void {
    const i = this.i32, o = b * STRIDE;
    if (probe) {
      Atomics.sub(i, o + S_PROBES, 1);
      if (Atomics.compareExchange(i, o + S_STATE, HALF_OPEN, OPEN) === HALF_OPEN) this.open(b, HALF_OPEN);
      return;
    }
    const n = Atomics.add(i, o + S_FAILURES, 1) + 1;
    if (n >= this.settings.failureThreshold && Atomics.compareExchange(i, o + S_STATE, CLOSED, OPEN) === CLOSED) {
      this.open(b, CLOSED);
    }
  }

  /** A probe that ended without a verdict (client abort): free its slot. */
  releaseProbe(b: number): void {
    Atomics.sub(this.i32, b * STRIDE + S_PROBES, 1);
  }

  private open(b: number, from: number): void {
    const o = b * STRIDE;
    Atomics.store(this.i32, o + S_OPEN_UNTIL, (this.clock.now() + this.settings.timeoutMs) | 0);
    Atomics.add(this.i32, o + S_OPENED_TOTAL, 1);
    Atomics.store(this.i32, o + S_FAILURES, 0);
    this.onTransition?.(b, from, OPEN);
  }

  /** For /metrics/circuit-breakers and the Prometheus gauge. */
  view(b: number): { state: string; consecutive_failures: number; half_open_successes: number; probes_in_flight: number; retry_after_ms: number; opened_total: number } {
    const i = this.i32, o = b * STRIDE;
    return {
      state: STATE_NAMES[Atomics.load(i, o + S_STATE)]!,
      consecutive_failures: Atomics.load(i, o + S_FAILURES),
      half_open_successes: Atomics.load(i, o + S_SUCCESSES),
      probes_in_flight: Atomics.load(i, o + S_PROBES),
      retry_after_ms: this.retryAfterMs(b),
      opened_total: Atomics.load(i, o + S_OPENED_TOTAL),
    };
  }
}

/** Current state name of each breaker, straight from the buffer (for the render worker). */
export function breakerStates(sab: SharedArrayBuffer, count: number): string[] {
  const i32 = new Int32Array(sab);
  const out: string[] = [];
  for (let b = 0; b < count; b++) out.push(STATE_NAMES[Atomics.load(i32, b * STRIDE + S_STATE)] ?? "closed");
  return out;
}
