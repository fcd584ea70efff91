/**
 * Settings: read from the environment and an optional JSON config file, validated once
 * with typia, then frozen. Pure: the caller hands in the environment and the parsed file.
 * A bad value throws ConfigError naming the setting (env var name, or the file path + field).
 */
import typia, { tags } from "typia";
import { loadMcpConfig, type McpConfig } from "./policy/config.js";
import { DEFAULT_PRICES, validatePricesFile, type PriceEntry } from "./pricing.js";
import type { BetaPolicyFile } from "./beta-policy.js";
import type { Strategy } from "./balance.js";
import { ConfigError, envBool, envNum, envStr, type Env } from "./env.js";
import { loadTracingConfig, type TracingConfig } from "./tracing-config.js";
import { typiaPath } from "./typia-path.js";
import { loadCacheConfig, type CacheConfig } from "./cache/config.js";
import { loadKeyPool, type PoolKeyEntry, type PoolKeyEnvEntry } from "./keypool-config.js";
import type { PoolKey } from "./keypool.js";

export { ConfigError };

/**
 * Shutdown finishes within GRACEFUL_SHUTDOWN_TIMEOUT plus this margin, ledger flush
 * included (server/main.ts enforces it; docs/operations.md and the k8s grace period rely on it).
 */
export const SHUTDOWN_MARGIN_MS = 5000;

export type ProviderType = "anthropic" | "azure-anthropic" | "databricks" | "bedrock" | "vertex" | "mock" | "openai" | "azure-openai";
/** Azure OpenAI's `api-version` when a provider does not name one (docs/openai.md). */
export const AZURE_OPENAI_API_VERSION = "2024-10-21";

/** One provider in the config file. */
export interface ProviderFileEntry {
  type: ProviderType;
  /** Upstream base URL (http or https). Not used by `mock`. */
  base_url?: string & tags.Format<"uri">;
  /** The provider's key, or... */
  api_key?: string & tags.MinLength<1>;
  /** ...the name of the environment variable that holds it (keeps secrets out of the file). */
  api_key_env?: string & tags.MinLength<1>;
  /** Several keys, each optionally `{ key, weight, rpm, tpm }` (literal: prefer api_key_envs; core/keypool.ts). */
  api_keys?: PoolKeyEntry[];
  /** Several keys by env var name, each optionally `{ env, weight, rpm, tpm }`. */
  api_key_envs?: PoolKeyEnvEntry[];
  /** Forward the client's own key instead of a configured one. */
  pass_through_key?: boolean;
  /** azure-openai only: the `api-version` query parameter. */
  api_version?: string & tags.MinLength<1>;
  /** OpenAI-format only: the output-limit field a translated request uses (older servers know only max_tokens). */
  max_tokens_field?: "max_completion_tokens" | "max_tokens";
  /** bedrock: AWS region (default AWS_REGION); vertex: location, e.g. us-east5 or global. */
  region?: string & tags.Pattern<"^[a-z0-9-]{1,40}$">;
  /** vertex: the Google Cloud project id. */
  project_id?: string & tags.Pattern<"^[a-z0-9][a-z0-9:.-]{0,100}$">;
  /** vertex: service-account JSON file (default GOOGLE_APPLICATION_CREDENTIALS, then the metadata server). */
  credentials_file?: string & tags.MinLength<1>;
  /** Which betas pass, are renamed or dropped, and which body fields are removed (docs/providers.md). */
  beta_policy?: BetaPolicyFile;
}

export interface RouteTargetEntry {
  provider: string & tags.MinLength<1>;
  /** Upstream model name; omitted means the client's model name is sent unchanged. */
  model?: string & tags.MinLength<1>;
}

export interface RouteFileEntry extends RouteTargetEntry {
  /** Exact model name, or a prefix ending in `*` (e.g. `claude-*`). */
  match: string & tags.MinLength<1>;
  /** Tried in order when the primary's breaker is open or its retries ran out before any byte was sent. */
  fallbacks?: RouteTargetEntry[];
  /** More deployments of equal rank to the route's own target (other regions or accounts), balanced by weight with session affinity. */
  deployments?: (RouteTargetEntry & { weight?: number & tags.ExclusiveMinimum<0> & tags.Maximum<1000000> })[] & tags.MaxItems<5>;
  /** Weight of the route's own target among its deployments (default 1). */
  weight?: number & tags.ExclusiveMinimum<0> & tags.Maximum<1000000>;
  /** How a request without a session picks among the deployments (default weighted; core/balance.ts). */
  strategy?: Strategy;
}

export interface ConfigFile {
  providers?: Record<string, ProviderFileEntry>;
  routes?: RouteFileEntry[];
  default_provider?: string;
  api_keys?: (string & tags.MinLength<8>)[];
}

