/**
 * The in-flight list each acceptor drains on shutdown (server/context.ts, Inflight): it
 * holds exactly the requests added and not yet deleted, in any deletion order, and
 * deleting twice (a request finished by its abort and by its reply) counts once.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { Inflight, type InflightNode } from "../../server/context.js";

class Req implements InflightNode<Req> {
  inPrev: Req | null = null;
  inNext: Req | null = null;
  constructor(readonly n: number) {}
}

const ids = (l: Inflight<Req>): number[] =>
  l
    .toArray()
    .map((r) => r.n)
    .sort((a, b) => a - b);

test("Inflight: holds what was added and not deleted, whatever the deletion order", () => {
  const l = new Inflight<Req>();
  const rs = Array.from({ length: 6 }, (_, i) => new Req(i));
  for (const r of rs) l.add(r);
  assert.equal(l.size, 6);
  l.delete(rs[5]!); // the head (last added)
  l.delete(rs[0]!); // the tail
  l.delete(rs[3]!); // the middle
  assert.deepEqual(ids(l), [1, 2, 4]);
  assert.equal(l.size, 3);
  for (const r of [rs[1]!, rs[4]!, rs[2]!]) l.delete(r);
  assert.deepEqual(ids(l), []);
  assert.equal(l.size, 0);
  l.add(rs[2]!);
  assert.deepEqual(ids(l), [2]);
});

test("Inflight: deleting a request twice, or one never added, changes nothing", () => {
  const l = new Inflight<Req>();
  const a = new Req(1),
    b = new Req(2),
    stranger = new Req(3);
  l.add(a);
  l.add(b);
  l.delete(a);
  l.delete(a);
  l.delete(stranger);
  assert.equal(l.size, 1);
  assert.deepEqual(ids(l), [2]);
});

test("Inflight: the copy can be walked while its requests are deleted (the drain's forced close)", () => {
  const l = new Inflight<Req>();
  for (let i = 0; i < 4; i++) l.add(new Req(i));
  let seen = 0;
  for (const r of l.toArray()) {
    l.delete(r);
    seen++;
  }
  assert.equal(seen, 4);
  assert.equal(l.size, 0);
});
