/**
 * One rate-limit bucket hammered by real threads with the clock stopped, so the exact
 * totals are known: no thread's CAS may be lost (admitting more than the burst, or
 * dropping a token charge).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { isMainThread } from "node:worker_threads";
import { RateLeaseSlots, RateLimiter } from "../../core/ratelimit.js";
import { runThreads, workerMain } from "../support/threads.js";

const clock = { now: () => 17 * 60_000_000 }; // stopped (µs)

interface Job {
  kind: "admit" | "charge" | "lease";
  sab: SharedArrayBuffer;
  n: number;
}

if (!isMainThread) {
  workerMain<Job, number>((job) => {
    const rl = new RateLimiter(job.sab, clock);
    let ok = 0;
    for (let i = 0; i < job.n; i++) {
      if (job.kind !== "charge") ok += rl.admit(0, { requestsPerMinute: 10_000, tokensPerMinute: 0 }).ok ? 1 : 0;
      else rl.chargeTokens(0, { requestsPerMinute: 0, tokensPerMinute: 60_000_000 }, 1);
    }
    return ok;
  });
} else {
  test("four threads racing for one bucket admit exactly the burst, not one more", async () => {
    const sab = RateLimiter.bufferFor(1);
    const admitted = await runThreads<Job, number>(new URL(import.meta.url), 4, { kind: "admit", sab, n: 5000 });
    assert.equal(
      admitted.reduce((a, n) => a + n, 0),
      10_000,
    );
  });

  test("four threads charging tokens at once: every charge lands", async () => {
    const sab = RateLimiter.bufferFor(1);
    await runThreads<Job, number>(new URL(import.meta.url), 4, { kind: "charge", sab, n: 10_000 });
    const v = new RateLimiter(sab, clock).admit(0, { requestsPerMinute: 0, tokensPerMinute: 60_000_000 });
    assert.equal(v.ok, true);
    assert.equal(v.remaining, 60_000_000 - 40_000, "40,000 tokens charged, 1 µs each");
    assert.equal(v.resetMs, 40);
  });

  test("lease mode: four threads racing for one key's lease spend exactly its units while the fleet is full", async () => {
    const sab = RateLimiter.bufferFor(1);
    const slots = new RateLeaseSlots(sab, clock);
    slots.setMode(0, true);
    slots.mirrorRequests(0, 60_000_000); // the fleet's burst is used up: no overdraft
    slots.grant(0, 10_000);
    const admitted = await runThreads<Job, number>(new URL(import.meta.url), 4, { kind: "lease", sab, n: 5000 });
    assert.equal(
      admitted.reduce((a, n) => a + n, 0),
      10_000,
    );
    assert.equal(slots.lease(0), 0);
    assert.equal(slots.needed(0), true);
  });
}
