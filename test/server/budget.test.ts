/**
 * Keys, budgets and the ledger against the real gateway (2 acceptor threads), the real
 * mock upstream (it reports usage in JSON and in SSE message_start / message_delta) and
 * a real SQLite file in a temp dir.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { request } from "node:http";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

const ADMIN = "adm-" + "0123456789abcdef0123";
const dir = mkdtempSync(join(tmpdir(), "portcullis-budget-"));
const DB = join(dir, "data", "ledger.db");
let mock: MockHandle;
let gw: Gateway;
const secrets: string[] = [ADMIN];
const outputs: string[] = [];

function env(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-budget-123",
    MODEL_PROVIDER: "anthropic",
    ADMIN_API_KEY: ADMIN,
    DATABASE_PATH: DB,
    HTTP_THREADS: "2",
    LEDGER_BATCH_MS: "50",
    ...extra,
  };
}

async function admin(method: string, path: string, body?: unknown, key = ADMIN): Promise<{ status: number; json: any; text: string }> {
  const r = await fetch(`${gw.url}${path}`, {
    method,
    headers: key === "" ? {} : { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  if (!(method === "POST" && path === "/admin/keys")) outputs.push(text); // that answer shows the secret, once
  let json: any = null;
  try {
    json = JSON.parse(text);
  } catch {
    // CSV
  }
  return { status: r.status, json, text };
}

async function createKey(body: unknown): Promise<{ id: string; key: string }> {
  const r = await admin("POST", "/admin/keys", body);
  assert.equal(r.status, 201, r.text);
  secrets.push(r.json.key);
  return r.json;
}

function msg(key: string, opts: { stream?: boolean; model?: string; maxTokens?: number; session?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", "x-api-key": key };
  if (opts.session !== undefined) headers["x-claude-code-session-id"] = opts.session;
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      model: opts.model ?? "claude-sonnet-4-5",
      max_tokens: opts.maxTokens ?? 16,
      stream: opts.stream ?? false,
      messages: [{ role: "user", content: "hello" }],
    }),
  });
}

/** POST /v1/messages on a new connection (agent: false), so both threads get some. */
function freshConnectionStatus(key: string): Promise<{ status: number; requestId: string }> {
  const body = JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });
  return new Promise((resolve, reject) => {
    const req = request(
      `${gw.url}/v1/messages`,
      {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "x-api-key": key, "content-length": Buffer.byteLength(body) },
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve({ status: res.statusCode ?? 0, requestId: String(res.headers["request-id"] ?? "") }));
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function faults(...f: string[]): Promise<void> {
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  if (f.length > 0) await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: f }) });
}

async function keyInfo(id: string): Promise<any> {
  const r = await admin("GET", "/admin/keys");
  return r.json.data.find((k: { id: string }) => k.id === id);
}

function rows(where = "1=1", ...params: unknown[]): any[] {
  const db = new Database(DB, { readonly: true });
  try {
    return db.prepare(`SELECT * FROM usage WHERE ${where} ORDER BY seq`).all(...params) as any[];
  } finally {
    db.close();
  }
}

/** Wait until the ledger has `n` rows for a key (rows are batched every LEDGER_BATCH_MS). */
async function rowsFor(id: string, n: number): Promise<any[]> {
  return until(`${n} ledger rows for ${id}`, async () => {
    const r = await admin("GET", `/admin/usage?group_by=key&from=2000-01-01`);
    const k = r.json.data.find((d: { key: string }) => d.key === id);
    return k !== undefined && k.requests >= n ? rows("key_id = ?", id) : undefined;
  });
}

before(async () => {
  mock = await startMock();
  gw = await startGateway(env());
});
after(async () => {
  await gw?.stop();
  await mock?.stop();
});

