import { test } from "node:test";
import assert from "node:assert/strict";
import { clientRequestId, RequestIds } from "../../core/request-id.js";

test("new ids are unique, start with req_ and the process prefix, and are header-safe", () => {
  const r = new RequestIds("k3x", 0);
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = r.next();
    assert.ok(id.startsWith("req_k3x_0_"), id);
    assert.match(id, /^req_[A-Za-z0-9_]+$/);
    assert.ok(!seen.has(id), `duplicate id ${id}`);
    seen.add(id);
  }
});

test("ids never collide across threads (38+) and prefixes of unequal length", () => {
  // Old scheme: prefix + thread(base 36) + counter with no separator, so thread 1's 37th
  // id ("...1" + "11") equalled thread 37's first ("...11" + "1").
  const gens: RequestIds[] = [];
  for (const p of ["a", "ab", "abc", "a1", "1"]) for (let t = 0; t < 40; t++) gens.push(new RequestIds(p, t));
  const seen = new Map<string, number>();
  gens.forEach((g, gi) => {
    for (let i = 0; i < 400; i++) {
      const id = g.next();
      const prev = seen.get(id);
      assert.equal(prev, undefined, `${id} from generator ${gi} was already issued by generator ${prev}`);
      seen.set(id, gi);
    }
  });
  assert.equal(seen.size, gens.length * 400);
});

test("a prefix that could blur the parts is refused", () => {
  for (const bad of ["", "a_b", "a-b", "x".repeat(33)]) assert.throws(() => new RequestIds(bad, 0), /prefix/, bad);
  assert.throws(() => new RequestIds("ok", -1), /thread/);
});

test("clientRequestId() keeps a well-formed incoming id", () => {
  for (const good of ["abc", "7", "req_01HZX3.trace:span-9", "A".repeat(128), "0f8e-4c1b_9a:7.2"]) {
    assert.equal(clientRequestId(good), good, JSON.stringify(good));
  }
});

test("clientRequestId() drops a malformed incoming id", () => {
  const bad = [
    "",
    "has space",
    "A".repeat(129),
    "abc\n",
    "abc\r\nx-injected: 1",
    "tab\there",
    "nul\u0000",
    "del\u007f",
    "-leading-dash",
    ".leading-dot",
    'quote"',
    "é",
    "semi;colon",
  ];
  for (const b of bad) assert.equal(clientRequestId(b), null, JSON.stringify(b));
});
