/**
 * The main thread's side of the ledger: owns the single-thread piscina pool that runs
 * workers/ledger-task.ts, groups the usage rows and MCP audit records that acceptor threads
 * send into batches (one write in flight; rows arriving meanwhile form the next batch), runs the admin
 * API's key operations (persist, then broadcast to every acceptor and wait for their
 * acknowledgement, so a change is in force on every thread before the admin gets an
 * answer), and keeps a cached database check for /health/ready.
 *
 * The writer is SQLite (workers/ledger-task.ts) or, with DATABASE_URL=postgres://…, PostgreSQL
 * (workers/pg-ledger-task.ts, fleet mode, docs/fleet.md): then every batch keeps one id across
 * its retries (written once), and the keys table is reconciled every KEY_SYNC_MS so a key
 * changed through any replica's admin API is in force here too.
 */
import { fileURLToPath } from "node:url";
import { randomBytes } from "node:crypto";
import { Piscina } from "piscina";
import type { Logger } from "pino";
import type { GatewayConfig } from "../core/config.js";
import type { ErrorCode } from "../core/errors.js";
import type { BudgetLimits, Budgets } from "../core/budget.js";
import { budgetOf, newKey, publicKey, type CreateKeyInput, type KeyRecord, type PatchKeyInput } from "../core/keys.js";
import type { UsageMetrics } from "../core/usage-metrics.js";
import type { AuditRow, GroupBy, LedgerData, LedgerTask, SpendRow, UsageRow } from "../workers/ledger-task.js";
import type { PgLedgerData } from "../workers/pg-ledger.js";

export type AdminOp =
  | { op: "create"; input: CreateKeyInput }
  | { op: "list" }
  | { op: "patch"; id: string; input: PatchKeyInput }
  | { op: "revoke"; id: string }
  | { op: "usage"; from: number; to: number; groupBy: GroupBy; format: "json" | "csv" };

export type AdminResult =
  | { ok: true; status: number; contentType: string; body: string }
  | { ok: false; code: ErrorCode; message?: string };

/** A key change sent to every acceptor thread. */
export interface KeyChange {
  put: { record: KeyRecord; slot: number }[];
  remove: string[];
}

/** Budget limits per key record (records are replaced, never changed, when a key is updated). */
const BUDGETS = new WeakMap<KeyRecord, BudgetLimits>();

/** Rows per write: one statement (PostgreSQL) or transaction (SQLite) stays short after an outage. */
const MAX_BATCH = 5_000;
const HEALTH_EVERY_MS = 5_000;

export class LedgerHub {
  private readonly pool: Piscina;
  private readonly cfg: GatewayConfig;
  private readonly log: Logger;
  private readonly usage: UsageMetrics;
  private readonly budgets: Budgets;
  private readonly keys = new Map<string, { record: KeyRecord; slot: number }>();
  private nextSlot: number;
  private readonly lastSlot: number;
  private pending: UsageRow[] = [];
  private pendingAudit: AuditRow[] = [];
  /** The batch being written or retried: the same id and rows until it is written. */
  private batch: { id: string; rows: UsageRow[]; audit: AuditRow[] } | null = null;
  private batchSeq = 0;
  private readonly batchPrefix = randomBytes(9).toString("base64url");
  /** Highest key version applied (PostgreSQL reconcile). */
  private keyVersion = 0;
  private syncTimer: NodeJS.Timeout | null = null;
  /** Key changes (admin and reconcile) run one at a time: a slot is given once. */
  private keyChain: Promise<unknown> = Promise.resolve();
  readonly fleet: boolean;
  private writing: Promise<void> | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private healthTimer: NodeJS.Timeout | null = null;
  private lastOkAt = 0;
  dropped = 0;
  /** Sends a key change to every acceptor; resolves once all applied it. */
  broadcast: (c: KeyChange) => Promise<void> = async () => {};
  /** Fleet mode: tells the other replicas a key changed (server/fleet/key-bus.ts). */
  announce: () => void = () => {};

