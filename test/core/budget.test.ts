import { test } from "node:test";
import assert from "node:assert/strict";
import {
  Budgets,
  estimateInputTokens,
  hasBudget,
  L_TOKENS_DAY,
  L_TOKENS_MONTH,
  L_USD_DAY,
  L_USD_MONTH,
  monthEpoch,
  nextMonthStart,
  OK,
  type BudgetLimits,
} from "../../core/budget.js";
import { KeyIndex } from "../../core/auth.js";
import { entryOf, modelAllowed, newKey, validateCreateKey } from "../../core/keys.js";

const NONE: BudgetLimits = { tokensPerDay: 0, tokensPerMonth: 0, microsPerDay: 0, microsPerMonth: 0 };

test("reserve counts its own reservation and refuses what would pass the limit", () => {
  const b = new Budgets(Budgets.bufferFor(4));
  const l = { ...NONE, tokensPerDay: 1000 };
  assert.equal(b.reserve(1, l, 600, 0), OK);
  assert.equal(b.reserve(1, l, 600, 0), L_TOKENS_DAY, "the second one does not fit beside the first");
  assert.equal(b.spend(1).reservedTokens, 600, "a refused reservation leaves nothing behind");
  b.release(1, 600, 0);
  b.charge(1, 100, 0);
  assert.equal(b.reserve(1, l, 900, 0), OK, "settled to the real usage: 100 + 900 fits");
  assert.equal(b.exhausted(1, l), L_TOKENS_DAY);
  assert.equal(b.exhausted(2, l), OK, "slots are independent");
});

test("each limit refuses by itself; micro-dollars and months count too", () => {
  const b = new Budgets(Budgets.bufferFor(1));
  b.charge(0, 500, 2_000_000);
  assert.equal(b.reserve(0, { ...NONE, tokensPerMonth: 500 }, 1, 0), L_TOKENS_MONTH);
  assert.equal(b.reserve(0, { ...NONE, microsPerDay: 2_000_000 }, 0, 1), L_USD_DAY);
  assert.equal(b.reserve(0, { ...NONE, microsPerMonth: 3_000_000 }, 0, 1_000_001), L_USD_MONTH);
  assert.equal(b.reserve(0, NONE, 1e9, 1e12), OK, "no limit, no refusal");
});

test("counters are 64-bit: past 2^32 they keep counting", () => {
  const b = new Budgets(Budgets.bufferFor(1));
  b.charge(0, 4_000_000_000, 4_000_000_000);
  b.charge(0, 4_000_000_000, 4_000_000_000);
  assert.equal(b.spend(0).monthTokens, 8_000_000_000);
  assert.equal(b.spend(0).dayMicros, 8_000_000_000);
});

test("UTC windows: a new day zeroes the day counters, a new month the month counters", () => {
  let now = Date.UTC(2026, 0, 31, 23, 59, 0);
  const sab = Budgets.bufferFor(1);
  const b = new Budgets(sab, () => now);
  b.charge(0, 100, 100);
  assert.equal(b.dayEndsAt, Date.UTC(2026, 1, 1));
  assert.equal(b.resetsAt(L_TOKENS_MONTH), Date.UTC(2026, 1, 1));
  now = Date.UTC(2026, 1, 1, 0, 0, 1);
  const s = b.spend(0);
  assert.equal(s.dayTokens, 0);
  assert.equal(s.monthTokens, 0);
  b.charge(0, 7, 7);
  now = Date.UTC(2026, 1, 2, 1);
  const other = new Budgets(sab, () => now); // another thread's view of the same buffer
  assert.equal(other.spend(0).dayTokens, 0);
  assert.equal(other.spend(0).monthTokens, 7);
  assert.equal(other.resetsAt(L_TOKENS_MONTH), Date.UTC(2026, 2, 1));
});

test("two Budgets views of one buffer share the reservations (real threads: budget-threads.test.ts)", () => {
  const sab = Budgets.bufferFor(1);
  const a = new Budgets(sab),
    c = new Budgets(sab);
  const l = { ...NONE, tokensPerDay: 100 };
  assert.equal(a.reserve(0, l, 60, 0), OK);
  assert.equal(c.reserve(0, l, 60, 0), L_TOKENS_DAY);
});