export interface ProviderConfig {
  readonly name: string;
  readonly type: ProviderType;
  /** Origin (scheme://host:port) for the undici pool; "" for mock. */
  readonly origin: string;
  /** Path prefix from the base URL, without a trailing slash. */
  readonly basePath: string;
  readonly apiKey: string | null;
  readonly passThroughKey: boolean;
  /** A key pool (api_keys / api_key_envs); apiKey is then its first key. Absent or null: one key. */
  readonly keys?: readonly PoolKey[] | null;
  /** azure-openai's api-version (set for that type only; absent means null). */
  readonly apiVersion?: string | null;
  /** OpenAI-format providers: the output-limit field of translated requests (absent: max_completion_tokens). */
  readonly maxTokensField?: "max_completion_tokens" | "max_tokens";
  /** bedrock/vertex region or location; null for the others. */
  readonly region?: string | null;
  /** vertex project id; null for the others. */
  readonly projectId?: string | null;
  /** vertex service-account file; null = GOOGLE_APPLICATION_CREDENTIALS or the metadata server. */
  readonly credentialsFile?: string | null;
  /** The config file's beta_policy override (merged onto the type's defaults in core/beta-policy.ts). */
  readonly betaPolicy?: BetaPolicyFile | null;
}

export interface RouteTarget {
  readonly provider: string;
  readonly model: string | null;
}

export interface RouteConfig extends RouteTarget {
  readonly match: string;
  readonly prefix: boolean;
  readonly fallbacks: readonly RouteTarget[];
  /** Deployments of equal rank after the route's own target, with weights (core/balance.ts); absent or empty = none. */
  readonly deployments?: readonly (RouteTarget & { readonly weight: number })[];
  /** Weight of the route's own target (default 1). */
  readonly weight?: number;
  /** Balancing strategy among the deployments; absent = weighted. */
  readonly strategy?: Strategy;
}

/** The validated numeric/flag settings (typia checks the ranges). */
export interface Settings {
  port: number & tags.Type<"uint32"> & tags.Maximum<65535>;
  host: string & tags.MinLength<1>;
  http_threads: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<256>;
  log_level: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
  log_file: string | null;
  max_body_bytes: number & tags.Type<"uint32"> & tags.Minimum<1024>;
  body_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<100>;
  graceful_shutdown_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<0>;
  upstream_connect_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  upstream_headers_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  upstream_body_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  upstream_connections: number & tags.Type<"uint32"> & tags.Minimum<1>;
  /** auto: offer HTTP/2 to https upstreams (ALPN), HTTP/1.1 when they do not take it; off: HTTP/1.1 only. */
  upstream_http2: "auto" | "off";
  /** Streams one HTTP/2 upstream connection carries before the pool opens another. */
  upstream_http2_streams: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<65535>;
  upstream_request_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  /** An upstream SSE event still incomplete past this many bytes ends the stream (event: error). */
  sse_max_event_bytes: number & tags.Type<"uint32"> & tags.Minimum<1024>;
  retry_max_attempts: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<20>;
  retry_base_delay_ms: number & tags.Type<"uint32">;
  retry_max_delay_ms: number & tags.Type<"uint32">;
  retry_budget_ms: number & tags.Type<"uint32">;
  /** A pool key that answered 429 without a usable retry-after rests this long (core/keypool.ts). */
  upstream_key_rest_ms: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<3600000>;
  /** ...and never longer than this, whatever its retry-after says. */
  upstream_key_rest_max_ms: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<3600000>;
  circuit_breaker_failure_threshold: number & tags.Type<"uint32"> & tags.Minimum<1>;
  circuit_breaker_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<86400000>;
  circuit_breaker_success_threshold: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<255>;
  circuit_breaker_half_open_probes: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<255>;
  load_shedding_heap_threshold: number & tags.ExclusiveMinimum<0> & tags.Maximum<1>;
  load_shedding_memory_threshold: number & tags.ExclusiveMinimum<0> & tags.Maximum<1>;
  load_shedding_active_requests_threshold: number & tags.Type<"uint32"> & tags.Minimum<1>;
  load_shedding_event_loop_delay_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  load_shedding_check_interval_ms: number & tags.Type<"uint32"> & tags.Minimum<10>;
  rate_limit_requests_per_minute: number & tags.Type<"uint32">;
  rate_limit_tokens_per_minute: number & tags.Type<"uint32">;
  metrics_enabled: boolean;
  health_check_enabled: boolean;
  /** Bearer token for /admin/*; null = the admin API is off (404). */
  admin_api_key: (string & tags.MinLength<16>) | null;
  database_path: string & tags.MinLength<1>;
  /** postgres:// URL of the shared ledger and keys (fleet mode, docs/fleet.md); null = SQLite at database_path. */
  database_url: string | null;
  /** Rows the ledger hub keeps while the database fails; past it the oldest are dropped (counted). */
  ledger_queue_max: number & tags.Type<"uint32"> & tags.Minimum<1000> & tags.Maximum<10000000>;
  /** Fleet mode: how often each replica reconciles its keys from PostgreSQL (a missed invalidation heals). */
  key_sync_ms: number & tags.Type<"uint32"> & tags.Minimum<50> & tags.Maximum<600000>;
  /** Fleet rate limits: how often the main thread renews request leases and reports token spend (server/fleet/rate-lease.ts). */
  rate_lease_renew_ms: number & tags.Type<"uint32"> & tags.Minimum<10> & tags.Maximum<1000>;
  /** Fleet rate limits: request units a key has not used for this long go back to the fleet. */
  rate_lease_idle_ms: number & tags.Type<"uint32"> & tags.Minimum<100> & tags.Maximum<60000>;
  /** Fleet budgets on Redis leases (docs/fleet.md): how often leases are renewed, returned and windows rolled. */
  budget_lease_ms: number & tags.Type<"uint32"> & tags.Minimum<10> & tags.Maximum<10000>;
  /** A key's lease unused this long is returned to the fleet (down to one request's worth). */
  budget_lease_idle_ms: number & tags.Type<"uint32"> & tags.Minimum<100> & tags.Maximum<3600000>;
  /** One grant takes at most 1/this of what is left of a limit (at least what one waiting request needs). */
  budget_lease_share: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<1000>;
  /** How long a request whose key's lease is short waits for the renewal before its 503; 0 = no wait (server/fleet/budget-park.ts). */
  budget_lease_wait_ms: number & tags.Type<"uint32"> & tags.Maximum<10000>;
  budget_fail_mode: "open" | "closed";
  max_keys: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<1000000>;
  ledger_batch_ms: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<10000>;
  ledger_batch_rows: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<100000>;
  /** Second port for /health/* and /metrics/* (then not served on PORT); null = both on PORT. */
  metrics_port: (number & tags.Type<"uint32"> & tags.Maximum<65535>) | null;
  /** Usage and audit rows older than this many days are pruned by the ledger writer; 0 = keep all. */
  ledger_retention_days: number & tags.Type<"uint32"> & tags.Maximum<36500>;
  /** Cap on the ledger's used pages in MiB: past it the oldest rows are pruned first; 0 = no cap. */
  ledger_max_mb: number & tags.Type<"uint32"> & tags.Maximum<1048576>;
  /** Distinct metadata.user_id values that get their own Prometheus label (core/user-metrics.ts); 0 = off. */
  usage_metrics_user_label_max: number & tags.Type<"uint32"> & tags.Maximum<10000>;
}