describe("admin API", () => {
  test("rejects a missing or wrong admin key, and a client key", async () => {
    const k = await createKey({ name: "plain" });
    for (const key of ["", "wrong-admin-key-0123456789", k.key]) {
      const r = await admin("GET", "/admin/keys", undefined, key);
      assert.equal(r.status, 401);
      assert.equal(r.json.error.type, "authentication_error");
    }
    const r = await fetch(`${gw.url}/admin/keys`, { headers: { "x-api-key": ADMIN } });
    assert.equal(r.status, 401, "the admin key is a Bearer token only");
  });

  test("validates input with typia and answers in Anthropic's error shape", async () => {
    for (const bad of [
      {},
      { name: "" },
      { name: "x", limits: { usd_per_day: -1 } },
      { name: "x", limits: { tokens_per_day: "5" } },
      { name: "x", admin: true },
      "not json",
    ]) {
      const r = await admin("POST", "/admin/keys", bad);
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(r.json.error.type, "invalid_request_error");
    }
    assert.equal((await admin("PATCH", "/admin/keys/key_doesnotexist", { limits: {} })).status, 404);
    assert.equal((await admin("DELETE", "/admin/keys/..%2f..%2fetc")).status, 404);
    assert.equal((await admin("GET", "/admin/usage?group_by=secret")).status, 400);
    assert.equal((await admin("GET", "/admin/usage?from=yesterday")).status, 400);
    assert.equal((await admin("GET", "/admin/usage?to=2000-01-01")).status, 400);
  });

  test("lists keys without secrets or digests", async () => {
    const k = await createKey({ name: "listed", models: ["claude-*"], limits: { usd_per_month: 12.5 } });
    const r = await admin("GET", "/admin/keys");
    const e = r.json.data.find((x: { id: string }) => x.id === k.id);
    assert.deepEqual(e.limits, { usd_per_month: 12.5 });
    assert.equal(e.digest, undefined);
    assert.ok(!r.text.includes(k.key));
  });
});

describe("budgets on the hot path", () => {
  test("many concurrent requests never overshoot a small budget", async () => {
    const LIMIT = 400;
    const k = await createKey({ name: "small", limits: { tokens_per_day: LIMIT } });
    const N = 60;
    // Every request waits upstream, so all of them are in flight together.
    await faults(...Array.from({ length: N }, () => "delay:100"));
    const rs = await Promise.all(Array.from({ length: N }, () => msg(k.key, { maxTokens: 16 })));
    const bodies = await Promise.all(rs.map((r) => r.json() as Promise<any>));
    await faults();
    const ok = rs.filter((r) => r.status === 200).length;
    const refused = rs.filter((r) => r.status === 429);
    assert.ok(ok >= 1, "some requests fit");
    assert.equal(ok + refused.length, N);
    assert.ok(refused.length >= 1, "the budget refused the rest");
    const b = bodies[rs.findIndex((r) => r.status === 429)];
    assert.equal(b.error.type, "rate_limit_error");
    assert.match(b.error.message, /tokens_per_day limit \(400 tokens\) is used up/);
    const midnight = new Date(Math.floor(Date.now() / 86_400_000 + 1) * 86_400_000).toISOString().replace(/\.\d{3}Z$/, "Z");
    assert.ok(b.error.message.includes(midnight), `names the reset time ${midnight}: ${b.error.message}`);
    assert.equal(refused[0]!.headers.get("x-should-retry"), "false");
    assert.ok(Number(refused[0]!.headers.get("retry-after")) >= 1);
    const info = await keyInfo(k.id);
    const used = bodies.filter((x) => x.type === "message").reduce((a, x) => a + x.usage.input_tokens + x.usage.output_tokens, 0);
    assert.equal(info.spend.day_tokens, used, "spend settled to the real usage");
    assert.equal(info.spend.reserved_tokens, 0, "no reservation left behind");
    assert.ok(used <= LIMIT, `spent ${used} of ${LIMIT}`);
    // The ledger has a row for every request past auth, refusals included.
    const rr = await rowsFor(k.id, N);
    assert.equal(rr.filter((r) => r.status === 429).length, refused.length);
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /budget_blocks_total\{limit="tokens_per_day"\} [1-9]/);
  });

  test("a USD budget refuses with the limit named; PATCH raises it at once", async () => {
    const k = await createKey({ name: "usd", limits: { usd_per_day: 0.0001 } });
    const r = await msg(k.key, { maxTokens: 16 });
    assert.equal(r.status, 429, "the reservation alone (16 output tokens at $15/MTok + input) is over $0.0001");
    assert.match(((await r.json()) as any).error.message, /usd_per_day limit \(\$0\.00\)/);
    assert.equal((await admin("PATCH", `/admin/keys/${k.id}`, { limits: { usd_per_day: 1 } })).status, 200);
    const r2 = await msg(k.key, { maxTokens: 16 });
    assert.equal(r2.status, 200);
    await r2.arrayBuffer();
  });

  test("a key limited to some models gets 403 for the others", async () => {
    const k = await createKey({ name: "haiku-only", models: ["claude-haiku-*"] });
    const r = await msg(k.key, { model: "claude-sonnet-4-5" });
    assert.equal(r.status, 403);
    assert.equal(((await r.json()) as any).error.type, "permission_error");
    const r2 = await msg(k.key, { model: "claude-haiku-4-5" });
    assert.equal(r2.status, 200);
    await r2.arrayBuffer();
  });

  test("a revoked key fails on the very next request, on every thread", async () => {
    const k = await createKey({ name: "doomed" });
    const r = await msg(k.key);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    assert.equal((await admin("DELETE", `/admin/keys/${k.id}`)).status, 200);
    // New connections spread over both acceptor threads (SO_REUSEPORT, by a hash of the
    // client port): keep opening them until each thread has answered some, or 200 were tried.
    const threads = new Set<unknown>();
    let sent = 0;
    while (threads.size < 2) {
      assert.ok(sent < 200, `200 new connections all reached one acceptor thread (${[...threads].join(", ")})`);
      const batch = await Promise.all(Array.from({ length: 10 }, () => freshConnectionStatus(k.key)));
      sent += batch.length;
      for (const { status, requestId } of batch) {
        assert.equal(status, 401, requestId);
        assert.notEqual(requestId, "");
        // Each request's log line names the thread that served it.
        const line = await gw.waitForLine(`the log line of ${requestId}`, (l) => l.msg === "request" && l.req_id === requestId);
        assert.equal(line.status, 401);
        threads.add(line.thread);
      }
    }
    assert.equal((await admin("DELETE", `/admin/keys/${k.id}`)).status, 404, "already revoked");
  });
});