test("month limits read the month's spend, not the day's: yesterday's spend still counts", () => {
  let now = Date.UTC(2026, 2, 10, 12);
  const b = new Budgets(Budgets.bufferFor(1), () => now);
  b.charge(0, 800, 2_000_000);
  now = Date.UTC(2026, 2, 11, 12);
  assert.equal(b.spend(0).dayMicros, 0);
  assert.equal(b.reserve(0, { ...NONE, microsPerMonth: 3_000_000 }, 0, 1_500_000), L_USD_MONTH, "$2 spent this month + $1.5 > $3");
  assert.equal(b.reserve(0, { ...NONE, tokensPerMonth: 1000 }, 300, 0), L_TOKENS_MONTH, "800 this month + 300 > 1000");
  assert.equal(b.reserve(0, { ...NONE, tokensPerMonth: 1000 }, 200, 0), OK, "800 + 200 is exactly the month's 1000");
  assert.equal(b.reserve(0, { ...NONE, microsPerMonth: 3_000_000 }, 0, 1_000_000), OK, "$2 + $1 is exactly the month's $3");
  assert.equal(b.spend(0).reservedMicros, 1_000_000);
  b.release(0, 200, 1_000_000);
  assert.equal(
    b.reserve(0, { ...NONE, microsPerDay: 1_500_000, tokensPerDay: 300 }, 300, 1_500_000),
    OK,
    "the day's limits start from zero",
  );
});

test("limits are inclusive: exactly the limit fits, one more does not; exhausted means used up", () => {
  const b = new Budgets(Budgets.bufferFor(1));
  const l = { ...NONE, tokensPerDay: 1000, microsPerDay: 5000 };
  assert.equal(b.reserve(0, l, 1000, 0), OK, "exactly the token limit");
  assert.equal(b.exhausted(0, l), L_TOKENS_DAY, "fully reserved is used up");
  b.release(0, 1000, 0);
  b.charge(0, 999, 0);
  assert.equal(b.exhausted(0, l), OK, "one token left");
  assert.equal(b.reserve(0, l, 2, 0), L_TOKENS_DAY, "two do not fit");
  assert.equal(b.reserve(0, l, 1, 5000), OK, "the last token and exactly the USD limit");
  assert.equal(b.exhausted(0, l), L_TOKENS_DAY);
  b.release(0, 1, 0);
  assert.equal(b.exhausted(0, l), L_USD_DAY, "with tokens left, the USD reservation still uses the day up");
  assert.equal(b.resetsAt(L_USD_DAY), b.dayEndsAt);
  assert.equal(b.resetsAt(L_USD_MONTH), b.monthEndsAt);
});

test("a thread whose clock is still before midnight does not roll the new day back", () => {
  const sab = Budgets.bufferFor(1);
  let late = Date.UTC(2026, 3, 30, 23, 59, 59, 999);
  const ahead = new Budgets(sab, () => Date.UTC(2026, 4, 1, 0, 0, 0, 1));
  const behind = new Budgets(sab, () => late);
  ahead.charge(0, 50, 500);
  behind.charge(0, 7, 70); // lands in the window the slot is in: the new day and month
  const s = ahead.spend(0);
  assert.equal(s.dayTokens, 57, "the new day's counters were not zeroed");
  assert.equal(s.monthMicros, 570, "nor the new month's");
  late += 2;
  assert.equal(behind.spend(0).dayTokens, 57, "once its clock passes midnight, the same day");
});

test("windows turn at exactly midnight UTC and the first of the month; each reset names its window's end", () => {
  let now = Date.UTC(2026, 6, 14, 23, 59, 59, 999);
  const b = new Budgets(Budgets.bufferFor(1), () => now);
  b.charge(0, 10, 10);
  assert.equal(b.resetsAt(L_TOKENS_DAY), Date.UTC(2026, 6, 15));
  assert.equal(b.resetsAt(L_USD_DAY), Date.UTC(2026, 6, 15));
  assert.equal(b.resetsAt(L_TOKENS_MONTH), Date.UTC(2026, 7, 1));
  assert.equal(b.resetsAt(L_USD_MONTH), Date.UTC(2026, 7, 1));
  now = Date.UTC(2026, 6, 15);
  assert.equal(b.spend(0).dayTokens, 0, "at 00:00:00.000 it is the new day");
  assert.equal(b.spend(0).monthTokens, 10);
});

test("a new window zeroes both words of each 64-bit counter", () => {
  let now = Date.UTC(2026, 6, 31, 12);
  const sab = Budgets.bufferFor(2);
  const b = new Budgets(sab, () => now);
  b.charge(1, 5e9, 6e9);
  now = Date.UTC(2026, 7, 1, 12);
  assert.deepEqual(b.spend(1), { dayTokens: 0, dayMicros: 0, monthTokens: 0, monthMicros: 0, reservedTokens: 0, reservedMicros: 0 });
  b.charge(1, 5e9, 6e9);
  now = Date.UTC(2026, 7, 2, 12);
  const s = b.spend(1);
  assert.equal(s.dayMicros, 0, "a new day zeroes the day's micro-dollars");
  assert.equal(s.monthTokens, 5e9, "but not the month");
  assert.equal(s.monthMicros, 6e9);
});

