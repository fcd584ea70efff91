import { test } from "node:test";
import assert from "node:assert/strict";
import { ADMIT, Breakers, breakerStates, CLOSED, HALF_OPEN, NOT_PROBE, OPEN, REJECT, type BreakerSettings } from "../../core/breaker.js";

/** Most tests use breaker 1, so a slot offset that ignores the index shows. */
const B = 1;
const S: BreakerSettings = { failureThreshold: 3, timeoutMs: 1000, successThreshold: 2, halfOpenProbes: 2 };

/** Breakers on a fresh buffer with a 32-bit ms clock the test moves. */
function breakers(s: Partial<BreakerSettings> = {}, start = 10_000) {
  let t = start;
  const sab = Breakers.bufferFor(2);
  const clock = { now: () => t >>> 0 };
  const b = new Breakers(sab, { ...S, ...s }, clock);
  const log: string[] = [];
  b.onTransition = (i, from, to) => log.push(`${i}:${from}->${to}`);
  return { b, sab, clock, log, advance: (ms: number) => void (t += ms) };
}

function open(b: Breakers, i = B): void {
  for (let n = 0; n < b.settings.failureThreshold; n++) b.recordFailure(i, NOT_PROBE);
  assert.equal(b.state(i), OPEN);
}

test("closed: admits; opens at the threshold-th consecutive failure, a success in between resets the count", () => {
  const { b, log } = breakers();
  assert.equal(b.admit(B), ADMIT);
  b.recordFailure(B, NOT_PROBE);
  b.recordFailure(B, NOT_PROBE);
  assert.equal(b.view(B).consecutive_failures, 2);
  b.recordSuccess(B, NOT_PROBE);
  assert.equal(b.view(B).consecutive_failures, 0);
  b.recordFailure(B, NOT_PROBE);
  b.recordFailure(B, NOT_PROBE);
  assert.equal(b.state(B), CLOSED, "two in a row is below the threshold of three");
  b.recordFailure(B, NOT_PROBE);
  assert.equal(b.state(B), OPEN);
  assert.equal(b.view(B).consecutive_failures, 0, "the count starts over");
  assert.equal(b.view(B).opened_total, 1);
  assert.deepEqual(log, ["1:0->1"]);
  assert.equal(b.state(0), CLOSED, "breakers are independent");
  assert.equal(b.admit(0), ADMIT);
});

test("open: refuses until the timeout has passed, and says how long is left", () => {
  const { b, advance } = breakers();
  open(b);
  assert.equal(b.admit(B), REJECT);
  assert.equal(b.retryAfterMs(B), 1000);
  advance(999);
  assert.equal(b.retryAfterMs(B), 1);
  assert.equal(b.admit(B), REJECT, "1 ms before the timeout");
  assert.equal(b.view(B).retry_after_ms, 1);
  advance(1);
  assert.ok(b.admit(B) > 0, "at the timeout: a probe");
  assert.equal(b.state(B), HALF_OPEN);
  assert.equal(b.retryAfterMs(B), 0, "not open any more");
});

test("failures while open or half-open are not counted as consecutive failures", () => {
  const { b, advance } = breakers();
  open(b);
  b.recordFailure(B, NOT_PROBE);
  assert.equal(b.view(B).consecutive_failures, 0);
  advance(1000);
  const p = b.admit(B);
  b.recordFailure(B, NOT_PROBE);
  assert.equal(b.state(B), HALF_OPEN, "an ordinary request's failure does not reopen a half-open breaker");
  b.recordSuccess(B, p);
  b.recordSuccess(B, b.admit(B));
  assert.equal(b.state(B), CLOSED);
  assert.equal(b.view(B).consecutive_failures, 0);
});

test("half-open: at most halfOpenProbes probes at once; successThreshold successes close it", () => {
  const { b, advance, log } = breakers({ halfOpenProbes: 2, successThreshold: 3 });
  open(b);
  advance(1000);
  const p1 = b.admit(B),
    p2 = b.admit(B);
  assert.ok(p1 > 0 && p2 === p1, "both probes carry the round's ticket");
  assert.equal(b.admit(B), REJECT, "a third probe is over the cap of two");
  assert.equal(b.view(B).probes_in_flight, 2);
  b.recordSuccess(B, p1);
  assert.equal(b.view(B).probes_in_flight, 1);
  assert.equal(b.view(B).half_open_successes, 1);
  const p3 = b.admit(B);
  assert.equal(p3, p1, "a finished probe frees its slot");
  b.recordSuccess(B, p2);
  assert.equal(b.state(B), HALF_OPEN, "two successes of three");
  b.recordSuccess(B, p3);
  assert.equal(b.state(B), CLOSED);
  assert.equal(b.admit(B), ADMIT);
  assert.deepEqual(log, ["1:0->1", "1:1->2", "1:2->0"]);
});

test("a single probe with successThreshold 1 closes it; halfOpenProbes 1 admits exactly one", () => {
  const { b, advance } = breakers({ halfOpenProbes: 1, successThreshold: 1 });
  open(b);
  advance(1000);
  const p = b.admit(B);
  assert.ok(p > 0);
  assert.equal(b.admit(B), REJECT);
  b.recordSuccess(B, p);
  assert.equal(b.state(B), CLOSED);
});