describe("usage accounting", () => {
  test("SSE usage is counted exactly (message_start input, message_delta output)", async () => {
    const k = await createKey({ name: "streamer" });
    const r = await msg(k.key, { stream: true, maxTokens: 64, session: "cc-session-42" });
    const text = await r.text();
    const start = JSON.parse(/event: message_start\ndata: (.*)\n/.exec(text)![1]!);
    const deltas = [...text.matchAll(/event: message_delta\ndata: (.*)\n/g)].map((m) => JSON.parse(m[1]!));
    const input = start.message.usage.input_tokens as number;
    const output = deltas[deltas.length - 1].usage.output_tokens as number;
    assert.ok(input > 0 && output > 1);
    const [row] = await rowsFor(k.id, 1);
    assert.equal(row.input_tokens, input);
    assert.equal(row.output_tokens, output);
    assert.equal(row.session_id, "cc-session-42");
    assert.equal(row.model, "claude-sonnet-4-5");
    assert.equal(row.provider, "anthropic");
    assert.equal(row.status, 200);
    assert.equal(row.cost_micros, input * 3 + output * 15, "Sonnet: $3 in, $15 out per MTok");
    const info = await keyInfo(k.id);
    assert.equal(info.spend.day_tokens, input + output);
  });

  test("usage reports group by key, model and day, in JSON and CSV", async () => {
    const k = await createKey({ name: 'ev"il, =name\nwith newline' });
    for (const model of ["claude-sonnet-4-5", "claude-opus-4-1", "claude-opus-4-1"]) {
      const r = await msg(k.key, { model });
      assert.equal(r.status, 200);
      await r.arrayBuffer();
    }
    await rowsFor(k.id, 3);
    const byKey = await admin("GET", "/admin/usage?group_by=key");
    const mine = byKey.json.data.find((d: { key: string }) => d.key === k.id);
    assert.equal(mine.key_name, 'ev"il, =name\nwith newline');
    assert.equal(mine.requests, 3);
    const byModel = await admin("GET", "/admin/usage?group_by=model&format=json");
    assert.ok(byModel.json.data.some((d: { model: string }) => d.model === "claude-opus-4-1"));
    const today = new Date().toISOString().slice(0, 10);
    const byDay = await admin("GET", `/admin/usage?group_by=day&from=${today}&to=${today}`);
    assert.equal(byDay.json.data.length, 1);
    assert.equal(byDay.json.data[0].day, today);
    const csv = await admin("GET", "/admin/usage?group_by=key&format=csv");
    assert.equal(
      csv.text.split("\r\n")[0],
      "key,key_name,requests,input_tokens,output_tokens,cache_creation_tokens,cache_read_tokens,cost_usd",
    );
    assert.ok(csv.text.includes(`${k.id},"ev""il, =name\nwith newline",3,`), csv.text);
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /tokens_input_total\{provider="anthropic",model="claude-opus-4"\} \d+/);
    assert.match(prom, /cost_total\{provider="anthropic",model="claude-sonnet-4"\} [\d.e-]+/);
  });

  test("/health/ready reports the database", async () => {
    const r = (await (await fetch(`${gw.url}/health/ready`)).json()) as any;
    assert.equal(r.components.database.ok, true);
  });
});