  constructor(cfg: GatewayConfig, log: Logger, usage: UsageMetrics, budgets: Budgets) {
    this.cfg = cfg;
    this.log = log;
    this.usage = usage;
    this.budgets = budgets;
    this.nextSlot = cfg.apiKeys.length;
    this.lastSlot = cfg.apiKeys.length + cfg.max_keys;
    this.fleet = cfg.database_url !== null;
    this.pool = new Piscina({
      filename: fileURLToPath(new URL(this.fleet ? "../workers/pg-ledger-task.js" : "../workers/ledger-task.js", import.meta.url)),
      workerData: this.fleet
        ? ({ url: cfg.database_url!, retentionDays: cfg.ledger_retention_days } satisfies PgLedgerData)
        : ({
            path: cfg.database_path,
            retentionDays: cfg.ledger_retention_days,
            maxBytes: cfg.ledger_max_mb * 1024 * 1024,
          } satisfies LedgerData),
      minThreads: 1,
      maxThreads: 1,
      // PostgreSQL is asynchronous: a key lookup need not wait behind a batch write.
      concurrentTasksPerWorker: this.fleet ? 4 : 1,
      idleTimeout: 2 ** 31 - 1,
      // Idle, the thread runs its timers (V8's memory reducer) instead of blocking in Atomics.wait.
      atomics: "async",
    });
    this.pool.on("error", (e: unknown) => {
      this.setOk(false);
      log.error({ err: String(e) }, "ledger worker error");
    });
  }

  /** Live keys with their slot and budget (fleet budget leases, server/fleet/budget-lease.ts). */
  *budgetKeys(): Generator<{ id: string; slot: number; limits: BudgetLimits }> {
    for (const e of this.keys.values()) {
      let limits = BUDGETS.get(e.record);
      if (limits === undefined) BUDGETS.set(e.record, (limits = budgetOf(e.record.limits)));
      yield { id: e.record.id, slot: e.slot, limits };
    }
  }

  /** Each key's spend since `from` (ms) in the ledger: rebuilds the lease counters after Redis lost them. */
  async spendSince(from: number): Promise<Map<string, { tok: number; usd: number }>> {
    const body = await this.run<string>({ op: "usage", from, to: Date.now() + 86_400_000, groupBy: "key", format: "json" });
    const out = new Map<string, { tok: number; usd: number }>();
    for (const r of (JSON.parse(body) as { data: Record<string, unknown>[] }).data) {
      if (typeof r.key !== "string") continue;
      const tok = ["input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens"].reduce(
        (a, c) => a + Number(r[c] ?? 0),
        0,
      );
      out.set(r.key, { tok, usd: Math.round(Number(r.cost_usd ?? 0) * 1e6) });
    }
    return out;
  }

  /** Records a Redis boot marker of the budget leases (PostgreSQL); true when the ledger held another one. */
  recordBudgetBoot(mark: string): Promise<boolean> {
    return this.run<boolean>({ op: "budget-boot", boot: mark });
  }

  /** Slots for budgets and rate limits: static keys first, then MAX_KEYS virtual keys. */
  static slots(cfg: GatewayConfig): number {
    return cfg.apiKeys.length + cfg.max_keys;
  }

  private run<T>(task: LedgerTask): Promise<T> {
    return this.pool.run(task) as Promise<T>;
  }

  private setOk(ok: boolean): void {
    if (ok) this.lastOkAt = Date.now();
    this.usage.setLedger(ok, Math.floor(Date.now() / 1000));
  }

