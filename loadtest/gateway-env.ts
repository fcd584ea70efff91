/**
 * The environment every load-test gateway runs with: its defaults plus client keys, info
 * logging to a file, metrics, and a ledger of its own beside the log (never ./data of the
 * working tree). Shared by `loadtest/run.ts` and `loadtest/memory.ts` so both measure the
 * same gateway.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";

export const CLIENT_KEY = "sk-loadtest-client-key-01";
export const HEADERS = { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": CLIENT_KEY };

export interface GatewayEnvOptions {
  mockPort: number;
  /** The SSE upstream for models `claude-stream-*`. */
  streamPort: number;
  /** Where the config file goes. */
  dir: string;
  /** HTTP_THREADS; null: the gateway's own default. */
  threads: number | null;
  /** LOG_FILE; the ledger is the same path ending in .db. */
  logFile: string;
  /** Rate limits on at 1e9 per minute (off at the gateway's defaults). */
  rateLimits?: boolean;
  extra?: Record<string, string>;
}

export function gatewayEnv(o: GatewayEnvOptions): Record<string, string> {
  const cfgFile = join(o.dir, "gateway.json");
  writeFileSync(
    cfgFile,
    JSON.stringify({
      providers: { sse: { type: "anthropic", base_url: `http://127.0.0.1:${o.streamPort}`, api_key: "sk-upstream-sse-123" } },
      routes: [{ match: "claude-stream-*", provider: "sse" }],
    }),
  );
  return {
    ...(o.threads === null ? {} : { HTTP_THREADS: String(o.threads) }),
    MODEL_PROVIDER: "anthropic",
    ANTHROPIC_API_BASE: `http://127.0.0.1:${o.mockPort}`,
    ANTHROPIC_API_KEY: "sk-upstream-key-123",
    GATEWAY_API_KEYS: CLIENT_KEY,
    CONFIG_FILE: cfgFile,
    LOG_LEVEL: "info",
    LOG_FILE: o.logFile,
    METRICS_ENABLED: "true",
    DATABASE_PATH: o.logFile.replace(/\.log$/, ".db"),
    ...(o.rateLimits === true ? { RATE_LIMIT_REQUESTS_PER_MINUTE: "1000000000", RATE_LIMIT_TOKENS_PER_MINUTE: "4000000000" } : {}),
    ...o.extra,
  };
}
