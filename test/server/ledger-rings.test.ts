/**
 * The main thread's side of the ledger rings (server/ledger-rings.ts): what the acceptors
 * wrote reaches the ledger, on the timer or when drained by hand, and rows a full ring
 * dropped are reported to the ledger as lost (its dropped-rows metric).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { LedgerRing } from "../../core/ledger-ring.js";
import { LedgerRings } from "../../server/ledger-rings.js";
import type { UsageRow } from "../../workers/ledger-task.js";

const row = (i: number): UsageRow => [`req_x_0_${i}`, i, null, "m", "anthropic", 200, 1, 1, 2, 0, 0, 3, null, null, null, 0, 0];

test("rows of every ring reach the ledger, and a full ring's drops are reported as lost", () => {
  const added: UsageRow[] = [];
  let lost = 0;
  const rings = new LedgerRings({ add: (r) => added.push(...r), lost: (n) => (lost += n) }, 60_000);
  const a = new LedgerRing(rings.create(65536));
  const b = new LedgerRing(rings.create(65536));
  a.push(row(1));
  b.push(row(2));
  let i = 3;
  while (a.push(row(i))) i++; // until full: the next row is dropped
  rings.drain();
  assert.equal(added.length, i - 1, "every row that fitted");
  assert.deepEqual(
    added.filter((r) => r[0] === "req_x_0_2"),
    [row(2)],
  );
  assert.equal(lost, 1);
  a.push(row(i + 1));
  rings.close();
  assert.equal(added.at(-1)![0], `req_x_0_${i + 1}`, "close takes what is left");
});

test("the timer drains without being asked", async () => {
  const got = new Promise<UsageRow[]>((resolve) => {
    const rings = new LedgerRings({ add: (r) => (rings.close(), resolve(r)), lost: () => {} }, 5);
    new LedgerRing(rings.create(65536)).push(row(7));
  });
  let t: NodeJS.Timeout | undefined;
  const bound = new Promise<never>((_, reject) => (t = setTimeout(() => reject(new Error("no drain within 5 s")), 5000)));
  try {
    assert.deepEqual(await Promise.race([got, bound]), [row(7)]);
  } finally {
    clearTimeout(t);
  }
});
