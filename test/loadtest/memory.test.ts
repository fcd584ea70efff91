/** The per-isolate memory report of loadtest/memory.ts: which sample counts for each moment, and the table's sums. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isolateRows, lastSamples, memoryTable, type ProbeLine, smapsKinds, smapsTable } from "../../loadtest/memory.js";

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

test("smaps mappings are classed as files, V8 pages, malloc arenas, JIT code, stacks or other, by their RSS", () => {
  const map = (range: string, perms: string, name: string, rssKb: number) =>
    `${range} ${perms} 00000000 00:00 0 ${name}\nSize: 1 kB\nRss: ${rssKb} kB\nPss: ${rssKb} kB\n`;
  const smaps = [
    map("00400000-00500000", "r-xp", "/usr/bin/node", 1000),
    map("01000000-01100000", "rw-p", "[heap]", 500),
    map("7f0000000000-7f0000800000", "rw-p", "", 3000), // 64 MiB aligned: a per-thread arena
    map("7f0000800000-7f0004000000", "---p", "", 0),
    map("7f1000040000-7f1000080000", "rw-p", "", 200), // 256 KiB: a V8 page
    map("7f1000100000-7f1000140000", "rwxp", "", 100), // code
    map("7f2000001000-7f2000801000", "rw-p", "", 60), // 8 MiB: a stack
    map("7f3000001000-7f3000f01000", "rw-p", "", 700), // a large mmap'd buffer
  ].join("");
  const k = smapsKinds(smaps);
  assert.equal(k["files (node binary, libraries)"], 1000 * 1024);
  assert.equal(k["malloc arenas"], 3500 * 1024);
  assert.equal(k["V8 heap pages (256 KiB)"], 200 * 1024);
  assert.equal(k["JIT code"], 100 * 1024);
  assert.equal(k["thread stacks (8 MiB)"], 60 * 1024);
  assert.equal(k["other anonymous (mmap'd buffers, shared memory)"], 700 * 1024);
  assert.match(smapsTable(k, k), /\*\*total\*\* \| 5\.43 MiB → 5\.43 MiB/);
});
