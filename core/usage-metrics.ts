/**
 * Token, cost and budget counters in their own SharedArrayBuffer (beside core/metrics.ts),
 * written by every acceptor thread with Atomics and rendered by the metrics worker.
 *
 * Labels are bounded by configuration: `provider` is a configured provider name (or
 * "none"), `model` is a price-table entry's name (core/pricing.ts) or "other", and
 * `limit` is one of the four budget limits. A client's model string never becomes a label.
 */
import { LIMIT_NAMES } from "./budget.js";
import { add64, read64 } from "./atomic64.js";

/** Per (provider, model): input, output, cache write, cache read tokens, cost (µ$). */
const K_IN = 0,
  K_OUT = 1,
  K_CW = 2,
  K_CR = 3,
  K_COST = 4,
  N_K = 5;

/** Header Int32 slots. */
export const H_LEDGER_OK = 0; // 1 while the ledger answered its last write / ping
export const H_LEDGER_CHECKED = 1; // Clock seconds of the last check (0 = never)
export const H_LEDGER_KIB = 2; // the ledger's size on disk in KiB (database + WAL)
export const H_LEDGER_QUEUED = 3; // rows waiting for the ledger (a backlog while it fails)
export const H_LEDGER_DROPPED = 4; // rows dropped past LEDGER_QUEUE_MAX or by a full ledger ring since start
export const H_LEASE_STATE = 5; // fleet budget leases: 0 off (per replica), 1 Redis up, 2 degraded
export const H_LEASE_RENEWALS = 6; // lease round trips to Redis that succeeded (take, return)
export const H_LEASE_FAILURES = 7; // lease round trips that failed (Redis unreachable or erroring)
export const H_LEASE_PARKED = 8; // requests parked now, waiting for their key's budget lease (server/fleet/budget-park.ts)
const H_LEASE_WAITS = 9; // then one counter per WAIT_RESULTS entry: how parked requests left the park
/** budget_lease_waits_total's `result` label, by index (UsageMetrics.leaseWaitEnded). */
export const WAIT_ADMITTED = 0,
  WAIT_REFUSED = 1,
  WAIT_TIMEOUT = 2,
  WAIT_ABORTED = 3;
const WAIT_RESULTS = ["admitted", "refused", "timeout", "aborted"] as const;
const N_HEADER = H_LEASE_WAITS + WAIT_RESULTS.length;

export class UsageLayout {
  readonly providers: readonly string[];
  readonly models: readonly string[];
  readonly blocksOff = N_HEADER;
  readonly unknownOff: number;
  /** usage_unreadable_total{provider}: replies whose usage could not be read. */
  readonly unreadableOff: number;
  readonly cellsOff: number;
  readonly totalU32: number;

  /** `providers` as in MetricsLayout (index 0 = "none"); `models` = PriceTable.labels. */
  constructor(providers: readonly string[], models: readonly string[]) {
    this.providers = Object.freeze(["none", ...providers]);
    this.models = models;
    this.unknownOff = this.blocksOff + BLOCK_NAMES.length * 2;
    this.unreadableOff = this.unknownOff + this.providers.length * 2;
    this.cellsOff = this.unreadableOff + this.providers.length * 2;
    this.totalU32 = this.cellsOff + this.providers.length * models.length * N_K * 2;
  }
  cell(p: number, m: number): number {
    return this.cellsOff + (p * this.models.length + m) * N_K * 2;
  }
}

export function createUsageBuffer(l: UsageLayout): SharedArrayBuffer {
  return new SharedArrayBuffer(l.totalU32 * 4);
}

/** Budget refusals are counted by limit index; then "ledger unavailable" and, in fleet mode, "lease short". */
export const BLOCK_UNAVAILABLE = LIMIT_NAMES.length;
export const BLOCK_LEASE_SHORT = LIMIT_NAMES.length + 1;
export const BLOCK_NAMES = [...LIMIT_NAMES, "ledger_unavailable", "lease_short"] as const;

