import { test } from "node:test";
import assert from "node:assert/strict";
import { createUsageBuffer, renderUsagePrometheus, UsageLayout, UsageMetrics, WAIT_ADMITTED } from "../../core/usage-metrics.js";
import { spawnSync } from "node:child_process";
import { ERROR_TYPES } from "../../core/errors.js";
import {
  BUCKETS_US,
  Metrics,
  MetricsLayout,
  R_COUNT_TOKENS,
  R_MESSAGES,
  R_OTHER,
  TOOL_DECISIONS,
  TOOL_LABELS,
  TOOL_OTHER,
  createMetricsBuffer,
} from "../../core/metrics.js";
import { TOOL_NAMES } from "../../core/policy/tool-names.js";
import { snapshot } from "../../core/metrics-read.js";
import { renderPrometheus } from "../../core/prometheus.js";

/** A snapshot with traffic on several series, including a provider name that needs escaping. */
function populated(): string {
  const layout = new MetricsLayout(["mock", 'we"ird\\name\nx', "anthropic"]);
  const sab = createMetricsBuffer(layout);
  const m = new Metrics(layout, sab);
  m.record(R_MESSAGES, 3, 200, 800);
  m.record(R_MESSAGES, 3, 200, 40_000);
  m.record(R_MESSAGES, 3, 200, 1_200_000);
  m.record(R_MESSAGES, 3, 529, 400_000_000); // beyond the last bound: +Inf
  m.error(R_MESSAGES, 3, ERROR_TYPES.indexOf("overloaded_error"));
  m.record(R_COUNT_TOKENS, 2, 200, 3_000);
  m.record(R_OTHER, 0, 404, 50);
  m.error(R_OTHER, 0, ERROR_TYPES.indexOf("not_found_error"));
  m.activeInc();
  return renderPrometheus(snapshot(layout, sab), [{ name: "portcullis_workers_up", help: "1 while the worker pool is up.", value: 1 }]);
}

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parse exposition sample lines, unescaping label values as Prometheus does. */
function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `malformed sample line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)/y;
    const body = m[2] ?? "";
    re.lastIndex = 0;
    while (re.lastIndex < body.length) {
      const l = re.exec(body);
      assert.ok(l, `malformed labels: ${body}`);
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

test("HELP and TYPE precede every metric family", () => {
  const text = populated();
  const lines = text.split("\n");
  const families: [string, string][] = [
    ["http_requests_total", "counter"],
    ["http_request_errors_total", "counter"],
    ["http_request_duration_seconds", "histogram"],
    ["http_requests_active", "gauge"],
    ["portcullis_workers_up", "gauge"],
  ];
  for (const [name, type] of families) {
    const h = lines.findIndex((l) => l.startsWith(`# HELP ${name} `));
    assert.ok(h >= 0, `HELP for ${name}`);
    assert.equal(lines[h + 1], `# TYPE ${name} ${type}`);
    const first = lines.findIndex((l) => l.startsWith(name) && !l.startsWith("#"));
    assert.ok(first > h + 1, `${name} samples come after its TYPE line`);
  }
  assert.ok(text.endsWith("\n") && !text.endsWith("\n\n"));
});

test("request counters carry route, provider and status class", () => {
  const s = samples(populated()).filter((x) => x.name === "http_requests_total");
  const find = (route: string, status: string) => s.find((x) => x.labels.route === route && x.labels.status_class === status);
  assert.equal(find("messages", "2xx")?.value, 3);
  assert.equal(find("messages", "5xx")?.value, 1);
  assert.equal(find("count_tokens", "2xx")?.labels.provider, 'we"ird\\name\nx');
  assert.equal(find("other", "4xx")?.labels.provider, "none");
  const errs = samples(populated()).filter((x) => x.name === "http_request_errors_total");
  assert.deepEqual(
    errs.map((x) => [x.labels.route, x.labels.type, x.value]),
    [
      ["messages", "overloaded_error", 1],
      ["other", "not_found_error", 1],
    ],
  );
});

