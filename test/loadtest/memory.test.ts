/** The per-isolate memory report of loadtest/memory.ts: which sample counts for each moment, and the table's sums. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isolateRows, lastSamples, memoryTable, type ProbeLine } from "../../loadtest/memory.js";

const MiB = 1024 * 1024;
const line = (at: number, thread: number, role: string, heapMiB: number, extra: Partial<ProbeLine> = {}): ProbeLine => ({
  at,
  thread,
  role,
  heap_total: heapMiB * MiB,
  heap_used: (heapMiB / 2) * MiB,
  external: MiB,
  spaces: { new_space: 2 * MiB, new_large_object_space: 0 },
  ...extra,
});

test("each thread's last sample at or before a moment counts; later ones do not", () => {
  const lines = [line(100, 0, "main", 10), line(200, 0, "main", 12), line(300, 0, "main", 20), line(150, 3, "acceptor 0", 30)];
  const at250 = lastSamples(lines, 250);
  assert.equal(at250.get(0)!.at, 200);
  assert.equal(at250.get(3)!.at, 150);
  assert.equal(lastSamples(lines, 50).size, 0);
});

test("rows pair idle and after per thread, take the forced-GC sample after the run, and a thread started late has no idle sample", () => {
  const lines = [
    line(100, 0, "main", 10, { rss: 150 * MiB }),
    line(100, 3, "acceptor 0", 30),
    line(900, 0, "main", 12, { rss: 250 * MiB }),
    line(900, 3, "acceptor 0", 50),
    line(600, 2, "metrics render (piscina)", 8),
    line(1100, 3, "acceptor 0", 40, { gc: true }),
  ];
  const rows = isolateRows(lines, 500, 1000);
  assert.deepEqual(
    rows.map((r) => [r.thread, r.role]),
    [
      [0, "main"],
      [2, "metrics render (piscina)"],
      [3, "acceptor 0"],
    ],
  );
  assert.equal(rows[1]!.idle, null);
  assert.equal(rows[2]!.after!.heap_total, 50 * MiB);
  assert.equal(rows[2]!.collected!.heap_total, 40 * MiB);
  const md = memoryTable(rows);
  // All isolates: idle 10 + 30 MiB; after 12 + 8 + 50 MiB. RSS outside V8 heaps: 150 − 40 and 250 − 70.
  assert.match(md, /\*\*all isolates\*\* \| 40\.0 MiB → 70\.0 MiB/);
  assert.match(md, /RSS not in any V8 heap \| 110 MiB → 180 MiB/);
});
