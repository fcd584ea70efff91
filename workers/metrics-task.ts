/**
 * piscina task module: renders /metrics/prometheus and /metrics/observability from the
 * shared metrics buffer, off the serving threads. prom-client supplies the usual
 * process_* and nodejs_* metrics (process-wide ones are true for the whole process; the
 * nodejs heap and event-loop ones describe this worker thread).
 */
import { collectDefaultMetrics, Registry } from "prom-client";
import { freemem, loadavg, totalmem } from "node:os";
import { G_DRAINING, G_LOG_DROPPED, MetricsLayout } from "../core/metrics.js";
import { mergeBuckets, quantile, snapshot } from "../core/metrics-read.js";
import { renderPrometheus } from "../core/prometheus.js";
import { breakerStates } from "../core/breaker.js";
import { renderInflightPrometheus } from "../core/deployments.js";
import { renderUsagePrometheus, UsageLayout, usageSnapshot } from "../core/usage-metrics.js";
import { cacheSnapshot, renderCachePrometheus } from "../core/cache/stats.js";
import { recentLatency, secondSeries, windowReport } from "./latency-report.js";
import { ringSecond } from "../core/latency-ring.js";
import { renderUserPrometheus } from "../core/user-metrics.js";
import { renderKeyPoolPrometheus } from "../core/keypool.js";
import { Clock32 } from "../core/clock.js";
import { renderLeasePrometheus } from "../core/ratelimit.js";

/** The pages this worker renders; "dashboard" is the dashboard's live data (server/dashboard/). */
export type RenderKind = "prometheus" | "observability" | "dashboard";

export interface RenderTask {
  kind: RenderKind;
  sab: SharedArrayBuffer;
  breakerSab: SharedArrayBuffer;
  /** In flight per deployment (core/deployments.ts) and the deployments' keys, by slot. */
  deploySab?: SharedArrayBuffer;
  deployKeys?: readonly string[];
  providers: string[];
  startedAt: number;
  /** Token, cost and budget counters (core/usage-metrics.ts), when wired. */
  usageSab?: SharedArrayBuffer;
  models?: readonly string[];
  /** MCP is on: every tool_calls_total series is shown, zeros included (else only counted ones). */
  mcp?: boolean;
  /** The response cache has a Redis tier (its series are shown). */
  redis?: boolean;
  /** USAGE_METRICS_USER_LABEL_MAX: slots of the per-developer table in `sab` (0 = none). */
  userSlots?: number;
  /** Upstream key pools (core/keypool.ts): their shared state and labels. */
  keyPoolState?: SharedArrayBuffer;
  keyLabels?: readonly { provider: string; key: string }[];
  /** The rate-limit buffer (core/ratelimit.ts): its fleet lease series, when leases are configured. */
  rateSab?: SharedArrayBuffer;
}

let cachedUsage: UsageLayout | null = null;
function usageLayoutFor(providers: string[], models: readonly string[]): UsageLayout {
  if (cachedUsage === null || cachedUsage.models.length !== models.length || cachedUsage.providers.length !== providers.length + 1)
    cachedUsage = new UsageLayout(providers, models);
  return cachedUsage;
}

const registry = new Registry();
collectDefaultMetrics({ register: registry });
// These gauges end in _total, which promtool rejects for non-counters; they would only
// describe this worker thread's handles anyway.
for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) {
  registry.removeSingleMetric(name);
}

let cachedLayout: MetricsLayout | null = null;
function layoutFor(providers: string[], userSlots: number): MetricsLayout {
  if (cachedLayout === null || cachedLayout.providers.length !== providers.length + 1 || cachedLayout.user.slots !== userSlots)
    cachedLayout = new MetricsLayout(providers, userSlots);
  return cachedLayout;
}

function ms(seconds: number): number | null {
  return Number.isNaN(seconds) ? null : Math.round(seconds * 1e6) / 1e3;
}

