/**
 * `npm run build && node dist/loadtest/fleet.js [--duration 5] [--rounds 2] [--threads 1]`
 *
 * Fleet mode against single-box mode (docs/fleet.md), the small-body scenario, targets
 * interleaved per round, every process on 127.0.0.1 with the mock upstream:
 *   sqlite: a gateway with its SQLite ledger and no Redis;
 *   fleet:  the same gateway with DATABASE_URL on a throw-away PostgreSQL and REDIS_URL.
 * Both authenticate a virtual key made through the admin API, so every request writes a ledger
 * row (batched to SQLite or PostgreSQL); the key has a (large) daily budget, so the fleet gateway
 * spends it on Redis leases. Target: fleet ≥ 0.95× sqlite req/s. Afterwards it reports the
 * PostgreSQL ledger's rows beside the fleet gateway's answers (one row each) and the lease
 * renewals per second under load (budget_lease_renewals_total).
 * Prints a markdown table; results go to stdout only.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pg from "pg";
import { smallRequest } from "../bench/fixture.js";
import { fmt, markdownTable, median, parseFlags } from "../bench/format.js";
import { startPostgres } from "../test/support/postgres.js";
import { startRedis } from "../test/support/redis.js";
import { loadRun, type Target } from "./measure.js";
import { startGateway, startPortPrinter, type Proc } from "./procs.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const ADMIN = "adm-loadtest-fleet-0123456789";

async function virtualKey(port: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "loadtest", limits: { tokens_per_day: 1_000_000_000 } }),
  });
  if (r.status !== 201) throw new Error(`creating a key: ${r.status} ${await r.text()}`);
  return ((await r.json()) as { key: string }).key;
}

/** budget_lease_renewals_total of the gateway on `port`. */
async function renewals(port: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics/prometheus`)).text();
  return Number(/^budget_lease_renewals_total (\d+)$/m.exec(text)?.[1] ?? Number.NaN);
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const duration = Number(flags.get("duration") ?? 5);
  const rounds = Number(flags.get("rounds") ?? 2);
  const threads = String(flags.get("threads") ?? 1);
  const connections = Number(flags.get("connections") ?? 50);
  const log = (s: string) => process.stderr.write(s + "\n");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-loadtest-fleet-"));
  const procs: Proc[] = [];
  const db = await startPostgres();
  const redis = await startRedis();
  try {
    const mock = await startPortPrinter("mock", here("./mock-upstream.js"), ["--port", "0"]);
    procs.push(mock);
    const env = {
      HTTP_THREADS: threads,
      MODEL_PROVIDER: "anthropic",
      ANTHROPIC_API_BASE: `http://127.0.0.1:${mock.port}`,
      ANTHROPIC_API_KEY: "sk-upstream-key-123",
      ADMIN_API_KEY: ADMIN,
      LOG_LEVEL: "warn",
    };
    const sqlite = await startGateway(here("../server/main.js"), {
      ...env,
      DATABASE_PATH: join(dir, "ledger.db"),
      LOG_FILE: join(dir, "sqlite.log"),
    });
    procs.push(sqlite);
    const fleet = await startGateway(here("../server/main.js"), {
      ...env,
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      LOG_FILE: join(dir, "fleet.log"),
    });
    procs.push(fleet);
    const body = JSON.stringify(smallRequest());
    const mk = async (name: string, p: Proc): Promise<Target> => ({
      name,
      port: p.port,
      pid: p.child.pid ?? null,
      path: "/v1/messages",
      headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": await virtualKey(p.port) },
      body,
    });
    const targets = [await mk("sqlite", sqlite), await mk("fleet", fleet)];
    // A replica's first requests of a key wait for its first lease (parked, docs/fleet.md): warm up before measuring.
    for (const t of targets) {
      for (let i = 0; ; i++) {
        const r = await fetch(`http://127.0.0.1:${t.port}${t.path}`, { method: "POST", headers: t.headers, body: t.body });
        await r.arrayBuffer();
        if (r.status === 200) break;
        if (i === 100) throw new Error(`${t.name}: no 200 while warming up (last ${r.status})`);
        await new Promise((res) => setTimeout(res, 100));
      }
    }
    const rps: Record<string, number[]> = { sqlite: [], fleet: [] };
    let fleetAnswers = 0;
    let leaseRenewals = 0;
    for (let r = 0; r < rounds; r++) {
      for (const t of r % 2 === 0 ? targets : [...targets].reverse()) {
        const before = t.name === "fleet" ? await renewals(t.port) : 0;
        const res = await loadRun(t, connections, duration);
        rps[t.name]!.push(res.req_per_s);
        if (t.name === "fleet") {
          fleetAnswers += Object.values(res.statuses).reduce((a, b) => a + b, 0);
          leaseRenewals += (await renewals(t.port)) - before;
        }
        log(`  round ${r + 1} ${t.name}: ${fmt(res.req_per_s)} req/s, p99 ${fmt(res.p99_ms)} ms, statuses ${JSON.stringify(res.statuses)}`);
      }
    }
    const ratio = median(rps.fleet!.map((f, i) => f / rps.sqlite![i]!));
    // Every answered request's row must reach PostgreSQL (batched, so give the writer a moment).
    const c = new pg.Client({ connectionString: db.url });
    await c.connect();
    let rows = 0;
    for (let i = 0; i < 100; i++) {
      rows = (await c.query<{ n: number }>("SELECT COUNT(*)::int AS n FROM usage")).rows[0]!.n;
      if (rows >= fleetAnswers) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    await c.end();
    process.stdout.write(
      `## Fleet mode vs SQLite (autocannon, ${connections} connections, ${rounds} × ${duration} s, HTTP_THREADS=${threads}, small body, virtual key)\n\n`,
    );
    process.stdout.write(
      markdownTable(
        ["target", "req/s (median)", "fleet ÷ sqlite", "target", "met"],
        [
          ["sqlite (no Redis)", fmt(median(rps.sqlite!)), "", "", ""],
          ["fleet (PostgreSQL + Redis)", fmt(median(rps.fleet!)), `${fmt(ratio)}×`, "≥ 0.95×", ratio >= 0.95 ? "yes" : "**no**"],
        ],
      ) + "\n\n",
    );
    process.stdout.write(
      `PostgreSQL ledger rows: ${rows} for ${fleetAnswers} answers of the fleet gateway (each request writes one row). ` +
        `Budget lease round trips under load: ${fmt(leaseRenewals / (rounds * duration))}/s (budget_lease_renewals_total, BUDGET_LEASE_MS 100).\n`,
    );
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await redis.stop();
    db.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`loadtest/fleet: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