  /**
   * Open the database, load the live keys and rebuild this day's and month's spend.
   * Throws when the database cannot be opened and BUDGET_FAIL_MODE is closed.
   */
  async init(): Promise<{ record: KeyRecord; slot: number }[]> {
    const now = Date.now();
    const dayStart = now - (now % 86_400_000);
    const d = new Date(now);
    const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
    try {
      const r = await this.run<{ keys: KeyRecord[]; spend: SpendRow[]; version?: number }>({ op: "init", dayStart, monthStart });
      this.keyVersion = r.version ?? 0;
      for (const k of r.keys) {
        if (k.revoked_at !== null) continue;
        if (this.nextSlot >= this.lastSlot) {
          this.log.error({ max_keys: this.cfg.max_keys }, "more live keys in the ledger than MAX_KEYS; the rest are not loaded");
          break;
        }
        this.keys.set(k.id, { record: k, slot: this.nextSlot++ });
      }
      for (const s of r.spend) {
        const k = this.keys.get(s.key_id);
        if (k !== undefined) this.budgets.seed(k.slot, s.day_tokens, s.day_micros, s.month_tokens, s.month_micros);
      }
      this.setOk(true);
      this.measure();
      this.log.info({ database: this.where(), keys: this.keys.size, spend_rows: r.spend.length }, "ledger opened");
    } catch (e) {
      this.setOk(false);
      if (this.cfg.budget_fail_mode === "closed")
        throw new Error(
          `${this.fleet ? "DATABASE_URL" : "DATABASE_PATH"}: cannot open the ledger at ${JSON.stringify(this.where())}: ${(e as Error).message}`,
        );
      this.log.error({ err: String(e), database: this.where() }, "ledger unavailable; BUDGET_FAIL_MODE=open, serving without it");
    }
    this.healthTimer = setInterval(() => this.check(), HEALTH_EVERY_MS);
    this.healthTimer.unref();
    if (this.fleet) {
      this.syncTimer = setInterval(() => void this.syncKeys(), this.cfg.key_sync_ms);
      this.syncTimer.unref();
    }
    return [...this.keys.values()];
  }

  /** Where the ledger is, for logs and errors: the SQLite path, or the PostgreSQL URL without its password. */
  private where(): string {
    if (!this.fleet) return this.cfg.database_path;
    const u = new URL(this.cfg.database_url!);
    if (u.password !== "") u.password = "***";
    return u.toString();
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.keyChain.then(fn, fn);
    this.keyChain = p.catch(() => {});
    return p;
  }

  /**
   * Fleet mode: apply the keys changed in PostgreSQL since the last version seen (created or
   * updated on any replica: put; revoked: removed), then tell the acceptors. Runs every
   * KEY_SYNC_MS and on demand; a failure is retried by the next run.
   */
  syncKeys(): Promise<void> {
    return this.serial(async () => {
      let changed: { record: KeyRecord; version: number }[];
      try {
        changed = await this.run({ op: "keys-since", version: this.keyVersion });
      } catch {
        return; // the health check reports the database; the next run retries
      }
      const change: KeyChange = { put: [], remove: [] };
      for (const { record, version } of changed) {
        this.keyVersion = Math.max(this.keyVersion, version);
        const live = this.keys.get(record.id);
        if (record.revoked_at !== null) {
          if (live === undefined) continue;
          this.keys.delete(record.id);
          change.remove.push(record.id);
        } else if (live === undefined) {
          if (this.nextSlot >= this.lastSlot) {
            this.log.error(
              { key_id: record.id, max_keys: this.cfg.max_keys },
              "a key from another replica does not fit MAX_KEYS; not loaded",
            );
            continue;
          }
          const entry = { record, slot: this.nextSlot++ };
          this.budgets.clear(entry.slot);
          this.keys.set(record.id, entry);
          change.put.push(entry);
        } else if (!sameKey(live.record, record)) {
          live.record = record;
          change.put.push(live);
        }
      }
      if (change.put.length === 0 && change.remove.length === 0) return;
      await this.broadcast(change);
      this.log.info({ put: change.put.map((e) => e.record.id), removed: change.remove }, "keys reconciled from the shared database");
    });
  }

  /** Cheap periodic check: the ledger's size on disk, and a ping only when no write succeeded recently. */
  private check(): void {
    this.measure();
    if (Date.now() - this.lastOkAt < HEALTH_EVERY_MS) {
      this.usage.setLedger(true, Math.floor(Date.now() / 1000));
      return;
    }
    this.run<boolean>({ op: "ping" }).then(
      (ok) => this.setOk(ok === true),
      () => this.setOk(false),
    );
  }

  /** ledger_size_bytes: what the ledger takes of the pod's volume (alerted on before the limit). */
  private measure(): void {
    this.run<number>({ op: "size" }).then(
      (bytes) => this.usage.setLedgerBytes(bytes),
      () => this.setOk(false),
    );
  }

