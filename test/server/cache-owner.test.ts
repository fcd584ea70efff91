/**
 * The cache's owner (server/cache/owner.ts) with an injected clock, reached the way acceptor
 * threads reach it: through a MessagePort and the CacheClient. TTL expiry, age, the byte
 * bound with its store/evict counters and the bytes gauge.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { MessageChannel } from "node:worker_threads";
import pino from "pino";
import { CacheOwner } from "../../server/cache/owner.js";
import { CacheClient } from "../../server/cache/client.js";
import { loadCacheConfig } from "../../core/cache/config.js";
import { CACHE_SLOTS, CacheStats, cacheSnapshot } from "../../core/cache/stats.js";
import { encodeEntry, entryBody, entryMeta, KIND_JSON } from "../../core/cache/entry.js";

function setup(env: Record<string, string>) {
  let now = 1_000_000;
  const u32 = new Uint32Array(new SharedArrayBuffer(CACHE_SLOTS * 4));
  const owner = new CacheOwner(loadCacheConfig(env), new CacheStats(u32, 0), pino({ level: "silent" }), () => now);
  const line = new MessageChannel();
  owner.attach(line.port1);
  const client = new CacheClient(line.port2);
  line.port2.ref(); // the test awaits answers on it
  const get = (key: string) =>
    new Promise<{ entry: Uint8Array | null; age: number }>((r) => client.get(key, (entry, age) => r({ entry, age })));
  const entry = (text: string) =>
    encodeEntry(
      { kind: KIND_JSON, storedAt: 0, input: 10, output: 5, cacheWrite: 0, cacheRead: 0 },
      [Buffer.from(text)],
      Buffer.byteLength(text),
    );
  return {
    client,
    get,
    entry,
    owner,
    advance: (ms: number) => (now += ms),
    stats: () => cacheSnapshot(u32, 0),
    close: () => (line.port2.close(), owner.close()),
  };
}

/** A put is one-way: a get sent after it on the same port is answered after it is stored. */
test("an entry is served until its TTL passes on the injected clock, with its age in seconds", async () => {
  const c = setup({ CACHE_TTL_SECONDS: "60" });
  c.client.put("k", c.entry('{"a":1}'));
  const first = await c.get("k");
  assert.equal(Buffer.from(entryBody(first.entry!)).toString(), '{"a":1}');
  assert.equal(first.age, 0);
  assert.equal(entryMeta(first.entry!)!.storedAt, 1_000_000, "stamped with the owner's clock");
  c.advance(59_999);
  const later = await c.get("k");
  assert.ok(later.entry !== null, "fresh a millisecond before the TTL");
  assert.equal(later.age, 59);
  c.advance(1);
  assert.equal((await c.get("k")).entry, null, "expired at the TTL");
  assert.equal(c.stats().bytes, 0, "an expired entry's bytes are released");
  await c.close();
});

test("the memory tier stays within CACHE_MAX_BYTES, counting stores and evictions", async () => {
  const c = setup({ CACHE_MAX_BYTES: "4096", CACHE_MAX_ENTRY_BYTES: "2048" });
  const body = "x".repeat(1000);
  for (const k of ["a", "b", "c", "d", "e"]) c.client.put(k, c.entry(body));
  assert.equal((await c.get("a")).entry, null, "the oldest entries left to make room");
  assert.ok((await c.get("e")).entry !== null);
  const s = c.stats();
  assert.equal(s.requests.store, 5);
  assert.equal(s.requests.evict, 2, "three 1093-byte entries fit in 4096");
  assert.equal(s.entries, 3);
  assert.ok(s.bytes <= 4096 && s.bytes > 3000, `bytes gauge ${s.bytes}`);
  c.client.put("big", c.entry("y".repeat(3000)));
  assert.equal((await c.get("big")).entry, null, "an entry over CACHE_MAX_ENTRY_BYTES is not stored");
  await c.close();
});
