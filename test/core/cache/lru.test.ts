/**
 * The memory tier's LRU (core/cache/lru.ts): bounded in bytes, least recently used out first,
 * expiry on the caller's clock.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ByteLru } from "../../../core/cache/lru.js";

const bytes = (n: number, fill = 1) => new Uint8Array(n).fill(fill);

test("entries are evicted by bytes, least recently used first", () => {
  // Room for three 1000-byte values with their 1-character keys and the 64-byte overhead each.
  const lru = new ByteLru(3 * (1000 + 1 + 64));
  assert.equal(lru.set("a", bytes(1000), 100), 0);
  assert.equal(lru.set("b", bytes(1000), 100), 0);
  assert.equal(lru.set("c", bytes(1000), 100), 0);
  assert.ok(lru.get("a", 0) !== null, "a is read: now the most recent");
  assert.equal(lru.set("d", bytes(1000), 100), 1, "one entry makes room");
  assert.equal(lru.get("b", 0), null, "b, the least recently used, is gone");
  assert.ok(lru.get("a", 0) !== null && lru.get("c", 0) !== null && lru.get("d", 0) !== null);
  assert.equal(lru.bytes, 3 * 1065);
  assert.equal(lru.evictions, 1);
});

test("a large entry evicts as many small ones as it needs; one larger than the bound is not kept", () => {
  const lru = new ByteLru(4000);
  for (const k of ["a", "b", "c", "d", "e"]) lru.set(k, bytes(600), 100);
  assert.equal(lru.size, 5);
  assert.equal(lru.set("big", bytes(2500), 100), 3, "three 665-byte entries leave for a 2567-byte one");
  assert.equal(lru.size, 3);
  assert.ok(lru.bytes <= 4000);
  assert.equal(lru.set("huge", bytes(5000), 100), 0);
  assert.equal(lru.get("huge", 0), null);
  assert.equal(lru.size, 3, "nothing was evicted for an entry that cannot fit");
});

test("an entry expires at its time on the injected clock and frees its bytes", () => {
  const lru = new ByteLru(10_000);
  lru.set("k", bytes(100), 5_000);
  assert.ok(lru.get("k", 4_999) !== null, "still fresh a millisecond before");
  assert.equal(lru.get("k", 5_000), null, "expired at its time");
  assert.equal(lru.bytes, 0);
  assert.equal(lru.size, 0);
});

test("replacing a key keeps one entry and counts its bytes once", () => {
  const lru = new ByteLru(10_000);
  lru.set("k", bytes(100, 1), 100);
  lru.set("k", bytes(200, 2), 100);
  assert.equal(lru.size, 1);
  assert.equal(lru.bytes, 200 + 1 + 64);
  assert.equal(lru.get("k", 0)![0], 2);
});
