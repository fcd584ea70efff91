/**
 * 64-bit counters in a SharedArrayBuffer as two Uint32 slots (lo, hi) with a carry, so
 * they neither wrap at 2^32 nor need BigInt (which would allocate). Shared by the
 * request metrics, the usage metrics and the budget counters.
 */

/** Add v >= 0 to the counter at slot i (values >= 2^32 are added in parts). */
export function add64(u32: Uint32Array, i: number, v: number): void {
  if (v <= 0) return;
  while (v > 0xffffffff) {
    add64(u32, i, 0xffffffff);
    v -= 0xffffffff;
  }
  const old = Atomics.add(u32, i, v);
  if (old + v > 0xffffffff) Atomics.add(u32, i + 1, 1);
}

/**
 * Read a 64-bit counter (exact up to 2^53). A read racing a carry (hi changes between
 * the loads) is retried. Known limit: in the few nanoseconds between a writer's wrap of
 * lo and its carry into hi, a reader can see the value 2^32 low, once per 2^32 events.
 */
export function read64(u32: Uint32Array, i: number): number {
  for (;;) {
    const hi = Atomics.load(u32, i + 1);
    const lo = Atomics.load(u32, i);
    if (Atomics.load(u32, i + 1) === hi) return hi * 4294967296 + lo;
  }
}