export default async function render(task: RenderTask): Promise<string> {
  const layout = layoutFor(task.providers, task.userSlots ?? 0);
  const snap = snapshot(layout, task.sab, task.mcp === true);
  const draining = Atomics.load(new Int32Array(task.sab), G_DRAINING);
  if (task.kind === "prometheus") {
    const states = breakerStates(task.breakerSab, task.providers.length);
    const ours = renderPrometheus(
      snap,
      [
        { name: "gateway_draining", help: "1 while the gateway is shutting down.", value: draining },
        {
          name: "gateway_log_lines_dropped_total",
          help: "Log lines dropped: the log buffer was full (a stalled destination) or the destination failed (EPIPE, full disk).",
          value: Atomics.load(new Int32Array(task.sab), G_LOG_DROPPED),
          type: "counter",
        },
      ],
      task.providers.map((provider, i) => ({ provider, state: states[i]! })),
    );
    const usage =
      task.usageSab !== undefined && task.models !== undefined
        ? renderUsagePrometheus(usageLayoutFor(task.providers, task.models), task.usageSab)
        : "";
    const cache = renderCachePrometheus(cacheSnapshot(new Uint32Array(task.sab), layout.cacheOff), task.redis === true);
    const keyPools =
      task.keyPoolState !== undefined && task.keyLabels !== undefined
        ? renderKeyPoolPrometheus(task.keyPoolState, task.keyLabels, new Clock32(task.startedAt).now())
        : "";
    const lease = task.rateSab === undefined ? "" : renderLeasePrometheus(task.rateSab);
    const inflight =
      task.deploySab !== undefined && task.deployKeys !== undefined ? renderInflightPrometheus(task.deploySab, task.deployKeys) : "";
    return (
      ours +
      inflight +
      usage +
      cache +
      lease +
      renderUserPrometheus(new Uint32Array(task.sab), layout.user) +
      keyPools +
      (await registry.metrics())
    );
  }
  if (task.kind === "dashboard") return renderDashboard(task, layout, snap, draining);
  const all = mergeBuckets(snap.histograms, layout.nB);
  const byRoute: Record<string, unknown> = {};
  for (const route of new Set(snap.histograms.map((h) => h.route))) {
    const hs = snap.histograms.filter((h) => h.route === route);
    const b = mergeBuckets(hs, layout.nB);
    byRoute[route] = {
      count: hs.reduce((a, h) => a + h.count, 0),
      p50_ms: ms(quantile(b, 0.5)),
      p95_ms: ms(quantile(b, 0.95)),
      p99_ms: ms(quantile(b, 0.99)),
    };
  }
  const byClass: Record<string, number> = {};
  let total = 0;
  for (const r of snap.requests) {
    byClass[r.status_class] = (byClass[r.status_class] ?? 0) + r.value;
    total += r.value;
  }
  const mem = process.memoryUsage();
  return JSON.stringify({
    uptime_seconds: Math.round((Date.now() - task.startedAt) / 1000),
    draining: draining === 1,
    requests: { total, active: snap.active, by_status_class: byClass, detail: snap.requests },
    errors: { total: snap.errors.reduce((a, e) => a + e.value, 0), detail: snap.errors },
    rejected: snap.rejected,
    cache: cacheSnapshot(new Uint32Array(task.sab), layout.cacheOff),
    usage:
      task.usageSab !== undefined && task.models !== undefined
        ? usageSnapshot(usageLayoutFor(task.providers, task.models), task.usageSab)
        : null,
    breakers: Object.fromEntries(task.providers.map((p, i) => [p, breakerStates(task.breakerSab, task.providers.length)[i]])),
    latency: { p50_ms: ms(quantile(all, 0.5)), p95_ms: ms(quantile(all, 0.95)), p99_ms: ms(quantile(all, 0.99)), by_route: byRoute },
    recent_latency: recentLatency(layout, task.sab, Date.now()),
    system: {
      rss_bytes: mem.rss,
      loadavg: loadavg(),
      total_memory_bytes: totalmem(),
      free_memory_bytes: freemem(),
    },
  });
}

/** The dashboard's live data: the last minute second by second, plus the current counters. */
function renderDashboard(task: RenderTask, layout: MetricsLayout, snap: ReturnType<typeof snapshot>, draining: number): string {
  const now = Date.now();
  const states = breakerStates(task.breakerSab, task.providers.length);
  let requests = 0,
    errors = 0;
  for (const r of snap.requests) requests += r.value;
  for (const e of snap.errors) errors += e.value;
  return JSON.stringify({
    now_ms: now,
    uptime_seconds: Math.round((now - task.startedAt) / 1000),
    draining: draining === 1,
    active: snap.active,
    totals: { requests, errors },
    rejected: Object.fromEntries(snap.rejected.map((r) => [r.reason, r.value])),
    breakers: Object.fromEntries(task.providers.map((p, i) => [p, states[i]])),
    usage:
      task.usageSab !== undefined && task.models !== undefined
        ? usageSnapshot(usageLayoutFor(task.providers, task.models), task.usageSab)
        : null,
    seconds: secondSeries(layout, task.sab, now),
    recent: windowReport(layout, new Uint32Array(task.sab), ringSecond(now), 60, 0),
  });
}
