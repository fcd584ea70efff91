/** The ledger task module through a real piscina pool and a real SQLite file. */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import Database from "better-sqlite3";
import { newKey } from "../../core/keys.js";
import type { AuditRow, LedgerTask, UsageRow } from "../../workers/ledger-task.js";

const dir = mkdtempSync(join(tmpdir(), "portcullis-ledger-"));
const path = join(dir, "nested", "dir", "ledger.db");
let pool: Piscina;
const run = <T>(t: LedgerTask) => pool.run(t) as Promise<T>;

before(() => {
  pool = new Piscina({
    filename: fileURLToPath(new URL("../../workers/ledger-task.js", import.meta.url)),
    workerData: { path },
    minThreads: 1,
    maxThreads: 1,
  });
});
after(async () => {
  await pool.destroy();
});

const DAY = Date.UTC(2026, 4, 10);
function row(i: number, key: string | null, model: string, ts: number, micros = 100): UsageRow {
  return [`req_${i}`, ts, key, model, "anthropic", 200, 12.5, 10, 20, 3, 4, micros, "sess-" + (i % 2), null, "user-" + (i % 3)];
}

test("creates its directory, sets the pragmas, inserts batches and rebuilds spend", async () => {
  const hostile = newKey({ name: `team "a", =cmd|' /C calc'!A0\n'); DROP TABLE usage;--` }, new Date(DAY));
  await run({ op: "key-create", record: hostile.record });
  const rows: UsageRow[] = [];
  for (let i = 0; i < 1000; i++)
    rows.push(row(i, i % 2 === 0 ? hostile.record.id : "static-0", i % 3 === 0 ? "claude-opus-4-1" : "claude-sonnet-4-5", DAY + i * 1000));
  rows.push(row(5000, hostile.record.id, "claude-sonnet-4-5", DAY - 86_400_000, 7)); // yesterday
  assert.equal(await run({ op: "insert", rows }), rows.length);
  const init = await run<{
    keys: { id: string; digest: string }[];
    spend: { key_id: string; day_tokens: number; day_micros: number; month_micros: number }[];
  }>({ op: "init", dayStart: DAY, monthStart: Date.UTC(2026, 4, 1) });
  assert.equal(init.keys.length, 1);
  assert.equal(init.keys[0]!.digest, hostile.record.digest);
  const s = init.spend.find((x) => x.key_id === hostile.record.id)!;
  assert.equal(s.day_tokens, 500 * 37);
  assert.equal(s.day_micros, 500 * 100);
  assert.equal(s.month_micros, 500 * 100 + 7);

  const db = new Database(path, { readonly: true });
  assert.equal(db.pragma("journal_mode", { simple: true }), "wal");
  assert.equal((db.prepare("SELECT COUNT(*) AS n FROM usage").get() as { n: number }).n, 1001, "the hostile name dropped nothing");
  db.close();

  const json = JSON.parse(await run<string>({ op: "usage", from: DAY, to: DAY + 86_400_000, groupBy: "key", format: "json" })) as {
    data: { key: string; key_name: string | null; requests: number; cost_usd: number }[];
  };
  const k = json.data.find((d) => d.key === hostile.record.id)!;
  assert.equal(k.key_name, hostile.record.name, "names come back as data, byte for byte");
  assert.equal(k.requests, 500);
  assert.equal(k.cost_usd, 0.05);

  const csv = await run<string>({ op: "usage", from: DAY, to: DAY + 86_400_000, groupBy: "key", format: "csv" });
  const lines = csv.split("\r\n");
  assert.equal(lines[0], "key,key_name,requests,input_tokens,output_tokens,cache_creation_tokens,cache_read_tokens,cost_usd");
  assert.ok(csv.includes(`"team ""a"", =cmd|' /C calc'!A0\n'); DROP TABLE usage;--"`), "quoted, quotes doubled");

  const byModel = JSON.parse(await run<string>({ op: "usage", from: DAY, to: DAY + 86_400_000, groupBy: "model", format: "json" })) as {
    data: { model: string; requests: number }[];
  };
  assert.deepEqual(
    byModel.data.map((d) => [d.model, d.requests]),
    [
      ["claude-opus-4-1", 334],
      ["claude-sonnet-4-5", 666],
    ],
  );
  const byDay = JSON.parse(
    await run<string>({ op: "usage", from: DAY - 86_400_000, to: DAY + 86_400_000, groupBy: "day", format: "json" }),
  ) as { data: { day: string; requests: number }[] };
  assert.deepEqual(
    byDay.data.map((d) => [d.day, d.requests]),
    [
      ["2026-05-09", 1],
      ["2026-05-10", 1000],
    ],
  );
});

