/**
 * The response cache's Redis tier (REDIS_URL, docs/cache.md) with a real redis-server started
 * here on a free port: two gateway replicas see each other's entries; Redis killed mid-run
 * degrades both to their memory tier with no failed request and a metric that says so; when
 * Redis is back, entries are shared again.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { startRedis, type RedisHandle } from "../support/redis.js";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { freePort } from "../support/free-port.js";
import { until } from "../support/wait.js";

const KEY = "sk-cache-redis-key-a";

let mock: MockHandle;
let redis: RedisHandle;
let redisPort: number;
let a: Gateway;
let b: Gateway;
before(async () => {
  mock = await startMock(["--record"]);
  redisPort = await freePort();
  redis = await startRedis(redisPort);
  const env = {
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-redis",
    MODEL_PROVIDER: "anthropic",
    GATEWAY_API_KEYS: KEY,
    RETRY_MAX_ATTEMPTS: "1",
    CACHE_ENABLED: "true",
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
  };
  [a, b] = await Promise.all([startGateway(env), startGateway(env)]);
  await Promise.all(
    [a, b].map((g) => until("the cache's Redis connection", async () => ((await metric(g, "cache_redis_up")) === 1 ? true : undefined))),
  );
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop()]);
  await redis?.stop();
  await mock?.stop();
});

let n = 0;
const prompt = (what: string) => `redis cache ${what} ${++n} ${process.pid}`;
const body = (text: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 64, temperature: 0, messages: [{ role: "user", content: text }], ...extra });

async function calls(text: string): Promise<number> {
  const all = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as { url: string; body: string }[];
  return all.filter((r) => r.url.startsWith("/v1/messages") && r.body.includes(text)).length;
}

async function post(gw: Gateway, b: string): Promise<{ status: number; cache: string | null; text: string }> {
  const r = await fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY, "anthropic-version": "2023-06-01" },
    body: b,
  });
  return { status: r.status, cache: r.headers.get("x-portcullis-cache"), text: await r.text() };
}

async function metric(gw: Gateway, name: string): Promise<number> {
  const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
  const m = new RegExp(`^${name} (\\d+)$`, "m").exec(text);
  assert.ok(m, `${name} is exported`);
  return Number(m[1]);
}

/** Keys in Redis now. */
function dbsize(): number {
  const r = spawnSync("redis-cli", ["-p", String(redisPort), "dbsize"], { encoding: "utf8" });
  assert.equal(r.status, 0, `redis-cli: ${r.stderr}`);
  return Number(r.stdout.trim());
}

/** A store is fire-and-forget: wait until Redis holds one more entry than `was`. */
async function stored(was: number): Promise<void> {
  await until("the entry to reach Redis", () => (dbsize() > was ? true : undefined));
}

test("two replicas share entries through Redis: JSON and SSE stored on one are hits on the other", async () => {
  for (const stream of [false, true]) {
    const p = prompt(stream ? "sse" : "json");
    const req = body(p, { stream });
    const was = dbsize();
    const first = await post(a, req);
    assert.equal(first.status, 200);
    assert.equal(first.cache, "miss");
    await stored(was);
    const hit = await post(b, req);
    assert.equal(hit.cache, "hit", "the other replica's first request is a hit");
    assert.equal(hit.text, first.text, "the same bytes on the other replica");
    assert.equal(await calls(p), 1, "one upstream call served both replicas");
  }
});

test("Redis killed mid-run: no request fails, each replica serves from memory, the outage is in the metrics, and sharing resumes when Redis is back", async () => {
  const known = body(prompt("before-outage"));
  const was = dbsize();
  await post(a, known);
  await stored(was);
  assert.equal((await post(b, known)).cache, "hit"); // b holds it in its memory tier now
  await redis.stop();
  await until("cache_redis_up 0 on both replicas", async () =>
    (await metric(a, "cache_redis_up")) === 0 && (await metric(b, "cache_redis_up")) === 0 ? true : undefined,
  );

  assert.equal((await post(b, known)).cache, "hit", "the memory tier still serves");
  const p = prompt("during-outage");
  const req = body(p);
  const r1 = await post(a, req);
  assert.equal(r1.status, 200, r1.text);
  assert.equal(r1.cache, "miss");
  const r2 = await post(a, req);
  assert.equal(r2.status, 200);
  assert.equal(r2.cache, "hit", "stored in memory while Redis is down");
  const r3 = await post(b, req);
  assert.equal(r3.status, 200, "the other replica answers too, from the upstream");
  assert.equal(r3.cache, "miss");
  assert.ok((await metric(a, "cache_redis_errors_total")) > 0, "the failed Redis reads and writes are counted");

  redis = await startRedis(redisPort);
  await until(
    "cache_redis_up 1 again",
    async () => ((await metric(a, "cache_redis_up")) === 1 && (await metric(b, "cache_redis_up")) === 1 ? true : undefined),
    15_000,
  );
  const again = body(prompt("after-outage"));
  const empty = dbsize();
  assert.equal((await post(a, again)).cache, "miss");
  await stored(empty);
  assert.equal((await post(b, again)).cache, "hit", "shared again");
});
