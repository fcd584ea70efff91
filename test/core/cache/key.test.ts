/** The cache key (core/cache/key.ts): every part that decides the answer changes it. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { cacheKey, type KeyParts } from "../../../core/cache/key.js";

const parts: KeyParts = {
  route: 0,
  query: "beta=true",
  provider: "anthropic",
  upstreamModel: "claude-x",
  version: "2023-06-01",
  beta: "",
  scope: "id:key_a",
};
const body = Buffer.from('{"model":"claude-x","temperature":0,"max_tokens":8,"messages":[{"role":"user","content":"hi"}]}');

test("the same request gives the same key; each part and each body byte changes it", () => {
  const k = cacheKey(parts, body);
  assert.match(k, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(cacheKey({ ...parts }, Buffer.from(body)), k);
  const variants: Partial<KeyParts>[] = [
    { route: 6 },
    { query: "" },
    { provider: "azure" },
    { upstreamModel: "claude-y" },
    { version: "2024-01-01" },
    { beta: "b1" },
    { scope: "id:key_b" },
    { scope: "" },
  ];
  const seen = new Set([k]);
  for (const v of variants) seen.add(cacheKey({ ...parts, ...v }, body));
  const other = Buffer.from(body);
  other[other.length - 3] ^= 1;
  seen.add(cacheKey(parts, other));
  assert.equal(seen.size, variants.length + 2);
});

test("parts are length-prefixed: moving characters between parts changes the key", () => {
  const a = cacheKey({ ...parts, provider: "ab", upstreamModel: "c" }, body);
  const b = cacheKey({ ...parts, provider: "a", upstreamModel: "bc" }, body);
  assert.notEqual(a, b);
  const c = cacheKey({ ...parts, scope: "x" }, Buffer.from("y"));
  const d = cacheKey({ ...parts, scope: "xy" }, Buffer.alloc(0));
  assert.notEqual(c, d);
});
