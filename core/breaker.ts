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
 *
 * Races: the state, the half-open round, the probes in flight and the half-open successes
 * share ONE Int32 word, changed only by compare-and-swap, so a transition and a probe
 * count can never be seen apart (no reset after the fact that could wipe a concurrent
 * increment). Each half-open round has a number; a probe's ticket names its round, and a
 * probe that ends after its round is over (the breaker reopened or closed meanwhile) is no
 * longer a probe: it cannot free a slot of, nor count a success in, a later round. The
 * open-until time is stored BEFORE the word says open, so an admit that sees "open" also
 * sees when it ends.
 */
import type { Clock } from "./clock.js";

export const CLOSED = 0,
  OPEN = 1,
  HALF_OPEN = 2;
export const STATE_NAMES = ["closed", "open", "half_open"] as const;

// Int32 slots per breaker: the word (at the breaker's offset `o` itself), then these.
const S_FAILURES = 1,
  S_OPEN_UNTIL = 2,
  S_OPENED_TOTAL = 3;
const STRIDE = 8;
// The word: state (2 bits) | probes in flight (8) | half-open successes (8) | round (14).
const PROBE_ONE = 1 << 2,
  SUCC_SHIFT = 10,
  SUCC_ONE = 1 << SUCC_SHIFT,
  ROUND_SHIFT = 18,
  ROUND_MASK = 0x3fff;
/** The largest CIRCUIT_BREAKER_HALF_OPEN_PROBES and CIRCUIT_BREAKER_SUCCESS_THRESHOLD (8-bit fields). */
export const MAX_PROBES = 255;

const stateOf = (w: number) => w & 3;
const probesOf = (w: number) => (w >>> 2) & 0xff;
const successesOf = (w: number) => (w >>> SUCC_SHIFT) & 0xff;
const ticketOf = (w: number) => (w >>> ROUND_SHIFT) + 1;
const word = (round: number, state: number, probes: number) => ((round & ROUND_MASK) << ROUND_SHIFT) | (probes << 2) | state;

export interface BreakerSettings {
  failureThreshold: number;
  timeoutMs: number;
  successThreshold: number;
  halfOpenProbes: number;
}

/**
 * Verdicts of `admit`: ADMIT (closed), REJECT, or else a probe ticket (> 0) that the caller
 * hands back exactly once to `recordSuccess`, `recordFailure` or `releaseProbe`.
 * NOT_PROBE (= ADMIT) is the ticket of an ordinary request.
 */
export const ADMIT = 0,
  NOT_PROBE = 0,
  REJECT = -1;

export type Transition = (index: number, from: number, to: number) => void;

export class Breakers {
  readonly i32: Int32Array;
  readonly settings: BreakerSettings;
  /** 32-bit milliseconds (Clock32). */
  private readonly clock: Clock;
  /** Called by the thread that made a state change (for the log). */
  onTransition: Transition | null = null;

  constructor(sab: SharedArrayBuffer, settings: BreakerSettings, clock: Clock) {
    this.i32 = new Int32Array(sab);
    this.settings = settings;
    this.clock = clock;
  }