test("seed adds the ledger's spend to the current windows; clear zeroes one slot", () => {
  const b = new Budgets(Budgets.bufferFor(3), () => Date.UTC(2026, 1, 3));
  b.seed(1, 10, 20, 30, 40);
  b.seed(1, 1, 2, 3, 4);
  b.charge(2, 5, 5);
  b.reserve(1, NONE, 7, 7);
  assert.deepEqual(b.spend(1), { dayTokens: 11, dayMicros: 22, monthTokens: 33, monthMicros: 44, reservedTokens: 7, reservedMicros: 7 });
  b.clear(1);
  assert.deepEqual(b.spend(1), { dayTokens: 0, dayMicros: 0, monthTokens: 0, monthMicros: 0, reservedTokens: 0, reservedMicros: 0 });
  assert.equal(b.spend(2).monthTokens, 5, "the next slot is untouched");
  assert.equal(b.spend(0).dayTokens, 0);
});

test("micro-dollars alone are charged; zero or negative usage charges nothing", () => {
  const b = new Budgets(Budgets.bufferFor(1), () => Date.UTC(2026, 1, 3));
  b.charge(0, 0, 1234);
  b.charge(0, -5, -5);
  assert.deepEqual(b.spend(0), { dayTokens: 0, dayMicros: 1234, monthTokens: 0, monthMicros: 1234, reservedTokens: 0, reservedMicros: 0 });
});

test("helpers: which keys have a budget, UTC month numbers, input token estimate", () => {
  assert.equal(hasBudget(NONE), false);
  for (const k of ["tokensPerDay", "tokensPerMonth", "microsPerDay", "microsPerMonth"] as const)
    assert.equal(hasBudget({ ...NONE, [k]: 1 }), true, k);
  assert.equal(monthEpoch(Date.UTC(1970, 0, 15)), 0);
  assert.equal(monthEpoch(Date.UTC(2026, 10, 30, 23, 59)), 56 * 12 + 10);
  assert.equal(nextMonthStart(Date.UTC(2026, 11, 31, 23)), Date.UTC(2027, 0, 1));
  assert.equal(estimateInputTokens(0), 0);
  assert.equal(estimateInputTokens(9), 3);
  assert.equal(estimateInputTokens(10), 4, "rounded up");
});

test("virtual keys join the KeyIndex by digest, and leave it when removed", () => {
  const idx = new KeyIndex(["static-key-123"], true);
  const { record, secret } = newKey({ name: "team", limits: { tokens_per_day: 10, requests_per_minute: 5 } }, new Date());
  assert.match(secret, /^sk-pc-[A-Za-z0-9_-]{43}$/);
  assert.ok(!JSON.stringify(record).includes(secret), "the record holds no secret");
  idx.put(record.digest, entryOf(record, 7, 100, 0));
  const e = idx.check(secret)!;
  assert.equal(e.id, record.id);
  assert.equal(e.index, 7);
  assert.equal(e.virtual!.budgeted, true);
  assert.deepEqual(e.virtual!.rate, { requestsPerMinute: 5, tokensPerMinute: 0 });
  idx.remove(record.id);
  assert.equal(idx.check(secret), null);
  assert.ok(idx.check("static-key-123"));
  assert.equal(new KeyIndex([], true).enabled, true, "with the admin API on, keys are required");
});

test("admin input is validated strictly; model lists allow exact names and prefixes", () => {
  assert.equal(validateCreateKey({ name: "x", limits: { usd_per_day: 5 } }).success, true);
  assert.equal(validateCreateKey({ name: "" }).success, false);
  assert.equal(validateCreateKey({ name: "x", extra: 1 }).success, false);
  assert.equal(validateCreateKey({ name: "x", limits: { tokens_per_day: -1 } }).success, false);
  assert.equal(validateCreateKey({ name: "x", limits: { tokens_per_day: 1.5 } }).success, false);
  assert.equal(modelAllowed(null, "anything"), true);
  assert.equal(modelAllowed(["claude-sonnet-*", "claude-opus-4-1"], "claude-sonnet-4-5"), true);
  assert.equal(modelAllowed(["claude-sonnet-*", "claude-opus-4-1"], "claude-opus-4-1-x"), false);
});
