import { test } from "node:test";
import assert from "node:assert/strict";
import { RateLimiter, type Limits } from "../../core/ratelimit.js";

const MIN = 60_000_000; // µs

/** A limiter on a fresh buffer whose clock the test moves (µs). */
function limiter(start = 5 * MIN): { rl: RateLimiter; at(us: number): void; advance(us: number): void } {
  let t = start;
  const rl = new RateLimiter(RateLimiter.bufferFor(4), { now: () => t });
  return { rl, at: (us) => void (t = us), advance: (us) => void (t += us) };
}

const rpm = (n: number): Limits => ({ requestsPerMinute: n, tokensPerMinute: 0 });
const tpm = (n: number): Limits => ({ requestsPerMinute: 0, tokensPerMinute: n });

test("a minute's allowance is the burst: 60 rpm admits 60 at once, refuses the 61st for about a second", () => {
  const { rl } = limiter();
  for (let n = 1; n <= 60; n++) {
    const v = rl.admit(0, rpm(60));
    assert.equal(v.ok, true, `request ${n}`);
    assert.equal(v.remaining, 60 - n, `remaining after request ${n}`);
  }
  const v = rl.admit(0, rpm(60));
  assert.equal(v.ok, false);
  assert.equal(v.limit, "requests");
  assert.equal(v.retryAfterMs, 1000);
  assert.equal(v.remaining, 0);
  assert.equal(v.resetMs, 60_000);
});

test("the allowance refills at the limit's rate, and not faster", () => {
  const { rl, advance } = limiter();
  for (let n = 0; n < 60; n++) rl.admit(0, rpm(60));
  advance(999_999);
  assert.equal(rl.admit(0, rpm(60)).ok, false, "1 µs short of one interval");
  advance(1);
  assert.equal(rl.admit(0, rpm(60)).ok, true, "exactly one interval later, one more request");
  assert.equal(rl.admit(0, rpm(60)).ok, false);
});

test("a key idle for 37 min, 50 min, 72 min or 30 days gets its full allowance back", () => {
  for (const idle of [37 * MIN, 50 * MIN, 72 * MIN, 30 * 24 * 60 * MIN]) {
    const { rl, advance } = limiter();
    assert.equal(rl.admit(0, rpm(60)).ok, true);
    advance(idle);
    const v = rl.admit(0, rpm(60));
    assert.equal(v.ok, true, `idle ${idle / MIN} min: admitted`);
    assert.equal(v.remaining, 59, `idle ${idle / MIN} min: the bucket was full`);
    assert.equal(v.resetMs, 1000);
  }
});

test("an exhausted key idle across the 32-bit wrap is still admitted, at any process age", () => {
  for (const start of [0, 71 * MIN, 40 * 24 * 60 * MIN]) {
    for (const idle of [36 * MIN, 71 * MIN + 30_000_000, 143 * MIN]) {
      const { rl, at } = limiter(start);
      for (let n = 0; n < 60; n++) rl.admit(1, rpm(60));
      at(start + idle);
      assert.equal(rl.admit(1, rpm(60)).remaining, 59, `start ${start / MIN} min, idle ${idle / MIN} min`);
    }
  }
});

test("token debt refuses admission until paid back, and is capped at 30 minutes", () => {
  const { rl, advance } = limiter();
  const l = tpm(1000);
  assert.equal(rl.admit(0, l).ok, true, "no debt yet");
  rl.chargeTokens(0, l, 1500); // 1.5 min of allowance: 30 s beyond the burst
  const v = rl.admit(0, l);
  assert.equal(v.ok, false);
  assert.equal(v.limit, "tokens");
  assert.equal(v.retryAfterMs, 30_000);
  assert.equal(v.resetMs, 90_000);
  advance(30 * 1_000_000);
  assert.equal(rl.admit(0, l).ok, true, "paid back after 30 s");
  rl.chargeTokens(0, l, 1_000_000_000);
  const capped = rl.admit(0, l);
  assert.equal(capped.ok, false);
  assert.equal(capped.retryAfterMs, 29 * 60_000, "30 min of debt minus the minute of burst");
  advance(29 * MIN);
  assert.equal(rl.admit(0, l).ok, true, "the capped debt is paid after 29 min");
});

