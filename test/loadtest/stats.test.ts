// The pure parts of the load-test and benchmark runners (no load is generated here).
import { test } from "node:test";
import assert from "node:assert/strict";
import { pairedRatio, percentile, shedStats, summarise } from "../../loadtest/stats.js";
import { markdownTable, median } from "../../bench/format.js";
import { claudeCodeRequestText, FIXTURE_PATH } from "../../bench/fixture.js";
import { validateMessagesRequest } from "../../core/validate.js";
import { readFileSync } from "node:fs";
import type { RunResult } from "../../loadtest/measure.js";

function run(req_per_s: number, statuses: Record<string, number>, p99 = 1): RunResult {
  return {
    target: "t",
    connections: 1,
    duration_s: 1,
    requests: 0,
    req_per_s,
    p50_ms: 1,
    p99_ms: p99,
    p99_2xx_ms: p99,
    statuses,
    errors: 0,
    timeouts: 0,
    cpu_ms: 0,
    cpu_ms_per_req: 0,
    rss_after_bytes: 0,
  };
}

test("median and nearest-rank percentile", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, 1, 2, 3]), 2.5);
  assert.ok(Number.isNaN(median([])));
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.equal(percentile(xs, 0.5), 50);
  assert.equal(percentile(xs, 0.99), 99);
  assert.equal(percentile([7], 0.99), 7);
});

test("per-round paired ratios and summaries use medians", () => {
  const a = [run(80, { 200: 1 }), run(40, { 200: 1 }), run(90, { 200: 1 })];
  const b = [run(100, { 200: 1 }), run(100, { 200: 1 }), run(100, { 200: 1 })];
  assert.equal(pairedRatio(a, b), 0.8);
  const s = summarise("gateway", [run(1, { 200: 2, 503: 1 }, 5), run(3, { 200: 1 }, 1), run(2, { 503: 4 }, 3)]);
  assert.equal(s.req_per_s, 2);
  assert.equal(s.p99_ms, 3);
  assert.deepEqual(s.statuses, { 200: 3, 503: 5 });
});

test("shed statistics count only 503 as shedding and everything else as failure", () => {
  assert.deepEqual(shedStats({ 200: 6, 503: 4 }, 0), { total: 10, shed_rate: 0.4, other_failures: 0 });
  assert.equal(shedStats({ 200: 6, 502: 1, 503: 3 }, 2).other_failures, 3);
});

test("markdown tables are well formed", () => {
  assert.equal(markdownTable(["a", "b"], [["x", 1]]), "| a | b |\n| --- | ---: |\n| x | 1 |");
});

test("the committed Claude Code fixture is what the generator makes, and it is valid", () => {
  const text = readFileSync(FIXTURE_PATH, "utf8");
  assert.equal(text, claudeCodeRequestText(), "regenerate with: node dist/bench/fixture.js --write");
  const body = JSON.parse(text) as { tools: unknown[]; messages: unknown[] };
  assert.equal(validateMessagesRequest(body), null);
  assert.equal(body.tools.length, 12);
  assert.equal(body.messages.length, 41);
  assert.ok(text.length > 90_000 && text.length < 120_000);
});
