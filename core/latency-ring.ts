/**
 * Recent latency: a ring of per-second and per-minute histograms inside the shared metrics
 * buffer, so /metrics/observability and the dashboard can say what the last minute looked
 * like (the cumulative Prometheus histogram only knows "since start"). Writers are the
 * acceptor threads (Atomics only, no allocation); the reader is the render worker.
 *
 * Buckets are log-linear: 32 linear sub-buckets per doubling from 10 µs (values below that
 * fall in 32 linear buckets of 0.3125 µs), so a bucket's midpoint is within 1/64 (1.6%) of
 * any value in it, up to the last bucket, which ends at 671 s (longer values are counted
 * there). Each slot is [epoch, errors, buckets...]; the first writer to enter a slot
 * for a new second (or minute) claims it with a compare-and-swap, clears it and publishes
 * the epoch; a writer that finds it being cleared spins (a clear is ~1 µs) and drops its
 * sample only if the clearer stalls for thousands of spins (descheduled mid-clear).
 */

/** Buckets per slot: 32 below 10 µs, then 26 doublings of 32. */
export const RING_BUCKETS = 32 + 26 * 32;
/** Slot header: epoch, errors (status >= 400; total series only). A slot's count is the sum of its buckets. */
const HDR = 2;
export const SLOT_STRIDE = HDR + RING_BUCKETS;
export const SECOND_SLOTS = 60;
export const MINUTE_SLOTS = 60;
const SLOTS = SECOND_SLOTS + MINUTE_SLOTS;
/** Epochs count from 2020-01-01 so they stay below 2^31 for decades; the top bit marks "clearing". */
export const EPOCH_BASE_MS = 1_577_836_800_000;
const CLEARING = 0x80000000;

/** The three series kept per (route, provider). */
export const SERIES = ["total", "upstream_ttfb", "overhead"] as const;
export const S_TOTAL = 0,
  S_TTFB = 1,
  S_OVERHEAD = 2;

/** Bucket index of a duration in microseconds. */
export function ringBucket(us: number): number {
  // Units of 1/3.2 µs, so 10 µs is 32 units: the first log-linear bucket.
  const x = us >= 671e6 ? 0x7fffffff : us > 0 ? (us * 3.2) | 0 : 0;
  if (x < 32) return x;
  const k = 26 - Math.clz32(x); // x in [32 << k, 64 << k)
  return 32 + (k << 5) + ((x >>> k) - 32);
}

/** The midpoint of a bucket, in microseconds (what a percentile reports). */
export function ringBucketMid(b: number): number {
  if (b < 32) return (b + 0.5) / 3.2;
  const k = (b - 32) >> 5;
  const lo = (32 + ((b - 32) & 31)) * 2 ** k;
  return (lo + 2 ** k / 2) / 3.2;
}

/** Where the ring sits in the buffer: one block of SLOTS slots per (ring route, provider, series). */
export class RingLayout {
  readonly off: number;
  readonly nRoutes: number;
  readonly nP: number;
  readonly totalU32: number;
  /** ROUTES index -> ring route index, or -1 for routes without a ring (health, metrics...). */
  readonly routeMap: Int8Array;

  constructor(off: number, routes: readonly number[], nRoutesAll: number, nP: number) {
    this.off = off;
    this.nRoutes = routes.length;
    this.nP = nP;
    this.routeMap = new Int8Array(nRoutesAll).fill(-1);
    routes.forEach((r, i) => (this.routeMap[r] = i));
    this.totalU32 = this.nRoutes * nP * SERIES.length * SLOTS * SLOT_STRIDE;
  }

  /** First slot of a series; seconds are slots 0..59, minutes 60..119. */
  series(ringRoute: number, p: number, s: number): number {
    return this.off + ((ringRoute * this.nP + p) * SERIES.length + s) * SLOTS * SLOT_STRIDE;
  }
}

/**
 * Make the slot at `o` hold `epoch`, clearing it if it held an older one. False when the
 * slot already belongs to a newer epoch (a writer whose clock read is stale) or another
 * writer is still clearing it after 4096 spins: the sample is dropped.
 */
