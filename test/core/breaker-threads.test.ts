/**
 * One breaker hammered by real threads: ordinary requests and half-open probes from four
 * workers, with a zero open time so rounds follow each other as fast as the threads can
 * race them, and probes held across rounds so late probes are common. Each worker keeps,
 * per round, a shared count of the probes it holds; that count must never pass the cap,
 * and when everything is settled the breaker holds no probe.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isMainThread } from "node:worker_threads";
import { ADMIT, Breakers, CLOSED, HALF_OPEN, NOT_PROBE, type BreakerSettings } from "../../core/breaker.js";
import { prng } from "../../core/prng.js";
import { runThreads, workerMain } from "../support/threads.js";

const ROUNDS = 16_384; // tickets are 1..ROUNDS; a run stays below that many rounds (asserted)
const SETTINGS: BreakerSettings = { failureThreshold: 3, timeoutMs: 0, successThreshold: 2, halfOpenProbes: 2 };
const clock = { now: () => 0 };

interface Job {
  sab: SharedArrayBuffer;
  /** Per ticket: probes of that round held by the workers right now. */
  held: SharedArrayBuffer;
  iterations: number;
}

interface Tally {
  probes: number;
  overCap: number;
  closes: number;
}

function hammer(job: Job, seed: number): Tally {
  const b = new Breakers(job.sab, SETTINGS, clock);
  const held = new Int32Array(job.held);
  const rnd = prng(seed);
  const mine: number[] = [];
  const t: Tally = { probes: 0, overCap: 0, closes: 0 };
  b.onTransition = (_i, from, to) => {
    if (from === HALF_OPEN && to === CLOSED) t.closes++;
  };
  const settle = (ticket: number) => {
    Atomics.sub(held, ticket, 1); // before the breaker frees the slot
    const r = rnd();
    if (r < 0.4) b.recordSuccess(0, ticket);
    else if (r < 0.7) b.recordFailure(0, ticket);
    else b.releaseProbe(0, ticket);
  };
  for (let n = 0; n < job.iterations; n++) {
    if (mine.length < 2 && rnd() < 0.6) {
      const v = b.admit(0);
      if (v === ADMIT) {
        if (rnd() < 0.5) b.recordFailure(0, NOT_PROBE);
        else b.recordSuccess(0, NOT_PROBE);
      } else if (v > 0) {
        t.probes++;
        if (Atomics.add(held, v, 1) + 1 > SETTINGS.halfOpenProbes) t.overCap++;
        mine.push(v);
      }
    } else if (mine.length > 0) settle(mine.shift()!);
  }
  while (mine.length > 0) settle(mine.shift()!);
  return t;
}

if (!isMainThread) workerMain<Job, Tally>((job, index) => hammer(job, 7 + index));
else {
  test("four threads on one breaker: never more probes of a round than the cap, none left when all are settled", async () => {
    const sab = Breakers.bufferFor(1);
    const held = new SharedArrayBuffer((ROUNDS + 1) * 4);
    const tallies = await runThreads<Job, Tally>(new URL(import.meta.url), 4, { sab, held, iterations: 3000 });
    const b = new Breakers(sab, SETTINGS, clock);
    const v = b.view(0);
    const sum = (f: (t: Tally) => number) => tallies.reduce((a, t) => a + f(t), 0);
    assert.ok(v.opened_total > 100 && v.opened_total < ROUNDS, `many rounds, fewer than the ticket space (${v.opened_total})`);
    assert.ok(sum((t) => t.probes) > 1000, "many probes");
    assert.ok(sum((t) => t.closes) > 10, "half-open rounds closed the breaker too");
    assert.equal(
      sum((t) => t.overCap),
      0,
      "no round ever had more probes in flight than the cap",
    );
    assert.ok(
      new Int32Array(held).every((n) => n === 0),
      "every probe handed back",
    );
    assert.equal(v.probes_in_flight, 0, "the breaker holds no probe once all are settled");
    assert.ok(v.half_open_successes < SETTINGS.successThreshold, `successes ${v.half_open_successes} below the threshold`);
    assert.ok(v.consecutive_failures >= 0 && v.consecutive_failures < SETTINGS.failureThreshold);
  });
}
