/**
 * Lease mode of the shared-memory limiter (core/ratelimit.ts), as fleet rate limits use it:
 * admission spends units the main thread granted, overdraws a little while the fleet (as
 * mirrored) has room, and refuses with the fleet's retry-after and reset otherwise. The clock
 * is the test's, so every number is exact.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { leaseCap, leaseState, RateLeaseSlots, RateLimiter, renderLeasePrometheus, type Limits } from "../../core/ratelimit.js";

const MIN = 60_000_000; // µs
const rpm = (n: number): Limits => ({ requestsPerMinute: n, tokensPerMinute: 0 });
const tpm = (n: number): Limits => ({ requestsPerMinute: 0, tokensPerMinute: n });

function setup(): { rl: RateLimiter; slots: RateLeaseSlots; sab: SharedArrayBuffer; advance(us: number): void } {
  let t = 5 * MIN;
  const clock = { now: () => t };
  const sab = RateLimiter.bufferFor(4);
  return { rl: new RateLimiter(sab, clock), slots: new RateLeaseSlots(sab, clock), sab, advance: (us) => void (t += us) };
}

test("a lease is spent one request at a time, and only its units while the fleet bucket is full", () => {
  const { rl, slots } = setup();
  slots.setMode(0, true);
  slots.mirrorRequests(0, MIN); // the fleet's burst is used up
  slots.grant(0, 3);
  for (let n = 0; n < 3; n++) assert.equal(rl.admit(0, rpm(120)).ok, true, `leased unit ${n + 1}`);
  assert.equal(slots.needed(0), false, "no need raised while units were left");
  const v = rl.admit(0, rpm(120));
  assert.equal(v.ok, false);
  assert.equal(v.limit, "requests");
  assert.equal(v.retryAfterMs, 500, "one interval of the fleet's 120 rpm");
  assert.equal(v.resetMs, 60_000, "the fleet bucket refills in a minute");
  assert.equal(slots.needed(0), true, "the empty lease asked the main thread for more");
  assert.equal(slots.lease(0), 0);
});

test("with an empty lease a replica overdraws up to the cap while the mirror shows room, then waits", () => {
  const { rl, slots, advance } = setup();
  slots.setMode(1, true);
  const cap = leaseCap(120);
  assert.equal(cap, 4);
  for (let n = 0; n < cap; n++) assert.equal(rl.admit(1, rpm(120)).ok, true, `overdraft ${n + 1}`);
  assert.equal(slots.lease(1), -cap, "owed to the fleet, charged at the next renewal");
  const v = rl.admit(1, rpm(120));
  assert.equal(v.ok, false, "the overdraft is capped");
  assert.equal(v.retryAfterMs, 500);
  assert.equal(slots.reclaim(1), 0, "nothing to give back while overdrawn");
  slots.grant(1, cap + 2); // the renewal: the debt charged, two new units
  advance(1);
  assert.equal(rl.admit(1, rpm(120)).ok, true);
  assert.equal(rl.admit(1, rpm(120)).ok, true);
  assert.equal(slots.lease(1), 0);
});

test("the overdraft counts against the mirrored room: one unit left in the fleet admits one", () => {
  const { rl, slots } = setup();
  slots.setMode(0, true);
  slots.mirrorRequests(0, MIN - 500_000); // 120 rpm: exactly one interval of room
  assert.equal(rl.admit(0, rpm(120)).ok, true);
  const v = rl.admit(0, rpm(120));
  assert.equal(v.ok, false);
  assert.equal(v.retryAfterMs, 500);
});

test("unused units are reclaimed whole; lease mode off returns to the local GCRA from the fleet's state", () => {
  const { rl, slots } = setup();
  slots.setMode(2, true);
  slots.grant(2, 5);
  assert.equal(rl.admit(2, rpm(60)).ok, true);
  assert.equal(slots.reclaim(2), 4);
  assert.equal(slots.lease(2), 0);
  slots.mirrorRequests(2, MIN - 2_000_000); // two seconds of room at 60 rpm
  slots.setMode(2, false);
  assert.equal(rl.admit(2, rpm(60)).ok, true);
  assert.equal(rl.admit(2, rpm(60)).ok, true);
  assert.equal(rl.admit(2, rpm(60)).ok, false, "the local bucket starts where the fleet was");
});

test("lease mode reports tokens for the fleet and takes on the fleet's debt, never lowering its own", () => {
  const { rl, slots } = setup();
  slots.setMode(3, true);
  rl.chargeTokens(3, tpm(1000), 300);
  rl.chargeTokens(3, tpm(1000), 200);
  assert.equal(slots.drainTokens(3), 500);
  assert.equal(slots.drainTokens(3), 0, "drained once");
  assert.equal(rl.admit(3, tpm(1000)).remaining, 500);
  slots.mirrorTokens(3, 10_000_000); // the fleet is less far ahead than this replica: no change
  assert.equal(rl.admit(3, tpm(1000)).remaining, 500);
  slots.mirrorTokens(3, 90_000_000); // other replicas spent: 30 s past the burst
  const v = rl.admit(3, tpm(1000));
  assert.equal(v.ok, false);
  assert.equal(v.limit, "tokens");
  assert.equal(v.retryAfterMs, 30_000);
  slots.setMode(3, false);
  rl.chargeTokens(3, tpm(1000), 100);
  assert.equal(slots.drainTokens(3), 0, "per-replica mode reports nothing");
});

test("the header: nothing rendered on one box; configured, Redis up or down, counters", () => {
  const { rl, slots, sab } = setup();
  assert.equal(renderLeasePrometheus(sab), "");
  assert.equal(rl.fleetWide(), false);
  slots.configure();
  assert.equal(rl.fleetWide(), false, "configured but Redis not up yet");
  slots.setUp(true);
  slots.counted(3, 1);
  assert.equal(rl.fleetWide(), true);
  assert.deepEqual(leaseState(sab), { on: true, up: true, renewals: 3, failures: 1 });
  assert.match(renderLeasePrometheus(sab), /^ratelimit_lease_redis_up 1$/m);
  assert.match(renderLeasePrometheus(sab), /^ratelimit_lease_renewals_total 3$/m);
  assert.match(renderLeasePrometheus(sab), /^ratelimit_lease_failures_total 1$/m);
  slots.setUp(false);
  assert.equal(rl.fleetWide(), false);
});
