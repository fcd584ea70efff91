/**
 * Hot-path checks whose modules may not exist at every commit (core/shedder.ts and
 * core/breaker.ts arrived with issue 3). They are loaded by a computed specifier, so this
 * benchmark compiles and runs either way; a missing module means a missing row, reported.
 * The small interfaces below mirror the modules' exports that the rows call.
 */
import { G_ACTIVE } from "../core/metrics.js";
import type { Check } from "./stack.js";

interface ShedderModule {
  SHED_NONE: number;
  Shedder: new (verdicts: SharedArrayBuffer, slot: number, s: { heapThreshold: number; memoryThreshold: number; activeThreshold: number; eventLoopDelayMs: number }, activeI32: Int32Array, activeSlot: number) => { check(): number };
}

interface BreakerModule {
  ADMIT: number;
  REJECT: number;
  Breakers: {
    new (sab: SharedArrayBuffer, s: { failureThreshold: number; timeoutMs: number; successThreshold: number; halfOpenProbes: number }, clock: unknown): {
      admit(b: number): number;
      recordSuccess(b: number, ticket: number): void;
    };
    bufferFor(count: number): SharedArrayBuffer;
  };
}

interface RateLimitModule {
  RateLimiter: {
    new (sab: SharedArrayBuffer, clock: unknown): { admit(k: number, l: { requestsPerMinute: number; tokensPerMinute: number }): { ok: boolean } };
    bufferFor(keys: number): SharedArrayBuffer;
  };
}

interface ClockModule {
  Clock32: new (base: number) => { now(): number };
  MicroClock: new (baseMs: number) => { now(): number };
}

async function load<T>(name: string): Promise<T | null> {
  const spec = "../core/" + name + ".js";
  try {
    return (await import(spec)) as T;
  } catch (e) {
    if ((e as { code?: string }).code === "ERR_MODULE_NOT_FOUND") return null;
    throw e;
  }
}

export interface Optional {
  /** Load-shedding check, as the hot path calls it; null when core/shedder.ts is absent. */
  shedder: Check | null;
  /** Per-key rate limit (requests + tokens per minute, never refusing here); null when core/ratelimit.ts is absent. */
  limiter: Check | null;
  /** Closed circuit breaker: admit + record success; null when core/breaker.ts is absent. */
  breaker: Check | null;
  missing: string[];
}

export async function loadOptional(metricsSab: SharedArrayBuffer): Promise<Optional> {
  const missing: string[] = [];
  let shedder: Check | null = null;
  let breaker: Check | null = null;
  const sm = await load<ShedderModule>("shedder");
  if (sm !== null) {
    const s = new sm.Shedder(new SharedArrayBuffer(8), 0, { heapThreshold: 0.9, memoryThreshold: 0.9, activeThreshold: 10_000, eventLoopDelayMs: 1000 }, new Int32Array(metricsSab), G_ACTIVE);
    const none = sm.SHED_NONE;
    shedder = { name: "shedder", admit: () => s.check() === none, done: () => {} };
  } else missing.push("core/shedder.ts");
  const bm = await load<BreakerModule>("breaker");
  const cm = await load<ClockModule>("clock");
  if (bm !== null && cm !== null) {
    const b = new bm.Breakers(bm.Breakers.bufferFor(4), { failureThreshold: 5, timeoutMs: 30_000, successThreshold: 2, halfOpenProbes: 1 }, new cm.Clock32(Date.now()));
    const reject = bm.REJECT;
    let ticket = 0;
    breaker = {
      name: "breaker",
      admit: () => {
        const v = b.admit(1);
        ticket = v > 0 ? v : 0;
        return v !== reject;
      },
      done: () => b.recordSuccess(1, ticket),
    };
  } else missing.push("core/breaker.ts");
  let limiter: Check | null = null;
  const rm = await load<RateLimitModule>("ratelimit");
  if (rm !== null && cm !== null) {
    const rl = new rm.RateLimiter(rm.RateLimiter.bufferFor(4), new cm.MicroClock(Date.now()));
    const limits = { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000 };
    limiter = { name: "ratelimit", admit: () => rl.admit(0, limits).ok, done: () => {} };
  } else missing.push("core/ratelimit.ts");
  return { shedder, limiter, breaker, missing };
}