export class UsageMetrics {
  readonly layout: UsageLayout;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
  constructor(layout: UsageLayout, sab: SharedArrayBuffer) {
    this.layout = layout;
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
  }
  record(provider: number, model: number, input: number, output: number, cacheWrite: number, cacheRead: number, micros: number): void {
    const c = this.layout.cell(provider, model),
      u = this.u32;
    add64(u, c + K_IN * 2, input);
    add64(u, c + K_OUT * 2, output);
    add64(u, c + K_CW * 2, cacheWrite);
    add64(u, c + K_CR * 2, cacheRead);
    add64(u, c + K_COST * 2, micros);
  }
  unknownModel(provider: number): void {
    add64(this.u32, this.layout.unknownOff + provider * 2, 1);
  }
  /** A reply whose usage could not be read (charged its reservation instead). */
  unreadable(provider: number): void {
    add64(this.u32, this.layout.unreadableOff + provider * 2, 1);
  }
  blocked(which: number): void {
    add64(this.u32, this.layout.blocksOff + which * 2, 1);
  }
  ledgerOk(): boolean {
    return Atomics.load(this.i32, H_LEDGER_OK) === 1;
  }
  setLedger(ok: boolean, atSeconds: number): void {
    Atomics.store(this.i32, H_LEDGER_OK, ok ? 1 : 0);
    Atomics.store(this.i32, H_LEDGER_CHECKED, atSeconds);
  }
  setLedgerBytes(bytes: number): void {
    Atomics.store(this.i32, H_LEDGER_KIB, Math.min(0x7fffffff, Math.ceil(bytes / 1024)));
  }
  setLedgerQueued(rows: number): void {
    Atomics.store(this.i32, H_LEDGER_QUEUED, Math.min(0x7fffffff, rows));
  }
  ledgerQueued(): number {
    return Atomics.load(this.i32, H_LEDGER_QUEUED);
  }
  setLedgerDropped(rows: number): void {
    Atomics.store(this.i32, H_LEDGER_DROPPED, Math.min(0x7fffffff, rows));
  }
  ledgerCheckedAt(): number {
    return Atomics.load(this.i32, H_LEDGER_CHECKED);
  }
  /** Fleet budget leases (server/fleet/budget-lease.ts): 0 off, 1 Redis up, 2 degraded. */
  setLeaseState(state: number): void {
    Atomics.store(this.i32, H_LEASE_STATE, state);
  }
  leaseState(): number {
    return Atomics.load(this.i32, H_LEASE_STATE);
  }
  leaseRenewed(n: number, failed: number): void {
    if (n > 0) Atomics.add(this.i32, H_LEASE_RENEWALS, n);
    if (failed > 0) Atomics.add(this.i32, H_LEASE_FAILURES, failed);
  }
  /** A request was parked for its key's budget lease (server/fleet/budget-park.ts). */
  leaseWaitStarted(): void {
    Atomics.add(this.i32, H_LEASE_PARKED, 1);
  }
  /** A parked request left the park: WAIT_ADMITTED, WAIT_REFUSED, WAIT_TIMEOUT or WAIT_ABORTED. */
  leaseWaitEnded(result: number): void {
    Atomics.sub(this.i32, H_LEASE_PARKED, 1);
    Atomics.add(this.i32, H_LEASE_WAITS + result, 1);
  }
}

