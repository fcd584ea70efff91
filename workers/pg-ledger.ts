/**
 * The usage ledger and the keys table in PostgreSQL (DATABASE_URL=postgres://…,
 * fleet mode, docs/fleet.md), run by the piscina task module workers/pg-ledger-task.ts. It answers the same tasks as workers/ledger-task.ts (SQLite), so
 * server/ledger.ts is the same for both; what differs is what a shared database needs:
 *
 * - Migrations are versioned and run under a session advisory lock, so replicas that start
 *   together apply each one exactly once (the others wait, then see it applied).
 * - usage and audit are partitioned by month on `ts` (declarative partitioning); the writer
 *   creates the partitions ahead (this month and the next two) and retention drops whole
 *   partitions, so pruning is a metadata operation at any size.
 * - A batch carries an id chosen by the hub; the insert and the id's row commit in one
 *   transaction, and an id already present makes the batch a no-op. A batch retried after a
 *   lost acknowledgement is therefore never written twice.
 * - Rows go in as one INSERT … SELECT FROM unnest($1::text[], …): one statement and one
 *   parameter per column, whatever the batch size.
 * - Every key change bumps `version` from one sequence, so replicas reconcile by asking for
 *   versions above the last they saw ("keys-since").
 *
 * Every value is a bound parameter; only partition names (built from digits) are spliced.
 */
import pg from "pg";
import type { KeyRecord } from "../core/keys.js";
import { csvCell, keyRecordFromRow } from "./ledger-rows.js";
import { pruneCutoff } from "../core/retention.js";
import type { AuditRow, GroupBy, LedgerTask, SpendRow, UsageRow } from "./ledger-task.js";

export interface PgLedgerData {
  url: string;
  retentionDays: number;
}

/** Arbitrary constant: the advisory lock every replica takes around migrations. */
const MIGRATE_LOCK = 0x706f7274; // "port"

/** Versioned migrations: append only, never edit one that shipped. */
const MIGRATIONS: string[] = [
  `CREATE SEQUENCE portcullis_key_version;
   CREATE TABLE keys (
     id TEXT PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL UNIQUE, models TEXT, limits TEXT NOT NULL,
     tools TEXT NOT NULL DEFAULT '["*"]', commands TEXT, cache TEXT, created_at TEXT NOT NULL, revoked_at TEXT,
     version BIGINT NOT NULL DEFAULT nextval('portcullis_key_version'));
   CREATE INDEX keys_version ON keys (version);
   CREATE TABLE usage (
     request_id TEXT NOT NULL, ts BIGINT NOT NULL, key_id TEXT, model TEXT, provider TEXT NOT NULL, status INTEGER NOT NULL,
     latency_ms DOUBLE PRECISION NOT NULL, input_tokens BIGINT NOT NULL, output_tokens BIGINT NOT NULL,
     cache_creation_tokens BIGINT NOT NULL, cache_read_tokens BIGINT NOT NULL, cost_micros BIGINT NOT NULL,
     session_id TEXT, client_request_id TEXT, cache_hit INTEGER NOT NULL DEFAULT 0, saved_tokens BIGINT NOT NULL DEFAULT 0,
     batch_id TEXT NOT NULL) PARTITION BY RANGE (ts);
   CREATE INDEX usage_ts ON usage (ts);
   CREATE INDEX usage_key_ts ON usage (key_id, ts);
   CREATE TABLE usage_default PARTITION OF usage DEFAULT;
   CREATE TABLE audit (
     request_id TEXT NOT NULL, ts BIGINT NOT NULL, key_id TEXT, tool TEXT NOT NULL, args TEXT, decision TEXT NOT NULL,
     reason TEXT, exit_code INTEGER, duration_ms DOUBLE PRECISION NOT NULL, batch_id TEXT NOT NULL) PARTITION BY RANGE (ts);
   CREATE INDEX audit_ts ON audit (ts);
   CREATE TABLE audit_default PARTITION OF audit DEFAULT;
   CREATE TABLE ledger_batches (id TEXT PRIMARY KEY, written_at TIMESTAMPTZ NOT NULL DEFAULT now());`,
  // 2: attribution by developer (metadata.user_id), as in the SQLite ledger.
  `ALTER TABLE usage ADD COLUMN user_id TEXT;
   CREATE INDEX usage_user ON usage (user_id);`,
  // 3: the Redis boot markers fleet budget leases were taken under (server/fleet/budget-lease.ts: a fresh Redis).
  `CREATE TABLE budget_boots (boot TEXT PRIMARY KEY, seen_at TIMESTAMPTZ NOT NULL DEFAULT now());`,
];

