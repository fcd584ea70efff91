import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { CHART_PATH, chartSvg } from "../../loadtest/chart.js";

test("the chart shows each scenario's req/s and p99 for the ceiling and the gateway, from the results", () => {
  const svg = chartSvg({
    generated_at: "2026-01-02T00:00:00Z",
    threads: 2,
    groups: [
      {
        id: "small",
        title: "",
        summaries: [
          { target: "direct", req_per_s: 50_000, p99_ms: 1 },
          { target: "ceiling", req_per_s: 20_000, p99_ms: 4 },
          { target: "gateway", req_per_s: 15_000, p99_ms: 8 },
        ],
      },
    ],
  });
  assert.match(svg, /^<svg [^>]*>/);
  assert.ok(svg.trimEnd().endsWith("</svg>"));
  for (const s of ["small body", "20,000", "15,000", "4.00 ms", "8.00 ms", "HTTP_THREADS 2"]) assert.ok(svg.includes(s), s);
  assert.ok(!svg.includes("50,000"), "the mock alone is not a bar");
  assert.ok(svg.includes('width="230.0"') && svg.includes('width="172.5"'), "req/s bars scale to the larger of the pair");
});

test("the committed chart is the one the committed results give", () => {
  const results = JSON.parse(readFileSync(new URL("../../../loadtest/results.json", import.meta.url), "utf8"));
  assert.equal(readFileSync(CHART_PATH, "utf8"), chartSvg(results), "redraw with: node dist/loadtest/chart.js");
});
