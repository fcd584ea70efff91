import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { ERROR_TYPES } from "../../core/errors.js";
import {
  BUCKETS_US,
  G_ACTIVE,
  G_DRAINING,
  Metrics,
  MetricsLayout,
  R_COUNT_TOKENS,
  R_MESSAGES,
  R_OTHER,
  bucketOf,
  createMetricsBuffer,
  read64,
} from "../../core/metrics.js";
import { mergeBuckets, quantile, snapshot } from "../../core/metrics-read.js";

const METRICS_URL = new URL("../../core/metrics.js", import.meta.url).href;

function fresh(providers: string[] = ["mock", "anthropic"]) {
  const layout = new MetricsLayout(providers);
  const sab = createMetricsBuffer(layout);
  return { layout, sab, m: new Metrics(layout, sab) };
}

test("record() counts by (route, provider, status class) and nothing else", () => {
  const { layout, sab, m } = fresh();
  m.record(R_MESSAGES, 2, 200, 1500);
  m.record(R_MESSAGES, 2, 201, 1500);
  m.record(R_MESSAGES, 2, 429, 800);
  m.record(R_COUNT_TOKENS, 1, 502, 10);
  m.record(R_OTHER, 0, 404, 10);
  m.record(R_OTHER, 0, 999, 10); // out of range counts as 5xx
  const s = snapshot(layout, sab);
  const byKey = new Map(s.requests.map((r) => [`${r.route}/${r.provider}/${r.status_class}`, r.value]));
  assert.deepEqual(Object.fromEntries(byKey), {
    "messages/anthropic/2xx": 2,
    "messages/anthropic/4xx": 1,
    "count_tokens/mock/5xx": 1,
    "other/none/4xx": 1,
    "other/none/5xx": 1,
  });
  assert.equal(read64(m.u32, layout.requestSlot(R_MESSAGES, 2, 1)), 2);
});

test("record() puts durations in the right histogram bucket (bounds are inclusive)", () => {
  const { layout, sab, m } = fresh();
  const cases: [number, number][] = [
    [0, 0],
    [10, 0], // exactly the first bound
    [11, 1],
    [499, 5],
    [1_000, 6],
    [1_001, 7],
    [2_500, 7],
    [50_000, 11],
    [60_000, 12],
    [300_000_000, BUCKETS_US.length - 1],
    [300_000_001, BUCKETS_US.length], // +Inf
    [-5, 0], // a clock step backwards counts as 0
  ];
  for (const [us, b] of cases) assert.equal(bucketOf(Math.max(0, us)), b, `bucketOf(${us})`);
  for (const [us] of cases) m.record(R_MESSAGES, 1, 200, us);
  const [h] = snapshot(layout, sab).histograms;
  assert.ok(h);
  assert.equal(h.route, "messages");
  assert.equal(h.provider, "mock");
  assert.equal(h.buckets.length, BUCKETS_US.length + 1);
  const want = new Array(BUCKETS_US.length + 1).fill(0);
  for (const [, b] of cases) want[b]++;
  assert.deepEqual(h.buckets, want);
  assert.equal(h.count, cases.length);
});

test("the duration sum is kept in whole microseconds and read back as seconds", () => {
  const { layout, sab, m } = fresh();
  m.record(R_MESSAGES, 1, 200, 1500.4); // rounds to 1500
  m.record(R_MESSAGES, 1, 200, 2_000_000);
  m.record(R_MESSAGES, 1, 200, 0.6); // rounds to 1
  const [h] = snapshot(layout, sab).histograms;
  assert.equal(h!.sumSeconds, 2.001501);
  assert.equal(read64(m.u32, layout.histSlot(R_MESSAGES, 1) + layout.nB * 2), 2_001_501);
});

test("a 64-bit counter carries past 2^32 instead of wrapping", () => {
  const { layout, sab, m } = fresh();
  const slot = layout.requestSlot(R_MESSAGES, 1, 1);
  m.u32[slot] = 0xffffffff;
  assert.equal(read64(m.u32, slot), 0xffffffff);
  m.record(R_MESSAGES, 1, 200, 10);
  assert.equal(read64(m.u32, slot), 2 ** 32);
  m.record(R_MESSAGES, 1, 200, 10);
  assert.equal(read64(m.u32, slot), 2 ** 32 + 1);
  assert.equal(snapshot(layout, sab).requests[0]!.value, 2 ** 32 + 1);
});

test("the microsecond sum carries past 2^32 too", () => {
  const { layout, m } = fresh();
  const sum = layout.histSlot(R_MESSAGES, 1) + layout.nB * 2;
  m.u32[sum] = 0xffffff00;
  m.record(R_MESSAGES, 1, 200, 0x200);
  assert.equal(read64(m.u32, sum), 0xffffff00 + 0x200);
});

test("error() counts by Anthropic error type", () => {
  const { layout, sab, m } = fresh();
  m.error(R_MESSAGES, 2, ERROR_TYPES.indexOf("rate_limit_error"));
  m.error(R_MESSAGES, 2, ERROR_TYPES.indexOf("rate_limit_error"));
  m.error(R_OTHER, 0, ERROR_TYPES.indexOf("not_found_error"));
  assert.deepEqual(snapshot(layout, sab).errors, [
    { route: "messages", provider: "anthropic", type: "rate_limit_error", value: 2 },
    { route: "other", provider: "none", type: "not_found_error", value: 1 },
  ]);
});