const KEY_COLS = "id, name, digest, models, limits, tools, commands, cache, created_at, revoked_at, version";

const GROUP_EXPR: Record<GroupBy, string> = {
  key: "u.key_id",
  model: "u.model",
  day: "to_char(to_timestamp(u.ts / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD')",
  user: "u.user_id",
  session: "u.session_id",
};

/** "2026_11" for the month holding `ms`, and that month's bounds in ms. */
function month(ms: number, ahead = 0): { tag: string; from: number; to: number } {
  const d = new Date(ms);
  const y = d.getUTCFullYear(),
    m = d.getUTCMonth() + ahead;
  const from = Date.UTC(y, m, 1),
    to = Date.UTC(y, m + 1, 1);
  const f = new Date(from);
  return { tag: `${f.getUTCFullYear()}_${String(f.getUTCMonth() + 1).padStart(2, "0")}`, from, to };
}

function keyParams(k: KeyRecord): unknown[] {
  return [
    k.id,
    k.name,
    k.digest,
    k.models === null ? null : JSON.stringify(k.models),
    JSON.stringify(k.limits),
    JSON.stringify(k.tools),
    k.commands === null ? null : JSON.stringify(k.commands),
    k.cache ?? null,
    k.created_at,
    k.revoked_at,
  ];
}

/** Columns of a usage row as arrays, for unnest (rows without the cache fields get 0). */
function usageColumns(rows: UsageRow[], batchId: string): unknown[][] {
  const cols: unknown[][] = Array.from({ length: 18 }, () => new Array(rows.length));
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    for (let c = 0; c < 15; c++) cols[c]![i] = r[c]; // nullable text columns stay null
    cols[15]![i] = r[15] ?? 0; // cache_hit, saved_tokens: absent on rows without the cache fields
    cols[16]![i] = r[16] ?? 0;
    cols[17]![i] = batchId;
  }
  return cols;
}

function auditColumns(rows: AuditRow[], batchId: string): unknown[][] {
  const cols: unknown[][] = Array.from({ length: 10 }, () => new Array(rows.length));
  for (let i = 0; i < rows.length; i++) {
    for (let c = 0; c < 9; c++) cols[c]![i] = rows[i]![c];
    cols[9]![i] = batchId;
  }
  return cols;
}

const INSERT_USAGE = `INSERT INTO usage (request_id, ts, key_id, model, provider, status, latency_ms, input_tokens, output_tokens,
  cache_creation_tokens, cache_read_tokens, cost_micros, session_id, client_request_id, user_id, cache_hit, saved_tokens, batch_id)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::int[], $7::float8[], $8::bigint[],
  $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::text[], $14::text[], $15::text[], $16::int[], $17::bigint[], $18::text[])`;
const INSERT_AUDIT = `INSERT INTO audit (request_id, ts, key_id, tool, args, decision, reason, exit_code, duration_ms, batch_id)
  SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int[], $9::float8[], $10::text[])`;

