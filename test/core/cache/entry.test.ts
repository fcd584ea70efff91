/** The stored entry's byte layout (core/cache/entry.ts). */
import { test } from "node:test";
import assert from "node:assert/strict";
import { encodeEntry, entryBody, entryMeta, KIND_SSE } from "../../../core/cache/entry.js";

test("an entry keeps its kind, time, usage and body bytes, in a buffer it owns", () => {
  const parts = [Buffer.from("event: a\ndata: {}\n\n"), Buffer.from("event: b\ndata: {}\n\n")];
  const e = encodeEntry(
    { kind: KIND_SSE, storedAt: 1_700_000_000_123, input: 12, output: 34, cacheWrite: 5, cacheRead: -1 },
    parts,
    parts[0]!.length + parts[1]!.length,
  );
  assert.deepEqual(entryMeta(e), { kind: KIND_SSE, storedAt: 1_700_000_000_123, input: 12, output: 34, cacheWrite: 5, cacheRead: 0 });
  assert.equal(Buffer.from(entryBody(e)).toString(), "event: a\ndata: {}\n\nevent: b\ndata: {}\n\n");
  assert.equal(e.byteOffset, 0);
  assert.equal(e.buffer.byteLength, e.byteLength, "not a slice of Node's pool: transferable");
});

test("bytes of another format are not an entry", () => {
  assert.equal(entryMeta(Buffer.from("hello")), null);
  assert.equal(entryMeta(Buffer.alloc(40)), null);
});
