/**
 * Ledger retention and the size cap, through a real piscina pool and a real SQLite file:
 * rows past LEDGER_RETENTION_DAYS go in batches of PRUNE_BATCH, the current month's rows stay
 * (the monthly budgets are rebuilt from them), and LEDGER_MAX_MB keeps the newest rows while
 * the pages in use stay near the cap; the `size` task reports the bytes on disk.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import Database from "better-sqlite3";
import { PRUNE_BATCH, pruneCutoff } from "../../core/retention.js";
import type { AuditRow, LedgerData, LedgerTask, UsageRow } from "../../workers/ledger-task.js";

const DAY = 86_400_000;
const dir = mkdtempSync(join(tmpdir(), "portcullis-retention-"));
const pools: Piscina[] = [];
function pool(name: string, data: Omit<LedgerData, "path">): { path: string; run: <T>(t: LedgerTask) => Promise<T> } {
  const path = join(dir, `${name}.db`);
  const p = new Piscina({
    filename: fileURLToPath(new URL("../../workers/ledger-task.js", import.meta.url)),
    workerData: { path, ...data } satisfies LedgerData,
    minThreads: 1,
    maxThreads: 1,
  });
  pools.push(p);
  return { path, run: <T>(t: LedgerTask) => p.run(t) as Promise<T> };
}
after(async () => {
  for (const p of pools) await p.destroy();
});

const row = (id: string, ts: number): UsageRow => [
  id,
  ts,
  "static-0",
  "claude-sonnet-4-5",
  "anthropic",
  200,
  10,
  100,
  20,
  0,
  0,
  42,
  null,
  null,
  null,
];
const audit = (id: string, ts: number): AuditRow => [id, ts, "static-0", "read_file", null, "allow", null, null, 1];
function ids(path: string, table: "usage" | "audit"): string[] {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare(`SELECT request_id FROM ${table} ORDER BY seq`).all() as { request_id: string }[]).map((r) => r.request_id);
  } finally {
    db.close();
  }
}

test("the prune cutoff is the retention window, but never inside the current UTC month", () => {
  const now = Date.UTC(2026, 10, 30, 12); // 30 November
  assert.equal(pruneCutoff(now, 30), now - 30 * DAY, "30 days back is before 1 November");
  assert.equal(pruneCutoff(now, 10), Date.UTC(2026, 10, 1), "10 days back would cut into November: the month start instead");
  assert.equal(pruneCutoff(Date.UTC(2026, 0, 1, 0, 5), 1), Date.UTC(2025, 11, 31, 0, 5), "on the 1st, a day back is last month");
});

test("rows past the retention go in batches of PRUNE_BATCH; recent rows and the month's first row stay", async () => {
  const { path, run } = pool("retention", { retentionDays: 1, maxBytes: 0 });
  const now = Date.now();
  const d = new Date(now);
  const monthStart = Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
  const OLD = 2 * PRUNE_BATCH + 500;
  const old: UsageRow[] = Array.from({ length: OLD }, (_, i) => row(`old-${i}`, now - 40 * DAY + i));
  // The insert prunes one batch right after writing (the first prune is due at once).
  await run({
    op: "insert",
    rows: [...old, row("month-start", monthStart), row("recent", now - 3_600_000)],
    audit: [audit("old-audit", now - 40 * DAY), audit("recent-audit", now)],
  });
  const left = ids(path, "usage").filter((i) => i.startsWith("old-")).length;
  assert.equal(left, OLD - PRUNE_BATCH, "one batch per step, so no write holds the database for long");
  const steps: number[] = [];
  for (let i = 0; i < 10; i++) {
    const n = await run<number>({ op: "prune", now });
    steps.push(n);
    if (n === 0) break;
  }
  assert.deepEqual(steps, [PRUNE_BATCH, 500, 0]);
  assert.deepEqual(ids(path, "usage"), ["month-start", "recent"]);
  assert.deepEqual(ids(path, "audit"), ["recent-audit"], "audit records follow the same retention");
});

test("LEDGER_RETENTION_DAYS=0 keeps everything", async () => {
  const { path, run } = pool("keep", { retentionDays: 0, maxBytes: 0 });
  await run({ op: "insert", rows: [row("ancient", Date.UTC(2001, 0, 1))] });
  assert.equal(await run({ op: "prune", now: Date.now() }), 0);
  assert.deepEqual(ids(path, "usage"), ["ancient"]);
});

test("LEDGER_MAX_MB: past the cap the oldest rows go first, the newest stay, and the file stops growing near the cap", async () => {
  const CAP = 1024 * 1024;
  const { path, run } = pool("cap", { retentionDays: 30, maxBytes: CAP });
  const now = Date.now();
  const N = 20_000,
    B = 500; // about 5 MB of rows uncapped
  for (let i = 0; i < N; i += B) {
    await run({ op: "insert", rows: Array.from({ length: B }, (_, j) => row(`r-${String(i + j).padStart(6, "0")}`, now + i + j)) });
  }
  const kept = ids(path, "usage");
  assert.ok(kept.length < N, `pruned: ${kept.length} of ${N} kept`);
  assert.ok(kept.length > 1000, `not emptied: ${kept.length} kept`);
  assert.equal(kept.at(-1), `r-${String(N - 1).padStart(6, "0")}`, "the newest row stays");
  assert.notEqual(kept[0], "r-000000", "the oldest row went");
  const size = await run<number>({ op: "size" });
  const file = statSync(path).size;
  assert.ok(size >= file, "size counts the database file and its WAL");
  // The WAL (about 4 MB at SQLite's default checkpoint) comes on top and does not grow with the rows.
  assert.ok(file < 3 * CAP, `the database file stays near its cap: ${file} bytes for a ${CAP}-byte cap`);
});
