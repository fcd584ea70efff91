import { test } from "node:test";
import assert from "node:assert/strict";
import { after, Clock32, MicroClock } from "../../core/clock.js";

test("after(): at or after, also across the 32-bit wrap", () => {
  assert.equal(after(10, 10), true);
  assert.equal(after(11, 10), true);
  assert.equal(after(9, 10), false);
  assert.equal(after(5, 0xfffffff0), true, "5 ms past the wrap is after 16 ms before it");
  assert.equal(after(0xfffffff0, 5), false);
});

test("Clock32 counts milliseconds from its base, modulo 2^32", () => {
  for (const back of [5000, 2 ** 32 + 7000]) {
    const base = Date.now() - back;
    const c = new Clock32(base);
    const lo = (Date.now() - base) % 2 ** 32;
    const v = c.now();
    const hi = (Date.now() - base) % 2 ** 32;
    assert.ok(v >= lo && v <= hi, `${v} within [${lo}, ${hi}]`);
  }
});

test("MicroClock counts whole microseconds from its base and does not wrap", () => {
  const base = Date.now() - 3 * 3_600_000; // 3 hours: past 2^32 µs
  const c = new MicroClock(base);
  const micros = () => (performance.timeOrigin + performance.now() - base) * 1000;
  const lo = Math.floor(micros());
  const v = c.now();
  const hi = micros();
  assert.ok(Number.isInteger(v));
  assert.ok(v >= lo && v <= hi, `${v} within [${lo}, ${hi}]`);
  assert.ok(v > 2 ** 32);
});
