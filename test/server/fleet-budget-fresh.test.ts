/**
 * A fresh Redis against a lost one (docs/fleet.md "Budgets across the fleet"), end to end: three
 * gateway processes in BUDGET_FAIL_MODE=open on one throw-away PostgreSQL, one redis-server and the
 * project's mock upstream.
 *
 * - A Redis that never held a lease (the fleet's first start) has lost nothing: the replicas lease
 *   from their first request, so a burst sent the moment they listen stays within the budget. Before,
 *   it read as emptied and every replica checked the whole budget on its own for about 1.2 s.
 * - A Redis emptied while the replicas hold leases (FLUSHALL) still has them check budgets per
 *   replica until the counters are rebuilt from the ledger, and loses nothing.
 * - A lease that is the first to meet an emptied Redis (before the replica's tick saw the new marker)
 *   waits for the rebuild like the others: it does not rebuild from the ledger at once, ahead of the
 *   other replicas re-registering what they hold.
 * - Open mode now starts on leases (requests wait for the first one) and goes local only once Redis is
 *   known unreachable: a Redis refusing connections at start does not cost the first requests a 503.
 *
 * The keys are created before the replicas start, by a gateway without REDIS_URL, so the burst
 * needs no admin round trip first.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { Redis } from "ioredis";
import { adminCall, startFleetStores, type FleetStores } from "../support/fleet.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { freePort } from "../support/free-port.js";
import { startRedis } from "../support/redis.js";
import { windowOf } from "../../server/fleet/budget-lease-scripts.js";

const ADMIN = "adm-fleet-fresh-0123456789";
const DAY = 86_400_000;
let stores: FleetStores;
let client: pg.Client;
const gws: Gateway[] = [];
/** 4,000 tokens a day (the burst's), and a budget the wipe test's load does not reach. */
let small: { id: string; key: string };
let big: { id: string; key: string };
let env: Record<string, string>;

before(async () => {
  stores = await startFleetStores(ADMIN, "sk-upstream-fleet-fresh");
  client = new pg.Client({ connectionString: stores.db.url });
  await client.connect();
  // BUDGET_LEASE_MS=1000: a lost Redis's per-replica window is then 2 × 1 s + LEDGER_BATCH_MS + 1 s, longer than a
  // replica takes from its lease loop's start to listening (over 1 s on a loaded machine), so a burst at the start
  // lands in it when a fresh Redis is taken for a lost one (before the fix: 10,125-10,650 of 4,000 tokens charged).
  env = { ...stores.env, BUDGET_FAIL_MODE: "open", BUDGET_LEASE_MS: "1000" };
  // Fleet mode without Redis: the keys land in PostgreSQL and Redis stays untouched (no boot marker).
  const noRedis: Record<string, string> = { ...env };
  delete noRedis.REDIS_URL;
  const setup = await startGateway(noRedis);
  try {
    const create = async (name: string, tokens: number) =>
      (await adminCall(setup, ADMIN, "POST", "/admin/keys", { name, limits: { tokens_per_day: tokens } })).json;
    small = await create("fresh-4000", 4000);
    big = await create("fresh-wipe", 10_000_000);
  } finally {
    await setup.stop();
  }
});
after(async () => {
  await Promise.all(gws.map((g) => g?.stop()));
  await client?.end();
  await stores?.stop();
});

interface Answer {
  status: number;
  body: any;
  /** 503s (lease short) retried before this answer. */
  retried: number;
}

const BODY = JSON.stringify({
  model: "claude-sonnet-4-5",
  max_tokens: 16,
  messages: [{ role: "user", content: `hello ${"x".repeat(120)}` }],
});

