/** The cache mode of a request (core/cache/policy.ts): switches, headers and the candidate rule. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { C_BAD_HEADER, C_BYPASS, C_OFF, C_REFRESH, C_USE, cacheMode, type ModeInput } from "../../../core/cache/policy.js";

const base: ModeInput = { enabled: true, candidates: "zero", keySetting: null, header: "", cacheControl: "", temperature: 0 };
const mode = (o: Partial<ModeInput>) => cacheMode({ ...base, ...o });

test("off unless enabled globally or for the key; the key's own setting wins", () => {
  assert.equal(mode({ enabled: false }), C_OFF);
  assert.equal(mode({ enabled: false, keySetting: "on" }), C_USE);
  assert.equal(mode({ enabled: true, keySetting: "off" }), C_OFF);
  assert.equal(mode({ enabled: true }), C_USE);
});

test("x-portcullis-cache: use, refresh, bypass (any case); anything else is refused", () => {
  assert.equal(mode({ header: "refresh" }), C_REFRESH);
  assert.equal(mode({ header: "BYPASS" }), C_BYPASS);
  assert.equal(mode({ header: " use " }), C_USE);
  assert.equal(mode({ header: "yes" }), C_BAD_HEADER);
  assert.equal(mode({ enabled: false, header: "yes" }), C_OFF, "a header for a cache that is off is ignored");
});

test("cache-control no-cache or no-store is never served nor stored, even with use or refresh", () => {
  for (const cc of ["no-cache", "no-store", "max-age=0, no-store", "No-Cache"]) {
    assert.equal(mode({ cacheControl: cc }), C_BYPASS, cc);
    assert.equal(mode({ cacheControl: cc, header: "refresh" }), C_BYPASS, cc);
  }
  assert.equal(mode({ cacheControl: "max-age=60" }), C_USE);
  assert.equal(mode({ cacheControl: "no-transform" }), C_USE);
});

test("the candidate rule: zero, zero-or-absent, any; `use` overrides it", () => {
  assert.equal(mode({ temperature: 0.7 }), C_BYPASS);
  assert.equal(mode({ temperature: undefined }), C_BYPASS);
  assert.equal(mode({ candidates: "zero-or-absent", temperature: undefined }), C_USE);
  assert.equal(mode({ candidates: "zero-or-absent", temperature: 1 }), C_BYPASS);
  assert.equal(mode({ candidates: "any", temperature: 1 }), C_USE);
  assert.equal(mode({ temperature: 1, header: "use" }), C_USE);
  assert.equal(mode({ temperature: 1, header: "refresh" }), C_BYPASS, "refresh does not make a request a candidate");
});
