/**
 * A 32-bit millisecond clock shared by every thread: milliseconds since a base fixed at
 * start-up, wrapping every ~49 days. Deadlines stored in SharedArrayBuffer slots use it,
 * and compare with `after`, which is correct across the wrap for spans under ~24 days.
 */
export class Clock32 {
  private readonly base: number;
  constructor(base: number) {
    this.base = base;
  }
  now(): number {
    return (Date.now() - this.base) >>> 0;
  }
}

/** Is `a` at or after `b` (both Clock32 values)? */
export function after(a: number, b: number): boolean {
  return ((a - b) | 0) >= 0;
}

/**
 * The same idea in microseconds (wraps every ~71 minutes; `after` is right for spans under
 * ~35 minutes), for rate limits fine enough for high per-key limits. Sub-millisecond time
 * comes from performance.timeOrigin + performance.now(), which is absolute in every thread.
 */
export class MicroClock32 {
  private readonly base: number;
  constructor(baseMs: number) {
    this.base = baseMs;
  }
  now(): number {
    return Math.floor((performance.timeOrigin + performance.now() - this.base) * 1000) >>> 0;
  }
}
