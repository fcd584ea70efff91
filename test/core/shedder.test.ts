import { test } from "node:test";
import assert from "node:assert/strict";
import {
  SHED_ACTIVE,
  SHED_EVENT_LOOP,
  SHED_HEAP,
  SHED_MEMORY,
  SHED_NONE,
  Shedder,
  verdictOf,
  type ShedSample,
  type ShedSettings,
} from "../../core/shedder.js";

const S: ShedSettings = { heapThreshold: 0.9, memoryThreshold: 0.5, activeThreshold: 10, eventLoopDelayMs: 100 };
const calm: ShedSample = { heapUsed: 100, heapLimit: 1000, rss: 100, memoryLimit: 1000, eventLoopDelayMs: 5 };

test("heap: sheds above the threshold of heap_size_limit, not at it", () => {
  assert.equal(verdictOf(S, calm), SHED_NONE);
  assert.equal(verdictOf(S, { ...calm, heapUsed: 900 }), SHED_NONE, "exactly 90%");
  assert.equal(verdictOf(S, { ...calm, heapUsed: 901 }), SHED_HEAP);
  assert.equal(verdictOf(S, { ...calm, heapUsed: 5000, heapLimit: 0 }), SHED_NONE, "no known heap limit: no heap verdict");
});

test("memory: RSS is compared with the memory threshold, not the heap one", () => {
  assert.equal(verdictOf(S, { ...calm, rss: 500 }), SHED_NONE, "exactly 50%");
  assert.equal(verdictOf(S, { ...calm, rss: 600 }), SHED_MEMORY, "60% is over the memory threshold though under the heap one");
  const loose = { ...S, heapThreshold: 0.5, memoryThreshold: 0.7 };
  assert.equal(verdictOf(loose, { ...calm, rss: 600 }), SHED_NONE, "60% is under a 70% memory threshold though over the heap one");
  assert.equal(verdictOf(loose, { ...calm, rss: 701 }), SHED_MEMORY);
  assert.equal(verdictOf(S, { ...calm, rss: 1e12, memoryLimit: 0 }), SHED_NONE, "no known memory limit: no memory verdict");
});

test("event loop: sheds when the delay is over the threshold, not at it", () => {
  assert.equal(verdictOf(S, { ...calm, eventLoopDelayMs: 100 }), SHED_NONE);
  assert.equal(verdictOf(S, { ...calm, eventLoopDelayMs: 101 }), SHED_EVENT_LOOP);
});

test("with several pressures the verdict names heap first, then memory, then the event loop", () => {
  const all = { heapUsed: 950, heapLimit: 1000, rss: 900, memoryLimit: 1000, eventLoopDelayMs: 500 };
  assert.equal(verdictOf(S, all), SHED_HEAP);
  assert.equal(verdictOf(S, { ...all, heapUsed: 0 }), SHED_MEMORY);
  assert.equal(verdictOf(S, { ...all, heapUsed: 0, rss: 0 }), SHED_EVENT_LOOP);
});

function shedder(slot = 1) {
  const verdicts = new SharedArrayBuffer(4 * 4);
  const active = new Int32Array(new SharedArrayBuffer(4 * 4));
  return { s: new Shedder(verdicts, slot, S, active, 2), verdicts, active };
}

test("check(): the thread's published verdict refuses, whatever the active count", () => {
  const { s } = shedder();
  assert.equal(s.check(), SHED_NONE);
  for (const v of [SHED_HEAP, SHED_MEMORY, SHED_EVENT_LOOP]) {
    s.publish(v);
    assert.equal(s.check(), v);
  }
  s.publish(SHED_NONE);
  assert.equal(s.check(), SHED_NONE, "a calm sample admits again");
});

test("check(): active requests above the threshold are shed, at it they are not", () => {
  const { s, active } = shedder();
  Atomics.store(active, 2, 10);
  assert.equal(s.check(), SHED_NONE);
  Atomics.store(active, 2, 11);
  assert.equal(s.check(), SHED_ACTIVE);
  Atomics.store(active, 1, 0);
  assert.equal(s.check(), SHED_ACTIVE, "the gauge is read from its own slot");
});

test("each thread reads its own verdict slot", () => {
  const { s, verdicts, active } = shedder(1);
  const other = new Shedder(verdicts, 2, S, active, 2);
  other.publish(SHED_HEAP);
  assert.equal(s.check(), SHED_NONE);
  assert.equal(other.check(), SHED_HEAP);
  assert.equal(new Int32Array(verdicts)[2], SHED_HEAP);
});
