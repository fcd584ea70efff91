import { test } from "node:test";
import assert from "node:assert/strict";
import { RequestIds } from "../../core/request-id.js";

function ids(prefix = "k3x"): RequestIds {
  return new RequestIds(prefix);
}

test("new ids are unique, start with req_ and the process prefix, and are header-safe", () => {
  const r = ids("k3x");
  const seen = new Set<string>();
  for (let i = 0; i < 10_000; i++) {
    const id = r.next();
    assert.ok(id.startsWith("req_k3x"), id);
    assert.match(id, /^req_[A-Za-z0-9]+$/);
    assert.ok(!seen.has(id), `duplicate id ${id}`);
    seen.add(id);
  }
});

test("two processes with different prefixes never produce the same id", () => {
  const a = ids("aa"), b = ids("ab");
  const fromA = new Set(Array.from({ length: 1000 }, () => a.next()));
  for (let i = 0; i < 1000; i++) assert.ok(!fromA.has(b.next()));
});

test("fromHeader() keeps a well-formed incoming id", () => {
  const r = ids();
  for (const good of ["abc", "7", "req_01HZX3.trace:span-9", "A".repeat(128), "0f8e-4c1b_9a:7.2"]) {
    assert.equal(r.fromHeader(good), good, JSON.stringify(good));
  }
});

test("fromHeader() replaces a malformed incoming id with a new one", () => {
  const r = ids();
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
    "quote\"",
    "é",
    "semi;colon",
  ];
  for (const b of bad) {
    const id = r.fromHeader(b);
    assert.notEqual(id, b, `accepted ${JSON.stringify(b)}`);
    assert.match(id, /^req_/, "a fresh id instead");
  }
});
