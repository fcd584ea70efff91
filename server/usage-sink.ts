/**
 * What happens to a finished request's usage on an acceptor thread: its usage is priced and
 * the token and cost counters move (`price`, before the pipeline's budget stages settle:
 * core/pipeline/), and a ledger row joins this thread's batch (`record`, a tap). The batch goes to the
 * main thread every LEDGER_BATCH_MS or LEDGER_BATCH_ROWS rows, whichever comes first; the
 * main thread writes it to SQLite through the ledger worker. MCP tool calls' audit records
 * (`audit`) ride in the same batches.
 */
import type { UserMetrics } from "../core/user-metrics.js";
import { costMicros, type PriceTable } from "../core/pricing.js";
import type { Logger } from "pino";
import type { UsageMetrics } from "../core/usage-metrics.js";
import type { AuditRow, UsageRow } from "../workers/ledger-task.js";
import type { RequestState } from "../core/pipeline/state.js";

export class UsageSink {
  private readonly log: Logger;
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

  constructor(
    log: Logger,
    metrics: UsageMetrics,
    prices: PriceTable,
    post: (rows: UsageRow[], audit: AuditRow[]) => void,
    batchMs: number,
    batchRows: number,
    users: UserMetrics | null = null,
  ) {
    this.users = users;
    this.log = log;
    this.metrics = metrics;
    this.prices = prices;
    this.post = post;
    this.batchMs = batchMs;
    this.batchRows = batchRows;
  }

  /**
   * Price the reply's usage into `chargedTokens`/`chargedMicros` and move the token and
   * cost counters (the pipeline's pricer: runs before the budget stages settle).
   */
  readonly price = (s: RequestState): void => {
    const input = s.inputTokens > 0 ? s.inputTokens : 0;
    const output = s.outputTokens > 0 ? s.outputTokens : 0;
    const cw = s.cacheCreationTokens > 0 ? s.cacheCreationTokens : 0;
    const cr = s.cacheReadTokens > 0 ? s.cacheReadTokens : 0;
    let tokens = input + output + cw + cr;
    let micros = 0;
    if (s.usageUnreadable) {
      // Served, but no usage to read: never 0. The reservation (the worst case) stands.
      this.metrics.unreadable(s.provider);
      this.log.warn(
        { req_id: s.id, provider: s.providerName, charged_tokens: s.reservedTokens, charged_micros: s.reservedMicros },
        "upstream usage unreadable; charged the reservation",
      );
      tokens = s.reservedTokens;
      micros = s.reservedMicros;
    } else if (tokens > 0 && s.model !== null) {
      const price = this.prices.lookup(s.model);
      micros = costMicros(price, input, output, cw, cr);
      this.metrics.record(s.provider, price.index, input, output, cw, cr, micros);
      if (price === this.prices.other) this.metrics.unknownModel(s.provider);
    }
    s.chargedTokens = tokens;
    s.chargedMicros = micros;
  };

  /** The ledger row (the pipeline's ledger tap: runs after settlement, refusals included). */
  readonly record = (s: RequestState, status: number, durationUs: number): void => {
    if (!s.ledger) return;
    const input = s.inputTokens > 0 ? s.inputTokens : 0;
    const output = s.outputTokens > 0 ? s.outputTokens : 0;
    const cw = s.cacheCreationTokens > 0 ? s.cacheCreationTokens : 0;
    const cr = s.cacheReadTokens > 0 ? s.cacheReadTokens : 0;
    if (this.users !== null) this.users.record(s.userId, input, output, s.chargedMicros);
    this.rows.push([
      s.id,
      Date.now(),
      s.keyId,
      s.model,
      s.providerName,
      status,
      Math.round(durationUs) / 1000,
      input,
      output,
      cw,
      cr,
      s.chargedMicros,
      s.sessionId,
      s.clientRequestId,
      s.userId,
      s.cacheHit ? 1 : 0,
      s.savedTokens,
    ]);
    if (this.rows.length >= this.batchRows) this.flush();
    else if (this.timer === null) this.arm();
  };

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
