/**
 * The budget lease scripts (server/fleet/budget-lease-scripts.ts) against a real redis-server:
 * grants shrink with what is left, concurrent take-lease calls from several clients never pass
 * the limit, return-unused gives back, and counters Redis lost wait for their rebuild.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import {
  adjust,
  boot,
  type Four,
  type LeaseRedis,
  rebuild,
  take,
  windowOf,
  withLeaseScripts,
} from "../../server/fleet/budget-lease-scripts.js";
import { startRedis, type RedisHandle } from "../support/redis.js";

const NOW = Date.UTC(2026, 5, 15, 12);
const CAP = 0x3fffffff;
let redis: RedisHandle;
const clients: LeaseRedis[] = [];

before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 5; i++) clients.push(withLeaseScripts(new Redis(redis.url)));
});
after(async () => {
  for (const c of clients) c.disconnect();
  await redis?.stop();
});

const tokDay = (n: number): Four => [n, 0, 0, 0];

/** A key Redis has no counters for waits for its rebuild from the ledger: here an empty one. */
async function ready(c: LeaseRedis, keyId: string): Promise<ReturnType<typeof windowOf>> {
  const w = windowOf(keyId, NOW);
  assert.equal((await take(c, w, "e1", 1, tokDay(1), tokDay(0), tokDay(0), CAP))[0], 2, "a key without counters waits for its rebuild");
  assert.equal(await rebuild(c, w.dayKey, 0, 0, 0), 1);
  assert.equal(await rebuild(c, w.monthKey, 0, 0, 0), 1);
  return w;
}

test("a grant takes at most 1/share of what is left, so grants shrink as the budget runs out, but never below one request", async () => {
  const w = await ready(clients[0]!, "key_shrink");
  const grants: number[] = [];
  for (let i = 0; i < 12; i++) {
    const r = await take(clients[0]!, w, "e1", 8, tokDay(8000), tokDay(100), tokDay(1_000_000), CAP);
    assert.equal(r[0], 0, `take ${i} granted`);
    grants.push(Number(r[2]));
  }
  let left = 8000;
  for (const g of grants) {
    assert.equal(g, Math.max(Math.floor(left / 8), 100), `grant of ${g} with ${left} left`);
    left -= g;
  }
  assert.ok(grants[0]! > grants[5]!, `the grants shrank: ${grants.join(", ")}`);
  assert.equal(Number(await clients[0]!.hget(w.dayKey, "t")), 8000 - left);
});

test("a remainder below what the waiting request needs grants nothing and names the limit", async () => {
  const w = await ready(clients[0]!, "key_out");
  assert.deepEqual((await take(clients[0]!, w, "e1", 1, tokDay(250), tokDay(200), tokDay(200), CAP)).slice(0, 3), [0, "e1", 200]);
  const r = await take(clients[0]!, w, "e1", 1, tokDay(250), tokDay(60), tokDay(60), CAP);
  assert.deepEqual(r, [1, "e1", 0, 50]);
  assert.equal(Number(await clients[0]!.hget(w.dayKey, "t")), 200, "nothing granted");
});

test("five clients taking leases at once never pass the limit, and the counter is the sum of their grants", async () => {
  const w = await ready(clients[0]!, "key_race");
  const limits: Four = [40_000, 100_000, 0, 0];
  const got = await Promise.all(
    clients.map(async (c, i) => {
      const sum = [0, 0];
      for (let n = 0; ; n++) {
        const need = 10 + ((n * 7 + i * 13) % 90);
        const r = await take(c, w, "e1", 8, limits, [need, need, 0, 0], [need * 20, need * 20, 0, 0], CAP);
        if (r[0] !== 0) return sum;
        sum[0] += Number(r[2]);
        sum[1] += Number(r[3]);
      }
    }),
  );
  const day = got.reduce((a, b) => a + b[0]!, 0),
    month = got.reduce((a, b) => a + b[1]!, 0);
  assert.ok(day <= 40_000, `granted ${day} of 40000`);
  assert.ok(day > 40_000 - 100, `the fleet could use nearly all of it: ${day}`);
  assert.equal(Number(await clients[0]!.hget(w.dayKey, "t")), day);
  assert.equal(Number(await clients[0]!.hget(w.monthKey, "t")), month);
});

test("return-unused gives back; under another epoch (the counters were lost since) it changes nothing", async () => {
  const w = await ready(clients[1]!, "key_return");
  await take(clients[1]!, w, "e1", 1, tokDay(1000), tokDay(600), tokDay(600), CAP);
  assert.deepEqual(await adjust(clients[1]!, w, "x", "e1", false, tokDay(250)), [0, "e1"]);
  assert.equal(Number(await clients[1]!.hget(w.dayKey, "t")), 350);
  assert.deepEqual(await adjust(clients[1]!, w, "x", "other", false, tokDay(250)), [3, "e1"]);
  assert.equal(Number(await clients[1]!.hget(w.dayKey, "t")), 350);
  await adjust(clients[1]!, w, "x", "e1", false, tokDay(10_000));
  assert.equal(Number(await clients[1]!.hget(w.dayKey, "t")), 0, "never below zero");
});

test("counters lost with the epoch wait for the ledger: no grant until the rebuild, which adds the ledger's spend once", async () => {
  const w = windowOf("key_lost", NOW);
  const c = clients[2]!;
  const before = await boot(c);
  assert.equal((await boot(c)).boot, before.boot, "the boot marker stays while Redis keeps its data");
  // No epoch (Redis was emptied, or the key is new): the window waits for its rebuild.
  const r = await take(c, w, "e2", 8, tokDay(5000), tokDay(10), tokDay(100), CAP);
  assert.equal(r[0], 2);
  await adjust(c, w, "e3", "", true, tokDay(300)); // a replica re-registers what it holds
  assert.equal(await rebuild(c, w.dayKey, 60_000, 1200, 0), -1, "too early: replicas may still re-register or flush rows");
  assert.equal(await rebuild(c, w.dayKey, 0, 1200, 0), 1);
  assert.equal(await rebuild(c, w.dayKey, 0, 1200, 0), 0, "a second replica's rebuild adds nothing");
  assert.equal(await rebuild(c, w.monthKey, 0, 1200, 0), 1);
  assert.equal(Number(await c.hget(w.dayKey, "t")), 1500, "ledger spend + what the replica holds");
  const g = await take(c, w, "e4", 1, tokDay(5000), tokDay(10), tokDay(100), CAP);
  assert.deepEqual(g.slice(0, 3), [0, "e2", 100], "granted under the epoch set when the counters were recreated");
});

test("a new window of a key whose counters Redis kept starts at 0 at once", async () => {
  const today = windowOf("key_new", NOW);
  await take(clients[3]!, today, "e5", 8, tokDay(800), tokDay(10), tokDay(50), CAP); // creates the epoch (pending)
  await rebuild(clients[3]!, today.dayKey, 0, 0, 0);
  await rebuild(clients[3]!, today.monthKey, 0, 0, 0);
  const tomorrow = windowOf("key_new", NOW + 86_400_000);
  const r = await take(clients[3]!, tomorrow, "e6", 8, tokDay(800), tokDay(10), tokDay(50), CAP);
  assert.deepEqual(r.slice(0, 3), [0, "e5", 50]);
  assert.ok((await clients[3]!.pttl(tomorrow.dayKey)) > 86_400_000, "the window expires after its end plus a margin");
});
