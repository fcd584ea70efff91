/**
 * The ledger's write rate: usage rows per second through the real piscina worker
 * (workers/ledger-task.ts) into a real SQLite file, in the batch size the usage sink sends
 * (LEDGER_BATCH_ROWS default). It lives here rather than in the tests: a rate is a number to
 * report, not a pass/fail, and 50k inserts per round do not belong in every test run.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import type { LedgerTask, UsageRow } from "../workers/ledger-task.js";
import { median } from "./format.js";
import type { RowResult } from "./run.js";

const TASK = fileURLToPath(new URL("../workers/ledger-task.js", import.meta.url));
const DAY = Date.UTC(2026, 4, 10);

/** One "extra" row: ns per usage row written (median over rounds); ops/s is rows/s. */
export async function ledgerInsertRow(rounds: number, rows = 50_000, batch = 500): Promise<RowResult> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-bench-ledger-"));
  const pool = new Piscina({ filename: TASK, workerData: { path: join(dir, "ledger.db") }, minThreads: 1, maxThreads: 1 });
  const perRow: number[] = [];
  try {
    let seq = 0;
    for (let r = 0; r < rounds; r++) {
      const t0 = performance.now();
      const jobs: Promise<unknown>[] = [];
      for (let i = 0; i < rows; i += batch) {
        const b: UsageRow[] = [];
        for (let j = 0; j < batch; j++, seq++)
          b.push([`req_${seq}`, DAY + j, "static-0", "claude-sonnet-4-5", "anthropic", 200, 12.5, 10, 20, 3, 4, 100, "sess-0", null, null]);
        jobs.push(pool.run({ op: "insert", rows: b } satisfies LedgerTask));
      }
      await Promise.all(jobs);
      perRow.push(((performance.now() - t0) * 1e6) / rows);
    }
  } finally {
    await pool.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  const avg = median(perRow);
  return {
    id: "ledger_insert",
    name: `extra: ledger insert through the worker into SQLite, per row (batches of ${batch}; ops/s = rows/s)`,
    report: false,
    ops_per_s: 1e9 / avg,
    avg_ns: avg,
    p99_ns: NaN,
    bytes_per_op: NaN,
    overhead_ns: NaN,
    rounds_avg_ns: perRow,
  };
}
