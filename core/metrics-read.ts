/**
 * The reader side of the metrics buffer: snapshots and percentiles. Runs in the render
 * worker (and in the benchmarks, through the same functions).
 */
import { ERROR_TYPES } from "./errors.js";
import {
  BUCKETS_US,
  G_ACTIVE,
  G_SPANS_DROPPED,
  MetricsLayout,
  POLICY_KINDS,
  REJECT_REASONS,
  ROUTES,
  STATUS_CLASSES,
  TOOL_DECISIONS,
  TOOL_LABELS,
  TOOL_OTHER,
  read64,
} from "./metrics.js";

export interface HistogramSnapshot {
  route: string;
  provider: string;
  /** Per-bucket (non-cumulative) counts; the last is +Inf. */
  buckets: number[];
  count: number;
  sumSeconds: number;
}

export interface Snapshot {
  requests: { route: string; provider: string; status_class: string; value: number }[];
  errors: { route: string; provider: string; type: string; value: number }[];
  histograms: HistogramSnapshot[];
  /** Every reason, zeros included (alerts want the series to exist). */
  rejected: { reason: string; value: number }[];
  /** MCP tool calls by tool and decision: those counted, or with `toolZeros` every known tool x decision (tool "other" only once counted). */
  toolCalls: { tool: string; decision: string; value: number }[];
  /** Waits for an upstream pool connection, per provider that made any. */
  poolWaits: { provider: string; count: number; sumSeconds: number }[];
  /** Betas and body fields dropped by a provider's policy (counted ones only). */
  policyDrops: { provider: string; kind: string; value: number }[];
  active: number;
  /** Trace spans lost (OpenTelemetry export failed or its queue was full). */
  spansDropped: number;
}

export function snapshot(layout: MetricsLayout, sab: SharedArrayBuffer, toolZeros = false): Snapshot {
  const u32 = new Uint32Array(sab);
  const i32 = new Int32Array(sab);
  const out: Snapshot = {
    requests: [],
    errors: [],
    histograms: [],
    rejected: [],
    toolCalls: [],
    poolWaits: [],
    policyDrops: [],
    active: Atomics.load(i32, G_ACTIVE),
    spansDropped: Atomics.load(i32, G_SPANS_DROPPED) >>> 0,
  };
  for (let p = 0; p < layout.nP; p++) {
    const o = layout.poolWaitOff + p * 4,
      count = read64(u32, o);
    if (count > 0) out.poolWaits.push({ provider: layout.providers[p]!, count, sumSeconds: read64(u32, o + 2) / 1e6 });
    for (let k = 0; k < POLICY_KINDS.length; k++) {
      const v = read64(u32, layout.policySlot(p, k));
      if (v > 0) out.policyDrops.push({ provider: layout.providers[p]!, kind: POLICY_KINDS[k]!, value: v });
    }
  }
  for (let t = 0; t < TOOL_LABELS.length; t++) {
    for (let d = 0; d < TOOL_DECISIONS.length; d++) {
      const v = read64(u32, layout.toolSlot(t, d));
      if (v > 0 || (toolZeros && t !== TOOL_OTHER)) out.toolCalls.push({ tool: TOOL_LABELS[t]!, decision: TOOL_DECISIONS[d]!, value: v });
    }
  }
  for (let k = 0; k < REJECT_REASONS.length; k++)
    out.rejected.push({ reason: REJECT_REASONS[k]!, value: read64(u32, layout.rejectedOff + k * 2) });
  for (let r = 0; r < layout.nR; r++) {
    for (let p = 0; p < layout.nP; p++) {
      for (let s = 0; s < layout.nS; s++) {
        const v = read64(u32, layout.requestSlot(r, p, s));
        if (v > 0) out.requests.push({ route: ROUTES[r]!, provider: layout.providers[p]!, status_class: STATUS_CLASSES[s]!, value: v });
      }
      for (let e = 0; e < layout.nE; e++) {
        const v = read64(u32, layout.errorSlot(r, p, e));
        if (v > 0) out.errors.push({ route: ROUTES[r]!, provider: layout.providers[p]!, type: ERROR_TYPES[e]!, value: v });
      }
      const h = layout.histSlot(r, p);
      const buckets: number[] = new Array(layout.nB);
      let count = 0;
      for (let b = 0; b < layout.nB; b++) {
        buckets[b] = read64(u32, h + b * 2);
        count += buckets[b]!;
      }
      if (count > 0) {
        out.histograms.push({
          route: ROUTES[r]!,
          provider: layout.providers[p]!,
          buckets,
          count,
          sumSeconds: read64(u32, h + layout.nB * 2) / 1e6,
        });
      }
    }
  }
  return out;
}

/**
 * Quantile from bucket counts, interpolating linearly inside the bucket (what Prometheus'
 * histogram_quantile does). Returns seconds; NaN for an empty histogram. A quantile that
 * falls in +Inf returns the largest finite bound.
 */
export function quantile(buckets: readonly number[], q: number): number {
  let total = 0;
  for (const c of buckets) total += c;
  if (total === 0) return NaN;
  const rank = q * total;
  let cum = 0;
  for (let i = 0; i < buckets.length; i++) {
    const c = buckets[i]!;
    if (cum + c >= rank && c > 0) {
      if (i >= BUCKETS_US.length) return BUCKETS_US[BUCKETS_US.length - 1]! / 1e6;
      const lo = i === 0 ? 0 : BUCKETS_US[i - 1]!;
      const hi = BUCKETS_US[i]!;
      return (lo + (hi - lo) * ((rank - cum) / c)) / 1e6;
    }
    cum += c;
  }
  return BUCKETS_US[BUCKETS_US.length - 1]! / 1e6;
}

/** Merge several histograms' buckets (e.g. all providers of a route). */
export function mergeBuckets(hs: readonly HistogramSnapshot[], nB: number): number[] {
  const out = new Array<number>(nB).fill(0);
  for (const h of hs) for (let i = 0; i < nB; i++) out[i]! += h.buckets[i]!;
  return out;
}