  /** Rows and audit records from an acceptor thread (already a batch). */
  add(rows: UsageRow[], audit: AuditRow[] = []): void {
    for (let i = 0; i < rows.length; i++) this.pending.push(rows[i]!);
    for (let i = 0; i < audit.length; i++) this.pendingAudit.push(audit[i]!);
    this.bound();
    if (this.writing === null && this.retryTimer === null) this.writing = this.write();
  }

  /** Usage rows an acceptor's ledger ring had no room for (server/ledger-rings.ts): counted with the other drops. */
  lost(n: number): void {
    this.dropped += n;
    this.usage.setLedgerDropped(this.dropped);
    this.log.error({ dropped: n }, "ledger ring full; usage rows dropped");
  }

  /** Rows waiting, the batch in hand included. */
  queued(): number {
    return this.pending.length + this.pendingAudit.length + (this.batch === null ? 0 : this.batch.rows.length + this.batch.audit.length);
  }

  /** LEDGER_QUEUE_MAX: past it the oldest rows go (the batch in hand holds the oldest), counted and logged. */
  private bound(): void {
    const max = this.cfg.ledger_queue_max;
    let over = this.pending.length + (this.batch?.rows.length ?? 0) - max;
    if (over > 0) {
      let n = 0;
      if (this.batch !== null) n = this.batch.rows.splice(0, Math.min(over, this.batch.rows.length)).length;
      if (over - n > 0) n += this.pending.splice(0, over - n).length;
      this.dropped += n;
      this.usage.setLedgerDropped(this.dropped);
      this.log.error({ dropped: n, queue_max: max }, "ledger backlog full; oldest usage rows dropped");
    }
    over = this.pendingAudit.length + (this.batch?.audit.length ?? 0) - max;
    if (over > 0) {
      let n = 0;
      if (this.batch !== null) n = this.batch.audit.splice(0, Math.min(over, this.batch.audit.length)).length;
      if (over - n > 0) n += this.pendingAudit.splice(0, over - n).length;
      this.dropped += n;
      this.usage.setLedgerDropped(this.dropped);
      this.log.error({ dropped: n, queue_max: max }, "ledger backlog full; oldest audit records dropped");
    }
    this.usage.setLedgerQueued(this.queued());
  }

