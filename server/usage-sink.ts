/**
 * What happens to a finished request's usage on an acceptor thread: its usage is priced and
 * the token and cost counters move (`price`, before the pipeline's budget stages settle:
 * core/pipeline/), and its ledger row goes into this thread's ring in shared memory
 * (`record`, a tap; core/ledger-ring.ts), which the main thread drains every
 * LEDGER_BATCH_MS and writes to the ledger. No row is cloned or kept on this thread. MCP
 * tool calls' audit records (`audit`, rare) are batched and posted every LEDGER_BATCH_MS or
 * LEDGER_BATCH_ROWS records, whichever comes first.
 */
import type { UserMetrics } from "../core/user-metrics.js";
import { costMicros, type PriceTable } from "../core/pricing.js";
import type { Logger } from "pino";
import type { UsageMetrics } from "../core/usage-metrics.js";
import type { AuditRow, UsageRow } from "../workers/ledger-task.js";
import type { RequestState } from "../core/pipeline/state.js";
import type { LedgerRing } from "../core/ledger-ring.js";

/** Where rows go: the ring, a nudge when it is past half full, and audit batches. */
export interface LedgerOut {
  ring: LedgerRing;
  /** Ask the main thread to drain the ring now (it is past half full). */
  drainSoon(): void;
  /** Hand a batch of audit records to the main thread. */
  audit(rows: AuditRow[]): void;
}

export class UsageSink {
  private readonly log: Logger;
  private readonly metrics: UsageMetrics;
  private readonly prices: PriceTable;
  private readonly out: LedgerOut;
  private readonly batchMs: number;
  private readonly batchRows: number;
  /** One row, reused: the ring copies it. */
  private readonly row: UsageRow = ["", 0, null, null, "", 0, 0, 0, 0, 0, 0, 0, null, null, null, 0, 0];
  private audits: AuditRow[] = [];
  private timer: NodeJS.Timeout | null = null;

  /** Per-developer Prometheus series (USAGE_METRICS_USER_LABEL_MAX); null = off. */
  private readonly users: UserMetrics | null;

  constructor(
    log: Logger,
    metrics: UsageMetrics,
    prices: PriceTable,
    out: LedgerOut,
    batchMs: number,
    batchRows: number,
    users: UserMetrics | null = null,
  ) {
    this.users = users;
    this.log = log;
    this.metrics = metrics;
    this.prices = prices;
    this.out = out;
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
    const r = this.row;
    r[0] = s.id;
    r[1] = Date.now();
    r[2] = s.keyId;
    r[3] = s.model;
    r[4] = s.providerName;
    r[5] = status;
    r[6] = Math.round(durationUs) / 1000;
    r[7] = input;
    r[8] = output;
    r[9] = cw;
    r[10] = cr;
    r[11] = s.chargedMicros;
    r[12] = s.sessionId;
    r[13] = s.clientRequestId;
    r[14] = s.userId;
    r[15] = s.cacheHit ? 1 : 0;
    r[16] = s.savedTokens;
    // A full ring drops the row and counts it (the main thread reports it with the ledger's drops).
    const ring = this.out.ring;
    if (ring.push(r) && ring.pastHalf()) this.out.drainSoon();
  };

  /** One MCP tool call's audit record, into this thread's audit batch. */
  audit(row: AuditRow): void {
    this.audits.push(row);
    if (this.audits.length >= this.batchRows) this.flush();
    else if (this.timer === null) this.arm();
  }

  /**
   * Not unref'd: a pending batch keeps the thread alive until it is handed over (at most
   * LEDGER_BATCH_MS), so an audit record made during shutdown is never lost with the thread.
   */
  private arm(): void {
    this.timer = setTimeout(() => this.flush(), this.batchMs);
  }

  /** Hand the audit batch to the main thread now (on a timer, when full, and before exit); rows are in the ring already. */
  flush(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.audits.length === 0) return;
    const audits = this.audits;
    this.audits = [];
    this.out.audit(audits);
  }
}
