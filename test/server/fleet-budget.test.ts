/**
 * Fleet budgets on Redis leases end to end (docs/fleet.md "Budgets across the fleet"): three
 * gateway processes (BUDGET_FAIL_MODE=open) and a fourth (closed) on one throw-away PostgreSQL
 * and one redis-server, with the project's mock upstream. Concurrent load spread over the
 * replicas never charges a key past its budget; Redis killed mid-run: open keeps serving,
 * closed answers 503 once its lease is spent; Redis restarted empty: the counters are rebuilt,
 * and after the replicas returned their leases at shutdown they match the ledger's spend.
 *
 * A replica whose lease is short parks the request while its main thread renews the lease
 * (server/fleet/budget-park.ts) and answers 503 with retry-after only past BUDGET_LEASE_WAIT_MS;
 * a client here does what the Anthropic SDKs do with that 503 (retry), and the count is reported.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { Redis } from "ioredis";
import type { MockHandle } from "../support/spawn-mock.js";
import { adminCall, startFleetStores, type FleetStores } from "../support/fleet.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import type { PgHandle } from "../support/postgres.js";
import { startRedis, type RedisHandle } from "../support/redis.js";
import { until } from "../support/wait.js";
import { freePort } from "../support/free-port.js";
import { windowOf } from "../../server/fleet/budget-lease-scripts.js";

const ADMIN = "adm-fleet-budget-0123456789";
const DAY = 86_400_000;
let mock: MockHandle;
let db: PgHandle;
let redis: RedisHandle;
let stores: FleetStores;
let client: pg.Client;
let gws: Gateway[] = [];
let closed: Gateway;
/** The 4,000-token key of the first test and the key of the outage test. */
let small: { id: string; key: string };
let big: { id: string; key: string };
/** Tokens per ms the open replicas admitted after Redis came back (bounds the rebuild's over-count). */
let rate = 0;

before(async () => {
  stores = await startFleetStores(ADMIN, "sk-upstream-fleet");
  ({ mock, db, redis } = stores);
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  const env = { ...stores.env, BUDGET_LEASE_MS: "50", BUDGET_LEASE_IDLE_MS: "2000" };
  gws = await Promise.all([0, 1, 2].map(() => startGateway({ ...env, BUDGET_FAIL_MODE: "open" })));
  // No wait for "budgets": "fleet" here: a fresh Redis lost nothing, so the replicas spend leases from the start
  // (test/server/fleet-budget-fresh.test.ts). Only a Redis that lost counters opens a per-replica window (below).
  closed = await startGateway({ ...env, BUDGET_FAIL_MODE: "closed" });
});
after(async () => {
  await Promise.all([...gws, closed].map((g) => g?.stop()));
  await client?.end();
  await stores?.stop();
});

const admin = (g: Gateway, method: string, path: string, body?: unknown) => adminCall(g, ADMIN, method, path, body);

interface Answer {
  status: number;
  body: any;
  retryAfter: string | null;
  /** 503s (lease short) retried before this answer. */
  retried: number;
}

const PROMPT = `hello ${"x".repeat(120)}`;

