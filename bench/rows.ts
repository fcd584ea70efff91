/**
 * The benchmark rows: the report's table, each row calling the project's real modules
 * (bench/stack.ts builds them from a real config), plus a few rows that explain the
 * table (auth alone, the stack without validation, JSON.parse and the model scan).
 */
import { readFileSync } from "node:fs";
import { R_MESSAGES } from "../core/metrics.js";
import { mergeBuckets, quantile, snapshot } from "../core/metrics-read.js";
import { renderPrometheus } from "../core/prometheus.js";
import { validateMessagesRequest } from "../core/validate.js";
import { findModelRange } from "../core/json-splice.js";
import { presentedKey } from "../core/auth.js";
import { CLIENT_KEY, Core } from "./stack.js";
import { FIXTURE_PATH, smallRequest } from "./fixture.js";
import { loadOptional } from "./optional.js";

export interface Row {
  id: string;
  name: string;
  /** One of the report's rows (false: an explanatory extra). */
  report: boolean;
  fn: () => unknown;
}

export interface Rows {
  rows: Row[];
  /** Report rows that could not be built, with the reason. */
  missing: { id: string; reason: string }[];
  complexBytes: number;
}

export async function buildRows(): Promise<Rows> {
  const core = new Core();
  core.populate();
  const opt = await loadOptional(core.sab);
  core.shedder = opt.shedder;
  core.limiter = opt.limiter;
  core.breaker = opt.breaker;

  const small = smallRequest();
  const smallText = JSON.stringify(small);
  const smallBuf = Buffer.from(smallText);
  const complexText = readFileSync(FIXTURE_PATH, "utf8");
  const complexBuf = Buffer.from(complexText);
  const complex = JSON.parse(complexText) as Record<string, unknown>;
  if (validateMessagesRequest(small) !== null || validateMessagesRequest(complex) !== null) throw new Error("bench fixtures must be valid requests");
  if (core.stack(small, CLIENT_KEY) !== 200) throw new Error("the combined stack must admit the small request");

  const m = core.metrics;
  const layout = core.layout;
  const snap = snapshot(layout, core.sab);
  const gauges = [{ name: "gateway_draining", help: "1 while the gateway is shutting down.", value: 0 }];
  let us = 0;

  const rows: Row[] = [
    { id: "baseline", name: "baseline (no-op)", report: true, fn: () => {} },
    {
      id: "metrics_record", name: "metrics collection (counter + histogram)", report: true,
      fn: () => m.record(R_MESSAGES, 1, 200, (us = (us + 7919) % 4_000_000)),
    },
    {
      id: "metrics_snapshot", name: "metrics snapshot (SAB → p50/p95/p99)", report: true,
      fn: () => {
        const s = snapshot(layout, core.sab);
        const b = mergeBuckets(s.histograms, layout.nB);
        return quantile(b, 0.5) + quantile(b, 0.95) + quantile(b, 0.99);
      },
    },
    { id: "prometheus", name: "Prometheus export (render text)", report: true, fn: () => renderPrometheus(snap, gauges) },
  ];
  const missing: Rows["missing"] = [];
  if (opt.shedder !== null) rows.push({ id: "shedder", name: "load-shedding check", report: true, fn: opt.shedder.admit });
  else missing.push({ id: "shedder", reason: "core/shedder.ts not present" });
  if (opt.breaker !== null) {
    const b = opt.breaker;
    rows.push({ id: "breaker", name: "circuit breaker (closed): admit + success", report: true, fn: () => (b.admit(), b.done()) });
  } else missing.push({ id: "breaker", reason: "core/breaker.ts not present" });
  if (opt.limiter !== null) rows.push({ id: "ratelimit", name: "extra: rate-limit check (requests + tokens)", report: false, fn: opt.limiter.admit });
  rows.push(
    { id: "validate_simple", name: "input validation, simple (1 message)", report: true, fn: () => validateMessagesRequest(small) },
    { id: "validate_complex", name: `input validation, complex (${Math.round(complexBuf.length / 1024)} KB Claude Code body)`, report: true, fn: () => validateMessagesRequest(complex) },
    { id: "request_id", name: "request-id generation", report: true, fn: () => core.ids.next() },
    { id: "stack", name: `combined middleware stack${opt.missing.length === 0 ? "" : " (without " + opt.missing.join(", ") + ")"}`, report: true, fn: () => core.stack(small, CLIENT_KEY) },
    // Explanatory extras.
    { id: "stack_no_validation", name: "extra: combined stack minus validation", report: false, fn: () => core.stack(small, CLIENT_KEY, false) },
    { id: "auth", name: "extra: auth (presentedKey + KeyIndex.check)", report: false, fn: () => core.keys.check(presentedKey(CLIENT_KEY, "")) },
    { id: "json_parse_small", name: "extra: JSON.parse small body (server, before validation)", report: false, fn: () => JSON.parse(smallBuf.toString("utf8")) },
    { id: "json_parse_complex", name: "extra: JSON.parse complex body", report: false, fn: () => JSON.parse(complexBuf.toString("utf8")) },
    { id: "model_scan_small", name: "extra: findModelRange small body (scan, no parse)", report: false, fn: () => findModelRange(smallBuf) },
    { id: "model_scan_complex", name: "extra: findModelRange complex body", report: false, fn: () => findModelRange(complexBuf) },
  );
  return { rows, missing, complexBytes: complexBuf.length };
}
