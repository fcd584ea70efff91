/**
 * Requests parked while their key's budget lease is renewed (docs/fleet.md, server/fleet/budget-park.ts),
 * end to end on real Redis, PostgreSQL, the mock upstream and gateway processes: a budgeted key's first
 * requests on a replica wait for its first lease instead of getting 503; BUDGET_LEASE_WAIT_MS=0 keeps
 * the immediate 503; a client that leaves while parked is dropped without an answer or a reservation,
 * one that stays gets the 503 after the bound; on a dead Redis in closed mode nothing waits.
 *
 * Clients here never retry: every 503 counts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { Redis } from "ioredis";
import { adminCall, startFleetStores, type FleetStores } from "../support/fleet.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { startRedis } from "../support/redis.js";
import { until } from "../support/wait.js";

const ADMIN = "adm-fleet-park-0123456789";
let stores: FleetStores;
let gws: Gateway[] = [];
let env: Record<string, string>;

before(async () => {
  stores = await startFleetStores(ADMIN, "sk-upstream-fleet-park");
  env = stores.env;
  // The defaults otherwise: BUDGET_LEASE_MS=100, BUDGET_LEASE_WAIT_MS=1000.
  gws = await Promise.all([0, 1, 2].map(() => startGateway({ ...env, BUDGET_FAIL_MODE: "open" })));
});
after(async () => {
  await Promise.all(gws.map((g) => g?.stop()));
  await stores?.stop();
});

const admin = (g: Gateway, method: string, path: string, body?: unknown) => adminCall(g, ADMIN, method, path, body);

const BODY = JSON.stringify({
  model: "claude-sonnet-4-5",
  max_tokens: 16,
  messages: [{ role: "user", content: `hello ${"x".repeat(120)}` }],
});

/** One message, no retry. */
async function call(g: Gateway, key: string): Promise<{ status: number; body: any; retryAfter: string | null }> {
  const r = await fetch(`${g.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key },
    body: BODY,
  });
  return { status: r.status, body: await r.json(), retryAfter: r.headers.get("retry-after") };
}

/** A budgeted key, created on `on[0]` and known to every gateway in `on`. */
async function createBudgeted(on: Gateway[], name: string, tokensPerDay: number): Promise<{ id: string; key: string }> {
  const k = (await admin(on[0]!, "POST", "/admin/keys", { name, limits: { tokens_per_day: tokensPerDay } })).json;
  for (const g of on)
    await until(`key ${name} on every replica`, async () => {
      const r = await fetch(`${g.url}/v1/models`, { headers: { "x-api-key": k.key } });
      await r.arrayBuffer();
      return r.status === 200 ? true : undefined;
    });
  return k;
}

/** One series' value on a gateway's Prometheus page (0 when absent). */
async function metric(g: Gateway, series: string): Promise<number> {
  const text = await (await fetch(`${g.url}/metrics/prometheus`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}
const waits = (result: string) => `budget_lease_waits_total{result="${result}"}`;

test("a fresh budgeted key's first request on each of three replicas is answered 200 after waiting for the replica's first lease", async () => {
  const k = await createBudgeted(gws, "park-first", 1_000_000);
  for (const [i, g] of gws.entries()) {
    const admittedBefore = await metric(g, waits("admitted"));
    const a = await call(g, k.key);
    assert.equal(a.status, 200, `replica ${i + 1}: ${JSON.stringify(a.body)}`);
    assert.equal(await metric(g, waits("admitted")), admittedBefore + 1, `replica ${i + 1}: the request waited for the lease`);
  }
  for (const g of gws) assert.equal(await metric(g, 'budget_blocks_total{limit="lease_short"}'), 0);
});

test("a burst of 100 concurrent requests on a fresh key with room for all of them gets no 503", async (t) => {
  const k = await createBudgeted(gws, "park-burst", 1_000_000);
  let renewals = 0;
  const before: number[] = [];
  for (const g of gws) {
    renewals -= await metric(g, "budget_lease_renewals_total");
    before.push(await metric(g, waits("admitted")));
  }
  const answers = await Promise.all(Array.from({ length: 100 }, (_, i) => call(gws[i % 3]!, k.key)));
  const statuses = answers.map((a) => a.status);
  assert.deepEqual(
    statuses.filter((s) => s !== 200),
    [],
    `every request 200: ${statuses.join(",")}`,
  );
  let parked = 0;
  for (const [i, g] of gws.entries()) {
    const n = (await metric(g, waits("admitted"))) - before[i]!;
    assert.ok(n >= 1, `replica ${i + 1}: the key's first requests there waited for its first lease (${n})`);
    assert.equal(await metric(g, waits("timeout")), 0);
    parked += n;
  }
  for (const g of gws) renewals += await metric(g, "budget_lease_renewals_total");
  t.diagnostic(
    `100 concurrent requests on a fresh key over three replicas: 100 × 200; ${parked} waited for a lease; ${renewals} lease round trips to Redis during the burst`,
  );
});