test("a probe's failure reopens it for a full timeout, a new round after that", () => {
  const { b, advance, log } = breakers();
  open(b);
  advance(1000);
  const p = b.admit(B);
  advance(300);
  b.recordFailure(B, p);
  assert.equal(b.state(B), OPEN);
  assert.equal(b.retryAfterMs(B), 1000, "open_until counts from the reopening");
  assert.equal(b.view(B).opened_total, 2);
  assert.equal(b.view(B).probes_in_flight, 0);
  advance(1000);
  const q = b.admit(B);
  assert.ok(q > 0 && q !== p, "the next round has another ticket");
  assert.deepEqual(log, ["1:0->1", "1:1->2", "1:2->1", "1:1->2"]);
});

test("a late probe of an earlier round neither frees a slot nor counts a success in the next round", () => {
  const { b, advance } = breakers({ halfOpenProbes: 2, successThreshold: 2 });
  open(b);
  advance(1000);
  const late = b.admit(B);
  const failing = b.admit(B);
  b.recordFailure(B, failing); // round over: open again
  advance(1000);
  const r1 = b.admit(B),
    r2 = b.admit(B);
  assert.ok(r1 > 0 && r2 > 0 && r1 !== late);
  b.recordSuccess(B, late);
  assert.equal(b.view(B).probes_in_flight, 2, "the late probe does not free a slot of this round");
  assert.equal(b.view(B).half_open_successes, 0, "nor count a success in it");
  assert.equal(b.admit(B), REJECT, "still two in flight against a cap of two");
  b.releaseProbe(B, late);
  b.recordFailure(B, late);
  assert.equal(b.state(B), HALF_OPEN, "its failure does not reopen the new round either");
  assert.equal(b.view(B).probes_in_flight, 2);
  b.recordSuccess(B, r1);
  assert.equal(b.state(B), HALF_OPEN, "one real success of two");
  b.recordSuccess(B, r2);
  assert.equal(b.state(B), CLOSED);
});

test("releaseProbe frees the slot once; a ticket settled twice frees nothing more", () => {
  const { b, advance } = breakers({ halfOpenProbes: 2, successThreshold: 2 });
  open(b);
  advance(1000);
  const p = b.admit(B),
    q = b.admit(B);
  b.releaseProbe(B, p);
  assert.equal(b.view(B).probes_in_flight, 1);
  assert.equal(b.view(B).half_open_successes, 0, "a released probe is no success");
  b.releaseProbe(B, q);
  b.releaseProbe(B, q);
  assert.equal(b.view(B).probes_in_flight, 0, "never below zero");
  b.recordSuccess(B, q);
  assert.equal(b.view(B).half_open_successes, 0, "a ticket with no probe in flight counts nothing");
  assert.equal(b.state(B), HALF_OPEN);
  b.releaseProbe(B, NOT_PROBE);
  assert.equal(b.view(B).probes_in_flight, 0);
});

test("an open breaker left idle past the 32-bit clock's half-span (30 days) half-opens at once", () => {
  for (const idle of [25 * 86_400_000, 30 * 86_400_000, 49 * 86_400_000]) {
    const { b, advance } = breakers({}, 4_000_000_000);
    open(b);
    advance(idle);
    assert.equal(b.retryAfterMs(B), 0, `idle ${idle / 86_400_000} days: nothing left to wait`);
    assert.ok(b.admit(B) > 0, `idle ${idle / 86_400_000} days: a probe is admitted`);
  }
});

test("retryAfterMs is 0 once the open time has passed, and for a closed breaker whose old deadline the clock wrapped onto", () => {
  const { b, advance } = breakers();
  open(b);
  advance(1500);
  assert.equal(b.retryAfterMs(B), 0, "past the timeout, before any admit");
  b.recordSuccess(B, b.admit(B));
  b.recordSuccess(B, b.admit(B));
  assert.equal(b.state(B), CLOSED);
  advance(2 ** 32 - 1000); // 2^32 ms after 500 ms before the old open_until: 500 ms "ahead" in 32-bit time
  assert.equal(b.retryAfterMs(B), 0, "closed: nothing to wait for");
  assert.equal(b.view(B).retry_after_ms, 0);
});

test("works without a transition listener", () => {
  const { b, advance } = breakers({ successThreshold: 1 });
  b.onTransition = null;
  open(b);
  advance(1000);
  b.recordFailure(B, b.admit(B));
  advance(1000);
  b.recordSuccess(B, b.admit(B));
  assert.equal(b.state(B), CLOSED);
});

test("views of one buffer (two threads) share the state; breakerStates reads it raw", () => {
  const { b, sab, clock } = breakers();
  const other = new Breakers(sab, S, clock);
  open(b, 1);
  assert.equal(other.admit(1), REJECT);
  assert.deepEqual(breakerStates(sab, 2), ["closed", "open"]);
  assert.deepEqual(other.view(1), {
    state: "open",
    consecutive_failures: 0,
    half_open_successes: 0,
    probes_in_flight: 0,
    retry_after_ms: 1000,
    opened_total: 1,
  });
});
