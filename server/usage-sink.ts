/**
 * What happens to a finished request's usage on an acceptor thread: its reservation is
 * given back and its real usage charged to the key's budget (shared memory), the token and
 * cost counters move, and a ledger row joins this thread's batch. The batch goes to the
 * main thread every LEDGER_BATCH_MS or LEDGER_BATCH_ROWS rows, whichever comes first; the
 * main thread writes it to SQLite through the ledger worker. MCP tool calls' audit records
 * (`audit`) ride in the same batches.
 */
import type { UserMetrics } from "../core/user-metrics.js";
import { costMicros, type PriceTable } from "../core/pricing.js";
import type { Budgets } from "../core/budget.js";
import type { UsageMetrics } from "../core/usage-metrics.js";
import type { AuditRow, UsageRow } from "../workers/ledger-task.js";
import type { RequestCtx } from "./context.js";

export class UsageSink {
  private readonly budgets: Budgets;
  private readonly metrics: UsageMetrics;
  private readonly prices: PriceTable;
  private readonly post: (rows: UsageRow[], audit: AuditRow[]) => void;
  private readonly batchMs: number;
  private readonly batchRows: number;
  private rows: UsageRow[] = [];
  private audits: AuditRow[] = [];
  private timer: NodeJS.Timeout | null = null;

  /** Per-developer Prometheus series (USAGE_METRICS_USER_LABEL_MAX); null = off. */
  private readonly users: UserMetrics | null;

  constructor(budgets: Budgets, metrics: UsageMetrics, prices: PriceTable, post: (rows: UsageRow[], audit: AuditRow[]) => void, batchMs: number, batchRows: number, users: UserMetrics | null = null) {
    this.users = users;
    this.budgets = budgets;
    this.metrics = metrics;
    this.prices = prices;
    this.post = post;
    this.batchMs = batchMs;
    this.batchRows = batchRows;
  }

  finished(ctx: RequestCtx, status: number, durationUs: number): void {
    const input = ctx.inputTokens > 0 ? ctx.inputTokens : 0;
    const output = ctx.outputTokens > 0 ? ctx.outputTokens : 0;
    const cw = ctx.cacheCreationTokens > 0 ? ctx.cacheCreationTokens : 0;
    const cr = ctx.cacheReadTokens > 0 ? ctx.cacheReadTokens : 0;
    let tokens = input + output + cw + cr;
    let micros = 0;
    if (ctx.usageUnreadable) {
      // Served, but no usage to read: never 0. The reservation (the worst case) stands.
      this.metrics.unreadable(ctx.provider);
      ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, charged_tokens: ctx.reservedTokens, charged_micros: ctx.reservedMicros }, "upstream usage unreadable; charged the reservation");
      tokens = ctx.reservedTokens;
      micros = ctx.reservedMicros;
    } else if (tokens > 0 && ctx.model !== null) {
      const price = this.prices.lookup(ctx.model);
      micros = costMicros(price, input, output, cw, cr);
      this.metrics.record(ctx.provider, price.index, input, output, cw, cr, micros);
      if (price === this.prices.other) this.metrics.unknownModel(ctx.provider);
    }
    if (ctx.budgetSlot >= 0) {
      if (ctx.reservedTokens > 0 || ctx.reservedMicros > 0) this.budgets.release(ctx.budgetSlot, ctx.reservedTokens, ctx.reservedMicros);
      this.budgets.charge(ctx.budgetSlot, tokens, micros);
    }
    if (!ctx.ledger) return;
    if (this.users !== null) this.users.record(ctx.userId, input, output, micros);
    this.rows.push([
      ctx.id, Date.now(), ctx.keyId, ctx.model, ctx.providerName, status, Math.round(durationUs) / 1000,
      input, output, cw, cr, micros, ctx.sessionId, ctx.clientRequestId, ctx.userId, ctx.cacheHit ? 1 : 0, ctx.savedTokens,
    ]);
    if (this.rows.length >= this.batchRows) this.flush();
    else if (this.timer === null) this.arm();
  }

  /** One MCP tool call's audit record, into the same batch as the usage rows. */
  audit(row: AuditRow): void {
    this.audits.push(row);
    if (this.rows.length + this.audits.length >= this.batchRows) this.flush();
    else if (this.timer === null) this.arm();
  }

  /**
   * Not unref'd: a pending batch keeps the thread alive until it is handed over (at most
   * LEDGER_BATCH_MS), so a row finished during shutdown is never lost with the thread.
   */
  private arm(): void {
    this.timer = setTimeout(() => this.flush(), this.batchMs);
  }

  /** Hand the batch to the main thread now (on a timer, when full, and before exit). */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.rows.length === 0 && this.audits.length === 0) return;
    const rows = this.rows;
    const audits = this.audits;
    this.rows = [];
    this.audits = [];
    this.post(rows, audits);
  }
}