test("usage groups by developer (metadata.user_id) and by session, and says when each key was last used", async () => {
  const from = DAY + 2 * 86_400_000,
    to = from + 86_400_000;
  const rows: UsageRow[] = [];
  for (let i = 0; i < 12; i++) rows.push(row(20_000 + i, "static-9", "m", from + i * 1000, 1_000 * (i + 1)));
  rows.push([`req_anon`, from + 50_000, null, "m", "anthropic", 200, 1, 1, 1, 0, 0, 5, null, null, null]);
  await run({ op: "insert", rows });
  const byUser = JSON.parse(await run<string>({ op: "usage", from, to, groupBy: "user", format: "json" })) as {
    data: { user: string | null; requests: number; cost_usd: number }[];
  };
  // Row 20000 + i is user-((20000 + i) % 3) costing (i + 1) thousand micros: i = 1,4,7,10 are user-0 (2+5+8+11),
  // i = 2,5,8,11 user-1 (3+6+9+12), i = 0,3,6,9 user-2 (1+4+7+10); the row without a user is its own group.
  assert.deepEqual(
    byUser.data.map((d) => [d.user, d.requests, d.cost_usd]),
    [
      [null, 1, 0.000005],
      ["user-0", 4, 0.026],
      ["user-1", 4, 0.03],
      ["user-2", 4, 0.022],
    ],
  );
  const bySession = JSON.parse(await run<string>({ op: "usage", from, to, groupBy: "session", format: "json" })) as {
    data: { session: string | null; requests: number }[];
  };
  assert.deepEqual(
    bySession.data.map((d) => [d.session, d.requests]),
    [
      [null, 1],
      ["sess-0", 6],
      ["sess-1", 6],
    ],
  );
  const csv = await run<string>({ op: "usage", from, to, groupBy: "user", format: "csv" });
  assert.equal(csv.split("\r\n")[0], "user,requests,input_tokens,output_tokens,cache_creation_tokens,cache_read_tokens,cost_usd");
  const byKey = JSON.parse(await run<string>({ op: "usage", from, to, groupBy: "key", format: "json" })) as {
    data: { key: string | null; last_used: string | null }[];
  };
  assert.equal(byKey.data.find((d) => d.key === "static-9")!.last_used, new Date(from + 11_000).toISOString());
});

test("a spreadsheet formula in a name is defused in CSV", async () => {
  const k = newKey({ name: "=1+1" }, new Date(DAY));
  await run({ op: "key-create", record: k.record });
  await run({ op: "insert", rows: [row(9001, k.record.id, "m", DAY + 5)] });
  const csv = await run<string>({ op: "usage", from: DAY, to: DAY + 86_400_000, groupBy: "key", format: "csv" });
  assert.ok(csv.includes(`${k.record.id},'=1+1,1,`));
});