/** One message; a 503 is retried after 50 ms, as an SDK would (bounded). */
async function call(g: Gateway, key: string, retry = true): Promise<Answer> {
  for (let retried = 0; ; retried++) {
    const r = await fetch(`${g.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key },
      body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: PROMPT }] }),
    });
    const body = await r.json();
    if (r.status !== 503 || !retry || retried >= 200) return { status: r.status, body, retryAfter: r.headers.get("retry-after"), retried };
    await new Promise((res) => setTimeout(res, 50));
  }
}

async function createBudgeted(name: string, tokensPerDay: number): Promise<{ id: string; key: string }> {
  const k = (await admin(gws[0]!, "POST", "/admin/keys", { name, limits: { tokens_per_day: tokensPerDay } })).json;
  for (const g of [...gws, closed])
    await until(`key ${name} on every replica`, async () => {
      const r = await fetch(`${g.url}/v1/models`, { headers: { "x-api-key": k.key } });
      await r.arrayBuffer();
      return r.status === 200 ? true : undefined;
    });
  return k;
}

async function ledgerTokens(keyId: string): Promise<number> {
  const dayStart = Math.floor(Date.now() / DAY) * DAY;
  const r = await client.query(
    "SELECT COALESCE(SUM(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens), 0)::bigint AS t FROM usage WHERE key_id = $1 AND ts >= $2",
    [keyId, dayStart],
  );
  return Number(r.rows[0].t);
}

/** Requests a replica parked for a lease so far, however they left (budget_lease_waits_total). */
async function parkedTotal(g: Gateway): Promise<number> {
  const text = await (await fetch(`${g.url}/metrics/prometheus`)).text();
  let n = 0;
  for (const m of text.matchAll(/^budget_lease_waits_total\{result="\w+"\} (\d+)$/gm)) n += Number(m[1]);
  return n;
}

const used = (a: Answer) => (a.status === 200 ? a.body.usage.input_tokens + a.body.usage.output_tokens : 0);

test("200 concurrent requests over three replicas never charge a 4,000-token daily budget past it; refusals name the limit and its reset", async (t) => {
  const k = (small = await createBudgeted("fleet-4000", 4000));
  const answers = await Promise.all(Array.from({ length: 200 }, (_, i) => call(gws[i % 3]!, k.key)));
  const ok = answers.filter((a) => a.status === 200);
  const refused = answers.filter((a) => a.status === 429);
  assert.equal(ok.length + refused.length, 200, `every request ends 200 or 429: ${answers.map((a) => a.status).join(",")}`);
  assert.ok(ok.length > 0 && refused.length > 0, `${ok.length} admitted, ${refused.length} refused`);
  const e = refused[0]!.body.error;
  assert.equal(e.type, "rate_limit_error");
  assert.match(e.message, /this key's tokens_per_day limit \(4000 tokens\) is used up/);
  const midnight = new Date((Math.floor(Date.now() / DAY) + 1) * DAY).toISOString().replace(/\.\d{3}Z$/, "Z");
  assert.ok(e.message.includes(midnight), `names the reset ${midnight}: ${e.message}`);
  assert.ok(Number(refused[0]!.retryAfter) >= 1);
  const answered = ok.reduce((a, x) => a + used(x), 0);
  // The replicas flush their rows within LEDGER_BATCH_MS: wait for every admitted request's tokens.
  const charged = await until("the admitted requests' rows in PostgreSQL", async () => {
    const n = await ledgerTokens(k.id);
    return n >= answered ? n : undefined;
  });
  assert.equal(charged, answered, "the ledger charged exactly what the replies reported");
  assert.ok(charged <= 4000, `overshoot: ${charged} of 4000`);
  let parked = 0;
  for (const g of gws) parked += await parkedTotal(g);
  t.diagnostic(
    `4000-token budget: ${ok.length} admitted, ${refused.length} refused (429), ${parked} waited for a lease, ${answers.reduce((a, x) => a + x.retried, 0)} lease-short 503s retried; charged ${charged} (${((charged / 4000) * 100).toFixed(1)}%, overshoot 0)`,
  );
});

test("Redis killed mid-run: open replicas serve on, the closed one answers 503 once its lease is spent; Redis back empty: both serve", async (t) => {
  const k = (big = await createBudgeted("fleet-outage", 10_000_000));
  const statuses = new Map<string, number>();
  let phase = "warm-up";
  let served = 0;
  let tokens = 0;
  let stop = false;
  const loops = gws.map(async (g) => {
    while (!stop) {
      const a = await call(g, k.key, false);
      const p = `${phase} ${a.status}`;
      statuses.set(p, (statuses.get(p) ?? 0) + 1);
      served++;
      tokens += used(a);
    }
  });
  try {
    await until(
      "the open replicas to serve on leases",
      () => (served > 60 && (statuses.get("warm-up 200") ?? 0) > 30 ? true : undefined),
      30_000,
    );
    for (const g of [...gws, closed]) {
      const ready = (await (await fetch(`${g.url}/health/ready`)).json()) as any;
      assert.equal(ready.components.database.budgets, "fleet");
      assert.equal(ready.components.database.budget_redis, "up");
    }
    assert.equal((await call(closed, k.key)).status, 200);
    phase = "outage";
    await redis.stop();
    // Closed: spends what it holds on lease, then refuses the budgeted key with 503.
    const refusal = await until(
      "the closed replica to refuse with 503",
      async () => {
        const a = await call(closed, k.key, false);
        return a.status === 503 ? a : undefined;
      },
      20_000,
    );
    assert.equal(refusal.body.error.type, "overloaded_error");
    assert.equal(refusal.retryAfter, "1");
    await closed.waitForLine("the 503 logged as GW_ERR_BUDGET_UNAVAILABLE", (l) => l.error === "GW_ERR_BUDGET_UNAVAILABLE");
    for (const g of gws) {
      let seen = "";
      await until(
        "readiness to report budgets per replica with Redis degraded",
        async () => {
          const d = ((await (await fetch(`${g.url}/health/ready`)).json()) as any).components.database;
          seen = JSON.stringify(d);
          return d.budgets === "per_replica" && d.budget_redis === "degraded" ? true : undefined;
        },
        10_000,
        20,
        () => `${seen} ${g.lines.filter((l) => l.includes("fleet budgets")).join("\n")}`,
      );
    }
    const before = served;
    await until("150 more requests served while Redis is down", () => (served > before + 150 ? true : undefined), 30_000);
    redis = await startRedis(redis.port);
    stores.redis = redis;
    phase = "restarted";
    const [t0, tok0] = [Date.now(), tokens];
    await until(
      "the closed replica to serve again on a fresh lease",
      async () => ((await call(closed, k.key)).status === 200 ? true : undefined),
      30_000,
    );
    for (const g of gws)
      await until(
        "the open replicas back on leases",
        async () =>
          ((await (await fetch(`${g.url}/health/ready`)).json()) as any).components.database.budgets === "fleet" ? true : undefined,
        30_000,
      );
    const after = served;
    await until("load on leases again", () => (served > after + 60 ? true : undefined), 30_000);
    rate = (tokens - tok0) / (Date.now() - t0);
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  // A replica's first requests of a key wait for its first lease (a 503 only past BUDGET_LEASE_WAIT_MS); after that, none failed.
  const seen = JSON.stringify([...statuses]);
  for (const p of statuses.keys()) assert.ok(p.endsWith(" 200") || p === "warm-up 503", `open mode: no request failed (${seen})`);
  const text = await (await fetch(`${gws[0]!.url}/metrics/prometheus`)).text();
  assert.match(text, /^budget_lease_redis_up 1$/m);
  assert.match(text, /^budget_lease_failures_total [1-9]/m, "the outage is counted");
  assert.ok(
    gws.some((g) => g.lines.some((l) => l.includes("counters rebuilt from the ledger"))),
    "the counters were rebuilt",
  );
  t.diagnostic(`open replicas: ${served} requests (${seen})`);
});

test("counters Redis lost are rebuilt from the ledger: a spent budget stays spent; after shutdown Redis holds the ledger's spend, over by at most the rebuild margin", async (t) => {
  // The first test's key was not used since Redis came back empty: its next lease waits for the rebuild
  // (ledger spend + what replicas hold), so the fleet admits only what is left of the 4,000 tokens.
  const spentBefore = await ledgerTokens(small.id);
  const r = new Redis(redis.url);
  try {
    const w0 = windowOf(small.id, Date.now());
    const answers: Answer[] = [];
    await until(
      "the key's counters rebuilt and the rest of its budget spent",
      async () => {
        answers.push(await call(gws[answers.length % 3]!, small.key));
        return (await r.hget(w0.dayKey, "ok")) === "1" && answers.at(-1)!.status === 429 ? true : undefined;
      },
      30_000,
    );
    const more = answers.reduce((a, x) => a + used(x), 0);
    const spent = await until("the rows of the requests after the rebuild", async () => {
      const n = await ledgerTokens(small.id);
      return n >= spentBefore + more ? n : undefined;
    });
    assert.ok(spent <= 4000, `after the rebuild the fleet charged ${spent} of 4000`);
    t.diagnostic(
      `rebuilt: ${spentBefore} tokens spent before Redis was emptied, ${more} admitted after (${answers.length} requests), ${spent} of 4000`,
    );
    await Promise.all([...gws, closed].map((g) => g.stop()));
    for (const k of [small, big]) {
      const w = windowOf(k.id, Date.now());
      const granted = Number((await r.hget(w.dayKey, "t")) ?? 0);
      const ledger = await ledgerTokens(k.id);
      assert.ok(granted >= ledger, `${k.id}: nothing lost: Redis ${granted} >= ledger ${ledger}`);
      // The conservative side (docs/fleet.md): what the open replicas admitted in the rebuild margin
      // (LEDGER_BATCH_MS + 250 ms + one BUDGET_LEASE_MS = 320 ms here, twice for safety) and the reservations in flight.
      const bound = Math.ceil(rate * 640) + 6 * 100;
      assert.ok(granted - ledger <= bound, `${k.id}: Redis ${granted} vs ledger ${ledger} (bound ${bound})`);
      t.diagnostic(
        `${k.id}: Redis ${granted} tokens granted net of returns, ledger ${ledger} (over by ${granted - ledger}, bound ${bound})`,
      );
    }
  } finally {
    r.disconnect();
  }
});

test("Redis unreachable from the start: closed mode refuses a budgeted key with 503, and SIGTERM still exits promptly", async () => {
  const nobody = `redis://127.0.0.1:${await freePort()}`;
  const g = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-fleet",
    MODEL_PROVIDER: "anthropic",
    ADMIN_API_KEY: ADMIN,
    DATABASE_URL: db.url,
    REDIS_URL: nobody,
    BUDGET_FAIL_MODE: "closed",
  });
  try {
    await g.waitForLine(
      "the lease loop to report Redis unreachable",
      (l) => String(l.msg).startsWith("fleet budgets: Redis unreachable"),
      20_000,
    );
    const k = (await admin(g, "POST", "/admin/keys", { name: "no-redis", limits: { tokens_per_day: 1000 } })).json;
    const a = await call(g, k.key, false);
    assert.equal(a.status, 503);
    assert.equal(a.body.error.type, "overloaded_error");
    const plain = (await admin(g, "POST", "/admin/keys", { name: "no-budget" })).json;
    assert.equal((await call(g, plain.key, false)).status, 200, "a key without a budget is served");
    const d = ((await (await fetch(`${g.url}/health/ready`)).json()) as any).components.database;
    assert.deepEqual([d.budgets, d.budget_redis], ["fleet", "degraded"]);
  } finally {
    let t: NodeJS.Timeout | undefined;
    const code = await Promise.race([g.stop(), new Promise<string>((r) => (t = setTimeout(r, 20_000, "still running")))]);
    clearTimeout(t);
    assert.equal(code, 0, "the gateway exited cleanly without Redis");
  }
});