export async function openPg(url: string, retentionDays: number) {
  // Sums and counts come back as int8: numbers, like SQLite's (far below 2^53 in practice).
  pg.types.setTypeParser(20, (v) => Number(v));
  pg.types.setTypeParser(1700, (v) => Number(v));
  const pool = new pg.Pool({
    connectionString: url,
    max: 4,
    connectionTimeoutMillis: 3000,
    idleTimeoutMillis: 30_000,
    query_timeout: 15_000,
  });
  // A dropped connection is an 'error' on an idle client: the next query reconnects.
  pool.on("error", () => {});

  async function migrate(): Promise<void> {
    const c = await pool.connect();
    try {
      await c.query("SELECT pg_advisory_lock($1)", [MIGRATE_LOCK]);
      await c.query(
        "CREATE TABLE IF NOT EXISTS portcullis_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
      );
      const done = new Set((await c.query<{ version: number }>("SELECT version FROM portcullis_migrations")).rows.map((r) => r.version));
      for (let v = 1; v <= MIGRATIONS.length; v++) {
        if (done.has(v)) continue;
        await c.query("BEGIN");
        try {
          await c.query(MIGRATIONS[v - 1]!);
          await c.query("INSERT INTO portcullis_migrations (version) VALUES ($1)", [v]);
          await c.query("COMMIT");
        } catch (e) {
          await c.query("ROLLBACK");
          throw e;
        }
      }
    } finally {
      await c.query("SELECT pg_advisory_unlock($1)", [MIGRATE_LOCK]).catch(() => {});
      c.release();
    }
  }

  let partitionsUntil = 0;
  /** This month's and the next two months' partitions (idempotent; cheap once done for the month). */
  async function partitions(now: number): Promise<void> {
    if (now < partitionsUntil) return;
    for (let a = 0; a < 3; a++) {
      const m = month(now, a);
      for (const t of ["usage", "audit"]) {
        await pool
          .query(`CREATE TABLE IF NOT EXISTS ${t}_p${m.tag} PARTITION OF ${t} FOR VALUES FROM (${m.from}) TO (${m.to})`)
          .catch((e: Error) => {
            // Another replica created it between IF NOT EXISTS and CREATE: fine.
            if (!/already exists/.test(e.message)) throw e;
          });
      }
    }
    partitionsUntil = month(now).to;
  }

  /** Retention: drop whole monthly partitions that end before the cutoff (never this month's). */
  async function prune(now: number): Promise<number> {
    if (retentionDays === 0) return 0;
    const cutoff = pruneCutoff(now, retentionDays);
    const r = await pool.query<{ name: string }>(
      "SELECT c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname IN ('usage','audit')",
    );
    let dropped = 0;
    for (const { name } of r.rows) {
      const m = /^(usage|audit)_p(\d{4})_(\d{2})$/.exec(name);
      if (m === null) continue;
      if (Date.UTC(Number(m[2]), Number(m[3]), 1) <= cutoff) {
        await pool.query(`DROP TABLE IF EXISTS ${name}`);
        dropped++;
      }
    }
    return dropped;
  }

  async function insert(batchId: string, rows: UsageRow[], audit: AuditRow[]): Promise<number> {
    await partitions(Date.now());
    const c = await pool.connect();
    try {
      await c.query("BEGIN");
      const fresh = await c.query("INSERT INTO ledger_batches (id) VALUES ($1) ON CONFLICT (id) DO NOTHING", [batchId]);
      if (fresh.rowCount === 1) {
        if (rows.length > 0) await c.query(INSERT_USAGE, usageColumns(rows, batchId));
        if (audit.length > 0) await c.query(INSERT_AUDIT, auditColumns(audit, batchId));
      }
      await c.query("COMMIT");
    } catch (e) {
      await c.query("ROLLBACK").catch(() => {});
      throw e;
    } finally {
      c.release();
    }
    return rows.length + audit.length;
  }

  const spendSince = `SELECT key_id, SUM(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens)::bigint AS tokens,
    SUM(cost_micros)::bigint AS micros FROM usage WHERE ts >= $1 AND key_id IS NOT NULL GROUP BY key_id`;

  async function usage(task: Extract<LedgerTask, { op: "usage" }>): Promise<string> {
    const g = task.groupBy;
    const extra = g === "key" ? ", k.name AS key_name" : "";
    const r = await pool.query(
      `SELECT ${GROUP_EXPR[g]} AS ${g}${extra}, COUNT(*)::bigint AS requests, SUM(u.input_tokens)::bigint AS input_tokens,
         SUM(u.output_tokens)::bigint AS output_tokens, SUM(u.cache_creation_tokens)::bigint AS cache_creation_tokens,
         SUM(u.cache_read_tokens)::bigint AS cache_read_tokens, SUM(u.cost_micros)::bigint AS cost_micros
       FROM usage u ${g === "key" ? "LEFT JOIN keys k ON k.id = u.key_id" : ""}
       WHERE u.ts >= $1 AND u.ts < $2 GROUP BY 1${g === "key" ? ", k.name" : ""} ORDER BY 1`,
      [task.from, task.to],
    );
    const out = r.rows.map((row: Record<string, unknown>) => {
      const o: Record<string, unknown> = { ...row, cost_usd: Number(row.cost_micros) / 1e6 };
      delete o.cost_micros;
      return o;
    });
    if (task.format === "json")
      return JSON.stringify({ group_by: g, from: new Date(task.from).toISOString(), to: new Date(task.to).toISOString(), data: out });
    const cols = [
      g,
      ...(g === "key" ? ["key_name"] : []),
      "requests",
      "input_tokens",
      "output_tokens",
      "cache_creation_tokens",
      "cache_read_tokens",
      "cost_usd",
    ];
    return [cols.join(","), ...out.map((o) => cols.map((c) => csvCell(o[c])).join(","))].join("\r\n") + "\r\n";
  }

  async function handle(task: LedgerTask): Promise<unknown> {
    switch (task.op) {
      case "insert":
        return insert(task.batchId ?? `unnamed-${Date.now()}-${Math.random()}`, task.rows, task.audit ?? []);
      case "init": {
        await migrate();
        await partitions(Date.now());
        await prune(Date.now());
        const spend = new Map<string, SpendRow>();
        const get = (id: string) => {
          let s = spend.get(id);
          if (s === undefined) spend.set(id, (s = { key_id: id, day_tokens: 0, day_micros: 0, month_tokens: 0, month_micros: 0 }));
          return s;
        };
        for (const r of (await pool.query(spendSince, [task.dayStart])).rows as { key_id: string; tokens: number; micros: number }[]) {
          const s = get(r.key_id);
          s.day_tokens = r.tokens;
          s.day_micros = r.micros;
        }
        for (const r of (await pool.query(spendSince, [task.monthStart])).rows as { key_id: string; tokens: number; micros: number }[]) {
          const s = get(r.key_id);
          s.month_tokens = r.tokens;
          s.month_micros = r.micros;
        }
        const keys = (await pool.query(`SELECT ${KEY_COLS} FROM keys ORDER BY created_at, id`)).rows;
        const version = keys.reduce((v: number, r: Record<string, unknown>) => Math.max(v, Number(r.version)), 0);
        return { keys: keys.map(keyRecordFromRow), spend: [...spend.values()], version };
      }
      case "key-create":
        await pool.query(
          "INSERT INTO keys (id, name, digest, models, limits, tools, commands, cache, created_at, revoked_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
          keyParams(task.record),
        );
        return true;
      case "key-update": {
        const p = keyParams(task.record);
        const r = await pool.query(
          "UPDATE keys SET name = $2, models = $3, limits = $4, tools = $5, commands = $6, cache = $7, version = nextval('portcullis_key_version') WHERE id = $1 AND revoked_at IS NULL",
          [p[0], p[1], p[3], p[4], p[5], p[6], p[7]],
        );
        return r.rowCount === 1;
      }
      case "key-revoke":
        return (
          (
            await pool.query(
              "UPDATE keys SET revoked_at = $1, version = nextval('portcullis_key_version') WHERE id = $2 AND revoked_at IS NULL",
              [task.at, task.id],
            )
          ).rowCount === 1
        );
      case "keys":
        return (await pool.query(`SELECT ${KEY_COLS} FROM keys ORDER BY created_at, id`)).rows.map(keyRecordFromRow);
      case "keys-since":
        return (await pool.query(`SELECT ${KEY_COLS} FROM keys WHERE version > $1 ORDER BY version`, [task.version])).rows.map(
          (r: Record<string, unknown>) => ({ record: keyRecordFromRow(r), version: Number(r.version) }),
        );
      case "usage":
        return usage(task);
      case "ping":
        return (await pool.query("SELECT 1 AS ok")).rows[0]?.ok === 1;
      case "prune":
        return prune(task.now);
      case "size":
        return 0; // the database is not on the pod's volume
      case "budget-boot":
        // Committed before the check (autocommit): a replica that records first is seen by every later check.
        await pool.query("INSERT INTO budget_boots (boot) VALUES ($1) ON CONFLICT (boot) DO NOTHING", [task.boot]);
        return (await pool.query("SELECT EXISTS (SELECT 1 FROM budget_boots WHERE boot <> $1) AS others", [task.boot])).rows[0].others;
    }
  }
  return { handle, close: () => pool.end() };
}
