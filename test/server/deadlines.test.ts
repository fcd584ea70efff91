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
  const x = new Node("x", log),
    y = new Node("y", log),
    z = new Node("z", log);
  sweep.add(x, now + 30);
  sweep.add(y, now + 10);
  sweep.add(z, now + 20);
  await expired(x, log);
  assert.deepEqual(log, ["y", "z", "x"]);
  assert.ok(x.firedAt >= x.dlAt && y.firedAt >= y.dlAt && z.firedAt >= z.dlAt, "none expired early");
  assert.ok(!x.dlArmed && !y.dlArmed && !z.dlArmed, "none is left in the list");
});

test("a node added ahead of the others is not held back by the timer armed for them", async () => {
  const sweep = new DeadlineSweep();
  const log: string[] = [];
  const now = performance.now();
  const later = new Node("later", log),
    soon = new Node("soon", log);
  sweep.add(later, now + 600_000); // the timer is armed for this one, ten minutes away
  sweep.add(soon, now + 10);
  await expired(soon, log); // bounded at 5 s: fails if the sweep waited for `later`
  assert.deepEqual(log, ["soon"]);
  assert.equal(later.dlArmed, true);
  sweep.remove(later);
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
