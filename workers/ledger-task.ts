/**
 * piscina task module: the usage ledger in SQLite (better-sqlite3). The pool runs exactly
 * one thread, so this is the only writer; the serving threads never touch SQLite. The
 * module exports a Promise of the handler, so the database opens once per worker.
 *
 * Every statement is prepared with bound parameters: key names, models and session ids
 * are data, never SQL.
 *
 * Retention (LEDGER_RETENTION_DAYS): after an insert, at most once a minute while there is
 * nothing old left, the writer deletes up to PRUNE_BATCH of the oldest rows past the
 * retention window, so no single write holds the database for long. Rows of the current
 * UTC month are not pruned by age: the monthly budgets are rebuilt from them at start-up.
 * LEDGER_MAX_MB caps the pages in use: past it the oldest rows go first whatever their age
 * (budgets in force are kept in memory; only a restart would recount less), because a
 * volume that fills up gets the pod evicted with no grace period. Freed pages are reused,
 * so the file stops growing at about the cap.
 */
import Database from "better-sqlite3";
import { mkdirSync, statSync } from "node:fs";
import { dirname } from "node:path";
import { workerData } from "piscina";
import type { KeyRecord } from "../core/keys.js";
import { csvCell, keyRecordFromRow } from "./ledger-rows.js";
import { PRUNE_BATCH, pruneCutoff } from "../core/retention.js";

/** One finished request, as a tuple (cheap to clone between threads). */
export type UsageRow = [
  requestId: string,
  ts: number,
  keyId: string | null,
  model: string | null,
  provider: string,
  status: number,
  latencyMs: number,
  inputTokens: number,
  outputTokens: number,
  cacheCreationTokens: number,
  cacheReadTokens: number,
  costMicros: number,
  sessionId: string | null,
  /** The client's x-request-id (not unique; the gateway's requestId is the key). */
  clientRequestId: string | null,
  /** metadata.user_id of the request body (Claude Code sends one per developer), capped at 200 characters. */
  userId: string | null,
  /** 1: answered from the response cache (0 provider tokens); absent = 0. */
  cacheHit?: number,
  /** On a cache hit, the tokens the stored answer had cost (what the hit saved). */
  savedTokens?: number,
];

/**
 * One MCP tool call's audit record (the `tool_call` log line), as a tuple. `args` is the
 * secret-free summary as JSON (server/mcp/tools.ts `summarise`), never the raw arguments.
 */
export type AuditRow = [
  requestId: string,
  ts: number,
  keyId: string | null,
  tool: string,
  args: string | null,
  decision: string,
  reason: string | null,
  exitCode: number | null,
  durationMs: number,
];

export type GroupBy = "key" | "model" | "day" | "user" | "session";

export type LedgerTask =
  | { op: "init"; dayStart: number; monthStart: number }
  /** `batchId`: the same for every retry of one batch (PostgreSQL writes a batch id once). */
  | { op: "insert"; rows: UsageRow[]; audit?: AuditRow[]; batchId?: string }
  | { op: "key-create"; record: KeyRecord }
  | { op: "key-update"; record: KeyRecord }
  | { op: "key-revoke"; id: string; at: string }
  | { op: "keys" }
  /** Keys changed after `version` (PostgreSQL: replicas reconcile; SQLite has one writer: none). */
  | { op: "keys-since"; version: number }
  | { op: "usage"; from: number; to: number; groupBy: GroupBy; format: "json" | "csv" }
  | { op: "ping" }
  | { op: "prune"; now: number }
  | { op: "size" }
  /** PostgreSQL only (fleet budget leases, server/fleet/budget-lease.ts): record a Redis boot marker; true when another was recorded. */
  | { op: "budget-boot"; boot: string };

export interface SpendRow {
  key_id: string;
  day_tokens: number;
  day_micros: number;
  month_tokens: number;
  month_micros: number;
}