/** One message; a 503 is retried after 50 ms, as an SDK would (bounded). */
async function call(g: Gateway, key: string, retry = true): Promise<Answer> {
  for (let retried = 0; ; retried++) {
    const r = await fetch(`${g.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key },
      body: BODY,
    });
    const body = await r.json();
    if (r.status !== 503 || !retry || retried >= 100) return { status: r.status, body, retried };
    await new Promise((res) => setTimeout(res, 50));
  }
}

const used = (a: Answer) => (a.status === 200 ? a.body.usage.input_tokens + a.body.usage.output_tokens : 0);

async function ledgerTokens(keyId: string): Promise<number> {
  const r = await client.query(
    "SELECT COALESCE(SUM(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens), 0)::bigint AS t FROM usage WHERE key_id = $1 AND ts >= $2",
    [keyId, Math.floor(Date.now() / DAY) * DAY],
  );
  return Number(r.rows[0].t);
}

async function budgetsMode(g: Gateway): Promise<string> {
  return ((await (await fetch(`${g.url}/health/ready`)).json()) as any).components.database.budgets;
}

test("three open replicas started together on a fresh Redis: 70 requests to each the moment it listens (210) never charges a 4,000-token daily budget past it", async (t) => {
  // Each replica gets its 70 requests the moment it listens, no wait for "budgets": "fleet" nor for the others:
  // a fresh Redis lost nothing, so there is no per-replica window to wait out.
  const bursts: Promise<Answer[]>[] = [];
  await Promise.all(
    [0, 1, 2].map(async () => {
      const g = await startGateway(env);
      gws.push(g);
      bursts.push(Promise.all(Array.from({ length: 70 }, () => call(g, small.key))));
    }),
  );
  const answers = (await Promise.all(bursts)).flat();
  const ok = answers.filter((a) => a.status === 200);
  const refused = answers.filter((a) => a.status === 429);
  assert.equal(ok.length + refused.length, 210, `every request ends 200 or 429: ${answers.map((a) => a.status).join(",")}`);
  assert.ok(ok.length > 0 && refused.length > 0, `${ok.length} admitted, ${refused.length} refused`);
  assert.match(refused[0]!.body.error.message, /tokens_per_day limit \(4000 tokens\) is used up/);
  const answered = ok.reduce((a, x) => a + used(x), 0);
  const charged = await until("the admitted requests' rows in PostgreSQL", async () => {
    const n = await ledgerTokens(small.id);
    return n >= answered ? n : undefined;
  });
  assert.equal(charged, answered, "the ledger charged exactly what the replies reported");
  assert.ok(charged <= 4000, `overshoot: ${charged} of 4000`);
  for (const g of gws) {
    assert.ok(!g.lines.some((l) => l.includes("Redis lost the lease counters")), "a fresh Redis is not taken for an emptied one");
    assert.equal(await budgetsMode(g), "fleet");
  }
  t.diagnostic(
    `fresh Redis, 210 requests at start: ${ok.length} admitted, ${refused.length} refused (429), ${answers.reduce((a, x) => a + x.retried, 0)} lease-short 503s retried; charged ${charged} of 4000 (overshoot ${Math.max(0, charged - 4000)})`,
  );
});

test("Redis emptied (FLUSHALL) while the replicas hold leases: each checks budgets per replica until the ledger rebuild, serves throughout, and nothing is lost", async (t) => {
  const statuses = new Map<string, number>();
  let served = 0;
  let stop = false;
  const loops = gws.map(async (g) => {
    while (!stop) {
      const a = await call(g, big.key, false);
      statuses.set(String(a.status), (statuses.get(String(a.status)) ?? 0) + 1);
      served++;
    }
  });
  const r = new Redis(stores.redis.url);
  try {
    await until("load on leases", () => (served > 60 ? true : undefined), 30_000);
    for (const g of gws) assert.equal(await budgetsMode(g), "fleet");
    const w = windowOf(big.id, Date.now());
    assert.ok(Number(await r.hget(w.dayKey, "t")) > 0, "the replicas hold leases");
    await r.flushall();
    // Every replica goes to its local check for the rebuild's wait (2 × BUDGET_LEASE_MS + LEDGER_BATCH_MS + 1 s).
    const seen = new Set<number>();
    await until(
      "every replica to report budgets per replica",
      async () => {
        const modes = await Promise.all(gws.map(budgetsMode));
        modes.forEach((m, i) => m === "per_replica" && seen.add(i));
        return seen.size === gws.length ? true : undefined;
      },
      10_000,
      10,
      () => `seen ${[...seen]}`,
    );
    for (const g of gws) await g.waitForLine("the wipe noticed", (l) => String(l.msg).includes("Redis lost the lease counters"));
    await until(
      "the counters rebuilt from the ledger",
      () => (gws.some((g) => g.lines.some((l) => l.includes("counters rebuilt from the ledger"))) ? true : undefined),
      10_000,
    );
    for (const g of gws)
      await until("the replica back on leases", async () => ((await budgetsMode(g)) === "fleet" ? true : undefined), 10_000);
    const back = served;
    await until("load on leases again", () => (served > back + 60 ? true : undefined), 30_000);
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  try {
    assert.deepEqual([...statuses.keys()], ["200"], `open mode: every request served (${JSON.stringify([...statuses])})`);
    // At shutdown the replicas return their leases: what Redis counts is then the spend, never less than the ledger's.
    await Promise.all(gws.map((g) => g.stop()));
    const w = windowOf(big.id, Date.now());
    const granted = Number((await r.hget(w.dayKey, "t")) ?? 0);
    const ledger = await ledgerTokens(big.id);
    assert.ok(granted >= ledger, `nothing lost: Redis ${granted} >= ledger ${ledger}`);
    t.diagnostic(`FLUSHALL under load: ${served} requests served; Redis ${granted} tokens, ledger ${ledger} after shutdown`);
  } finally {
    r.disconnect();
  }
});

test("Redis refusing connections at start: open mode serves a budgeted key's first request on the per-replica check, not a 503", async () => {
  const g = await startGateway({ ...stores.env, REDIS_URL: `redis://127.0.0.1:${await freePort()}`, BUDGET_FAIL_MODE: "open" });
  try {
    // The key exists already (created before the replicas started): the request goes out as the gateway listens.
    const a = await call(g, big.key, false);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    await g.waitForLine("the outage logged", (l) => String(l.msg).startsWith("fleet budgets: Redis unreachable"));
    const d = ((await (await fetch(`${g.url}/health/ready`)).json()) as any).components.database;
    assert.deepEqual([d.budgets, d.budget_redis], ["per_replica", "degraded"]);
  } finally {
    await g.stop();
  }
});

test("a replica whose first lease after a FLUSHALL comes before its tick saw it waits for the rebuild: the other replica's lease still counts, no overshoot", async (t) => {
  // BUDGET_LEASE_MS=10000: the ticks that notice the new boot marker are 10 s apart, so B's parked requests reach
  // the emptied Redis first. Before, B rebuilt the key from the ledger at once (the marker it knew was old) and
  // leased the whole remainder while A still held its lease. A Redis of its own whose marker is an hour old.
  const own = await startRedis();
  const r = new Redis(own.url);
  await r.set("portcullis:budget:boot", String(Date.now() - 3_600_000));
  const slow = { ...stores.env, REDIS_URL: own.url, BUDGET_FAIL_MODE: "closed", BUDGET_LEASE_MS: "10000" };
  const [a, b] = await Promise.all([startGateway(slow), startGateway(slow)]);
  try {
    const k = (await adminCall(a, ADMIN, "POST", "/admin/keys", { name: "wipe-race", limits: { tokens_per_day: 4000 } })).json;
    await until("the key on replica B", async () => {
      const res = await fetch(`${b.url}/v1/models`, { headers: { "x-api-key": k.key } });
      await res.arrayBuffer();
      return res.status === 200 ? true : undefined;
    });
    // B's lease loop has ticked under the old marker (another key's lease); A leases this key and keeps the rest.
    const warm = (await adminCall(b, ADMIN, "POST", "/admin/keys", { name: "wipe-race-b", limits: { tokens_per_day: 4000 } })).json;
    assert.equal((await call(b, warm.key, false)).status, 200);
    assert.equal((await call(a, k.key, false)).status, 200);
    const held = Number(await r.hget(windowOf(k.id, Date.now()).dayKey, "t"));
    await r.flushall();
    // B: 80 requests, each retrying its 503 for up to 3 s (well before B's next tick).
    const until3s = Date.now() + 3000;
    const onB = await Promise.all(
      Array.from({ length: 80 }, async () => {
        for (;;) {
          const x = await call(b, k.key, false);
          if (x.status !== 503 || Date.now() > until3s) return x;
          await new Promise((res) => setTimeout(res, 50));
        }
      }),
    );
    // A spends what it still holds (then its own lease also waits for the rebuild, or the budget is used up).
    const onA = [];
    for (let i = 0; i < 8; i++) onA.push(await call(a, k.key, false));
    const answered = [...onB, ...onA].reduce((n, x) => n + used(x), 0);
    const charged = await until("the admitted requests' rows in PostgreSQL", async () => {
      const n = await ledgerTokens(k.id);
      return n >= answered + 75 ? n : undefined; // and A's first request
    });
    const count = (xs: Answer[], st: number) => xs.filter((x) => x.status === st).length;
    t.diagnostic(
      `A held ${held} tokens at the FLUSHALL; B: ${count(onB, 200)} × 200, ${count(onB, 503)} × 503, ${count(onB, 429)} × 429; A after: ${count(onA, 200)} × 200; charged ${charged} of 4000`,
    );
    assert.ok(charged <= 4000, `overshoot: ${charged} of 4000`);
    assert.equal(count(onB, 200), 0, "B leases nothing before the rebuild's wait (2 × 10 s + 1 s)");
    assert.equal(count(onB, 429), 0, "the budget is not reported used up");
  } finally {
    r.disconnect();
    await Promise.all([a.stop(), b.stop()]);
    await own.stop();
  }
});
