/**
 * The recent-latency ring (core/latency-ring.ts): bucket precision, percentiles, which
 * slots a window counts, slot reuse, and concurrent writers in real worker threads.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import {
  EPOCH_BASE_MS,
  RING_BUCKETS,
  ringBucket,
  ringBucketMid,
  ringPercentiles,
  ringRecord,
  ringWindow,
  S_TOTAL,
} from "../../core/latency-ring.js";
import { createMetricsBuffer, Metrics, MetricsLayout, R_HEALTH, R_MESSAGES } from "../../core/metrics.js";
import { recentLatency, secondSeries } from "../../workers/latency-report.js";

function fresh() {
  const layout = new MetricsLayout(["mock", "backup"]);
  const sab = createMetricsBuffer(layout);
  return { layout, sab, m: new Metrics(layout, sab), u32: new Uint32Array(sab) };
}

/** Wall-clock ms at the start of ring second `sec`. */
const msOf = (sec: number) => EPOCH_BASE_MS + sec * 1000;
const SEC = 200_000_000; // a ring second well inside the range (2026)

test("every duration from 10 µs to 600 s comes back from its bucket within 2%", () => {
  let prev = -1;
  for (let us = 10; us <= 600e6; us *= 1.0137) {
    const b = ringBucket(us);
    assert.ok(b >= prev && b < RING_BUCKETS, `bucket of ${us} µs in range and monotonic`);
    prev = b;
    const err = Math.abs(ringBucketMid(b) - us) / us;
    assert.ok(err <= 0.02, `${us} µs reads back as ${ringBucketMid(b)} µs (${(err * 100).toFixed(2)}%)`);
  }
  assert.equal(ringBucket(0), 0);
  assert.equal(ringBucket(-3), 0, "a clock step backwards counts as 0");
  assert.equal(ringBucket(5_000e6), RING_BUCKETS - 1, "longer than the range: the last bucket");
});

test("p50/p95/p99/p999 of a known spread are within 2% of the exact values", () => {
  const { u32, layout } = fresh();
  const base = layout.ring.series(0, 1, S_TOTAL);
  // 1..10000 ms, one request each: the exact p-quantile is q * 10000 ms.
  for (let i = 1; i <= 10_000; i++) ringRecord(u32, base, i * 1000, SEC, 0);
  const w = ringWindow(u32, base, SEC, 60, 0);
  assert.equal(w.count, 10_000);
  const got = ringPercentiles(w.buckets, [0.5, 0.95, 0.99, 0.999]);
  const want = [5_000, 9_500, 9_900, 9_990];
  got.forEach((g, i) => assert.ok(Math.abs(g! - want[i]!) / want[i]! <= 0.02, `p${[50, 95, 99, 99.9][i]}: ${g} ms vs ${want[i]} ms`));
  assert.deepEqual(ringPercentiles(new Float64Array(RING_BUCKETS), [0.5]), [null], "an empty window has no percentile");
});

test("the 1-minute window counts the last 60 seconds only; the 5-minute window counts minute slots", () => {
  const { u32, layout } = fresh();
  const base = layout.ring.series(0, 1, S_TOTAL);
  const now = SEC - (SEC % 60) + 30; // half-way through a minute
  ringRecord(u32, base, 1_000, now, 0);
  ringRecord(u32, base, 1_000, now - 59, 0);
  ringRecord(u32, base, 1_000, now - 61, 1); // older than a minute; the slot now-1 is not touched
  ringRecord(u32, base, 1_000, now - 200, 0); // 3-4 minutes ago
  ringRecord(u32, base, 1_000, now - 400, 0); // older than 5 minutes
  const m1 = ringWindow(u32, base, now, 60, 0);
  assert.equal(m1.count, 2);
  assert.equal(m1.errors, 0);
  const m5 = ringWindow(u32, base, now, 0, 5);
  assert.equal(m5.count, 4, "this minute, the last, and 3-4 minutes ago; not 6+ minutes ago");
  assert.equal(m5.errors, 1);
});