function esc(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** Prometheus text for the usage counters (only series that moved, plus every block reason). */
export function renderUsagePrometheus(l: UsageLayout, sab: SharedArrayBuffer): string {
  const u = new Uint32Array(sab);
  const out: string[] = [];
  const series: [string, string, number, number][] = [
    ["tokens_input_total", "Input tokens (not cached) reported by providers.", K_IN, 1],
    ["tokens_output_total", "Output tokens reported by providers.", K_OUT, 1],
    ["tokens_cache_creation_total", "Prompt-cache write tokens reported by providers.", K_CW, 1],
    ["tokens_cache_read_total", "Prompt-cache read tokens reported by providers.", K_CR, 1],
    ["cost_total", "Cost in USD from the price table.", K_COST, 1e-6],
  ];
  for (const [name, help, k, scale] of series) {
    out.push(`# HELP ${name} ${help}`, `# TYPE ${name} counter`);
    for (let p = 0; p < l.providers.length; p++) {
      for (let m = 0; m < l.models.length; m++) {
        const v = read64(u, l.cell(p, m) + k * 2);
        if (v > 0) out.push(`${name}{provider="${esc(l.providers[p]!)}",model="${esc(l.models[m]!)}"} ${scale === 1 ? v : v * scale}`);
      }
    }
  }
  out.push("# HELP budget_blocks_total Requests refused by a key's budget, by limit.", "# TYPE budget_blocks_total counter");
  for (let b = 0; b < BLOCK_NAMES.length; b++) out.push(`budget_blocks_total{limit="${BLOCK_NAMES[b]}"} ${read64(u, l.blocksOff + b * 2)}`);
  out.push(
    "# HELP pricing_unknown_model_total Responses for models the price table does not know (cost 0).",
    "# TYPE pricing_unknown_model_total counter",
  );
  for (let p = 0; p < l.providers.length; p++) {
    const v = read64(u, l.unknownOff + p * 2);
    if (v > 0) out.push(`pricing_unknown_model_total{provider="${esc(l.providers[p]!)}"} ${v}`);
  }
  out.push(
    "# HELP usage_unreadable_total Successful replies whose token usage could not be read (the request was charged its reservation).",
    "# TYPE usage_unreadable_total counter",
  );
  for (let p = 0; p < l.providers.length; p++)
    out.push(`usage_unreadable_total{provider="${esc(l.providers[p]!)}"} ${read64(u, l.unreadableOff + p * 2)}`);
  const h = new Int32Array(sab);
  out.push(
    "# HELP ledger_up 1 while the SQLite ledger accepts writes.",
    "# TYPE ledger_up gauge",
    `ledger_up ${Atomics.load(h, H_LEDGER_OK)}`,
  );
  out.push(
    "# HELP ledger_size_bytes The SQLite ledger's size on disk (database and WAL, KiB resolution).",
    "# TYPE ledger_size_bytes gauge",
    `ledger_size_bytes ${Atomics.load(h, H_LEDGER_KIB) * 1024}`,
  );
  out.push(
    "# HELP ledger_queued_rows Usage and audit rows waiting for the ledger (grows while it fails, up to LEDGER_QUEUE_MAX).",
    "# TYPE ledger_queued_rows gauge",
    `ledger_queued_rows ${Atomics.load(h, H_LEDGER_QUEUED)}`,
  );
  out.push(
    "# HELP ledger_dropped_rows_total Rows dropped because the ledger backlog passed LEDGER_QUEUE_MAX or an acceptor's ledger ring was full.",
    "# TYPE ledger_dropped_rows_total counter",
    `ledger_dropped_rows_total ${Atomics.load(h, H_LEDGER_DROPPED)}`,
  );
  const lease = Atomics.load(h, H_LEASE_STATE);
  if (lease !== 0)
    out.push(
      "# HELP budget_lease_redis_up 1 while this replica reaches Redis for its budget leases (fleet mode).",
      "# TYPE budget_lease_redis_up gauge",
      `budget_lease_redis_up ${lease === 1 ? 1 : 0}`,
      "# HELP budget_lease_renewals_total Budget lease round trips to Redis (take and return) that succeeded.",
      "# TYPE budget_lease_renewals_total counter",
      `budget_lease_renewals_total ${Atomics.load(h, H_LEASE_RENEWALS) >>> 0}`,
      "# HELP budget_lease_failures_total Budget lease round trips to Redis that failed.",
      "# TYPE budget_lease_failures_total counter",
      `budget_lease_failures_total ${Atomics.load(h, H_LEASE_FAILURES) >>> 0}`,
      "# HELP budget_lease_waiting Requests parked now until their key's budget lease on this replica covers them.",
      "# TYPE budget_lease_waiting gauge",
      `budget_lease_waiting ${Atomics.load(h, H_LEASE_PARKED)}`,
      "# HELP budget_lease_waits_total Requests parked for their key's budget lease, by how they left: admitted, refused (the fleet reported the budget used up, or Redis became unreachable in closed mode), timeout (503 after BUDGET_LEASE_WAIT_MS), aborted (the client left).",
      "# TYPE budget_lease_waits_total counter",
      ...WAIT_RESULTS.map((r, i) => `budget_lease_waits_total{result="${r}"} ${Atomics.load(h, H_LEASE_WAITS + i) >>> 0}`),
    );
  return out.join("\n") + "\n";
}

/** JSON totals for /metrics/observability. */
export function usageSnapshot(l: UsageLayout, sab: SharedArrayBuffer): Record<string, unknown> {
  const u = new Uint32Array(sab);
  const t = { input_tokens: 0, output_tokens: 0, cache_creation_tokens: 0, cache_read_tokens: 0, cost_usd: 0 };
  for (let p = 0; p < l.providers.length; p++) {
    for (let m = 0; m < l.models.length; m++) {
      const c = l.cell(p, m);
      t.input_tokens += read64(u, c);
      t.output_tokens += read64(u, c + 2);
      t.cache_creation_tokens += read64(u, c + 4);
      t.cache_read_tokens += read64(u, c + 6);
      t.cost_usd += read64(u, c + 8) / 1e6;
    }
  }
  const blocks: Record<string, number> = {};
  for (let b = 0; b < BLOCK_NAMES.length; b++) blocks[BLOCK_NAMES[b]!] = read64(u, l.blocksOff + b * 2);
  return { ...t, budget_blocks: blocks };
}
