/**
 * The clocks shared by every thread. Both count from a base fixed at start-up (the main
 * thread's start time, passed to every acceptor), so every thread reads the same time.
 *
 * Clock32: milliseconds in 32 bits, wrapping every ~49.7 days, for deadlines stored in
 * Int32 SharedArrayBuffer slots (the circuit breakers). `after` is right across the wrap
 * for spans under ~24.8 days; a caller that knows an upper bound on its span (a breaker's
 * open time) also rejects remainders beyond it, so a long-idle slot is never misread.
 */
/** What the breakers and rate limiters read: injectable, so tests move time by hand. */
export interface Clock {
  now(): number;
}

export class Clock32 implements Clock {
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
 * Microseconds since the base, as a plain integer number (exact for 285 years: it does not wrap),
 * for rate limits fine enough for high per-key limits. Sub-millisecond time comes from
 * performance.timeOrigin + performance.now(), which is absolute in every thread.
 */
export class MicroClock implements Clock {
  private readonly base: number;
  constructor(baseMs: number) {
    this.base = baseMs;
  }
  now(): number {
    return Math.floor((performance.timeOrigin + performance.now() - this.base) * 1000);
  }
}
