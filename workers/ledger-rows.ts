/**
 * Row conversions shared by the two ledger writers (SQLite in `ledger-task.ts`, PostgreSQL in
 * `pg-ledger.ts`), so both answer `/admin/usage` and the keys list byte for byte alike.
 */
import type { KeyRecord } from "../core/keys.js";

/** A CSV cell: quoted when needed; a leading = + - @ is defused for spreadsheets. */
export function csvCell(v: unknown): string {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") return String(v);
  let s = String(v);
  if (/^[=+\-@\t\r]/.test(s)) s = "'" + s;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

/** A `keys` table row (JSON columns as text) as the KeyRecord the admin API and the threads use. */
export function keyRecordFromRow(r: Record<string, unknown>): KeyRecord {
  return {
    id: r.id as string,
    name: r.name as string,
    digest: r.digest as string,
    models: r.models === null ? null : (JSON.parse(r.models as string) as string[]),
    limits: JSON.parse(r.limits as string) as KeyRecord["limits"],
    tools: JSON.parse(r.tools as string) as string[],
    commands: r.commands === null ? null : (JSON.parse(r.commands as string) as string[]),
    cache: (r.cache as "on" | "off" | null) ?? null,
    created_at: r.created_at as string,
    revoked_at: (r.revoked_at as string | null) ?? null,
  };
}