function enter(u32: Uint32Array, o: number, epoch: number): boolean {
  for (let spins = 0; spins < 4096; spins++) {
    const e = Atomics.load(u32, o);
    if (e === epoch) return true;
    if (e >= CLEARING) continue; // another writer is clearing it: wait for its epoch
    if (e > epoch) return false;
    if (Atomics.compareExchange(u32, o, e, (epoch | CLEARING) >>> 0) === e) {
      u32.fill(0, o + 1, o + SLOT_STRIDE);
      Atomics.store(u32, o, epoch);
      return true;
    }
  }
  return false;
}

/** Count one observation in a series' second and minute slots. */
export function ringRecord(u32: Uint32Array, base: number, us: number, sec: number, error: number): void {
  const b = HDR + ringBucket(us);
  let o = base + (sec % SECOND_SLOTS) * SLOT_STRIDE;
  if (enter(u32, o, sec)) {
    Atomics.add(u32, o + b, 1);
    if (error !== 0) Atomics.add(u32, o + 1, 1);
  }
  const min = (sec / 60) | 0;
  o = base + (SECOND_SLOTS + (min % MINUTE_SLOTS)) * SLOT_STRIDE;
  if (enter(u32, o, min)) {
    Atomics.add(u32, o + b, 1);
    if (error !== 0) Atomics.add(u32, o + 1, 1);
  }
}

/** The ring's second for a wall-clock time in ms (performance.timeOrigin + performance.now()). */
export function ringSecond(ms: number): number {
  return ((ms - EPOCH_BASE_MS) / 1000) | 0;
}

// ---- reader side (render worker, benchmarks, tests) ----

export interface RingWindow {
  count: number;
  errors: number;
  /** Bucket counts merged over the window. */
  buckets: Float64Array;
}

/**
 * Merge a series' slots over a window ending at second `sec`: `seconds` (1..60) one-second
 * slots, or with `minutes` > 0 that many one-minute slots including the current minute
 * (so a 5-minute window holds between 4 and 5 minutes of data).
 */
export function ringWindow(u32: Uint32Array, base: number, sec: number, seconds: number, minutes: number, into?: RingWindow): RingWindow {
  const w = into ?? { count: 0, errors: 0, buckets: new Float64Array(RING_BUCKETS) };
  const lo = minutes > 0 ? ((sec / 60) | 0) - minutes + 1 : sec - seconds + 1;
  const hi = minutes > 0 ? (sec / 60) | 0 : sec;
  const first = minutes > 0 ? SECOND_SLOTS : 0,
    n = minutes > 0 ? MINUTE_SLOTS : SECOND_SLOTS;
  for (let i = 0; i < n; i++) {
    const o = base + (first + i) * SLOT_STRIDE;
    const e = Atomics.load(u32, o);
    if (e < lo || e > hi) continue; // also skips a slot being cleared (top bit set)
    w.errors += u32[o + 1]!;
    for (let b = 0; b < RING_BUCKETS; b++) {
      const v = u32[o + HDR + b]!;
      if (v !== 0) {
        w.buckets[b]! += v;
        w.count += v;
      }
    }
  }
  return w;
}

/** Add one second's slot of a series into `into`, if the slot still holds that second. */
export function ringAddSecond(u32: Uint32Array, base: number, sec: number, into: RingWindow): void {
  const o = base + (sec % SECOND_SLOTS) * SLOT_STRIDE;
  if (Atomics.load(u32, o) !== sec) return;
  into.errors += u32[o + 1]!;
  for (let b = 0; b < RING_BUCKETS; b++) {
    const v = u32[o + HDR + b]!;
    if (v !== 0) {
      into.buckets[b]! += v;
      into.count += v;
    }
  }
}

/** Percentiles (in ms, bucket midpoints) of merged bucket counts; null for an empty window. */
export function ringPercentiles(buckets: Float64Array, qs: readonly number[]): (number | null)[] {
  let total = 0;
  for (let b = 0; b < RING_BUCKETS; b++) total += buckets[b]!;
  if (total === 0) return qs.map(() => null);
  const out: (number | null)[] = [];
  let b = 0,
    cum = 0;
  for (const q of qs) {
    // The smallest bucket whose cumulative count reaches rank ceil(q * total).
    const rank = Math.max(1, Math.ceil(q * total));
    while (b < RING_BUCKETS - 1 && cum + buckets[b]! < rank) cum += buckets[b++]!;
    out.push(Math.round(ringBucketMid(b) * 1000) / 1e6);
  }
  return out;
}