describe("durability", () => {
  test("SIGTERM flushes every row; spend survives a restart", async () => {
    const k = await createKey({ name: "durable", limits: { tokens_per_month: 1_000_000 } });
    const N = 25;
    const rs = await Promise.all(Array.from({ length: N }, () => msg(k.key)));
    for (const r of rs) await r.arrayBuffer();
    const before = (await keyInfo(k.id)).spend;
    const total = (await admin("GET", "/admin/usage?group_by=key")).json.data.reduce((a: number, d: any) => a + d.requests, 0);
    outputs.push(...gw.lines);
    assert.equal(await gw.stop("SIGTERM"), 0);
    // Everything the gateway answered is in SQLite: nothing waited in a batch.
    const all = rows();
    assert.equal(all.filter((r) => r.key_id === k.id).length, N);
    assert.ok(all.length >= total);
    gw = await startGateway(env());
    const after = (await keyInfo(k.id)).spend;
    assert.equal(after.month_tokens, before.month_tokens);
    assert.equal(after.day_tokens, before.day_tokens);
    assert.equal(after.month_usd, before.month_usd);
    const r = await msg(k.key);
    assert.equal(r.status, 200, "the key and its limits came back from the ledger");
    await r.arrayBuffer();
  });

  test("an exhausted budget stays exhausted after a restart", async () => {
    const k = await createKey({ name: "spent", limits: { tokens_per_day: 60 } });
    let ok = 0;
    for (let i = 0; i < 10; i++) {
      const r = await msg(k.key, { maxTokens: 5 });
      if (r.status === 200) ok++;
      await r.arrayBuffer();
    }
    assert.ok(ok >= 1);
    outputs.push(...gw.lines);
    await gw.stop("SIGTERM");
    gw = await startGateway(env());
    const r = await msg(k.key, { maxTokens: 5 });
    assert.equal(r.status, 429);
    await r.arrayBuffer();
  });

  test("after SIGKILL at most the last batch window is lost", async () => {
    outputs.push(...gw.lines);
    await gw.stop("SIGTERM");
    gw = await startGateway(env({ LEDGER_BATCH_MS: "2000" }));
    const k = await createKey({ name: "killed" });
    const first = 10;
    for (let i = 0; i < first; i++) await (await msg(k.key)).arrayBuffer();
    // Wait for one batch window to pass (LEDGER_BATCH_MS=2000): these rows are written.
    await rowsFor(k.id, first);
    for (let i = 0; i < 5; i++) await (await msg(k.key)).arrayBuffer();
    outputs.push(...gw.lines);
    await gw.stop("SIGKILL");
    const n = rows("key_id = ?", k.id).length;
    assert.ok(n >= first && n <= first + 5, `rows after SIGKILL: ${n}`);
    assert.equal(n, first, "the last window (5 rows, not yet due) is what was lost");
    gw = await startGateway(env());
  });

  test("without ADMIN_API_KEY the admin routes are 404", async () => {
    const plain = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-budget-123",
      MODEL_PROVIDER: "anthropic",
      DATABASE_PATH: join(dir, "other.db"),
    });
    try {
      for (const [m, p] of [
        ["GET", "/admin/keys"],
        ["POST", "/admin/keys"],
        ["GET", "/admin/usage"],
        ["DELETE", "/admin/keys/key_x"],
      ] as const) {
        const r = await fetch(`${plain.url}${p}`, { method: m, headers: { authorization: `Bearer ${ADMIN}` } });
        assert.equal(r.status, 404);
        await r.arrayBuffer();
      }
    } finally {
      await plain.stop();
    }
  });

  test("no secret ever appears in logs, usage output or error messages", async () => {
    outputs.push(...gw.lines, gw.stderr());
    outputs.push((await admin("GET", "/admin/usage?group_by=key&format=csv")).text);
    const all = outputs.join("\n");
    for (const s of secrets) assert.ok(!all.includes(s), "a secret leaked");
    const db = new Database(DB, { readonly: true });
    const dump = JSON.stringify(db.prepare("SELECT * FROM keys").all()) + JSON.stringify(db.prepare("SELECT * FROM usage").all());
    db.close();
    for (const s of secrets) assert.ok(!dump.includes(s), "a secret is stored in SQLite");
  });
});