test("keys: update and revoke persist; a revoked key cannot be updated", async () => {
  const k = newKey({ name: "x", limits: { tokens_per_day: 5 } }, new Date());
  await run({ op: "key-create", record: k.record });
  assert.equal(await run({ op: "key-update", record: { ...k.record, limits: { usd_per_day: 2 } } }), true);
  assert.equal(await run({ op: "key-revoke", id: k.record.id, at: new Date().toISOString() }), true);
  assert.equal(await run({ op: "key-revoke", id: k.record.id, at: new Date().toISOString() }), false);
  assert.equal(await run({ op: "key-update", record: k.record }), false);
  const all = await run<{ id: string; limits: unknown; revoked_at: string | null }[]>({ op: "keys" });
  const got = all.find((r) => r.id === k.record.id)!;
  assert.deepEqual(got.limits, { usd_per_day: 2 });
  assert.ok(got.revoked_at !== null);
  assert.equal(await run({ op: "ping" }), true);
});

test("MCP audit records go into the audit table in the same transaction as usage rows", async () => {
  const audit: AuditRow[] = [
    ["req_a1", DAY, "static-0", "read_file", JSON.stringify({ path: ".env" }), "deny", 'path ".env" is blocked by policy', null, 0.4],
    [
      "req_a2",
      DAY + 1,
      "static-0",
      "run_command",
      JSON.stringify({ command: "test", args: { pattern: "x'); DROP TABLE audit;--" } }),
      "allow",
      "exit code 1",
      1,
      250.5,
    ],
  ];
  assert.equal(await run({ op: "insert", rows: [row(9001, "static-0", "claude-sonnet-4-5", DAY)], audit }), 3);
  assert.equal(await run({ op: "insert", rows: [] }), 0, "audit stays optional");
  const db = new Database(path, { readonly: true });
  const got = db
    .prepare(
      "SELECT request_id, key_id, tool, args, decision, reason, exit_code, duration_ms FROM audit WHERE request_id LIKE 'req_a%' ORDER BY seq",
    )
    .all();
  db.close();
  assert.deepEqual(got, [
    {
      request_id: "req_a1",
      key_id: "static-0",
      tool: "read_file",
      args: '{"path":".env"}',
      decision: "deny",
      reason: 'path ".env" is blocked by policy',
      exit_code: null,
      duration_ms: 0.4,
    },
    {
      request_id: "req_a2",
      key_id: "static-0",
      tool: "run_command",
      args: audit[1]![4],
      decision: "allow",
      reason: "exit code 1",
      exit_code: 1,
      duration_ms: 250.5,
    },
  ]);
});

test("a ledger made before client_request_id existed gets the column; old rows keep NULL, new rows store it", async () => {
  const oldPath = join(dir, "old-schema.db");
  const db = new Database(oldPath);
  db.exec(`CREATE TABLE usage (seq INTEGER PRIMARY KEY, request_id TEXT NOT NULL, ts INTEGER NOT NULL, key_id TEXT, model TEXT,
    provider TEXT NOT NULL, status INTEGER NOT NULL, latency_ms REAL NOT NULL, input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL,
    cache_creation_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL, cost_micros INTEGER NOT NULL, session_id TEXT)`);
  db.prepare("INSERT INTO usage VALUES (1, 'req_old', 1, NULL, 'm', 'anthropic', 200, 1, 1, 1, 0, 0, 1, NULL)").run();
  db.close();
  const p = new Piscina({
    filename: fileURLToPath(new URL("../../workers/ledger-task.js", import.meta.url)),
    workerData: { path: oldPath },
    minThreads: 1,
    maxThreads: 1,
  });
  try {
    const row: UsageRow = ["req_p_0_1", 2, null, "m", "anthropic", 200, 1, 1, 1, 0, 0, 1, null, "client-trace-7", null];
    assert.equal(await p.run({ op: "insert", rows: [row] } satisfies LedgerTask), 1);
  } finally {
    await p.destroy();
  }
  const rows = new Database(oldPath, { readonly: true }).prepare("SELECT request_id, client_request_id FROM usage ORDER BY seq").all();
  assert.deepEqual(rows, [
    { request_id: "req_old", client_request_id: null },
    { request_id: "req_p_0_1", client_request_id: "client-trace-7" },
  ]);
});