  private async write(): Promise<void> {
    while (this.batch !== null || this.pending.length > 0 || this.pendingAudit.length > 0) {
      if (this.batch === null) {
        this.batch = {
          id: `${this.batchPrefix}-${++this.batchSeq}`,
          rows: this.pending.splice(0, MAX_BATCH),
          audit: this.pendingAudit.splice(0, MAX_BATCH),
        };
      }
      const b = this.batch;
      try {
        await this.run<number>({ op: "insert", rows: b.rows, audit: b.audit, batchId: b.id });
        this.batch = null;
        this.usage.setLedgerQueued(this.queued());
        this.setOk(true);
      } catch (e) {
        this.setOk(false);
        this.log.error(
          { err: String(e), rows: b.rows.length, audit: b.audit.length, queued: this.queued() },
          "ledger write failed; retrying",
        );
        this.writing = null;
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          if (this.writing === null) this.writing = this.write();
        }, 1000);
        return;
      }
    }
    this.writing = null;
  }

  /** Wait until every row received so far is in SQLite (shutdown). Gives up after `ms`. */
  async flush(ms: number): Promise<number> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (this.writing !== null) await this.writing;
      else if (this.queued() > 0) {
        if (this.retryTimer !== null) {
          clearTimeout(this.retryTimer);
          this.retryTimer = null;
        }
        this.writing = this.write();
        await this.writing;
        if (this.queued() > 0) await new Promise((r) => setTimeout(r, 200));
      } else return 0;
    }
    return this.queued();
  }

  async close(): Promise<void> {
    if (this.healthTimer !== null) clearInterval(this.healthTimer);
    if (this.syncTimer !== null) clearInterval(this.syncTimer);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    await this.pool.destroy();
  }

  // ------------------------------------------------------------------ admin operations

  admin(op: AdminOp): Promise<AdminResult> {
    return op.op === "create" || op.op === "patch" || op.op === "revoke" ? this.serial(() => this.adminOp(op)) : this.adminOp(op);
  }

  private async adminOp(op: AdminOp): Promise<AdminResult> {
    try {
      switch (op.op) {
        case "create": {
          if (this.nextSlot >= this.lastSlot) return { ok: false, code: "GW_ERR_ADMIN_KEY_TABLE_FULL" };
          const { record, secret } = newKey(op.input, new Date());
          await this.run({ op: "key-create", record });
          const entry = { record, slot: this.nextSlot++ };
          this.budgets.clear(entry.slot);
          this.keys.set(record.id, entry);
          await this.broadcast({ put: [entry], remove: [] });
          this.announce();
          this.log.info({ key_id: record.id }, "key created");
          return json(201, {
            id: record.id,
            name: record.name,
            key: secret,
            models: record.models,
            limits: record.limits,
            tools: record.tools,
            commands: record.commands,
            cache: record.cache ?? null,
            created_at: record.created_at,
          });
        }
        case "list": {
          const all = await this.run<KeyRecord[]>({ op: "keys" });
          const data = all.map((r) => {
            const live = this.keys.get(r.id);
            return { ...publicKey(r), spend: live === undefined ? null : this.spendOf(live.slot) };
          });
          return json(200, { data });
        }
        case "patch": {
          const live = this.keys.get(op.id);
          if (live === undefined) return { ok: false, code: "GW_ERR_ADMIN_KEY_NOT_FOUND" };
          const record: KeyRecord = {
            ...live.record,
            name: op.input.name ?? live.record.name,
            models: op.input.models === undefined ? live.record.models : op.input.models,
            limits: op.input.limits ?? live.record.limits,
            tools: op.input.tools ?? live.record.tools,
            commands: op.input.commands === undefined ? live.record.commands : op.input.commands,
            cache: op.input.cache === undefined ? (live.record.cache ?? null) : op.input.cache,
          };
          if (!(await this.run<boolean>({ op: "key-update", record }))) return { ok: false, code: "GW_ERR_ADMIN_KEY_NOT_FOUND" };
          live.record = record;
          await this.broadcast({ put: [live], remove: [] });
          this.announce();
          this.log.info({ key_id: record.id }, "key updated");
          return json(200, { ...publicKey(record), spend: this.spendOf(live.slot) });
        }
        case "revoke": {
          const live = this.keys.get(op.id);
          if (live === undefined) return { ok: false, code: "GW_ERR_ADMIN_KEY_NOT_FOUND" };
          const at = new Date().toISOString();
          await this.run({ op: "key-revoke", id: op.id, at });
          // The slot is not reused before a restart: requests of this key still in flight settle into it.
          this.keys.delete(op.id);
          await this.broadcast({ put: [], remove: [op.id] });
          this.announce();
          this.log.info({ key_id: op.id }, "key revoked");
          return json(200, { ...publicKey({ ...live.record, revoked_at: at }) });
        }
        case "usage": {
          const body = await this.run<string>({ op: "usage", from: op.from, to: op.to, groupBy: op.groupBy, format: op.format });
          return { ok: true, status: 200, contentType: op.format === "csv" ? "text/csv; charset=utf-8" : "application/json", body };
        }
      }
    } catch (e) {
      this.log.error({ err: String(e), op: op.op }, "admin operation failed");
      return { ok: false, code: "GW_ERR_LEDGER_UNAVAILABLE" };
    }
  }

  private spendOf(slot: number) {
    const s = this.budgets.spend(slot);
    return {
      day_tokens: s.dayTokens,
      day_usd: s.dayMicros / 1e6,
      month_tokens: s.monthTokens,
      month_usd: s.monthMicros / 1e6,
      reserved_tokens: s.reservedTokens,
      reserved_usd: s.reservedMicros / 1e6,
    };
  }
}

function sameKey(a: KeyRecord, b: KeyRecord): boolean {
  return (
    a.name === b.name &&
    a.revoked_at === b.revoked_at &&
    (a.cache ?? null) === (b.cache ?? null) &&
    JSON.stringify([a.models, a.limits, a.tools, a.commands]) === JSON.stringify([b.models, b.limits, b.tools, b.commands])
  );
}

function json(status: number, v: unknown): AdminResult {
  return { ok: true, status, contentType: "application/json", body: JSON.stringify(v) };
}
