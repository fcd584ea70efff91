/**
 * The PostgreSQL ledger writer (workers/pg-ledger-task.ts) against a real throw-away cluster:
 * migrations taken by several writers at once apply once, a retried batch id is written once,
 * monthly partitions exist ahead, retention drops whole old partitions, and the usage report
 * groups like the SQLite one.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import pg from "pg";
import { openPg } from "../../workers/pg-ledger.js";
import type { UsageRow } from "../../workers/ledger-task.js";
import { startPostgres, type PgHandle } from "../support/postgres.js";

let db: PgHandle;
let client: pg.Client;
const writers: Awaited<ReturnType<typeof openPg>>[] = [];

before(async () => {
  db = await startPostgres();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
after(async () => {
  await client?.end();
  for (const w of writers) await w.close();
  db?.destroy();
});

const now = Date.now();
const dayStart = now - (now % 86_400_000);
function row(id: string, key: string, tokens: number, ts = now): UsageRow {
  return [id, ts, key, "claude-sonnet-4-5", "anthropic", 200, 12.5, tokens, 1, 0, 0, 100, null, null, null, 0, 0];
}

test("three writers migrating at once apply each migration exactly once", async () => {
  const ws = await Promise.all([1, 2, 3].map(() => openPg(db.url, 30)));
  writers.push(...ws);
  const inits = await Promise.all(ws.map((w) => w.handle({ op: "init", dayStart, monthStart: dayStart })));
  for (const r of inits) assert.deepEqual((r as { keys: unknown[] }).keys, []);
  const m = await client.query("SELECT version, COUNT(*)::int AS n FROM portcullis_migrations GROUP BY version ORDER BY version");
  assert.deepEqual(m.rows, [
    { version: 1, n: 1 },
    { version: 2, n: 1 },
    { version: 3, n: 1 },
  ]);
});

test("this month's and the next two months' partitions exist after start-up", async () => {
  const r = await client.query<{ name: string }>(
    "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'usage' ORDER BY 1",
  );
  const names = r.rows.map((x) => x.name);
  const d = new Date(now);
  for (let a = 0; a < 3; a++) {
    const f = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + a, 1));
    assert.ok(names.includes(`usage_p${f.getUTCFullYear()}_${String(f.getUTCMonth() + 1).padStart(2, "0")}`), names.join(","));
  }
});

test("a batch sent twice with the same id is written once; another id is written", async () => {
  const w = writers[0]!;
  const rows = [row("req_a", "key_x", 10), row("req_b", "key_x", 20)];
  assert.equal(await w.handle({ op: "insert", rows, batchId: "batch-1" }), 2);
  await w.handle({ op: "insert", rows, batchId: "batch-1" }); // the retry after a lost acknowledgement
  await writers[1]!.handle({ op: "insert", rows, batchId: "batch-1" }); // even from another writer
  const n = await client.query("SELECT COUNT(*)::int AS n FROM usage WHERE batch_id = 'batch-1'");
  assert.equal(n.rows[0].n, 2);
  await w.handle({
    op: "insert",
    rows: [row("req_c", "key_y", 5)],
    audit: [["req_c", now, "key_y", "read_file", "{}", "allowed", null, 0, 3]],
    batchId: "batch-2",
  });
  const a = await client.query("SELECT tool, decision FROM audit WHERE batch_id = 'batch-2'");
  assert.deepEqual(a.rows, [{ tool: "read_file", decision: "allowed" }]);
});

test("the usage report and the start-up spend count every writer's rows", async () => {
  const body = JSON.parse(
    (await writers[2]!.handle({ op: "usage", from: dayStart, to: now + 1, groupBy: "key", format: "json" })) as string,
  );
  const byKey = Object.fromEntries(
    body.data.map((r: { key: string; requests: number; input_tokens: number }) => [r.key, [r.requests, r.input_tokens]]),
  );
  assert.deepEqual(byKey, { key_x: [2, 30], key_y: [1, 5] });
  const csv = (await writers[2]!.handle({ op: "usage", from: dayStart, to: now + 1, groupBy: "day", format: "csv" })) as string;
  assert.match(csv, /^day,requests,/);
  assert.match(csv, new RegExp(`${new Date(now).toISOString().slice(0, 10)},3,35,`));
  // By developer: rows without metadata.user_id group under null; a row with one under its id.
  await writers[0]!.handle({
    op: "insert",
    rows: [[...row("req_u", "key_z", 7).slice(0, 14), "user-42", 0, 0] as unknown as UsageRow],
    batchId: "batch-u",
  });
  const byUser = JSON.parse(
    (await writers[2]!.handle({ op: "usage", from: dayStart, to: now + 1, groupBy: "user", format: "json" })) as string,
  );
  assert.deepEqual(byUser.data.find((r: { user: string | null }) => r.user === "user-42")?.requests, 1);
  const sessionNull = await client.query("SELECT COUNT(*)::int AS n FROM usage WHERE session_id IS NULL AND request_id = 'req_a'");
  assert.equal(sessionNull.rows[0].n, 1, "a request without a session stays NULL, not '0'");
  await client.query("DELETE FROM usage WHERE batch_id = 'batch-u'");
  const init = (await writers[1]!.handle({ op: "init", dayStart, monthStart: dayStart })) as {
    spend: { key_id: string; day_tokens: number }[];
  };
  assert.deepEqual(Object.fromEntries(init.spend.map((s) => [s.key_id, s.day_tokens])), { key_x: 32, key_y: 6 });
});

test("retention drops a whole monthly partition older than the window and keeps this month's", async () => {
  const old = new Date(Date.UTC(new Date(now).getUTCFullYear() - 1, 0, 1));
  const from = old.getTime(),
    to = Date.UTC(old.getUTCFullYear(), 1, 1);
  const name = `usage_p${old.getUTCFullYear()}_01`;
  await client.query(`CREATE TABLE ${name} PARTITION OF usage FOR VALUES FROM (${from}) TO (${to})`);
  await writers[0]!.handle({ op: "insert", rows: [row("req_old", "key_x", 1, from + 1000)], batchId: "batch-old" });
  assert.equal((await client.query(`SELECT COUNT(*)::int AS n FROM ${name}`)).rows[0].n, 1);
  assert.ok(((await writers[0]!.handle({ op: "prune", now })) as number) >= 1);
  const left = await client.query("SELECT relname FROM pg_class WHERE relname = $1", [name]);
  assert.equal(left.rowCount, 0);
  assert.equal((await client.query("SELECT COUNT(*)::int AS n FROM usage WHERE batch_id = 'batch-1'")).rows[0].n, 2);
});

test("budget boot markers: the first ones recorded at once see no other; a later marker sees the earlier one; recording twice is one row", async () => {
  // Two replicas meeting one fresh Redis record the same marker: neither sees another (server/fleet/budget-lease.ts).
  assert.deepEqual(await Promise.all(writers.slice(0, 2).map((w) => w.handle({ op: "budget-boot", boot: "1000" }))), [false, false]);
  assert.equal(await writers[2]!.handle({ op: "budget-boot", boot: "2000" }), true, "a new Redis after leases under 1000");
  assert.equal(await writers[0]!.handle({ op: "budget-boot", boot: "1000" }), true);
  assert.equal((await client.query("SELECT COUNT(*)::int AS n FROM budget_boots")).rows[0].n, 2);
});

test("keys-since returns each change once, with versions that only grow", async () => {
  const w = writers[0]!;
  const rec = {
    id: "key_fleet1",
    name: "a",
    digest: "d1",
    models: null,
    limits: {},
    tools: ["*"],
    commands: null,
    cache: null,
    created_at: new Date().toISOString(),
    revoked_at: null,
  };
  await w.handle({ op: "key-create", record: rec });
  const first = (await writers[1]!.handle({ op: "keys-since", version: 0 })) as { record: { id: string }; version: number }[];
  assert.deepEqual(
    first.map((c) => c.record.id),
    ["key_fleet1"],
  );
  const v1 = first[0]!.version;
  assert.equal(await w.handle({ op: "key-update", record: { ...rec, name: "b" } }), true);
  assert.equal(await w.handle({ op: "key-revoke", id: rec.id, at: new Date().toISOString() }), true);
  const next = (await writers[2]!.handle({ op: "keys-since", version: v1 })) as {
    record: { name: string; revoked_at: string | null };
    version: number;
  }[];
  assert.equal(next.length, 1);
  assert.ok(next[0]!.version > v1);
  assert.equal(next[0]!.record.name, "b");
  assert.notEqual(next[0]!.record.revoked_at, null);
});
