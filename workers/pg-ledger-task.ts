/**
 * piscina task module for the PostgreSQL ledger (workers/pg-ledger.ts): connects once per
 * worker, as the SQLite task module opens its file once.
 */
import { workerData } from "piscina";
import { openPg, type PgLedgerData } from "./pg-ledger.js";

export default (async () => {
  const d = workerData as PgLedgerData;
  const { handle } = await openPg(d.url, d.retentionDays ?? 0);
  return handle;
})();