export interface LedgerData {
  path: string;
  /** Days of usage and audit rows to keep; 0 = keep everything. */
  retentionDays: number;
  /** Cap on the pages in use, in bytes; 0 = no cap. */
  maxBytes: number;
}

/** The pause between prune steps once nothing old is left. */
const PRUNE_EVERY_MS = 60_000;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS usage (
  seq INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  key_id TEXT,
  model TEXT,
  provider TEXT NOT NULL,
  status INTEGER NOT NULL,
  latency_ms REAL NOT NULL,
  input_tokens INTEGER NOT NULL,
  output_tokens INTEGER NOT NULL,
  cache_creation_tokens INTEGER NOT NULL,
  cache_read_tokens INTEGER NOT NULL,
  cost_micros INTEGER NOT NULL,
  session_id TEXT,
  client_request_id TEXT
);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts);
CREATE INDEX IF NOT EXISTS usage_key_ts ON usage (key_id, ts);
CREATE TABLE IF NOT EXISTS keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  digest TEXT NOT NULL UNIQUE,
  models TEXT,
  limits TEXT NOT NULL,
  created_at TEXT NOT NULL,
  revoked_at TEXT
);
CREATE TABLE IF NOT EXISTS audit (
  seq INTEGER PRIMARY KEY,
  request_id TEXT NOT NULL,
  ts INTEGER NOT NULL,
  key_id TEXT,
  tool TEXT NOT NULL,
  args TEXT,
  decision TEXT NOT NULL,
  reason TEXT,
  exit_code INTEGER,
  duration_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
CREATE INDEX IF NOT EXISTS audit_key_ts ON audit (key_id, ts);
`;

const GROUP_EXPR: Record<GroupBy, string> = {
  key: "u.key_id",
  model: "u.model",
  day: "strftime('%Y-%m-%d', u.ts / 1000, 'unixepoch')",
  user: "u.user_id",
  session: "u.session_id",
};

function open(path: string, retentionDays: number, maxBytes: number) {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  const db = new Database(path);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("cache_size = -64000");
  db.pragma("temp_store = MEMORY");
  db.pragma("busy_timeout = 5000");
  // After a checkpoint the WAL is cut back to 64 MiB, so it cannot keep what a long read let it grow to.
  db.pragma("journal_size_limit = 67108864");
  db.exec(SCHEMA);
  // Tool rights arrived later: keys made before them keep every tool, as they had.
  const keyCols = (db.prepare("PRAGMA table_info(keys)").all() as { name: string }[]).map((c) => c.name);
  if (!keyCols.includes("tools")) db.exec(`ALTER TABLE keys ADD COLUMN tools TEXT NOT NULL DEFAULT '["*"]'`);
  if (!keyCols.includes("commands")) db.exec("ALTER TABLE keys ADD COLUMN commands TEXT");
  // Ledgers created before client_request_id existed get the column (additive, NULL for old rows).
  const cols = db.prepare("SELECT name FROM pragma_table_info('usage')").all() as { name: string }[];
  if (!cols.some((c) => c.name === "client_request_id")) db.exec("ALTER TABLE usage ADD COLUMN client_request_id TEXT");
  // The response cache (docs/cache.md): additive columns, 0 for older rows.
  if (!cols.some((c) => c.name === "cache_hit")) db.exec("ALTER TABLE usage ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0");
  if (!cols.some((c) => c.name === "saved_tokens")) db.exec("ALTER TABLE usage ADD COLUMN saved_tokens INTEGER NOT NULL DEFAULT 0");
  if (!keyCols.includes("cache")) db.exec("ALTER TABLE keys ADD COLUMN cache TEXT");
  // Attribution by developer (metadata.user_id) came later still: additive too.
  if (!cols.some((c) => c.name === "user_id")) db.exec("ALTER TABLE usage ADD COLUMN user_id TEXT");

  const insertRow = db.prepare(
    `INSERT INTO usage (request_id, ts, key_id, model, provider, status, latency_ms, input_tokens, output_tokens,
       cache_creation_tokens, cache_read_tokens, cost_micros, session_id, client_request_id, user_id, cache_hit, saved_tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
  );
  const insertAudit = db.prepare(
    "INSERT INTO audit (request_id, ts, key_id, tool, args, decision, reason, exit_code, duration_ms) VALUES (?,?,?,?,?,?,?,?,?)",
  );
  const insertMany = db.transaction((rows: UsageRow[], audit: AuditRow[]) => {
    for (const r of rows) insertRow.run(r.length === 17 ? r : [...r, 0, 0].slice(0, 17)); // rows without the cache fields
    for (const a of audit) insertAudit.run(a);
  });
  const keyInsert = db.prepare(
    "INSERT INTO keys (id, name, digest, models, limits, tools, commands, cache, created_at, revoked_at) VALUES (@id, @name, @digest, @models, @limits, @tools, @commands, @cache, @created_at, @revoked_at)",
  );
  const keyUpdate = db.prepare(
    "UPDATE keys SET name = @name, models = @models, limits = @limits, tools = @tools, commands = @commands, cache = @cache WHERE id = @id AND revoked_at IS NULL",
  );
  const keyRevoke = db.prepare("UPDATE keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL");
  const keyAll = db.prepare(
    "SELECT id, name, digest, models, limits, tools, commands, cache, created_at, revoked_at FROM keys ORDER BY created_at, id",
  );
  const spendSince = db.prepare(
    `SELECT key_id, SUM(input_tokens + output_tokens + cache_creation_tokens + cache_read_tokens) AS tokens,
       SUM(cost_micros) AS micros FROM usage WHERE ts >= ? AND key_id IS NOT NULL GROUP BY key_id`,
  );
  const ping = db.prepare("SELECT 1 AS ok");
  const pruneUsage = db.prepare(`DELETE FROM usage WHERE seq IN (SELECT seq FROM usage WHERE ts < ? ORDER BY ts LIMIT ${PRUNE_BATCH})`);
  const pruneAudit = db.prepare(`DELETE FROM audit WHERE seq IN (SELECT seq FROM audit WHERE ts < ? ORDER BY ts LIMIT ${PRUNE_BATCH})`);
  const pageSize = db.pragma("page_size", { simple: true }) as number;
  const pagesInUse = (): number =>
    (db.pragma("page_count", { simple: true }) as number) - (db.pragma("freelist_count", { simple: true }) as number);
  let pruneDue = 0;
  /** One prune step; returns the rows deleted. Due again at once while a step deleted rows. */
  const overCap = (): boolean => maxBytes > 0 && pagesInUse() * pageSize > maxBytes;
  function prune(now: number): number {
    const full = overCap();
    if (retentionDays === 0 && !full) return 0;
    const cutoff = full ? Number.MAX_SAFE_INTEGER : pruneCutoff(now, retentionDays);
    const n = pruneUsage.run(cutoff).changes + pruneAudit.run(cutoff).changes;
    pruneDue = n > 0 ? now : now + PRUNE_EVERY_MS;
    return n;
  }
  /** Bytes on disk: the database and its WAL (what fills the pod's volume). */
  function size(): number {
    if (path === ":memory:") return 0;
    let n = 0;
    for (const f of [path, `${path}-wal`]) {
      try {
        n += statSync(f).size;
      } catch {
        // no WAL right after a checkpoint
      }
    }
    return n;
  }
  const usageStmts = new Map<GroupBy, Database.Statement>();
  for (const g of ["key", "model", "day", "user", "session"] as const) {
    // Per key also when it was last used in the window (the dashboard's keys table).
    const extra = g === "key" ? ", k.name AS key_name, MAX(u.ts) AS last_used_ms" : "";
    usageStmts.set(
      g,
      db.prepare(
        `SELECT ${GROUP_EXPR[g]} AS ${g}${extra}, COUNT(*) AS requests, SUM(u.input_tokens) AS input_tokens,
           SUM(u.output_tokens) AS output_tokens, SUM(u.cache_creation_tokens) AS cache_creation_tokens,
           SUM(u.cache_read_tokens) AS cache_read_tokens, SUM(u.cost_micros) AS cost_micros
         FROM usage u ${g === "key" ? "LEFT JOIN keys k ON k.id = u.key_id" : ""}
         WHERE u.ts >= ? AND u.ts < ? GROUP BY 1 ORDER BY 1`,
      ),
    );
  }

  const params = (k: KeyRecord) => ({
    id: k.id,
    name: k.name,
    digest: k.digest,
    models: k.models === null ? null : JSON.stringify(k.models),
    limits: JSON.stringify(k.limits),
    tools: JSON.stringify(k.tools),
    commands: k.commands === null ? null : JSON.stringify(k.commands),
    cache: k.cache ?? null,
    created_at: k.created_at,
    revoked_at: k.revoked_at,
  });

  return function handle(task: LedgerTask): unknown {
    switch (task.op) {
      case "insert": {
        insertMany(task.rows, task.audit ?? []);
        const now = Date.now();
        if (now >= pruneDue || overCap()) prune(now);
        return task.rows.length + (task.audit?.length ?? 0);
      }
      case "prune":
        return prune(task.now);
      case "size":
        return size();
      case "init": {
        const spend = new Map<string, SpendRow>();
        const get = (id: string) => {
          let s = spend.get(id);
          if (s === undefined) spend.set(id, (s = { key_id: id, day_tokens: 0, day_micros: 0, month_tokens: 0, month_micros: 0 }));
          return s;
        };
        for (const r of spendSince.all(task.dayStart) as { key_id: string; tokens: number; micros: number }[]) {
          const s = get(r.key_id);
          s.day_tokens = r.tokens;
          s.day_micros = r.micros;
        }
        for (const r of spendSince.all(task.monthStart) as { key_id: string; tokens: number; micros: number }[]) {
          const s = get(r.key_id);
          s.month_tokens = r.tokens;
          s.month_micros = r.micros;
        }
        return { keys: (keyAll.all() as Record<string, unknown>[]).map(keyRecordFromRow), spend: [...spend.values()] };
      }
      case "key-create":
        keyInsert.run(params(task.record));
        return true;
      case "key-update":
        return keyUpdate.run(params(task.record)).changes === 1;
      case "key-revoke":
        return keyRevoke.run(task.at, task.id).changes === 1;
      case "keys":
        return (keyAll.all() as Record<string, unknown>[]).map(keyRecordFromRow);
      case "keys-since":
        return [];
      case "usage": {
        const rows = usageStmts.get(task.groupBy)!.all(task.from, task.to) as Record<string, unknown>[];
        const out = rows.map((r) => {
          const o: Record<string, unknown> = { ...r, cost_usd: Number(r.cost_micros) / 1e6 };
          delete o.cost_micros;
          if (r.last_used_ms !== undefined) {
            o.last_used = r.last_used_ms === null ? null : new Date(Number(r.last_used_ms)).toISOString();
            delete o.last_used_ms;
          }
          return o;
        });
        if (task.format === "json")
          return JSON.stringify({
            group_by: task.groupBy,
            from: new Date(task.from).toISOString(),
            to: new Date(task.to).toISOString(),
            data: out,
          });
        const cols = [
          task.groupBy,
          ...(task.groupBy === "key" ? ["key_name"] : []),
          "requests",
          "input_tokens",
          "output_tokens",
          "cache_creation_tokens",
          "cache_read_tokens",
          "cost_usd",
        ];
        return [cols.join(","), ...out.map((o) => cols.map((c) => csvCell(o[c])).join(","))].join("\r\n") + "\r\n";
      }
      case "ping":
        return (ping.get() as { ok: number }).ok === 1;
    }
  };
}

export default (async () => {
  const d = workerData as LedgerData;
  return open(d.path, d.retentionDays ?? 0, d.maxBytes ?? 0);
})();
