/**
 * Gives an acceptor's memory back once its traffic stops. V8 frees dead ArrayBuffers (the
 * malloc'ed memory behind every Buffer a request used) and shrinks a young generation only
 * in a full GC, and after a burst an idle acceptor got none: V8's memory reducer did not run
 * in acceptor isolates then, so each kept its 16 MiB young generation and 10–30 MiB of dead
 * buffers resident for as long as it stayed idle (docs/performance.md, "Memory").
 *
 * A timer tick compares a request counter: nothing else runs while the thread is busy. Once
 * the thread has begun no request (health probes and metrics scrapes aside) for `quietMs`,
 * has none in flight, and its heap grew since the last reclaim (or a request cut the last one
 * short), it runs one full GC. V8
 * shrinks the young generation in a full GC only when the allocation rate since the previous
 * GC is low over ~5 s, which the first GC right after a burst cannot show; so if the young
 * generation is still above its floor, a second full GC follows `YOUNG_SHRINK_MS` later, if
 * the thread is still quiet. At most two per quiet period; a request during one waits for it
 * (a few ms on an acceptor's ~15 MiB heap).
 */
import { getHeapSpaceStatistics, getHeapStatistics, setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";

/** What one isolate holds, in bytes. */
export interface HeapNow {
  /** V8's committed heap (every space). */
  committed: number;
  used: number;
  /** The young generation's committed size (new space and new large objects). */
  young: number;
  /** Memory outside the heap that V8 accounts to it: ArrayBuffer backing stores. */
  external: number;
}

export interface ReclaimProbe {
  /** Requests begun so far (a counter that only grows). */
  begun(): number;
  inflight(): number;
  heap(): HeapNow;
  /** A full, synchronous GC. */
  gc(): void;
  /** Hands the allocator's free pages back to the OS (malloc_trim); false: not done. */
  trim(): boolean;
  /** The process's resident set, bytes. */
  rss(): number;
}

/** One reclaim, for the debug log. */
export interface Reclaimed {
  /** 1: the first GC of a quiet period; 2: the young generation's GC and the trim. */
  step: 1 | 2;
  before: HeapNow;
  after: HeapNow;
  /** Time in the GC (0: none at this step). */
  gcMs: number;
  trimmed: boolean;
  /** Time in the trim (0: none). */
  trimMs: number;
  rssBefore: number;
  rssAfter: number;
}

/** How long a thread must have begun no request before it collects. */
export const QUIET_MS = 2000;
/** Heap plus buffers must have grown this much since the last reclaim to be worth a GC. */
export const GROWTH_BYTES = 4 * 1024 * 1024;
/** V8 shrinks the young generation only when the allocation rate over its last 5 s is low. */
export const YOUNG_SHRINK_MS = 5500;
/** The young generation's smallest size (V8's initial semi-space, ×1). */
export const YOUNG_FLOOR_BYTES = 1024 * 1024;

export class IdleReclaim {
  private lastBegun = -1;
  private quietSince = 0;
  /** Steps run in this quiet period (0, 1 or 2). */
  private step = 0;
  private firstAt = 0;
  /** What the isolate held after the last reclaim (null: none yet). */
  private held: HeapNow | null = null;
  /** Step 1 ran and step 2 has not (a request cut the quiet period short): the next one finishes. */
  private pending = false;

  constructor(
    private readonly probe: ReclaimProbe,
    private readonly quietMs: number,
    private readonly reclaimed: (r: Reclaimed) => void,
  ) {}

  /** Called on a timer; `now` in ms. */
  tick(now: number): void {
    const p = this.probe;
    const begun = p.begun();
    if (begun !== this.lastBegun || p.inflight() > 0) {
      this.lastBegun = begun;
      this.quietSince = now;
      this.step = 0;
      return;
    }
    if (this.step === 2 || now - this.quietSince < this.quietMs) return;
    if (this.step === 0) {
      const h = p.heap();
      const held = this.held;
      this.step = 2; // unless there is something to give back
      if (held !== null && !this.pending && h.used + h.external < held.used + held.external + GROWTH_BYTES && h.young <= held.young) return;
      this.step = 1;
      this.pending = true;
      this.firstAt = now;
      this.run(1, h, true);
    } else if (now - this.firstAt >= YOUNG_SHRINK_MS) {
      this.step = 2;
      this.pending = false;
      const h = p.heap();
      this.run(2, h, h.young > YOUNG_FLOOR_BYTES);
    }
  }

  private run(step: 1 | 2, before: HeapNow, collect: boolean): void {
    const p = this.probe;
    const rssBefore = p.rss();
    let gcMs = 0;
    if (collect) {
      const t = performance.now();
      p.gc();
      gcMs = performance.now() - t;
    }
    // Dead buffers go back to malloc during the GC and the sweeping after it: the trim
    // waits for step 2, YOUNG_SHRINK_MS after the first GC.
    const t = performance.now();
    const trimmed = step === 2 && p.trim();
    const trimMs = trimmed ? performance.now() - t : 0;
    this.held = p.heap();
    this.reclaimed({ step, before, after: this.held, gcMs, trimmed, trimMs, rssBefore, rssAfter: p.rss() });
  }
}

/** The debug log line's fields (bytes and ms). */
export function reclaimFields(r: Reclaimed): Record<string, number | boolean> {
  return {
    step: r.step,
    gc_ms: Math.round(r.gcMs * 10) / 10,
    trimmed: r.trimmed,
    trim_ms: Math.round(r.trimMs * 10) / 10,
    heap_before: r.before.committed,
    heap_after: r.after.committed,
    used_before: r.before.used,
    used_after: r.after.used,
    young_before: r.before.young,
    young_after: r.after.young,
    buffers_before: r.before.external,
    buffers_after: r.after.external,
    rss_before: r.rssBefore,
    rss_after: r.rssAfter,
  };
}

/** This isolate's heap, from V8. */
export function heapNow(): HeapNow {
  const h = getHeapStatistics();
  let young = 0;
  for (const s of getHeapSpaceStatistics()) {
    if (s.space_name === "new_space" || s.space_name === "new_large_object_space") young += s.space_size;
  }
  return { committed: h.total_heap_size, used: h.used_heap_size, young, external: h.external_memory };
}

/**
 * A full GC from V8's gc extension. Node has no API for one; the extension is installed in the
 * contexts created while the flag is on: the threads started after this call (their own
 * global `gc`; a Worker refuses --expose-gc in its execArgv) and, for this thread, a fresh
 * vm context (~40 KB). Null if the flag did not take.
 */
export function exposeGc(): (() => void) | null {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === "function") return own as () => void;
  setFlagsFromString("--expose-gc");
  const gc: unknown = runInNewContext("typeof gc === 'function' ? gc : null");
  return typeof gc === "function" ? (gc as () => void) : null;
}
