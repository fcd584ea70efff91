/**
 * The checks on both sides of an upstream call: what undici would refuse to send, what
 * counts as a JSON reply, and how a logged upstream body is cut and masked.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { badHeader, badHeaderValue, badQuery, isJsonBody, jsonish, redactSnippet } from "../../core/upstream-guard.js";

test("header values: control bytes (but tab) and characters above U+00FF are refused, the rest pass", () => {
  for (const v of ["a\x7fb", "a\x00", "a\x1fb", "x\r\ny: 1", "a\nb", "\ufffd", "é\u0100"])
    assert.equal(badHeaderValue(v), true, JSON.stringify(v));
  for (const v of ["", "claude-cli/1.0 (external, cli)", "a\tb", "2023-06-01", "caf\u00e9", "~!@#$%^&*()"])
    assert.equal(badHeaderValue(v), false, JSON.stringify(v));
  assert.equal(badHeader(["anthropic-version", "2023-06-01", "user-agent", "a\x7fb"]), "user-agent");
  assert.equal(badHeader(["anthropic-version", "2023-06-01"]), null);
});

test("queries: printable ASCII only", () => {
  for (const q of ["a=\ufffd", "a=\u00ff", "a b", "a=\x7f", "a=\t"]) assert.equal(badQuery(q), true, JSON.stringify(q));
  for (const q of ["", "beta=true", "a=%FF&b=~x"]) assert.equal(badQuery(q), false, q);
});

test("a JSON error body needs a JSON content type and must parse", () => {
  const j = Buffer.from('{"type":"error"}');
  assert.equal(isJsonBody("application/json", j), true);
  assert.equal(isJsonBody("application/json; charset=utf-8", j), true);
  assert.equal(isJsonBody("application/problem+json", j), true);
  assert.equal(isJsonBody("text/html", j), false);
  assert.equal(isJsonBody("", j), false);
  assert.equal(isJsonBody("application/json", Buffer.from("<html>")), false);
});

test("a 2xx reply is relayable when JSON-typed and an object", () => {
  assert.equal(jsonish("application/json", Buffer.from(' \n{"a":1}')), true);
  assert.equal(jsonish("application/json", Buffer.from("[1]")), false);
  assert.equal(jsonish("application/json", Buffer.from("")), false);
  assert.equal(jsonish("text/plain", Buffer.from("{}")), false);
});

test("a logged body is truncated and masks the given secrets and key-like tokens", () => {
  const s = redactSnippet("<p>key sk-ant-api03-abcdefghijkl and Bearer tok.en-1 and my-secret-value</p>", ["my-secret-value"], 200);
  assert.ok(!s.includes("abcdefghijkl"));
  assert.ok(!s.includes("tok.en-1"));
  assert.ok(!s.includes("my-secret-value"));
  assert.match(s, /sk-ant-…\[redacted\]/);
  const long = redactSnippet("x".repeat(5000), [], 512);
  assert.equal(long.length, 513);
  assert.ok(long.endsWith("…"));
});
