/**
 * Budgets across real threads: workers reserve, release and charge on the same slot of one
 * SharedArrayBuffer; afterwards nothing is left reserved, every charge is counted once, and
 * the limit was never passed although it refused many requests.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isMainThread } from "node:worker_threads";
import { Budgets, L_TOKENS_DAY, OK, type BudgetLimits } from "../../core/budget.js";
import { prng } from "../../core/prng.js";
import { runThreads, workerMain } from "../support/threads.js";

const NOW = Date.UTC(2026, 5, 15, 12); // a fixed instant: no window roll-over inside the run
const NONE: BudgetLimits = { tokensPerDay: 0, tokensPerMonth: 0, microsPerDay: 0, microsPerMonth: 0 };

type Job =
  | { kind: "reserve"; sab: SharedArrayBuffer; limits: BudgetLimits; tok: number }
  | { kind: "stress"; sab: SharedArrayBuffer; limits: BudgetLimits; iterations: number };

interface Tally {
  admitted: number;
  refused: number;
  chargedTokens: number;
  chargedMicros: number;
}

function stress(b: Budgets, l: BudgetLimits, iterations: number, seed: number): Tally {
  const rnd = prng(seed);
  const held: number[] = [];
  const t: Tally = { admitted: 0, refused: 0, chargedTokens: 0, chargedMicros: 0 };
  const settle = (tok: number) => {
    const used = Math.floor(tok * rnd());
    b.release(0, tok, tok * 10);
    b.charge(0, used, used * 10);
    t.chargedTokens += used;
    t.chargedMicros += used * 10;
  };
  for (let n = 0; n < iterations; n++) {
    if (held.length < 3 && rnd() < 0.6) {
      const tok = 50 + Math.floor(rnd() * 100);
      if (b.reserve(0, l, tok, tok * 10) === OK) {
        held.push(tok);
        t.admitted++;
      } else t.refused++;
    } else if (held.length > 0) settle(held.shift()!);
  }
  while (held.length > 0) settle(held.shift()!);
  return t;
}

if (!isMainThread) {
  workerMain<Job, unknown>((job, index) => {
    const b = new Budgets(job.sab, () => NOW);
    if (job.kind === "reserve") return b.reserve(0, job.limits, job.tok, 0);
    return stress(b, job.limits, job.iterations, 1000 + index);
  });
} else {
  test("two threads share the reservations of one slot: the second does not fit beside the first", async () => {
    const sab = Budgets.bufferFor(1);
    const l = { ...NONE, tokensPerDay: 100 };
    const here = new Budgets(sab, () => NOW);
    assert.equal(here.reserve(0, l, 60, 0), OK);
    const [other] = await runThreads<Job, number>(new URL(import.meta.url), 1, { kind: "reserve", sab, limits: l, tok: 60 });
    assert.equal(other, L_TOKENS_DAY, "the other thread sees this thread's reservation");
    const [fits] = await runThreads<Job, number>(new URL(import.meta.url), 1, { kind: "reserve", sab, limits: l, tok: 40 });
    assert.equal(fits, OK);
    assert.equal(here.spend(0).reservedTokens, 100, "and this thread sees the other's");
  });

  test("four threads hammering one slot: never past the limit, reserved = released, every charge counted", async () => {
    const sab = Budgets.bufferFor(1);
    const limits = { ...NONE, tokensPerDay: 200_000, microsPerMonth: 2_500_000 };
    const tallies = await runThreads<Job, Tally>(new URL(import.meta.url), 4, { kind: "stress", sab, limits, iterations: 20_000 });
    const sum = (f: (t: Tally) => number) => tallies.reduce((a, t) => a + f(t), 0);
    const s = new Budgets(sab, () => NOW).spend(0);
    assert.ok(sum((t) => t.refused) > 1000 && sum((t) => t.admitted) > 1000, "the limits were reached and refused requests");
    assert.equal(s.reservedTokens, 0, "every reservation was given back");
    assert.equal(s.reservedMicros, 0);
    assert.equal(
      s.dayTokens,
      sum((t) => t.chargedTokens),
      "every charge counted once",
    );
    assert.equal(s.monthTokens, s.dayTokens);
    assert.equal(
      s.monthMicros,
      sum((t) => t.chargedMicros),
    );
    assert.ok(s.dayTokens <= limits.tokensPerDay, `day tokens ${s.dayTokens} within ${limits.tokensPerDay}`);
    assert.ok(s.monthMicros <= limits.microsPerMonth, `month micros ${s.monthMicros} within ${limits.microsPerMonth}`);
  });
}
