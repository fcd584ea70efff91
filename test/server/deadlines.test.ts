/**
 * The per-thread deadline sweep (server/deadlines.ts) replaces a timer per request: every
 * node expires once, in deadline order, never before its time; a removed node never
 * expires; a node added ahead of the others is not held back by the timer armed for them.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Deadline, DeadlineSweep } from "../../server/deadlines.js";

class Node extends Deadline {
  firedAt = -1;
  constructor(
    readonly name: string,
    private readonly log: string[],
    private readonly onFire: (() => void) | null = null,
  ) {
    super();
  }
  expire(): void {
    this.firedAt = performance.now();
    this.log.push(this.name);
    this.onFire?.();
  }
}

/** Resolves when `n` expires; fails the test after `boundMs` (a generous bound, not a timing claim). */
function expired(n: Node, log: string[], boundMs = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${n.name} never expired; fired: ${log.join(",")}`)), boundMs);
    (n as unknown as { onFire: () => void }).onFire = () => {
      clearTimeout(t);
      resolve();
    };
  });
}

test("nodes expire once each, in deadline order, never before their deadline, whatever the order they were added in", async () => {
  const sweep = new DeadlineSweep();
  const log: string[] = [];
  const now = performance.now();
  const a = new Node("a", log),
    b = new Node("b", log),
    c = new Node("c", log);
  sweep.add(b, now + 40);
  sweep.add(c, now + 60);
  sweep.add(a, now + 20); // ahead of the head: the sweep must not wait for b's time
  const last = expired(c, log);
  await last;
  assert.deepEqual(log, ["a", "b", "c"]);
  assert.ok(a.firedAt >= a.dlAt && b.firedAt >= b.dlAt && c.firedAt >= c.dlAt, "none expired early");
  assert.ok(a.firedAt < b.dlAt, "a did not wait for the timer armed for b");
  assert.ok(!a.dlArmed && !b.dlArmed && !c.dlArmed, "none is left in the list");
});

test("a removed node never expires, and the nodes after it still do", async () => {
  const sweep = new DeadlineSweep();
  const log: string[] = [];
  const now = performance.now();
  const gone = new Node("gone", log),
    kept = new Node("kept", log);
  sweep.add(gone, now + 10); // the timer is armed for this one
  sweep.add(kept, now + 30);
  sweep.remove(gone);
  sweep.remove(gone); // twice is harmless
  await expired(kept, log);
  assert.deepEqual(log, ["kept"]);
  assert.equal(gone.dlArmed, false);
});

test("a deadline already past expires on the next sweep; re-adding a node moves it instead of adding it twice", async () => {
  const sweep = new DeadlineSweep();
  const log: string[] = [];
  const late = new Node("late", log),
    moved = new Node("moved", log);
  sweep.add(moved, performance.now() + 60_000);
  sweep.add(moved, performance.now() + 5);
  assert.equal(moved.dlNext, null, "moved, not listed twice");
  assert.equal(moved.dlPrev, null);
  sweep.add(late, performance.now() - 1000);
  await expired(moved, log);
  assert.deepEqual(log, ["late", "moved"]);
});

test("an expiry that throws is reported and does not stop the others due at the same time", async () => {
  const sweep = new DeadlineSweep();
  const log: string[] = [];
  const now = performance.now();
  const bad = new Node("bad", log, () => {
    throw new Error("boom");
  });
  const good = new Node("good", log);
  const errors: unknown[] = [];
  sweep.onError = (e) => errors.push(e);
  sweep.add(bad, now + 5);
  sweep.add(good, now + 5);
  await expired(good, log);
  assert.deepEqual(log, ["bad", "good"]);
  assert.deepEqual(
    errors.map((e) => (e as Error).message),
    ["boom"],
  );
});
