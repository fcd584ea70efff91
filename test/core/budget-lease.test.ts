/**
 * Fleet budgets' hot path (core/budget.ts lease mode, docs/fleet.md): admission takes its
 * reservation out of what this replica holds on lease, asks for more through the "need more"
 * flag, and settlement puts the unspent part back into the window it came from. Four real
 * threads hammering one leased slot never admit more than was granted.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isMainThread } from "node:worker_threads";
import {
  Budgets,
  L_TOKENS_DAY,
  L_TOKENS_MONTH,
  L_USD_DAY,
  LEASE_SHORT,
  MODE_LEASE,
  MODE_LOCAL,
  monthEpoch,
  OK,
  type BudgetLimits,
} from "../../core/budget.js";
import { ConfigError, loadConfig } from "../../core/config.js";
import { prng } from "../../core/prng.js";
import { runThreads, workerMain } from "../support/threads.js";

const DAY = 86_400_000;
const NOW = Date.UTC(2026, 5, 15, 12);
const TODAY = Math.floor(NOW / DAY);
const MONTH = monthEpoch(NOW);
const TOK_DAY: BudgetLimits = { tokensPerDay: 1000, tokensPerMonth: 0, microsPerDay: 0, microsPerMonth: 0 };

function leased(now: () => number = () => NOW): Budgets {
  const b = new Budgets(Budgets.bufferFor(2), now);
  b.setMode(MODE_LEASE);
  b.openWindow(0, TODAY, MONTH);
  return b;
}

if (!isMainThread) {
  workerMain<{ sab: SharedArrayBuffer; iterations: number }, { admitted: number; charged: number }>((job, index) => {
    const b = new Budgets(job.sab, () => NOW);
    const rnd = prng(500 + index);
    let admitted = 0,
      charged = 0;
    for (let n = 0; n < job.iterations; n++) {
      const tok = 10 + Math.floor(rnd() * 40);
      if (b.reserve(0, TOK_DAY, tok, 0) !== OK) continue;
      admitted++;
      const used = Math.floor(tok * rnd());
      charged += used;
      b.release(0, tok, 0);
      b.settleLease(0, TOK_DAY, b.leaseDay, tok, 0, used, 0);
      b.charge(0, used, 0);
    }
    return { admitted, charged };
  });
} else {
  test("with nothing on lease a request is short (not 'used up') and asks for more, naming its size", () => {
    const b = leased();
    assert.equal(b.reserve(0, TOK_DAY, 120, 7), LEASE_SHORT);
    const n = b.takeNeed(0);
    assert.deepEqual([n.need, n.tok, n.mic], [true, 120, 7]);
    assert.equal(b.takeNeed(0).need, false, "reading the flag clears it");
    assert.equal(b.spend(0).reservedTokens, 0, "a refused reservation leaves nothing in flight");
    assert.equal(b.exhausted(0, TOK_DAY), OK, "before the body, a short lease does not refuse");
  });

  test("a grant admits up to what it holds; the unspent part comes back at settlement", () => {
    const b = leased();
    b.grant(0, L_TOKENS_DAY, 300);
    assert.equal(b.reserve(0, TOK_DAY, 200, 0), OK);
    assert.equal(b.leaseDay, TODAY);
    assert.equal(b.takeNeed(0).need, true, "what is left (100) would not fit the same request again: renew early");
    assert.equal(b.reserve(0, TOK_DAY, 150, 0), LEASE_SHORT);
    assert.deepEqual(b.held(0).avail, [100, 0, 0, 0]);
    b.settleLease(0, TOK_DAY, TODAY, 200, 0, 80, 0);
    assert.deepEqual(b.held(0).avail, [220, 0, 0, 0], "300 granted - 80 spent");
    assert.equal(b.reserve(0, TOK_DAY, 150, 0), OK);
  });

  test("all or nothing across limits: a short month puts back what the day gave", () => {
    const b = leased();
    const both: BudgetLimits = { tokensPerDay: 1000, tokensPerMonth: 5000, microsPerDay: 10_000, microsPerMonth: 0 };
    b.grant(0, L_TOKENS_DAY, 500);
    b.grant(0, L_TOKENS_MONTH, 50);
    b.grant(0, L_USD_DAY, 9000);
    assert.equal(b.reserve(0, both, 100, 1000), LEASE_SHORT);
    assert.deepEqual(b.held(0).avail, [500, 50, 9000, 0]);
  });

  test("a limit the fleet reported used up refuses with its name, before and after the body, while nothing of it is held", () => {
    const b = leased();
    b.setExhausted(0, 1 << L_TOKENS_DAY);
    assert.equal(b.exhausted(0, TOK_DAY), L_TOKENS_DAY);
    assert.equal(b.reserve(0, TOK_DAY, 10, 0), L_TOKENS_DAY);
    b.grant(0, L_TOKENS_DAY, 20);
    assert.equal(b.exhausted(0, TOK_DAY), OK, "what is still held can be spent");
    assert.equal(b.reserve(0, TOK_DAY, 10, 0), OK);
  });

  test("a new day drops the old day's lease, and a reservation of the old day settles nowhere", () => {
    let t = NOW;
    const b = leased(() => t);
    b.grant(0, L_TOKENS_DAY, 500);
    assert.equal(b.reserve(0, TOK_DAY, 100, 0), OK);
    const day = b.leaseDay;
    t = NOW + DAY; // midnight passed: the acceptor's check no longer uses yesterday's lease
    assert.equal(b.reserve(0, TOK_DAY, 10, 0), LEASE_SHORT);
    assert.deepEqual(b.openWindow(0, TODAY + 1, MONTH), [400, 0, 0, 0], "the old lease is handed back to be returned");
    b.settleLease(0, TOK_DAY, day, 100, 0, 0, 0);
    assert.deepEqual(b.held(0).avail, [0, 0, 0, 0]);
  });

  test("reclaim takes back at most what is held", () => {
    const b = leased();
    b.grant(0, L_TOKENS_DAY, 70);
    assert.equal(b.reclaim(0, L_TOKENS_DAY, 50), 50);
    assert.equal(b.reclaim(0, L_TOKENS_DAY, 50), 20);
    assert.equal(b.reclaim(0, L_TOKENS_DAY, 50), 0);
  });

  test("MODE_LOCAL is the per-replica check of one box (limit - spend), whatever the lease holds", () => {
    const b = leased();
    b.setMode(MODE_LOCAL);
    assert.equal(b.reserve(0, TOK_DAY, 900, 0), OK);
    assert.equal(b.leaseDay, -1, "not leased: settles without touching a lease");
    assert.equal(b.reserve(0, TOK_DAY, 200, 0), L_TOKENS_DAY);
  });

  test("the lease settings default to 100 ms, 5 s and 1/8, and a value out of range stops the start naming it", () => {
    const base = { ANTHROPIC_API_KEY: "sk-upstream-cfg-lease" };
    const c = loadConfig(base, undefined, 1);
    assert.deepEqual([c.budget_lease_ms, c.budget_lease_idle_ms, c.budget_lease_share], [100, 5000, 8]);
    for (const [name, bad] of [
      ["BUDGET_LEASE_MS", "5"],
      ["BUDGET_LEASE_IDLE_MS", "50"],
      ["BUDGET_LEASE_SHARE", "0"],
      ["BUDGET_LEASE_SHARE", "eight"],
    ] as const)
      assert.throws(
        () => loadConfig({ ...base, [name]: bad }, undefined, 1),
        (e: unknown) => e instanceof ConfigError && e.message.startsWith(name),
        `${name}=${bad}`,
      );
  });

  test("BUDGET_LEASE_WAIT_MS defaults to 1000 ms, 0 turns the wait off, and a value out of range stops the start naming it", () => {
    const base = { ANTHROPIC_API_KEY: "sk-upstream-cfg-lease" };
    assert.equal(loadConfig(base, undefined, 1).budget_lease_wait_ms, 1000);
    assert.equal(loadConfig({ ...base, BUDGET_LEASE_WAIT_MS: "0" }, undefined, 1).budget_lease_wait_ms, 0);
    for (const bad of ["10001", "-1", "soon"])
      assert.throws(
        () => loadConfig({ ...base, BUDGET_LEASE_WAIT_MS: bad }, undefined, 1),
        (e: unknown) => e instanceof ConfigError && e.message.startsWith("BUDGET_LEASE_WAIT_MS"),
        bad,
      );
  });

  test("parked requests are counted in their key's slot for the next grant, and parking rings the main thread's doorbell", async () => {
    const b = leased();
    b.parked(0, 1);
    b.parked(0, 1);
    assert.equal(b.takeNeed(0).parked, 2);
    b.parked(0, -1);
    assert.equal(b.takeNeed(0).parked, 1);
    const wait = (
      Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number): { async: boolean; value: Promise<string> } }
    ).waitAsync(b.i32, b.doorAt, b.doorbell());
    assert.equal(wait.async, true);
    b.ring();
    assert.equal(await wait.value, "ok", "the waiting main thread is woken");
    assert.equal(b.redisDown(), false);
    b.setRedisDown(true);
    assert.equal(b.redisDown(), true);
  });

  test("four threads on one leased slot never admit more than the grant, and spend stays within it", async () => {
    const b = leased();
    b.grant(0, L_TOKENS_DAY, 5000);
    const out = await runThreads<{ sab: SharedArrayBuffer; iterations: number }, { admitted: number; charged: number }>(
      new URL(import.meta.url),
      4,
      { sab: b.u32.buffer as SharedArrayBuffer, iterations: 20_000 },
    );
    const charged = out.reduce((a, r) => a + r.charged, 0);
    const admitted = out.reduce((a, r) => a + r.admitted, 0);
    assert.ok(admitted > 100, `threads admitted ${admitted}`);
    assert.ok(charged <= 5000, `charged ${charged} of a 5000-token lease`);
    assert.deepEqual(b.held(0).avail, [5000 - charged, 0, 0, 0], "what was not spent is held again");
    assert.equal(b.spend(0).reservedTokens, 0);
  });
}
