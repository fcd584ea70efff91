/**
 * Ledger retention arithmetic (LEDGER_RETENTION_DAYS), pure so the ledger writer and its
 * tests share it: how far back rows may be pruned, and how many go per step.
 */

/** Rows deleted per table in one prune step: no single write holds the database for long. */
export const PRUNE_BATCH = 2000;

/** Rows older than this may go: the retention window, but never the current UTC month. */
export function pruneCutoff(now: number, retentionDays: number): number {
  const d = new Date(now);
  return Math.min(now - retentionDays * 86_400_000, Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1));
}