test("the active gauge and flags", () => {
  const { layout, sab, m } = fresh();
  assert.equal(m.activeInc(), 1);
  assert.equal(m.activeInc(), 2);
  m.activeDec();
  assert.equal(m.active(), 1);
  assert.equal(snapshot(layout, sab).active, 1);
  assert.equal(m.flag(G_DRAINING), 0);
  m.setFlag(G_DRAINING, 1);
  assert.equal(m.flag(G_DRAINING), 1);
  assert.equal(Atomics.load(m.i32, G_ACTIVE), 1, "flags don't touch the active gauge");
});

test("slots of different series never overlap and fit in the buffer", () => {
  const { layout } = fresh(["a", "b", "c"]);
  const used = new Set<number>();
  const claim = (i: number) => {
    assert.ok(i >= 0 && i + 1 < layout.totalU32, `slot ${i} inside the buffer`);
    assert.ok(!used.has(i) && !used.has(i + 1), `slot ${i} used twice`);
    used.add(i).add(i + 1);
  };
  for (let r = 0; r < layout.nR; r++) {
    for (let p = 0; p < layout.nP; p++) {
      for (let s = 0; s < layout.nS; s++) claim(layout.requestSlot(r, p, s));
      for (let e = 0; e < layout.nE; e++) claim(layout.errorSlot(r, p, e));
      for (let b = 0; b <= layout.nB; b++) claim(layout.histSlot(r, p) + b * 2);
    }
  }
  for (let g = 0; g < layout.requestsOff; g++) assert.ok(!used.has(g), "gauges are separate");
});

test("quantile(): empty histogram is NaN", () => {
  assert.ok(Number.isNaN(quantile(new Array(BUCKETS_US.length + 1).fill(0), 0.5)));
});

test("quantile(): all observations in one bucket interpolate inside it", () => {
  const b = new Array(BUCKETS_US.length + 1).fill(0);
  b[8] = 10; // (2.5 ms, 5 ms]
  assert.equal(quantile(b, 0.5), 0.00375);
  assert.equal(quantile(b, 1), 0.005);
  assert.equal(quantile(b, 0.1), 0.00275);
  const first = new Array(BUCKETS_US.length + 1).fill(0);
  first[0] = 4; // (0, 10 µs]
  assert.equal(quantile(first, 0.5), 0.000005);
});

test("quantile(): across buckets, and the +Inf bucket gives the largest finite bound", () => {
  const b = new Array(BUCKETS_US.length + 1).fill(0);
  b[6] = 50; // (0.5 ms, 1 ms]
  b[15] = 50; // (0.5 s, 1 s]
  assert.equal(quantile(b, 0.5), 0.001);
  assert.equal(quantile(b, 0.99), 0.99);
  const inf = new Array(BUCKETS_US.length + 1).fill(0);
  inf[BUCKETS_US.length] = 3;
  assert.equal(quantile(inf, 0.5), 300);
  assert.equal(quantile(inf, 0.99), 300);
});

test("mergeBuckets() adds histograms bucket by bucket", () => {
  const { layout, sab, m } = fresh();
  m.record(R_MESSAGES, 1, 200, 500);
  m.record(R_MESSAGES, 2, 200, 500);
  m.record(R_MESSAGES, 2, 200, 2_000_000);
  const merged = mergeBuckets(snapshot(layout, sab).histograms, layout.nB);
  assert.equal(merged[bucketOf(500)], 2);
  assert.equal(merged[bucketOf(2_000_000)], 1);
  assert.equal(
    merged.reduce((a, c) => a + c, 0),
    3,
  );
});

/** Runs `body` in a real worker thread with `Metrics`, `MetricsLayout` and `data` in scope. */
function runWorker(body: string, workerData: unknown): Worker {
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    import(workerData.url).then(async ({ Metrics, MetricsLayout }) => {
      const data = workerData.data;
      ${body}
    }).catch((e) => { throw e; });
  `;
  return new Worker(code, { eval: true, workerData: { url: METRICS_URL, data: workerData } });
}

function result<T>(w: Worker): Promise<T> {
  return new Promise((resolve, reject) => {
    let value: T | undefined;
    let got = false;
    w.on("message", (v) => {
      if (v === "ready") return;
      value = v;
      got = true;
    });
    w.on("error", reject);
    w.on("exit", (code) => (code === 0 && got ? resolve(value as T) : reject(new Error(`worker exited ${code} without a result`))));
  });
}

test("snapshot() sees requests recorded by another thread on the same SharedArrayBuffer", async () => {
  const { layout, sab } = fresh();
  const N = 1000;
  const w = runWorker(
    `
      const m = new Metrics(new MetricsLayout(data.providers), data.sab);
      for (let i = 0; i < data.n; i++) m.record(0, 2, i % 10 === 0 ? 503 : 200, 3000);
      m.activeInc();
      parentPort.postMessage("done");
    `,
    { sab, providers: ["mock", "anthropic"], n: N },
  );
  assert.equal(await result<string>(w), "done");
  const s = snapshot(layout, sab);
  assert.deepEqual(s.requests, [
    { route: "messages", provider: "anthropic", status_class: "2xx", value: N - N / 10 },
    { route: "messages", provider: "anthropic", status_class: "5xx", value: N / 10 },
  ]);
  assert.equal(s.histograms.length, 1);
  assert.equal(s.histograms[0]!.count, N);
  assert.equal(s.histograms[0]!.buckets[bucketOf(3000)], N);
  assert.equal(s.histograms[0]!.sumSeconds, (N * 3000) / 1e6);
  assert.equal(s.active, 1);
});