test("a provider name with a quote, backslash and newline is escaped in labels", () => {
  const text = populated();
  assert.ok(text.includes('provider="we\\"ird\\\\name\\nx"'), "escaped per the exposition format");
  for (const line of text.split("\n")) assert.ok(!line.startsWith("x"), "the newline did not split a line");
});

test("histogram buckets are cumulative, end with +Inf equal to _count, and sum in seconds", () => {
  const all = samples(populated());
  const labels = (x: Sample) => `${x.labels.route}|${x.labels.provider}`;
  const series = new Set(all.filter((x) => x.name === "http_request_duration_seconds_count").map(labels));
  assert.equal(series.size, 3);
  for (const key of series) {
    const buckets = all.filter((x) => x.name === "http_request_duration_seconds_bucket" && labels(x) === key);
    assert.deepEqual(
      buckets.map((b) => b.labels.le),
      [...BUCKETS_US.map((b) => String(b / 1e6)), "+Inf"],
      "every bound, in order, in seconds",
    );
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i]!.value >= buckets[i - 1]!.value, `cumulative at ${key}`);
    const count = all.find((x) => x.name === "http_request_duration_seconds_count" && labels(x) === key)!;
    assert.equal(buckets.at(-1)!.value, count.value, `+Inf == _count for ${key}`);
  }
  const msg = (name: string, le?: string) =>
    all.find((x) => x.name === name && x.labels.route === "messages" && (le === undefined || x.labels.le === le))!.value;
  assert.equal(msg("http_request_duration_seconds_bucket", "0.001"), 1);
  assert.equal(msg("http_request_duration_seconds_bucket", "0.05"), 2);
  assert.equal(msg("http_request_duration_seconds_bucket", "2.5"), 3);
  assert.equal(msg("http_request_duration_seconds_bucket", "300"), 3);
  assert.equal(msg("http_request_duration_seconds_bucket", "+Inf"), 4);
  assert.equal(msg("http_request_duration_seconds_count"), 4);
  // The sum is in seconds (400 s is under the 0xfffffffe µs clamp, so it counts in full).
  assert.equal(msg("http_request_duration_seconds_sum"), (800 + 40_000 + 1_200_000 + 400_000_000) / 1e6);
});

test("the active gauge and extra gauges are rendered", () => {
  const all = samples(populated());
  assert.equal(all.find((x) => x.name === "http_requests_active")?.value, 1);
  assert.equal(all.find((x) => x.name === "portcullis_workers_up")?.value, 1);
});

test("an empty snapshot still renders valid families", () => {
  const layout = new MetricsLayout(["mock"]);
  const text = renderPrometheus(snapshot(layout, createMetricsBuffer(layout)));
  // Rejection reasons are always present (alerts want the series), at zero.
  assert.deepEqual(
    samples(text).filter((x) => x.name !== "http_requests_rejected_total"),
    [
      { name: "http_requests_active", labels: {}, value: 0 },
      { name: "otel_spans_dropped_total", labels: {}, value: 0 },
    ],
  );
  assert.ok(
    samples(text)
      .filter((x) => x.name === "http_requests_rejected_total")
      .every((x) => x.value === 0),
  );
  promtoolCheck(text);
});

