/**
 * `node --expose-gc dist/bench/latency.js [--quick]`
 *
 * mitata rows for the recent-latency ring (core/latency-ring.ts): what recording costs the
 * request path (target: <= 40 ns and 0 B per observation) and what the render worker pays
 * to turn the ring into percentiles, and what tracing costs a request while it is off (the
 * publish points' `hasSubscribers` checks). Same measuring and bytes/op method as bench/run.ts.
 */
import { fileURLToPath } from "node:url";
import { measure } from "mitata";
import { EPOCH_BASE_MS, ringRecord, S_TOTAL } from "../core/latency-ring.js";
import { createMetricsBuffer, Metrics, MetricsLayout, R_MESSAGES } from "../core/metrics.js";
import { recentLatency, secondSeries } from "../workers/latency-report.js";
import { attemptEnd, attemptStart, firstToken, requestEnd, requestStart } from "../server/tracing/channels.js";
import { bytes, markdownTable, ns, parseFlags } from "./format.js";
import { bytesPerOp } from "./run.js";

export function latencyRows(): { id: string; name: string; fn: () => unknown }[] {
  const layout = new MetricsLayout(["anthropic", "openai", "mock"]);
  const sab = createMetricsBuffer(layout);
  const m = new Metrics(layout, sab);
  const u32 = new Uint32Array(sab);
  const base = layout.ring.series(0, 1, S_TOTAL);
  const now = Date.now();
  const sec = ((now - EPOCH_BASE_MS) / 1000) | 0;
  let i = 0;
  // A minute of traffic in the ring, so the percentile rows read real, full slots.
  for (let s = 0; s < 60; s++)
    for (let k = 0; k < 500; k++) m.latency(R_MESSAGES, 1 + (k % 3), 200, 200 + k * 997, k * 990, k * 500, now - s * 1000);
  return [
    {
      id: "ring_record_one",
      name: "ring: record one observation (second + minute slot)",
      fn: () => ringRecord(u32, base, 150 + (i++ & 1023), sec, 0),
    },
    {
      id: "ring_record_request",
      name: "ring: record a request (total, upstream TTFB, overhead)",
      fn: () => m.latency(R_MESSAGES, 1, 200, 20_000 + (i++ & 1023), 19_900, 9_000, now),
    },
    {
      id: "ring_percentiles",
      name: "ring: p50/p95/p99/p999, 1 and 5 min, 3 providers (worker)",
      fn: () => recentLatency(layout, sab, now),
    },
    // A streamed request with one attempt passes these points: start, attempt start, first token, (attempt end), end.
    {
      id: "tracing_off",
      name: "tracing off: a request's publish-point checks (5 × hasSubscribers)",
      fn: () =>
        requestStart.hasSubscribers ||
        attemptStart.hasSubscribers ||
        firstToken.hasSubscribers ||
        attemptEnd.hasSubscribers ||
        requestEnd.hasSubscribers
          ? 1
          : 0,
    },
    { id: "ring_seconds", name: "ring: dashboard's 60 per-second points (worker)", fn: () => secondSeries(layout, sab, now) },
  ];
}

async function main(): Promise<void> {
  const quick = parseFlags(process.argv.slice(2)).has("quick");
  const out: string[][] = [];
  // The no-op's bytes are the measuring loop's own noise (OSR, feedback): subtracted, as bench/run.ts does.
  let sink = 0;
  const noise = bytesPerOp(() => sink++);
  for (const r of latencyRows()) {
    const st = await measure(r.fn, { min_cpu_time: quick ? 100e6 : 500e6 });
    out.push([r.name, ns(st.avg), ns(st.p99), bytes(Math.max(0, bytesPerOp(r.fn) - noise))]);
  }
  process.stdout.write(markdownTable(["row", "avg/op", "p99/op", "bytes/op"], out) + "\n");
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