export interface GatewayConfig extends Settings {
  readonly providers: readonly ProviderConfig[];
  readonly routes: readonly RouteConfig[];
  readonly defaultProvider: string | null;
  readonly apiKeys: readonly string[];
  /** MCP workspace tools (docs/mcp.md); null when WORKSPACE_ROOT is unset. */
  readonly mcp: McpConfig | null;
  /** Price table entries: defaults merged with PRICES_FILE (core/pricing.ts). */
  readonly prices: Readonly<Record<string, PriceEntry>>;
  /** The response cache (docs/cache.md). */
  readonly cache: CacheConfig;
  /** OpenTelemetry export (docs/tracing.md); null = tracing off. */
  readonly tracing: TracingConfig | null;
}

/** Which env var names each setting, for error messages and `portcullis --help`. */
export const ENV_NAMES: Record<keyof Settings, string> = {
  port: "PORT",
  host: "HOST",
  http_threads: "HTTP_THREADS",
  log_level: "LOG_LEVEL",
  log_file: "LOG_FILE",
  max_body_bytes: "MAX_BODY_BYTES",
  body_timeout_ms: "BODY_TIMEOUT_MS",
  graceful_shutdown_timeout_ms: "GRACEFUL_SHUTDOWN_TIMEOUT",
  upstream_connect_timeout_ms: "UPSTREAM_CONNECT_TIMEOUT_MS",
  upstream_headers_timeout_ms: "UPSTREAM_HEADERS_TIMEOUT_MS",
  upstream_body_timeout_ms: "UPSTREAM_BODY_TIMEOUT_MS",
  upstream_connections: "UPSTREAM_CONNECTIONS",
  upstream_http2: "UPSTREAM_HTTP2",
  upstream_http2_streams: "UPSTREAM_HTTP2_STREAMS",
  upstream_request_timeout_ms: "UPSTREAM_REQUEST_TIMEOUT_MS",
  sse_max_event_bytes: "SSE_MAX_EVENT_BYTES",
  retry_max_attempts: "RETRY_MAX_ATTEMPTS",
  retry_base_delay_ms: "RETRY_BASE_DELAY_MS",
  retry_max_delay_ms: "RETRY_MAX_DELAY_MS",
  retry_budget_ms: "RETRY_BUDGET_MS",
  upstream_key_rest_ms: "UPSTREAM_KEY_REST_MS",
  upstream_key_rest_max_ms: "UPSTREAM_KEY_REST_MAX_MS",
  circuit_breaker_failure_threshold: "CIRCUIT_BREAKER_FAILURE_THRESHOLD",
  circuit_breaker_timeout_ms: "CIRCUIT_BREAKER_TIMEOUT",
  circuit_breaker_success_threshold: "CIRCUIT_BREAKER_SUCCESS_THRESHOLD",
  circuit_breaker_half_open_probes: "CIRCUIT_BREAKER_HALF_OPEN_PROBES",
  load_shedding_heap_threshold: "LOAD_SHEDDING_HEAP_THRESHOLD",
  load_shedding_memory_threshold: "LOAD_SHEDDING_MEMORY_THRESHOLD",
  load_shedding_active_requests_threshold: "LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD",
  load_shedding_event_loop_delay_ms: "LOAD_SHEDDING_EVENT_LOOP_DELAY_MS",
  load_shedding_check_interval_ms: "LOAD_SHEDDING_CHECK_INTERVAL_MS",
  rate_limit_requests_per_minute: "RATE_LIMIT_REQUESTS_PER_MINUTE",
  rate_limit_tokens_per_minute: "RATE_LIMIT_TOKENS_PER_MINUTE",
  metrics_enabled: "METRICS_ENABLED",
  health_check_enabled: "HEALTH_CHECK_ENABLED",
  admin_api_key: "ADMIN_API_KEY",
  database_path: "DATABASE_PATH",
  database_url: "DATABASE_URL",
  ledger_queue_max: "LEDGER_QUEUE_MAX",
  key_sync_ms: "KEY_SYNC_MS",
  rate_lease_renew_ms: "RATE_LEASE_RENEW_MS",
  rate_lease_idle_ms: "RATE_LEASE_IDLE_MS",
  budget_lease_ms: "BUDGET_LEASE_MS",
  budget_lease_idle_ms: "BUDGET_LEASE_IDLE_MS",
  budget_lease_share: "BUDGET_LEASE_SHARE",
  budget_lease_wait_ms: "BUDGET_LEASE_WAIT_MS",
  budget_fail_mode: "BUDGET_FAIL_MODE",
  max_keys: "MAX_KEYS",
  ledger_batch_ms: "LEDGER_BATCH_MS",
  ledger_batch_rows: "LEDGER_BATCH_ROWS",
  metrics_port: "METRICS_PORT",
  ledger_retention_days: "LEDGER_RETENTION_DAYS",
  ledger_max_mb: "LEDGER_MAX_MB",
  usage_metrics_user_label_max: "USAGE_METRICS_USER_LABEL_MAX",
};