test("tool_calls_total{tool,decision}: counted series, or every tool x decision with zeros; bounded labels", () => {
  const layout = new MetricsLayout(["mock"]);
  const sab = createMetricsBuffer(layout);
  const m = new Metrics(layout, sab);
  const t = (name: string) => TOOL_LABELS.indexOf(name as (typeof TOOL_LABELS)[number]);
  const d = (name: string) => TOOL_DECISIONS.indexOf(name as (typeof TOOL_DECISIONS)[number]);
  for (let i = 0; i < 3; i++) m.toolCall(t("read_file"), d("allow"));
  m.toolCall(t("read_file"), d("deny"));
  m.toolCall(t("run_command"), d("error"));
  m.toolCall(TOOL_OTHER, d("deny"));
  const seen = samples(renderPrometheus(snapshot(layout, sab))).filter((x) => x.name === "tool_calls_total");
  assert.deepEqual(
    seen.map((x) => [x.labels.tool, x.labels.decision, x.value]),
    [
      ["read_file", "allow", 3],
      ["read_file", "deny", 1],
      ["run_command", "error", 1],
      ["other", "deny", 1],
    ],
  );
  const text = renderPrometheus(snapshot(layout, sab, true));
  assert.match(text, /# TYPE tool_calls_total counter\n/);
  const all = samples(text).filter((x) => x.name === "tool_calls_total");
  assert.equal(all.length, TOOL_NAMES.length * TOOL_DECISIONS.length + 1, "every known tool x decision, plus the counted other");
  assert.equal(all.find((x) => x.labels.tool === "git_diff" && x.labels.decision === "allow")?.value, 0);
  assert.equal(all.find((x) => x.labels.tool === "read_file" && x.labels.decision === "allow")?.value, 3);
  promtoolCheck(text);
});

/** `promtool check metrics` must accept the text with no lint findings. */
function promtoolCheck(text: string): void {
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 60_000 });
  if (r.error !== undefined) {
    assert.fail(
      `promtool could not be run (${(r.error as NodeJS.ErrnoException).code ?? r.error.message}): install Prometheus' promtool ` +
        "(e.g. apt-get install prometheus, or the release tarball) so it is on PATH; this test does not skip without it",
    );
  }
  const output = `${r.stdout}${r.stderr}`.trim();
  assert.equal(r.status, 0, `promtool check metrics failed (exit ${r.status}):\n${output}\n--- input ---\n${text}`);
  assert.equal(output, "", `promtool reported problems:\n${output}`);
}

test("promtool check metrics accepts the populated exposition", () => {
  promtoolCheck(populated());
});

test("usage_unreadable_total{provider} counts replies with unreadable usage, and promtool accepts the usage families", () => {
  const l = new UsageLayout(["anthropic"], ["claude-sonnet-4-5", "other"]);
  const sab = createUsageBuffer(l);
  const u = new UsageMetrics(l, sab);
  u.unreadable(1);
  u.unreadable(1);
  const text = renderUsagePrometheus(l, sab);
  assert.match(text, /^usage_unreadable_total\{provider="anthropic"\} 2$/m);
  assert.match(text, /^usage_unreadable_total\{provider="none"\} 0$/m);
  promtoolCheck(text);
});

test("fleet budget leases: requests parked for a lease (a gauge) and how they left (result), accepted by promtool", () => {
  const l = new UsageLayout(["anthropic"], ["claude-sonnet-4-5", "other"]);
  const sab = createUsageBuffer(l);
  const u = new UsageMetrics(l, sab);
  assert.doesNotMatch(renderUsagePrometheus(l, sab), /budget_lease_wait/, "not in fleet lease mode: no lease series");
  u.setLeaseState(1);
  u.leaseWaitStarted();
  u.leaseWaitStarted();
  u.leaseWaitEnded(WAIT_ADMITTED);
  const text = renderUsagePrometheus(l, sab);
  assert.match(text, /^budget_lease_waiting 1$/m);
  assert.match(text, /^budget_lease_waits_total\{result="admitted"\} 1$/m);
  for (const r of ["refused", "timeout", "aborted"]) assert.match(text, new RegExp(`^budget_lease_waits_total\\{result="${r}"\\} 0$`, "m"));
  promtoolCheck(text);
});

test("upstream connection waits: a count and a sum in seconds per provider, accepted by promtool", () => {
  const layout = new MetricsLayout(["anthropic", "backup"]);
  const sab = createMetricsBuffer(layout);
  const m = new Metrics(layout, sab);
  m.poolWait(1, 1500);
  m.poolWait(1, 500);
  const text = renderPrometheus(snapshot(layout, sab));
  assert.match(text, /^upstream_connection_waits_total\{provider="anthropic"\} 2$/m);
  assert.match(text, /^upstream_connection_wait_seconds_total\{provider="anthropic"\} 0\.002$/m);
  assert.doesNotMatch(text, /provider="backup"/, "a provider that never waited has no series");
  promtoolCheck(text);
});
