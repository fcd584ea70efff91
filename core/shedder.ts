/**
 * Load shedding. A timer on each acceptor thread (server/) samples its heap against
 * heap_size_limit, the process RSS against the cgroup limit (or total memory) and its
 * event-loop delay, and stores one verdict per thread in a SharedArrayBuffer slot. The
 * hot path reads that verdict (one Atomics.load) and compares the shared active-request
 * gauge with its threshold (one more load): nothing is computed per request.
 */
export const SHED_NONE = 0,
  SHED_HEAP = 1,
  SHED_MEMORY = 2,
  SHED_ACTIVE = 3,
  SHED_EVENT_LOOP = 4;

export interface ShedSettings {
  heapThreshold: number;
  memoryThreshold: number;
  activeThreshold: number;
  eventLoopDelayMs: number;
}

export interface ShedSample {
  heapUsed: number;
  heapLimit: number;
  rss: number;
  memoryLimit: number;
  /** Event-loop delay over the last interval, ms (p99 of the monitor). */
  eventLoopDelayMs: number;
}

/** The verdict for one sample (pure; run by the timer, not per request). */
export function verdictOf(s: ShedSettings, x: ShedSample): number {
  if (x.heapLimit > 0 && x.heapUsed / x.heapLimit > s.heapThreshold) return SHED_HEAP;
  if (x.memoryLimit > 0 && x.rss / x.memoryLimit > s.memoryThreshold) return SHED_MEMORY;
  if (x.eventLoopDelayMs > s.eventLoopDelayMs) return SHED_EVENT_LOOP;
  return SHED_NONE;
}

export class Shedder {
  readonly i32: Int32Array;
  readonly slot: number;
  readonly activeThreshold: number;
  private readonly activeI32: Int32Array;
  private readonly activeSlot: number;

  /**
   * `verdicts` holds one Int32 per acceptor thread; `slot` is this thread's. The active
   * gauge is read from `activeI32[activeSlot]` (the metrics buffer).
   */
  constructor(verdicts: SharedArrayBuffer, slot: number, s: ShedSettings, activeI32: Int32Array, activeSlot: number) {
    this.i32 = new Int32Array(verdicts);
    this.slot = slot;
    this.activeThreshold = s.activeThreshold;
    this.activeI32 = activeI32;
    this.activeSlot = activeSlot;
  }

  publish(verdict: number): void {
    Atomics.store(this.i32, this.slot, verdict);
  }

  /** SHED_NONE to admit, else the reason. Call after counting the request as active. */
  check(): number {
    const v = Atomics.load(this.i32, this.slot);
    if (v !== SHED_NONE) return v;
    return Atomics.load(this.activeI32, this.activeSlot) > this.activeThreshold ? SHED_ACTIVE : SHED_NONE;
  }
}