const validateSettings = typia.createValidate<Settings>();
const validateFile = typia.createValidate<ConfigFile>();

function typiaMessage(err: { path: string; expected: string; value: unknown }): string {
  // Never echo a value that may be a secret.
  if (/key/i.test(err.path)) return `expected ${err.expected}`;
  const got = err.value === undefined ? "nothing" : JSON.stringify(err.value);
  return `expected ${err.expected}, got ${got && got.length > 80 ? got.slice(0, 77) + "..." : got}`;
}

function parseBase(setting: string, raw: string): { origin: string; basePath: string } {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new ConfigError(setting, `expected an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new ConfigError(setting, `expected an http(s) URL, got ${JSON.stringify(raw)}`);
  }
  if (u.search || u.hash || u.username || u.password) {
    throw new ConfigError(setting, "the base URL must not carry a query, fragment or credentials");
  }
  return { origin: u.origin, basePath: u.pathname.replace(/\/+$/, "") };
}

const ENV_PROVIDERS: { name: ProviderType; base: string; key: string; dfltBase: string | null }[] = [
  { name: "anthropic", base: "ANTHROPIC_API_BASE", key: "ANTHROPIC_API_KEY", dfltBase: "https://api.anthropic.com" },
  { name: "azure-anthropic", base: "AZURE_ANTHROPIC_API_BASE", key: "AZURE_ANTHROPIC_API_KEY", dfltBase: null },
  { name: "databricks", base: "DATABRICKS_API_BASE", key: "DATABRICKS_API_KEY", dfltBase: null },
];

/**
 * DATABASE_URL: `sqlite:PATH` (the same as DATABASE_PATH=PATH) or `postgres://…`/`postgresql://…`
 * (fleet mode). The URL carries a password: an error never repeats it.
 */
function databaseSettings(url: string | null, path: string): { database_path: string; database_url: string | null } {
  if (url === null) return { database_path: path, database_url: null };
  if (url.startsWith("sqlite:")) {
    const p = url.slice("sqlite:".length);
    if (p === "") throw new ConfigError("DATABASE_URL", "sqlite: needs a path, e.g. sqlite:./data/portcullis.db");
    return { database_path: p, database_url: null };
  }
  let u: URL | null = null;
  try {
    u = new URL(url);
  } catch {
    // reported below
  }
  if (u === null || (u.protocol !== "postgres:" && u.protocol !== "postgresql:") || u.hostname === "") {
    throw new ConfigError(
      "DATABASE_URL",
      "expected sqlite:PATH or a postgres://user:password@host:port/database URL (value not shown: it may hold a password)",
    );
  }
  return { database_path: path, database_url: url };
}

/**
 * Build the configuration. `file` is the parsed CONFIG_FILE JSON (or undefined) and
 * `defaultThreads` the CPUs this process may use.
 */
export function loadConfig(env: Env, file: unknown, defaultThreads: number, pricesFile?: unknown): GatewayConfig {
  const settings = {
    port: envNum(env, "PORT", 8080),
    host: envStr(env, "HOST") ?? "0.0.0.0",
    http_threads: envNum(env, "HTTP_THREADS", defaultThreads),
    log_level: (envStr(env, "LOG_LEVEL") ?? "info") as Settings["log_level"],
    log_file: envStr(env, "LOG_FILE"),
    max_body_bytes: envNum(env, "MAX_BODY_BYTES", 32 * 1024 * 1024),
    body_timeout_ms: envNum(env, "BODY_TIMEOUT_MS", 30_000),
    graceful_shutdown_timeout_ms: envNum(env, "GRACEFUL_SHUTDOWN_TIMEOUT", 30_000),
    upstream_connect_timeout_ms: envNum(env, "UPSTREAM_CONNECT_TIMEOUT_MS", 10_000),
    // LLM calls can take minutes before the first byte on a large prompt.
    upstream_headers_timeout_ms: envNum(env, "UPSTREAM_HEADERS_TIMEOUT_MS", 600_000),
    upstream_body_timeout_ms: envNum(env, "UPSTREAM_BODY_TIMEOUT_MS", 300_000),
    upstream_connections: envNum(env, "UPSTREAM_CONNECTIONS", 8192),
    upstream_http2: (envStr(env, "UPSTREAM_HTTP2") ?? "off") as Settings["upstream_http2"],
    upstream_http2_streams: envNum(env, "UPSTREAM_HTTP2_STREAMS", 100),
    upstream_request_timeout_ms: envNum(env, "UPSTREAM_REQUEST_TIMEOUT_MS", 900_000),
    sse_max_event_bytes: envNum(env, "SSE_MAX_EVENT_BYTES", 16 * 1024 * 1024),
    retry_max_attempts: envNum(env, "RETRY_MAX_ATTEMPTS", 3),
    retry_base_delay_ms: envNum(env, "RETRY_BASE_DELAY_MS", 500),
    retry_max_delay_ms: envNum(env, "RETRY_MAX_DELAY_MS", 8_000),
    retry_budget_ms: envNum(env, "RETRY_BUDGET_MS", 30_000),
    upstream_key_rest_ms: envNum(env, "UPSTREAM_KEY_REST_MS", 10_000),
    upstream_key_rest_max_ms: envNum(env, "UPSTREAM_KEY_REST_MAX_MS", 300_000),
    circuit_breaker_failure_threshold: envNum(env, "CIRCUIT_BREAKER_FAILURE_THRESHOLD", 5),
    circuit_breaker_timeout_ms: envNum(env, "CIRCUIT_BREAKER_TIMEOUT", 60_000),
    circuit_breaker_success_threshold: envNum(env, "CIRCUIT_BREAKER_SUCCESS_THRESHOLD", 2),
    circuit_breaker_half_open_probes: envNum(env, "CIRCUIT_BREAKER_HALF_OPEN_PROBES", envNum(env, "CIRCUIT_BREAKER_SUCCESS_THRESHOLD", 2)),
    load_shedding_heap_threshold: envNum(env, "LOAD_SHEDDING_HEAP_THRESHOLD", 0.9),
    load_shedding_memory_threshold: envNum(env, "LOAD_SHEDDING_MEMORY_THRESHOLD", 0.85),
    load_shedding_active_requests_threshold: envNum(env, "LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD", 5000),
    load_shedding_event_loop_delay_ms: envNum(env, "LOAD_SHEDDING_EVENT_LOOP_DELAY_MS", 1000),
    load_shedding_check_interval_ms: envNum(env, "LOAD_SHEDDING_CHECK_INTERVAL_MS", 250),
    rate_limit_requests_per_minute: envNum(env, "RATE_LIMIT_REQUESTS_PER_MINUTE", 0),
    rate_limit_tokens_per_minute: envNum(env, "RATE_LIMIT_TOKENS_PER_MINUTE", 0),
    metrics_enabled: envBool(env, "METRICS_ENABLED", true),
    health_check_enabled: envBool(env, "HEALTH_CHECK_ENABLED", true),
    admin_api_key: envStr(env, "ADMIN_API_KEY"),
    ...databaseSettings(envStr(env, "DATABASE_URL"), envStr(env, "DATABASE_PATH") ?? "./data/portcullis.db"),
    ledger_queue_max: envNum(env, "LEDGER_QUEUE_MAX", 200_000),
    key_sync_ms: envNum(env, "KEY_SYNC_MS", 500),
    rate_lease_renew_ms: envNum(env, "RATE_LEASE_RENEW_MS", 50),
    rate_lease_idle_ms: envNum(env, "RATE_LEASE_IDLE_MS", 1000),
    budget_lease_ms: envNum(env, "BUDGET_LEASE_MS", 100),
    budget_lease_idle_ms: envNum(env, "BUDGET_LEASE_IDLE_MS", 5000),
    budget_lease_share: envNum(env, "BUDGET_LEASE_SHARE", 8),
    budget_lease_wait_ms: envNum(env, "BUDGET_LEASE_WAIT_MS", 1000),
    budget_fail_mode: (envStr(env, "BUDGET_FAIL_MODE") ?? "closed") as Settings["budget_fail_mode"],
    max_keys: envNum(env, "MAX_KEYS", 10_000),
    ledger_batch_ms: envNum(env, "LEDGER_BATCH_MS", 50),
    ledger_batch_rows: envNum(env, "LEDGER_BATCH_ROWS", 500),
    metrics_port: envStr(env, "METRICS_PORT") === null ? null : envNum(env, "METRICS_PORT", 0),
    ledger_retention_days: envNum(env, "LEDGER_RETENTION_DAYS", 30),
    ledger_max_mb: envNum(env, "LEDGER_MAX_MB", 0),
    usage_metrics_user_label_max: envNum(env, "USAGE_METRICS_USER_LABEL_MAX", 0),
  };
  const sv = validateSettings(settings);
  if (!sv.success) {
    const e = sv.errors[0]!;
    const key = typiaPath(e.path) as keyof Settings;
    throw new ConfigError(ENV_NAMES[key] ?? key, typiaMessage(e));
  }
  if (settings.metrics_port !== null && settings.metrics_port !== 0 && settings.metrics_port === settings.port) {
    throw new ConfigError("METRICS_PORT", `must differ from PORT (${settings.port}); leave it unset to serve health and metrics on PORT`);
  }

  let cf: ConfigFile = {};
  if (file !== undefined) {
    const fv = validateFile(file);
    if (!fv.success) {
      const e = fv.errors[0]!;
      const path = typiaPath(e.path);
      throw new ConfigError(`CONFIG_FILE ${path || "(root)"}`, typiaMessage(e));
    }
    cf = fv.data;
  }

  const providers = new Map<string, ProviderConfig>();
  providers.set("mock", { name: "mock", type: "mock", origin: "", basePath: "", apiKey: null, passThroughKey: false, ...NO_CLOUD });
  for (const [name, p] of Object.entries(cf.providers ?? {})) {
    const setting = `CONFIG_FILE providers.${name}`;
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) {
      throw new ConfigError(setting, "provider names are lowercase letters, digits, - and _ (they become metric labels)");
    }
    let apiKey = p.api_key ?? null;
    if (p.api_key_env !== undefined) {
      apiKey = envStr(env, p.api_key_env);
      if (apiKey === null) throw new ConfigError(`${setting}.api_key_env`, `environment variable ${p.api_key_env} is not set`);
    }
    const keys = loadKeyPool(env, setting, p);
    if (keys !== null) apiKey = keys[0]!.key;
    if (p.type === "mock") {
      providers.set(name, { name, type: "mock", origin: "", basePath: "", apiKey: null, passThroughKey: false, ...NO_CLOUD });
      continue;
    }
    if (p.type === "bedrock" || p.type === "vertex") {
      providers.set(name, { ...cloudProvider(env, name, p, apiKey), keys });
      continue;
    }
    const base =
      p.base_url ?? (p.type === "anthropic" ? "https://api.anthropic.com" : p.type === "openai" ? "https://api.openai.com/v1" : null);
    if (base === null) throw new ConfigError(`${setting}.base_url`, `is required for type ${p.type}`);
    if (apiKey === null && p.pass_through_key !== true) {
      throw new ConfigError(`${setting}.api_key`, "set api_key, api_key_env or pass_through_key");
    }
    const { origin, basePath } = parseBase(`${setting}.base_url`, base);
    if (p.api_version !== undefined && p.type !== "azure-openai")
      throw new ConfigError(`${setting}.api_version`, "applies to type azure-openai only");
    const apiVersion = p.type === "azure-openai" ? (p.api_version ?? AZURE_OPENAI_API_VERSION) : null;
    const openaiFormat = p.type === "openai" || p.type === "azure-openai";
    if (p.max_tokens_field !== undefined && !openaiFormat)
      throw new ConfigError(`${setting}.max_tokens_field`, "applies to types openai and azure-openai only");
    const maxTokensField = p.max_tokens_field ?? "max_completion_tokens";
    providers.set(name, {
      name,
      type: p.type,
      origin,
      basePath,
      apiKey,
      passThroughKey: p.pass_through_key === true,
      keys,
      apiVersion,
      maxTokensField,
      ...NO_CLOUD,
      betaPolicy: p.beta_policy ?? null,
    });
  }
  // Environment providers (they override a file entry of the same name).
  for (const ep of ENV_PROVIDERS) {
    const base = envStr(env, ep.base);
    const key = envStr(env, ep.key);
    if (base === null && key === null) continue;
    if (key === null) throw new ConfigError(ep.key, `is required when ${ep.base} is set`);
    const b = base ?? ep.dfltBase;
    if (b === null) throw new ConfigError(ep.base, `is required when ${ep.key} is set`);
    const { origin, basePath } = parseBase(ep.base, b);
    providers.set(ep.name, { name: ep.name, type: ep.name, origin, basePath, apiKey: key, passThroughKey: false, ...NO_CLOUD });
  }

  const routes: RouteConfig[] = [];
  (cf.routes ?? []).forEach((r, i) => {
    if (!providers.has(r.provider)) {
      throw new ConfigError(`CONFIG_FILE routes.${i}.provider`, `unknown provider ${JSON.stringify(r.provider)}`);
    }
    (r.fallbacks ?? []).forEach((f, j) => {
      if (!providers.has(f.provider)) {
        throw new ConfigError(`CONFIG_FILE routes.${i}.fallbacks.${j}.provider`, `unknown provider ${JSON.stringify(f.provider)}`);
      }
    });
    const prefix = r.match.endsWith("*");
    if (r.match.indexOf("*") !== r.match.length - 1 && r.match.includes("*")) {
      throw new ConfigError(`CONFIG_FILE routes.${i}.match`, "a * may only end a prefix pattern");
    }
    const fallbacks = (r.fallbacks ?? []).map((f) => Object.freeze({ provider: f.provider, model: f.model ?? null }));
    (r.deployments ?? []).forEach((d, j) => {
      if (!providers.has(d.provider)) {
        throw new ConfigError(`CONFIG_FILE routes.${i}.deployments.${j}.provider`, `unknown provider ${JSON.stringify(d.provider)}`);
      }
    });
    const deployments = (r.deployments ?? []).map((d) =>
      Object.freeze({ provider: d.provider, model: d.model ?? null, weight: d.weight ?? 1 }),
    );
    // deployments and weight only when given, so a plain route keeps its first-wave shape.
    routes.push({
      match: prefix ? r.match.slice(0, -1) : r.match,
      prefix,
      provider: r.provider,
      model: r.model ?? null,
      fallbacks,
      ...(deployments.length > 0 ? { deployments } : {}),
      ...(r.weight !== undefined ? { weight: r.weight } : {}),
      ...(r.strategy !== undefined ? { strategy: r.strategy } : {}),
    });
  });

  let defaultProvider = envStr(env, "MODEL_PROVIDER") ?? cf.default_provider ?? null;
  // "auto": the one provider configured, so a deployment's ConfigMap fits whichever provider its Secret holds.
  if (defaultProvider === "auto" && !providers.has("auto")) defaultProvider = autoProvider([...providers.values()]);
  if (defaultProvider !== null && !providers.has(defaultProvider)) {
    const setting = envStr(env, "MODEL_PROVIDER") !== null ? "MODEL_PROVIDER" : "CONFIG_FILE default_provider";
    throw new ConfigError(setting, `unknown provider ${JSON.stringify(defaultProvider)}; configured: ${[...providers.keys()].join(", ")}`);
  }

  const apiKeys = [...(cf.api_keys ?? [])];
  const envKeys = envStr(env, "GATEWAY_API_KEYS");
  if (envKeys !== null) {
    for (const k of envKeys.split(",")) {
      const t = k.trim();
      if (t === "") continue;
      if (t.length < 8) throw new ConfigError("GATEWAY_API_KEYS", "each key must be at least 8 characters");
      apiKeys.push(t);
    }
  }

  // Rate limits are counted per client key: without keys (static, or virtual ones through
  // the admin API) there is nothing to count against, and the limit would silently do nothing.
  if (apiKeys.length === 0 && settings.admin_api_key === null) {
    for (const name of ["rate_limit_requests_per_minute", "rate_limit_tokens_per_minute"] as const) {
      if (settings[name] > 0) {
        throw new ConfigError(
          ENV_NAMES[name],
          "rate limits apply per client key, and no client keys are configured: set GATEWAY_API_KEYS (or api_keys in CONFIG_FILE, or ADMIN_API_KEY for virtual keys), or leave this unset",
        );
      }
    }
  }

  return Object.freeze({
    ...settings,
    providers: Object.freeze([...providers.values()].map((p) => Object.freeze(p))),
    routes: Object.freeze(routes.map((r) => Object.freeze(r))),
    defaultProvider,
    apiKeys: Object.freeze(apiKeys),
    mcp: loadMcpConfig(env, apiKeys.length),
    prices: Object.freeze(loadPrices(pricesFile)),
    cache: loadCacheConfig(env),
    tracing: loadTracingConfig(env),
  });
}

const NO_PROVIDER =
  "no provider is configured: set ANTHROPIC_API_KEY, or AZURE_ANTHROPIC_API_KEY with AZURE_ANTHROPIC_API_BASE, or DATABRICKS_API_KEY with DATABRICKS_API_BASE, or providers in CONFIG_FILE (MODEL_PROVIDER=mock serves canned replies)";

/** MODEL_PROVIDER=auto: the only configured provider, or an error naming what to set. */
function autoProvider(all: ProviderConfig[]): string {
  const real = all.filter((p) => p.type !== "mock").map((p) => p.name);
  if (real.length === 1) return real[0]!;
  if (real.length === 0) throw new ConfigError("ANTHROPIC_API_KEY", `MODEL_PROVIDER=auto: ${NO_PROVIDER}`);
  throw new ConfigError(
    "MODEL_PROVIDER",
    `auto needs exactly one provider, and several providers are configured (${real.join(", ")}): name the default one`,
  );
}

/**
 * Start-up check: a gateway with no provider at all, no route and no MCP tools can serve
 * nothing, which is a misconfiguration. Throws a ConfigError naming what to set.
 */
export function checkServable(cfg: GatewayConfig): void {
  if (cfg.defaultProvider !== null || cfg.routes.length > 0 || cfg.mcp !== null) return;
  if (cfg.providers.some((p) => p.type !== "mock")) return; // models without a route get 404, as documented
  throw new ConfigError("ANTHROPIC_API_KEY", NO_PROVIDER);
}

/**
 * HTTP_THREADS default: the CPUs this process may use, capped by a cgroup v2 `cpu.max`
 * quota ("<quota> <period>" or "max <period>"), rounded down, at least 1. A pod with a
 * 1000m limit gets 1 thread, 2500m gets 2.
 */
export function cpuThreads(available: number, cpuMax: string | null): number {
  const n = Math.max(1, Math.floor(available));
  const m = cpuMax === null ? null : /^(\d+)\s+(\d+)\s*$/.exec(cpuMax.trim());
  if (m === null) return n;
  const quota = Number(m[1]) / Number(m[2]);
  return Number.isFinite(quota) && quota > 0 ? Math.max(1, Math.min(n, Math.floor(quota))) : n;
}

const NO_CLOUD = { region: null, projectId: null, credentialsFile: null, betaPolicy: null } as const;

/**
 * A bedrock or vertex provider. Bedrock: endpoint from the region (or base_url for VPC
 * endpoints and tests); a Bedrock API key (api_key, api_key_env or AWS_BEARER_TOKEN_BEDROCK)
 * is sent as a bearer, otherwise requests are SigV4-signed with the standard AWS chain.
 * Vertex: endpoint from the location; OAuth2 tokens from a service account or the metadata server.
 */
function cloudProvider(env: Env, name: string, p: ProviderFileEntry, apiKey: string | null): ProviderConfig {
  const setting = `CONFIG_FILE providers.${name}`;
  if (p.pass_through_key === true) throw new ConfigError(`${setting}.pass_through_key`, `is not supported for type ${p.type}`);
  if (p.type === "bedrock") {
    const region = p.region ?? envStr(env, "AWS_REGION") ?? envStr(env, "AWS_DEFAULT_REGION");
    if (region === null) throw new ConfigError(`${setting}.region`, "is required for type bedrock (or set AWS_REGION)");
    if (!/^[a-z0-9-]{1,40}$/.test(region))
      throw new ConfigError("AWS_REGION", `expected an AWS region name, got ${JSON.stringify(region).slice(0, 60)}`);
    const { origin, basePath } = parseBase(`${setting}.base_url`, p.base_url ?? `https://bedrock-runtime.${region}.amazonaws.com`);
    const key = apiKey ?? envStr(env, "AWS_BEARER_TOKEN_BEDROCK");
    return {
      name,
      type: "bedrock",
      origin,
      basePath,
      apiKey: key,
      passThroughKey: false,
      region,
      projectId: null,
      credentialsFile: null,
      betaPolicy: p.beta_policy ?? null,
    };
  }
  if (p.project_id === undefined) throw new ConfigError(`${setting}.project_id`, "is required for type vertex");
  if (p.region === undefined)
    throw new ConfigError(`${setting}.region`, "is required for type vertex (a location such as us-east5, or global)");
  if (apiKey !== null)
    throw new ConfigError(
      `${setting}.api_key`,
      "is not used by type vertex: it authenticates with OAuth2 (credentials_file, GOOGLE_APPLICATION_CREDENTIALS or the metadata server)",
    );
  const host = p.region === "global" ? "https://aiplatform.googleapis.com" : `https://${p.region}-aiplatform.googleapis.com`;
  const { origin, basePath } = parseBase(`${setting}.base_url`, p.base_url ?? host);
  const credentialsFile = p.credentials_file ?? envStr(env, "GOOGLE_APPLICATION_CREDENTIALS");
  return {
    name,
    type: "vertex",
    origin,
    basePath,
    apiKey: null,
    passThroughKey: false,
    region: p.region,
    projectId: p.project_id,
    credentialsFile,
    betaPolicy: p.beta_policy ?? null,
  };
}

/** Default prices merged with a parsed PRICES_FILE (validated; errors name the entry). */
function loadPrices(file: unknown): Record<string, PriceEntry> {
  if (file === undefined) return { ...DEFAULT_PRICES };
  const v = validatePricesFile(file);
  if (!v.success) {
    const e = v.errors[0]!;
    const path = typiaPath(e.path);
    throw new ConfigError(`PRICES_FILE ${path || "(root)"}`, typiaMessage(e));
  }
  for (const name of Object.keys(v.data.models)) {
    if (name.indexOf("*") >= 0 && name.indexOf("*") !== name.length - 1)
      throw new ConfigError(`PRICES_FILE models.${name}`, "a * may only end a prefix pattern");
  }
  return { ...DEFAULT_PRICES, ...v.data.models };
}