test("the first writer of a new second clears the slot; a writer with an older second drops its sample", () => {
  const { u32, layout } = fresh();
  const base = layout.ring.series(0, 1, S_TOTAL);
  ringRecord(u32, base, 1_000, SEC, 0);
  ringRecord(u32, base, 1_000, SEC, 0);
  ringRecord(u32, base, 2_000, SEC + 60, 0); // same slot, a minute later
  assert.equal(ringWindow(u32, base, SEC + 60, 1, 0).count, 1, "the old second's counts are gone");
  ringRecord(u32, base, 3_000, SEC, 0); // a stale clock read
  const w = ringWindow(u32, base, SEC + 60, 1, 0);
  assert.equal(w.count, 1, "the newer second is untouched");
  assert.equal(ringPercentiles(w.buckets, [0.5])[0]! > 1.9, true);
});

test("Metrics.latency keeps total, upstream time to first byte and the gateway's own time apart", () => {
  const { layout, sab, m } = fresh();
  const now = msOf(SEC) + 500;
  // A proxied request: 50 ms in all, 49.9 ms waiting on the provider, headers after 20 ms.
  m.latency(R_MESSAGES, 1, 200, 50_000, 49_900, 20_000, now);
  // The built-in mock: no upstream, all of it is the gateway's.
  m.latency(R_MESSAGES, 2, 500, 80, 0, -1, now);
  m.latency(R_HEALTH, 0, 200, 10, 0, -1, now); // not a ring route: not recorded
  const r = recentLatency(layout, sab, now + 1000).window_1m;
  assert.equal(r.requests, 2);
  assert.equal(r.errors, 1);
  const mock = r.by_provider.mock!;
  const near = (got: number | null, want: number) => assert.ok(got !== null && Math.abs(got - want) / want <= 0.02, `${got} vs ${want}`);
  near(mock.total.p50_ms, 50);
  near(mock.upstream_ttfb.p50_ms, 20);
  near(mock.overhead.p50_ms, 0.1);
  assert.equal(r.by_provider.backup!.upstream_ttfb.count, 0);
  near(r.by_provider.backup!.overhead.p50_ms, 0.08);
  assert.deepEqual(Object.keys(r.by_route), ["messages"]);
  const s = secondSeries(layout, sab, now + 1000);
  assert.equal(s.t.length, 60);
  assert.equal(s.t.at(-1), Math.floor(now / 1000));
  assert.equal(s.requests.at(-1), 2);
  assert.equal(s.errors.at(-1), 1);
  near(s.providers.mock!.p99.at(-1)!, 50);
  assert.equal(
    s.requests.slice(0, -1).reduce((a, b) => a + b, 0),
    0,
  );
});

test("threads writing the same second at once lose no sample", async () => {
  const { layout, sab, u32 } = fresh();
  const per = 20_000,
    threads = 4;
  const url = new URL("../../core/metrics.js", import.meta.url).href;
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    import(workerData.url).then(({ Metrics, MetricsLayout }) => {
      const m = new Metrics(new MetricsLayout(["mock", "backup"]), workerData.sab);
      // Every thread starts in a slot last used 60 s earlier, so they race to clear it.
      for (let i = 0; i < workerData.per; i++) m.latency(0, 1, 200, 100 + (i % 50), 0, -1, workerData.ms);
      parentPort.postMessage("done");
    });
  `;
  ringRecord(u32, layout.ring.series(0, 1, S_TOTAL), 1_000, SEC - 60, 0);
  const ws = Array.from({ length: threads }, () => new Worker(code, { eval: true, workerData: { url, sab, per, ms: msOf(SEC) } }));
  await Promise.all(
    ws.map(
      (w) =>
        new Promise<void>((res, rej) => {
          w.once("message", () => res());
          w.once("error", rej);
        }),
    ),
  );
  await Promise.all(ws.map((w) => w.terminate()));
  const w = ringWindow(u32, layout.ring.series(0, 1, S_TOTAL), SEC, 1, 0);
  assert.equal(w.count, per * threads);
  assert.equal(
    w.buckets.reduce((a, b) => a + b, 0),
    per * threads,
    "bucket counts add up to the slot's count",
  );
});
