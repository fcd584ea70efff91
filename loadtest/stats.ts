/** Pure helpers for the load-test report (unit-tested in test/loadtest/stats.test.ts). */
import { median } from "../bench/format.js";
import type { RunResult } from "./measure.js";

/** Nearest-rank percentile of an ascending array (NaN when empty). */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export interface Summary {
  target: string;
  rounds: number;
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  p99_2xx_ms: number;
  cpu_ms_per_req: number;
  requests: number;
  statuses: Record<string, number>;
  errors: number;
  /** Every round's req/s, to show the spread. */
  rounds_req_per_s: number[];
}

/** Medians over rounds for one target; status counts and errors are summed. */
export function summarise(target: string, runs: readonly RunResult[]): Summary {
  const statuses: Record<string, number> = {};
  let requests = 0,
    errors = 0;
  for (const r of runs) {
    requests += r.requests;
    errors += r.errors + r.timeouts;
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  }
  return {
    target,
    rounds: runs.length,
    req_per_s: median(runs.map((r) => r.req_per_s)),
    p50_ms: median(runs.map((r) => r.p50_ms)),
    p99_ms: median(runs.map((r) => r.p99_ms)),
    p99_2xx_ms: median(runs.map((r) => r.p99_2xx_ms)),
    cpu_ms_per_req: median(runs.map((r) => r.cpu_ms_per_req)),
    requests,
    statuses,
    errors,
    rounds_req_per_s: runs.map((r) => r.req_per_s),
  };
}

/**
 * Ratio a ÷ b per round, then the median: each round's pair ran back to back, so the
 * per-round ratio cancels most of the machine's drift.
 */
export function pairedRatio(a: readonly RunResult[], b: readonly RunResult[]): number {
  const n = Math.min(a.length, b.length);
  const rs: number[] = [];
  for (let i = 0; i < n; i++) rs.push(a[i]!.req_per_s / b[i]!.req_per_s);
  return median(rs);
}

/** Share of responses that were 503 (shed), and the count of anything that is neither 2xx nor 503. */
export function shedStats(statuses: Record<string, number>, errors: number): { total: number; shed_rate: number; other_failures: number } {
  let total = 0,
    shed = 0,
    other = errors;
  for (const [k, v] of Object.entries(statuses)) {
    total += v;
    const s = Number(k);
    if (s === 503) shed += v;
    else if (s < 200 || s >= 300) other += v;
  }
  return { total, shed_rate: total === 0 ? NaN : shed / total, other_failures: other };
}