test("a parked request wakes the lease loop: with BUDGET_LEASE_MS=10000 new keys' first requests are still served", async () => {
  // Without the wake-up the renewal would come at the next tick, up to 10 s later: past the 1 s wait. A Redis of
  // its own whose boot marker is an hour old (docs/fleet.md: new keys then lease at once). A new marker would not
  // be fresh: the ledger already holds the other Redis's, so new keys would wait 2 × BUDGET_LEASE_MS + 1 s.
  const own = await startRedis();
  const r = new Redis(own.url);
  await r.set("portcullis:budget:boot", String(Date.now() - 3_600_000));
  r.disconnect();
  const g = await startGateway({ ...env, REDIS_URL: own.url, BUDGET_FAIL_MODE: "closed", BUDGET_LEASE_MS: "10000" });
  try {
    for (let i = 1; i <= 3; i++) {
      const k = await createBudgeted([g], `park-wake-${i}`, 1_000_000);
      const a = await call(g, k.key);
      assert.equal(a.status, 200, `new key ${i}: ${JSON.stringify(a.body)}`);
      assert.equal(await metric(g, waits("admitted")), i, `new key ${i}: its first request waited for its lease`);
    }
    assert.equal(await metric(g, waits("timeout")), 0);
  } finally {
    await g.stop();
    await own.stop();
  }
});

test("BUDGET_LEASE_WAIT_MS=0 keeps the immediate 503 for a key's first request on a replica", async () => {
  const g = await startGateway({ ...env, BUDGET_FAIL_MODE: "open", BUDGET_LEASE_WAIT_MS: "0" });
  try {
    const k = await createBudgeted([g], "park-off", 1_000_000);
    const a = await call(g, k.key);
    assert.equal(a.status, 503);
    assert.equal(a.body.error.type, "overloaded_error");
    assert.equal(a.retryAfter, "1");
    await g.waitForLine("the 503 logged as GW_ERR_BUDGET_UNAVAILABLE", (l) => l.error === "GW_ERR_BUDGET_UNAVAILABLE");
    assert.equal(await metric(g, 'budget_blocks_total{limit="lease_short"}'), 1);
    for (const r of ["admitted", "refused", "timeout", "aborted"]) assert.equal(await metric(g, waits(r)), 0, r);
    // The lease arrives in the background: a retry (what the SDKs do) is served.
    await until("a retry to be served on the lease", async () => ((await call(g, k.key)).status === 200 ? true : undefined));
  } finally {
    await g.stop();
  }
});

