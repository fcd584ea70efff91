import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  currentTable,
  END,
  performanceTable,
  README_PATH,
  START,
  withTable,
  type BenchResults,
  type LoadResults,
} from "../../bench/readme.js";

test("the README's performance table is the one the committed results files give", () => {
  const table = currentTable();
  assert.ok(table !== null, "bench/results.json and loadtest/results.json are committed");
  const readme = readFileSync(README_PATH, "utf8");
  const a = readme.indexOf(START),
    z = readme.indexOf(END);
  assert.ok(a >= 0 && z > a, "README.md has the generated block");
  assert.equal(readme.slice(a + START.length + 1, z - 1), table, "regenerate with: npm run build && node dist/bench/readme.js --write");
});

test("the table states each target as met or not from the numbers", () => {
  const b: BenchResults = { generated_at: "2026-01-01T00:00:00Z", rows: [{ id: "stack", avg_ns: 1500, bytes_per_op: 0 }] };
  const s = (target: string, req: number) => ({ target, req_per_s: req, cpu_ms_per_req: 0.05, p99_ms: 1 });
  const l: LoadResults = {
    generated_at: "2026-01-02T00:00:00Z",
    threads: 2,
    groups: [{ id: "small", summaries: [s("ceiling", 1000), s("gateway", 900)] }],
    concurrency1: { median_us: { ceiling: 100, gateway: 105 } },
    gateway_rss: { before_bytes: 1e8, after_bytes: 2e8, peak_bytes: 3e8 },
  };
  const t = performanceTable(b, l);
  assert.match(t, /\| combined middleware stack [^|]*\| 1\.50 µs \| ≤ 1 µs \| \*\*no\*\* \|/);
  assert.match(t, /\| req\/s ÷ bare pass-through, small body \(medians 900 vs 1,000\) \| 90% \| ≥ 80% \| yes \|/);
  l.groups[0]!.ratios = { gateway_over_ceiling: 0.79 };
  assert.match(
    performanceTable(b, l),
    /small body \(medians 900 vs 1,000\) \| 79% \| ≥ 80% \| \*\*no\*\* \|/,
    "the paired ratio wins over the ratio of medians",
  );
  assert.match(t, /\| round trip at concurrency 1[^|]*\| \+5\.00 µs \| ≤ \+10 µs \| yes \|/);
  assert.match(t, /\| gateway RSS after the whole load test \(peak 300 MB\) \| 200 MB \| ≤ 150 MB \| \*\*no\*\* \|/);
  assert.throws(() => withTable("no block here", t), /no .*perf-table:start/);
});
