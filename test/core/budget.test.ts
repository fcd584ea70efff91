import { test } from "node:test";
import assert from "node:assert/strict";
import { Budgets, L_TOKENS_DAY, L_TOKENS_MONTH, L_USD_DAY, L_USD_MONTH, OK, type BudgetLimits } from "../../core/budget.js";
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

test("two views of one buffer (two threads) share the reservations", () => {
  const sab = Budgets.bufferFor(1);
  const a = new Budgets(sab), c = new Budgets(sab);
  const l = { ...NONE, tokensPerDay: 100 };
  assert.equal(a.reserve(0, l, 60, 0), OK);
  assert.equal(c.reserve(0, l, 60, 0), L_TOKENS_DAY);
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
