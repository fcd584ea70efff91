/**
 * Prometheus text exposition (format 0.0.4) of a metrics snapshot, with prom-client's
 * naming conventions. Label values come only from fixed tables and config, so they are
 * bounded and need no escaping beyond what `esc` does for config-provided names.
 */
import { BUCKETS_US } from "./metrics.js";
import type { Snapshot } from "./metrics-read.js";

const LE = BUCKETS_US.map((b) => String(b / 1e6)).concat("+Inf");

export function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

export interface GaugeLine {
  name: string;
  help: string;
  value: number;
  /** Default "gauge"; a single counter kept in a gauge slot says "counter". */
  type?: "gauge" | "counter";
}

export interface BreakerLine {
  provider: string;
  state: string;
}

export function renderPrometheus(s: Snapshot, gauges: readonly GaugeLine[] = [], breakers: readonly BreakerLine[] = []): string {
  const out: string[] = [];
  out.push("# HELP http_requests_total Requests answered, by route, provider and status class.");
  out.push("# TYPE http_requests_total counter");
  for (const r of s.requests) {
    out.push(`http_requests_total{route="${r.route}",provider="${esc(r.provider)}",status_class="${r.status_class}"} ${r.value}`);
  }
  out.push("# HELP http_request_errors_total Error responses, by route, provider and Anthropic error type.");
  out.push("# TYPE http_request_errors_total counter");
  for (const e of s.errors) {
    out.push(`http_request_errors_total{route="${e.route}",provider="${esc(e.provider)}",type="${e.type}"} ${e.value}`);
  }
  out.push("# HELP http_request_duration_seconds Time from request to the last byte of the response.");
  out.push("# TYPE http_request_duration_seconds histogram");
  for (const h of s.histograms) {
    const labels = `route="${h.route}",provider="${esc(h.provider)}"`;
    let cum = 0;
    for (let i = 0; i < h.buckets.length; i++) {
      cum += h.buckets[i]!;
      out.push(`http_request_duration_seconds_bucket{${labels},le="${LE[i]}"} ${cum}`);
    }
    out.push(`http_request_duration_seconds_sum{${labels}} ${h.sumSeconds}`);
    out.push(`http_request_duration_seconds_count{${labels}} ${h.count}`);
  }
  out.push("# HELP http_requests_rejected_total Requests refused before reaching a provider (load shedding, open breaker, rate limit).");
  out.push("# TYPE http_requests_rejected_total counter");
  for (const r of s.rejected) out.push(`http_requests_rejected_total{reason="${r.reason}"} ${r.value}`);
  if (s.toolCalls.length > 0) {
    out.push("# HELP tool_calls_total MCP tool calls, by tool and decision (allow, deny by policy, error).");
    out.push("# TYPE tool_calls_total counter");
    for (const t of s.toolCalls) out.push(`tool_calls_total{tool="${t.tool}",decision="${t.decision}"} ${t.value}`);
  }
  out.push("# HELP upstream_connection_waits_total Upstream attempts that got a pool connection, by provider.");
  out.push("# TYPE upstream_connection_waits_total counter");
  for (const w of s.poolWaits) out.push(`upstream_connection_waits_total{provider="${esc(w.provider)}"} ${w.count}`);
  out.push(
    "# HELP upstream_connection_wait_seconds_total Time upstream attempts spent waiting for a pool connection (UPSTREAM_CONNECTIONS), by provider.",
  );
  out.push("# TYPE upstream_connection_wait_seconds_total counter");
  for (const w of s.poolWaits) out.push(`upstream_connection_wait_seconds_total{provider="${esc(w.provider)}"} ${w.sumSeconds}`);
  if (s.policyDrops.length > 0) {
    out.push("# HELP provider_policy_dropped_total Betas and body fields a provider's policy removed from requests (docs/providers.md).");
    out.push("# TYPE provider_policy_dropped_total counter");
    for (const d of s.policyDrops) out.push(`provider_policy_dropped_total{provider="${esc(d.provider)}",kind="${d.kind}"} ${d.value}`);
  }
  out.push("# HELP http_requests_active Requests in flight.");
  out.push("# TYPE http_requests_active gauge");
  out.push(`http_requests_active ${s.active}`);
  out.push("# HELP otel_spans_dropped_total Trace spans lost: the OTLP export failed or the span queue was full (docs/tracing.md).");
  out.push("# TYPE otel_spans_dropped_total counter");
  out.push(`otel_spans_dropped_total ${s.spansDropped}`);
  if (breakers.length > 0) {
    out.push("# HELP circuit_breaker_state 1 for the breaker's current state, 0 for the others.");
    out.push("# TYPE circuit_breaker_state gauge");
    for (const b of breakers) {
      for (const st of ["closed", "open", "half_open"]) {
        out.push(`circuit_breaker_state{provider="${esc(b.provider)}",state="${st}"} ${b.state === st ? 1 : 0}`);
      }
    }
  }
  for (const g of gauges) {
    out.push(`# HELP ${g.name} ${g.help}`);
    out.push(`# TYPE ${g.name} ${g.type ?? "gauge"}`);
    out.push(`${g.name} ${g.value}`);
  }
  return out.join("\n") + "\n";
}