test("a parked request whose client leaves is not answered and holds no reservation; one that stays gets the 503 after BUDGET_LEASE_WAIT_MS", async () => {
  // A replica whose first lease cannot arrive for 20 s: on a Redis that just started, a new key's counters
  // wait 2 × BUDGET_LEASE_MS + LEDGER_BATCH_MS + 1 s for their rebuild from the ledger (docs/fleet.md).
  const own = await startRedis();
  const g = await startGateway({
    ...env,
    REDIS_URL: own.url,
    BUDGET_FAIL_MODE: "closed",
    BUDGET_LEASE_MS: "10000",
    BUDGET_LEASE_WAIT_MS: "3000",
  });
  try {
    const k = await createBudgeted([g], "park-abort", 1_000_000);
    let answered = false;
    const req = http.request(`${g.url}/v1/messages`, {
      method: "POST",
      agent: false,
      headers: { "content-type": "application/json", "x-api-key": k.key, "content-length": Buffer.byteLength(BODY) },
    });
    req.on("response", () => (answered = true));
    const closed = new Promise<void>((r) => req.on("close", () => r()));
    req.on("error", () => {}); // the destroy below
    req.end(BODY);
    await until("the request to be parked", async () => ((await metric(g, "budget_lease_waiting")) === 1 ? true : undefined));
    req.destroy();
    await closed;
    await until("the park to drop the request", async () => ((await metric(g, waits("aborted"))) === 1 ? true : undefined));
    assert.equal(answered, false, "nothing was answered to the parked request");
    assert.equal(await metric(g, "budget_lease_waiting"), 0);
    const line = await g.waitForLine("the request's log line (499: the client left)", (l) => l.status === 499 && l.aborted === true);
    const finished = g.lines.filter((l) => l.includes(`"req_id":${JSON.stringify(line.req_id)}`) && l.includes('"msg":"request"'));
    assert.equal(finished.length, 1, "finished (settled, logged) once");
    const mine = (await admin(g, "GET", "/admin/keys")).json.data.find((x: { id: string }) => x.id === k.id);
    assert.equal(mine.spend.reserved_tokens, 0, "no reservation left behind");

    const stays = await call(g, k.key);
    assert.equal(stays.status, 503, JSON.stringify(stays.body));
    assert.equal(stays.body.error.type, "overloaded_error");
    assert.equal(stays.retryAfter, "1");
    assert.equal(await metric(g, waits("timeout")), 1, "it waited, then got the 503");
    assert.equal(await metric(g, 'budget_blocks_total{limit="lease_short"}'), 1);
    assert.equal(await metric(g, waits("admitted")), 0);
    assert.ok(!g.lines.some((l) => l.includes("parked request failed")), "no write to the aborted response");
  } finally {
    await g.stop();
    await own.stop();
  }
});

test("closed mode with Redis killed: once the lease is spent the 503 comes at once, nothing waits on a dead Redis", async () => {
  const own = await startRedis();
  // A wait long enough that a request parked on the dead Redis would show (a timeout, not a refusal).
  const g = await startGateway({ ...env, REDIS_URL: own.url, BUDGET_FAIL_MODE: "closed", BUDGET_LEASE_WAIT_MS: "10000" });
  try {
    const k = await createBudgeted([g], "park-dead", 1_000_000);
    assert.equal((await call(g, k.key)).status, 200, "served on its first lease (it waited for it)");
    await own.stop();
    const refusal = await until(
      "the lease spent and a 503",
      async () => {
        const a = await call(g, k.key);
        return a.status === 503 ? a : undefined;
      },
      20_000,
    );
    assert.equal(refusal.body.error.type, "overloaded_error");
    assert.equal(refusal.retryAfter, "1");
    assert.equal(await metric(g, waits("timeout")), 0, "no request waited out BUDGET_LEASE_WAIT_MS");
    assert.equal(await metric(g, "budget_lease_waiting"), 0);
    const again = await call(g, k.key);
    assert.equal(again.status, 503, "still refused at once while Redis is down");
    assert.equal(await metric(g, waits("timeout")), 0);
  } finally {
    await g.stop();
    await own.stop();
  }
});
