import { test } from "node:test";
import assert from "node:assert/strict";
import { KeyIndex, digestKey, presentedKey } from "../../core/auth.js";

const KEYS = ["pk-live-0123456789abcdef", "another-gateway-key", "kéy-with-ünïcode"];

test("KeyIndex accepts each configured key and says which one", () => {
  const idx = new KeyIndex(KEYS);
  assert.equal(idx.enabled, true);
  KEYS.forEach((k, i) => {
    const e = idx.check(k);
    assert.ok(e, `key ${i} accepted`);
    assert.equal(e.id, `static-${i}`);
    assert.ok(e.digest.equals(digestKey(k)));
  });
});

test("KeyIndex rejects other keys, prefixes, suffixes and near misses", () => {
  const idx = new KeyIndex(KEYS);
  const k = KEYS[0]!;
  const wrong = [
    "",
    "pk-live-0123456789abcdeg",
    k.slice(0, -1),
    k.slice(1),
    k.slice(0, 8),
    k + "x",
    "x" + k,
    ` ${k}`,
    `${k} `,
    k.toUpperCase(),
    KEYS[1]! + KEYS[0]!,
    "key-with-unicode",
  ];
  for (const w of wrong) assert.equal(idx.check(w), null, `accepted ${JSON.stringify(w)}`);
});

test("an empty KeyIndex is disabled and accepts nothing", () => {
  const idx = new KeyIndex([]);
  assert.equal(idx.enabled, false);
  assert.equal(idx.check(""), null);
  assert.equal(idx.check("anything-at-all"), null);
});

test("presentedKey() prefers x-api-key over Authorization", () => {
  assert.equal(presentedKey("from-x-api-key", "Bearer from-auth"), "from-x-api-key");
  assert.equal(presentedKey("from-x-api-key", ""), "from-x-api-key");
});

test("presentedKey() reads Authorization: Bearer, case-insensitively", () => {
  assert.equal(presentedKey("", "Bearer sk-1"), "sk-1");
  assert.equal(presentedKey("", "bearer sk-2"), "sk-2");
  assert.equal(presentedKey("", "BEARER sk-3"), "sk-3");
  assert.equal(presentedKey("", "BeArEr   sk-4  "), "sk-4");
});

test("presentedKey() returns an empty string when no usable key was sent", () => {
  for (const auth of ["", "Bearer", "Bearer ", "Bearer    ", "Basic dXNlcjpwYXNz", "Token sk-1", "Bearersk-1", "sk-1"]) {
    assert.equal(presentedKey("", auth), "", JSON.stringify(auth));
  }
});