test("token debt charged before a long idle does not come back through the wrap", () => {
  for (const idle of [37 * MIN, 50 * MIN, 72 * MIN, 30 * 24 * 60 * MIN]) {
    const { rl, advance } = limiter();
    const l = tpm(1000);
    rl.chargeTokens(0, l, 1_000_000_000); // 30 min of debt
    advance(idle);
    const v = rl.admit(0, l);
    assert.equal(v.ok, true, `idle ${idle / MIN} min`);
    assert.equal(v.remaining, 1000, `idle ${idle / MIN} min: full bucket`);
    rl.chargeTokens(0, l, 500);
    assert.equal(rl.admit(0, l).remaining, 500, `idle ${idle / MIN} min: a new charge counts from now`);
  }
});

test("a token check does not charge; requests and tokens are separate buckets per key", () => {
  const { rl } = limiter();
  const both: Limits = { requestsPerMinute: 2, tokensPerMinute: 100 };
  assert.equal(rl.admit(0, both).remaining, 1, "requests bucket: one used");
  rl.chargeTokens(0, both, 100);
  assert.equal(rl.admit(0, both).ok, true, "exactly the burst in tokens is not a debt");
  rl.chargeTokens(0, both, 1);
  const v = rl.admit(0, both);
  assert.equal(v.ok, false);
  assert.equal(v.limit, "tokens");
  assert.equal(rl.admit(1, both).ok, true, "another key is untouched");
  assert.equal(rl.admit(2, { requestsPerMinute: 0, tokensPerMinute: 0 }).ok, true, "0 = unlimited");
  rl.chargeTokens(3, tpm(0), 1e9);
  rl.chargeTokens(3, tpm(10), 0);
  assert.equal(rl.admit(3, tpm(10)).remaining, 10, "no limit or no tokens: nothing charged");
});

test("high limits are exact: 1,000,000 rpm admits a full million in one minute", () => {
  const { rl, advance } = limiter();
  const l = rpm(1_000_000);
  let ok = 0;
  for (let n = 0; n < 1_000_001; n++) if (rl.admit(0, l).ok) ok++;
  assert.equal(ok, 1_000_000);
  advance(60);
  assert.equal(rl.admit(0, l).ok, true, "60 µs later, one more");
});

test("a debt written 30 minutes ago is still read (the staleness bound is more than 30 minutes)", () => {
  const { rl, at } = limiter();
  const l = tpm(1000); // 60 ms per token
  at(10 * MIN + 59_000_000);
  rl.chargeTokens(0, l, 1_000_000_000); // capped: paid back at 40:59
  at(40 * MIN + 10_000_000);
  const v = rl.admit(0, l);
  assert.equal(v.ok, true, "49 s of debt is within the minute of burst");
  assert.equal(v.remaining, 183, "11 s of allowance left, not a full bucket");
  assert.equal(v.resetMs, 49_000);
});

test("an admitted request names no limit; negative or zero usage changes nothing", () => {
  const { rl } = limiter();
  const l: Limits = { requestsPerMinute: 10, tokensPerMinute: 1000 };
  const v = rl.admit(0, l);
  assert.equal(v.ok, true);
  assert.equal(v.limit, null);
  rl.chargeTokens(0, l, 1500);
  assert.equal(rl.admit(0, l).limit, "tokens");
  rl.chargeTokens(0, l, -1500);
  rl.chargeTokens(0, l, 0);
  assert.equal(rl.admit(0, l).retryAfterMs, 30_000, "the debt is still 30 s past the burst");
});

test("token charges land on their own key", () => {
  const { rl } = limiter();
  rl.chargeTokens(1, tpm(100), 100);
  assert.equal(rl.admit(1, tpm(100)).remaining, 0);
  assert.equal(rl.admit(0, tpm(100)).remaining, 100);
  assert.equal(rl.admit(2, tpm(100)).remaining, 100);
});

test("two limiters on one buffer (two threads) share one bucket", () => {
  let t = 7 * MIN;
  const sab = RateLimiter.bufferFor(1);
  const a = new RateLimiter(sab, { now: () => t }),
    b = new RateLimiter(sab, { now: () => t });
  assert.equal(a.admit(0, rpm(2)).ok, true);
  assert.equal(b.admit(0, rpm(2)).ok, true);
  assert.equal(a.admit(0, rpm(2)).ok, false);
  t += 50 * MIN;
  assert.equal(b.admit(0, rpm(2)).remaining, 1);
});
