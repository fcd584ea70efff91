/**
 * The Lua scripts of fleet rate limits (server/fleet/rate-lease-lua.ts) against a real
 * redis-server: concurrent take-lease calls from several connections never grant more than
 * the burst; return-unused moves the TAT back but never before Redis's now; overdrafts and
 * token reports put the bucket in debt, capped at 30 minutes.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { bucketKey, RateScripts } from "../../server/fleet/rate-lease-lua.js";
import { startRedis, type RedisHandle } from "../support/redis.js";

let redis: RedisHandle;
const clients: Redis[] = [];

before(async () => {
  redis = await startRedis();
  for (let i = 0; i < 5; i++) clients.push(new Redis(redis.url, { maxRetriesPerRequest: 1 }));
});
after(async () => {
  for (const c of clients) c.disconnect();
  await redis?.stop();
});

/** Redis's clock, µs (the scripts' time). */
async function redisNow(c: Redis): Promise<number> {
  const [s, us] = await c.time();
  return Number(s) * 1_000_000 + Number(us);
}

test("five connections racing for one 60 rpm bucket are granted exactly the burst, plus at most what refilled meanwhile", async () => {
  const t0 = await redisNow(clients[0]!);
  const grants = await Promise.all(
    clients.flatMap((c) => Array.from({ length: 20 }, () => new RateScripts(c).takeLease("race", 60, 3, 0).then(([k]) => k))),
  );
  const t1 = await redisNow(clients[0]!);
  const total = grants.reduce((a, k) => a + k, 0);
  const refilled = Math.floor((t1 - t0) / 1_000_000); // one unit a second
  assert.ok(total >= 60 && total <= 60 + refilled, `granted ${total} over ${t1 - t0} µs`);
  const [k, ahead] = await new RateScripts(clients[1]!).takeLease("race", 60, 3, 0);
  assert.ok(k <= 1, "the bucket is spent");
  assert.ok(ahead > 58_000_000 && ahead <= 60_000_000, `TAT ${ahead} µs ahead: a minute's burst`);
});

test("return-unused moves the TAT back by the units returned, and never before now", async () => {
  const s = new RateScripts(clients[2]!);
  const [k, ahead] = await s.takeLease("give", 60, 10, 0);
  assert.equal(k, 10);
  assert.ok(ahead > 9_900_000 && ahead <= 10_000_000, `ten units of 1 s: ${ahead}`);
  const back = await s.returnUnused("give", 60, 4);
  assert.ok(back > 5_900_000 && back <= 6_000_000, `four given back: ${back}`);
  const before = await redisNow(clients[2]!);
  assert.equal(await s.returnUnused("give", 60, 1000), 0, "far more than was taken: back to now, not before");
  const after = await redisNow(clients[2]!);
  const tat = Number(await clients[2]!.get(bucketKey("give", "req")));
  assert.ok(tat >= before && tat <= after, `the TAT is now (${before}..${after}), not earlier: ${tat}`);
  assert.equal(await s.returnUnused("never-taken", 60, 5), 0, "a bucket that does not exist stays absent");
  assert.equal(await clients[2]!.exists(bucketKey("never-taken", "req")), 0);
});

test("an overdraft is charged even past the burst, and the bucket then grants nothing until it is paid", async () => {
  const s = new RateScripts(clients[3]!);
  assert.equal((await s.takeLease("debt", 60, 60, 0))[0], 60);
  const [k, ahead] = await s.takeLease("debt", 60, 5, 3);
  assert.equal(k, 0);
  assert.ok(ahead > 62_900_000 && ahead <= 63_000_000, `three units past the burst: ${ahead}`);
  assert.equal((await s.takeLease("debt", 60, 5, 0))[0], 0);
});

test("token reports accumulate in the tokens bucket, capped at 30 minutes ahead; 0 only reads", async () => {
  const s = new RateScripts(clients[4]!);
  const a = await s.reportSpend("tok", 1000, 500);
  assert.ok(a > 29_900_000 && a <= 30_000_000, `500 tokens at 1000/min: ${a}`);
  const b = await s.reportSpend("tok", 1000, 0);
  assert.ok(b <= a && b > 29_000_000, "a read charges nothing");
  const c = await s.reportSpend("tok", 1000, 1_000_000_000);
  assert.ok(c > 1_799_000_000 && c <= 1_800_000_000, `capped at 30 min: ${c}`);
  assert.equal(await clients[4]!.exists(bucketKey("tok", "tok")), 1, "under portcullis:{tok}:rl:tok (one hash slot)");
  assert.equal(bucketKey("key_1", "req"), "portcullis:{key_1}:rl:req");
});