  static bufferFor(count: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, count) * STRIDE * 4);
  }

  state(b: number): number {
    return stateOf(Atomics.load(this.i32, b * STRIDE));
  }

  /**
   * Ms until an open breaker may half-open (0 once it may). A remainder longer than the
   * timeout cannot have been stored: it is an old deadline read across the clock's wrap.
   */
  private openLeft(o: number): number {
    const left = (Atomics.load(this.i32, o + S_OPEN_UNTIL) - this.clock.now()) | 0;
    return left <= this.settings.timeoutMs ? Math.max(left, 0) : 0;
  }

  /** Remaining open time in ms (0 unless open). */
  retryAfterMs(b: number): number {
    return this.state(b) === OPEN ? this.openLeft(b * STRIDE) : 0;
  }

  /**
   * Not open, or open past its timeout (core/balance.ts skips the others when it picks). A
   * plain read, cheaper than Atomics.load: a stale answer only skews one pick, and `admit` decides.
   */
  available(b: number): boolean {
    return (this.i32[b * STRIDE]! & 3) !== OPEN || this.openLeft(b * STRIDE) === 0;
  }

  /** May a request go to this provider now? ADMIT, REJECT, or a probe ticket (> 0). */
  admit(b: number): number {
    const i = this.i32,
      o = b * STRIDE;
    for (;;) {
      const w = Atomics.load(i, o);
      const st = stateOf(w);
      if (st === CLOSED) return ADMIT;
      if (st === OPEN) {
        if (this.openLeft(o) > 0) return REJECT;
        // Open -> half-open starts a new round, and the winner holds its first probe.
        const next = word((w >>> ROUND_SHIFT) + 1, HALF_OPEN, 1);
        if (Atomics.compareExchange(i, o, w, next) !== w) continue;
        this.onTransition?.(b, OPEN, HALF_OPEN);
        return ticketOf(next);
      }
      if (probesOf(w) >= this.settings.halfOpenProbes) return REJECT;
      if (Atomics.compareExchange(i, o, w, w + PROBE_ONE) === w) return ticketOf(w);
    }
  }

  /**
   * Is `ticket` a probe of the current half-open round, still holding its slot in `w`?
   * (Probes are counted only while half-open: every other state has 0, and tickets are >= 1.)
   */
  private current(w: number, ticket: number): boolean {
    return ticketOf(w) === ticket && probesOf(w) > 0;
  }

  recordSuccess(b: number, ticket: number): void {
    const i = this.i32,
      o = b * STRIDE;
    if (Atomics.load(i, o + S_FAILURES) !== 0) Atomics.store(i, o + S_FAILURES, 0);
    if (ticket === NOT_PROBE) return; // the closed path: no need to read the word
    for (;;) {
      const w = Atomics.load(i, o);
      if (!this.current(w, ticket)) return;
      if (successesOf(w) + 1 >= this.settings.successThreshold) {
        if (Atomics.compareExchange(i, o, w, word(w >>> ROUND_SHIFT, CLOSED, 0)) !== w) continue;
        this.onTransition?.(b, HALF_OPEN, CLOSED);
        return;
      }
      if (Atomics.compareExchange(i, o, w, w - PROBE_ONE + SUCC_ONE) === w) return;
    }
  }

  recordFailure(b: number, ticket: number): void {
    const i = this.i32,
      o = b * STRIDE;
    for (;;) {
      const w = Atomics.load(i, o);
      if (!this.current(w, ticket)) break; // not a probe of this round: an ordinary failure
      this.storeOpenUntil(o);
      if (Atomics.compareExchange(i, o, w, word(w >>> ROUND_SHIFT, OPEN, 0)) === w) return this.opened(b, HALF_OPEN);
    }
    // Consecutive failures count only while closed.
    const w = Atomics.load(i, o);
    if (stateOf(w) !== CLOSED) return;
    if (Atomics.add(i, o + S_FAILURES, 1) + 1 < this.settings.failureThreshold) return;
    this.storeOpenUntil(o);
    if (Atomics.compareExchange(i, o, w, word(w >>> ROUND_SHIFT, OPEN, 0)) === w) {
      Atomics.store(i, o + S_FAILURES, 0);
      this.opened(b, CLOSED);
    }
  }

  /** A probe that ended without a verdict (client abort): free its slot, if its round still runs. */
  releaseProbe(b: number, ticket: number): void {
    const i = this.i32,
      o = b * STRIDE;
    for (;;) {
      const w = Atomics.load(i, o);
      if (!this.current(w, ticket)) return;
      if (Atomics.compareExchange(i, o, w, w - PROBE_ONE) === w) return;
    }
  }

  private storeOpenUntil(o: number): void {
    Atomics.store(this.i32, o + S_OPEN_UNTIL, (this.clock.now() + this.settings.timeoutMs) | 0);
  }

  private opened(b: number, from: number): void {
    Atomics.add(this.i32, b * STRIDE + S_OPENED_TOTAL, 1);
    this.onTransition?.(b, from, OPEN);
  }

  /** For /metrics/circuit-breakers and the Prometheus gauge. */
  view(b: number): {
    state: string;
    consecutive_failures: number;
    half_open_successes: number;
    probes_in_flight: number;
    retry_after_ms: number;
    opened_total: number;
  } {
    const i = this.i32,
      o = b * STRIDE;
    const w = Atomics.load(i, o);
    return {
      state: STATE_NAMES[stateOf(w)]!,
      consecutive_failures: Atomics.load(i, o + S_FAILURES),
      half_open_successes: successesOf(w),
      probes_in_flight: probesOf(w),
      retry_after_ms: stateOf(w) === OPEN ? this.openLeft(o) : 0,
      opened_total: Atomics.load(i, o + S_OPENED_TOTAL),
    };
  }
}

/** Current state name of each breaker, straight from the buffer (for the render worker). */
export function breakerStates(sab: SharedArrayBuffer, count: number): string[] {
  const i32 = new Int32Array(sab);
  const out: string[] = [];
  for (let b = 0; b < count; b++) out.push(STATE_NAMES[stateOf(Atomics.load(i32, b * STRIDE))]!);
  return out;
}
