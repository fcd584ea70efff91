/**
 * The shared parts of a fleet test (test/server/fleet*.test.ts): the project's mock upstream, a
 * throw-away PostgreSQL and a throw-away redis-server, the environment that puts gateways in
 * fleet mode on them, and the admin API call the tests make.
 */
import type { Gateway } from "./gateway.js";
import { startPostgres, type PgHandle } from "./postgres.js";
import { startRedis, type RedisHandle } from "./redis.js";
import { startMock, type MockHandle } from "./spawn-mock.js";

export interface FleetStores {
  mock: MockHandle;
  db: PgHandle;
  /** Set it to the new handle when a test restarts Redis, so `stop` stops the one running. */
  redis: RedisHandle;
  /** Fleet mode on these stores, with `adminKey`, the mock as the Anthropic upstream and one attempt per request. */
  env: Record<string, string>;
  stop(): Promise<void>;
}

export async function startFleetStores(adminKey: string, upstreamKey: string): Promise<FleetStores> {
  const [mock, db, redis] = await Promise.all([startMock([]), startPostgres(), startRedis()]);
  const stores: FleetStores = {
    mock,
    db,
    redis,
    env: {
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: upstreamKey,
      MODEL_PROVIDER: "anthropic",
      ADMIN_API_KEY: adminKey,
      DATABASE_URL: db.url,
      REDIS_URL: redis.url,
      LEDGER_BATCH_MS: "20",
      RETRY_MAX_ATTEMPTS: "1",
    },
    async stop() {
      await Promise.all([this.mock.stop(), this.redis.stop()]);
      this.db.destroy();
    },
  };
  return stores;
}

/** One admin API call with `adminKey`: the status and the parsed JSON answer. */
export async function adminCall(
  g: Gateway,
  adminKey: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: any }> {
  const r = await fetch(`${g.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${adminKey}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: r.status, json: await r.json() };
}
