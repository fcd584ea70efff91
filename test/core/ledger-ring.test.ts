/**
 * The acceptor → main thread ledger ring (core/ledger-ring.ts): rows come out as they went
 * in (nulls, non-ASCII, across the ring's end), oldest first; a full ring drops and counts
 * instead of overwriting or blocking; a writer on another thread hands rows over while the
 * reader drains.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { LedgerRing, MAX_STRING_UNITS } from "../../core/ledger-ring.js";
import type { UsageRow } from "../../workers/ledger-task.js";

function row(i: number, extra: Partial<Record<number, unknown>> = {}): UsageRow {
  const r: UsageRow = [
    `req_abc_0_${i}`,
    1_764_500_000_000 + i,
    i % 3 === 0 ? null : `key-${i % 7}`,
    i % 5 === 0 ? null : "claude-sonnet-4-5",
    "anthropic",
    200 + (i % 4),
    i / 1000,
    i,
    2 * i,
    i % 11,
    i % 13,
    486 * i,
    i % 2 === 0 ? null : `session-${i}`,
    i % 4 === 0 ? null : `client-${i}`,
    i % 6 === 0 ? null : `user_${"x".repeat(i % 200)}`,
    i % 9 === 0 ? 1 : 0,
    i % 9 === 0 ? 42 : 0,
  ];
  for (const [k, v] of Object.entries(extra)) (r as unknown[])[Number(k)] = v;
  return r;
}

test("rows come out as they went in: numbers, nulls, non-ASCII and astral characters, cache fields", () => {
  const ring = new LedgerRing(LedgerRing.bufferFor(65536));
  const rows = [
    row(1),
    row(2, { 3: "modèle-ünïcödé", 12: "séance 🚀 done", 14: "用户" }),
    row(3, { 1: 1.5e12, 6: 1234.567, 11: 2 ** 40 }),
    row(4, { 15: 1, 16: 99_999 }),
  ];
  for (const r of rows) assert.equal(ring.push(r), true);
  assert.deepEqual(ring.drain(), rows);
  assert.deepEqual(ring.drain(), [], "a drained ring is empty");
});

test("a lone surrogate becomes U+FFFD and an overlong string is cut at MAX_STRING_UNITS without splitting a pair", () => {
  const ring = new LedgerRing(LedgerRing.bufferFor(65536));
  const long = "a".repeat(MAX_STRING_UNITS - 1) + "🚀" + "tail";
  ring.push(row(1, { 12: "bad\ud800x", 14: long }));
  const [out] = ring.drain();
  assert.equal(out![12], "bad\ufffdx");
  assert.equal(out![14], "a".repeat(MAX_STRING_UNITS - 1), "the pair at the cut is left out whole");
});

test("rows keep their order across the ring's end, lap after lap", () => {
  const ring = new LedgerRing(LedgerRing.bufferFor(65536));
  let next = 0;
  let seen = 0;
  // Batches of varying size so records straddle the end at different offsets.
  for (let lap = 0; lap < 200; lap++) {
    const n = 50 + ((lap * 37) % 120);
    const sent: UsageRow[] = [];
    for (let i = 0; i < n; i++) {
      const r = row(next++);
      assert.equal(ring.push(r), true, `row ${next - 1} fits`);
      sent.push(r);
    }
    assert.deepEqual(ring.drain(), sent);
    seen += n;
  }
  assert.ok(seen * 150 > 10 * 65536, "the test went round the ring many times");
  assert.equal(ring.takeDropped(), 0);
});

test("a full ring drops new rows and counts them, never overwriting the rows it holds", () => {
  const ring = new LedgerRing(LedgerRing.bufferFor(65536));
  const kept: UsageRow[] = [];
  let dropped = 0;
  for (let i = 0; i < 2000; i++) {
    const r = row(i);
    if (ring.push(r)) kept.push(r);
    else dropped++;
  }
  assert.ok(dropped > 0 && kept.length > 100);
  assert.equal(ring.takeDropped(), dropped);
  assert.equal(ring.takeDropped(), 0, "the count is taken once");
  assert.deepEqual(ring.drain(), kept);
  assert.equal(ring.push(row(9999)), true, "a drain makes room again");
});

test("past half full the writer is told once per drain to ask for an early drain", () => {
  const ring = new LedgerRing(LedgerRing.bufferFor(65536));
  let asks = 0;
  for (let i = 0; i < 300; i++) if (ring.push(row(i)) && ring.pastHalf()) asks++;
  assert.equal(asks, 1);
  ring.drain();
  for (let i = 0; i < 300; i++) if (ring.push(row(i)) && ring.pastHalf()) asks++;
  assert.equal(asks, 2);
});

test("a writer on another thread and a reader draining meanwhile: every row arrives once, in order, or is counted as dropped", async () => {
  const sab = LedgerRing.bufferFor(65536);
  const ring = new LedgerRing(sab);
  const url = new URL("../../core/ledger-ring.js", import.meta.url).href;
  const total = 50_000;
  const w = new Worker(
    `const { workerData, parentPort } = require("node:worker_threads");
     import(${JSON.stringify(url)}).then(({ LedgerRing }) => {
       const ring = new LedgerRing(workerData);
       for (let i = 0; i < ${total}; i++)
         ring.push(["req_" + i, i, null, "m", "p", 200, 1, i, i, 0, 0, 0, null, null, "ü" + i, 0, 0]);
       parentPort.postMessage("done");
     });`,
    { eval: true, workerData: sab },
  );
  const done = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error("the writer did not finish within 30 s")), 30_000);
    w.once("message", () => {
      clearTimeout(t);
      resolve();
    });
    w.once("error", reject);
  });
  let finished = false;
  void done.then(() => (finished = true));
  const got: UsageRow[] = [];
  while (!finished) {
    got.push(...ring.drain());
    await new Promise((r) => setImmediate(r));
  }
  got.push(...ring.drain());
  await w.terminate();
  const dropped = ring.takeDropped();
  assert.equal(got.length + dropped, total);
  let last = -1;
  for (const r of got) {
    assert.ok(r[1] > last, "in order, each once");
    last = r[1];
    assert.equal(r[0], `req_${r[1]}`);
    assert.equal(r[14], `ü${r[1]}`);
  }
});
