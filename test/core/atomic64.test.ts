import { test } from "node:test";
import assert from "node:assert/strict";
import { add64, read64 } from "../../core/atomic64.js";

test("64-bit counters carry exactly at 2^32, not one before", () => {
  const u = new Uint32Array(new SharedArrayBuffer(16));
  add64(u, 2, 0xffffffff);
  assert.deepEqual([u[2], u[3]], [0xffffffff, 0], "2^32 - 1 fits in the low word");
  assert.equal(read64(u, 2), 0xffffffff);
  add64(u, 2, 1);
  assert.deepEqual([u[2], u[3]], [0, 1]);
  assert.equal(read64(u, 2), 2 ** 32);
  add64(u, 2, 0xffffffff);
  assert.equal(read64(u, 2), 2 ** 33 - 1);
  assert.deepEqual([u[0], u[1]], [0, 0], "the neighbouring counter is untouched");
});

test("values of 2^32 and more are added in parts; zero and negatives add nothing", () => {
  const u = new Uint32Array(new SharedArrayBuffer(8));
  add64(u, 0, 2 ** 32);
  assert.equal(read64(u, 0), 2 ** 32);
  add64(u, 0, 3 * 2 ** 32 + 5);
  assert.equal(read64(u, 0), 4 * 2 ** 32 + 5);
  add64(u, 0, 0);
  add64(u, 0, -7);
  assert.equal(read64(u, 0), 4 * 2 ** 32 + 5);
  add64(u, 0, 2 ** 52);
  assert.equal(read64(u, 0), 2 ** 52 + 4 * 2 ** 32 + 5, "exact up to 2^53");
});
