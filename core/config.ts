/**
 * Settings: read from the environment and an optional JSON config file, validated once
 * with typia, then frozen. Pure: the caller hands in the environment and the parsed file.
 * A bad value throws ConfigError naming the setting (env var name, or the file path + field).
 */
import typia, { tags } from "typia";
import { loadMcpConfig, type McpConfig } from "./policy/config.js";
import { DEFAULT_PRICES, validatePricesFile, type PriceEntry } from "./pricing.js";

export type ProviderType = "anthropic" | "azure-anthropic" | "databricks" | "mock";
export const PROVIDER_TYPES: readonly ProviderType[] = ["anthropic", "azure-anthropic", "databricks", "mock"];

/** One provider in the config file. */
export interface ProviderFileEntry {
  type: ProviderType;
  /** Upstream base URL (http or https). Not used by `mock`. */
  base_url?: string & tags.Format<"uri">;
  /** The provider's key, or... */
  api_key?: string & tags.MinLength<1>;
  /** ...the name of the environment variable that holds it (keeps secrets out of the file). */
  api_key_env?: string & tags.MinLength<1>;
  /** Forward the client's own key instead of a configured one. */
  pass_through_key?: boolean;
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
}

export interface RouteTarget {
  readonly provider: string;
  readonly model: string | null;
}

export interface RouteConfig extends RouteTarget {
  readonly match: string;
  readonly prefix: boolean;
  readonly fallbacks: readonly RouteTarget[];
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
  upstream_request_timeout_ms: number & tags.Type<"uint32"> & tags.Minimum<1>;
  retry_max_attempts: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<20>;
  retry_base_delay_ms: number & tags.Type<"uint32">;
  retry_max_delay_ms: number & tags.Type<"uint32">;
  retry_budget_ms: number & tags.Type<"uint32">;
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
  budget_fail_mode: "open" | "closed";
  max_keys: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<1000000>;
  ledger_batch_ms: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<10000>;
  ledger_batch_rows: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<100000>;
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
}

/** Which env var names each setting, for error messages. */
const ENV_NAMES: Record<keyof Settings, string> = {
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
  upstream_request_timeout_ms: "UPSTREAM_REQUEST_TIMEOUT_MS",
  retry_max_attempts: "RETRY_MAX_ATTEMPTS",
  retry_base_delay_ms: "RETRY_BASE_DELAY_MS",
  retry_max_delay_ms: "RETRY_MAX_DELAY_MS",
  retry_budget_ms: "RETRY_BUDGET_MS",
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
  budget_fail_mode: "BUDGET_FAIL_MODE",
  max_keys: "MAX_KEYS",
  ledger_batch_ms: "LEDGER_BATCH_MS",
  ledger_batch_rows: "LEDGER_BATCH_ROWS",
};

export class ConfigError extends Error {
  /** The setting at fault: an env var name or `CONFIG_FILE <path>`. */
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.setting = setting;
  }
}

const validateSettings = typia.createValidate<Settings>();
const validateFile = typia.createValidate<ConfigFile>();

type Env = Readonly<Record<string, string | undefined>>;

function num(env: Env, name: string, dflt: number): number {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return dflt;
  const s = raw.trim();
  // Number("") is 0 and Number("1e3") is 1000: accept plain decimal integers only.
  if (!/^-?\d+(\.\d+)?$/.test(s)) throw new ConfigError(name, `expected a number, got ${JSON.stringify(raw)}`);
  return Number(s);
}

function bool(env: Env, name: string, dflt: boolean): boolean {
  const raw = env[name];
  if (raw === undefined || raw.trim() === "") return dflt;
  const s = raw.trim().toLowerCase();
  if (s === "true" || s === "1" || s === "yes" || s === "on") return true;
  if (s === "false" || s === "0" || s === "no" || s === "off") return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(raw)}`);
}

function str(env: Env, name: string): string | null {
  const raw = env[name];
  return raw === undefined || raw.trim() === "" ? null : raw.trim();
}

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
 * Build the configuration. `file` is the parsed CONFIG_FILE JSON (or undefined) and
 * `defaultThreads` the CPUs this process may use.
 */
export function loadConfig(env: Env, file: unknown, defaultThreads: number, pricesFile?: unknown): GatewayConfig {
  const settings = {
    port: num(env, "PORT", 8080),
    host: str(env, "HOST") ?? "0.0.0.0",
    http_threads: num(env, "HTTP_THREADS", defaultThreads),
    log_level: (str(env, "LOG_LEVEL") ?? "info") as Settings["log_level"],
    log_file: str(env, "LOG_FILE"),
    max_body_bytes: num(env, "MAX_BODY_BYTES", 32 * 1024 * 1024),
    body_timeout_ms: num(env, "BODY_TIMEOUT_MS", 30_000),
    graceful_shutdown_timeout_ms: num(env, "GRACEFUL_SHUTDOWN_TIMEOUT", 30_000),
    upstream_connect_timeout_ms: num(env, "UPSTREAM_CONNECT_TIMEOUT_MS", 10_000),
    // LLM calls can take minutes before the first byte on a large prompt.
    upstream_headers_timeout_ms: num(env, "UPSTREAM_HEADERS_TIMEOUT_MS", 600_000),
    upstream_body_timeout_ms: num(env, "UPSTREAM_BODY_TIMEOUT_MS", 300_000),
    upstream_connections: num(env, "UPSTREAM_CONNECTIONS", 128),
    upstream_request_timeout_ms: num(env, "UPSTREAM_REQUEST_TIMEOUT_MS", 900_000),
    retry_max_attempts: num(env, "RETRY_MAX_ATTEMPTS", 3),
    retry_base_delay_ms: num(env, "RETRY_BASE_DELAY_MS", 500),
    retry_max_delay_ms: num(env, "RETRY_MAX_DELAY_MS", 8_000),
    retry_budget_ms: num(env, "RETRY_BUDGET_MS", 30_000),
    circuit_breaker_failure_threshold: num(env, "CIRCUIT_BREAKER_FAILURE_THRESHOLD", 5),
    circuit_breaker_timeout_ms: num(env, "CIRCUIT_BREAKER_TIMEOUT", 60_000),
    circuit_breaker_success_threshold: num(env, "CIRCUIT_BREAKER_SUCCESS_THRESHOLD", 2),
    circuit_breaker_half_open_probes: num(env, "CIRCUIT_BREAKER_HALF_OPEN_PROBES", num(env, "CIRCUIT_BREAKER_SUCCESS_THRESHOLD", 2)),
    load_shedding_heap_threshold: num(env, "LOAD_SHEDDING_HEAP_THRESHOLD", 0.9),
    load_shedding_memory_threshold: num(env, "LOAD_SHEDDING_MEMORY_THRESHOLD", 0.85),
    load_shedding_active_requests_threshold: num(env, "LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD", 1000),
    load_shedding_event_loop_delay_ms: num(env, "LOAD_SHEDDING_EVENT_LOOP_DELAY_MS", 1000),
    load_shedding_check_interval_ms: num(env, "LOAD_SHEDDING_CHECK_INTERVAL_MS", 250),
    rate_limit_requests_per_minute: num(env, "RATE_LIMIT_REQUESTS_PER_MINUTE", 0),
    rate_limit_tokens_per_minute: num(env, "RATE_LIMIT_TOKENS_PER_MINUTE", 0),
    metrics_enabled: bool(env, "METRICS_ENABLED", true),
    health_check_enabled: bool(env, "HEALTH_CHECK_ENABLED", true),
    admin_api_key: str(env, "ADMIN_API_KEY"),
    database_path: str(env, "DATABASE_PATH") ?? "./data/portcullis.db",
    budget_fail_mode: (str(env, "BUDGET_FAIL_MODE") ?? "closed") as Settings["budget_fail_mode"],
    max_keys: num(env, "MAX_KEYS", 10_000),
    ledger_batch_ms: num(env, "LEDGER_BATCH_MS", 50),
    ledger_batch_rows: num(env, "LEDGER_BATCH_ROWS", 500),
  };
  const sv = validateSettings(settings);
  if (!sv.success) {
    const e = sv.errors[0]!;
    const key = e.path.replace(/^\$input\./, "") as keyof Settings;
    throw new ConfigError(ENV_NAMES[key] ?? key, typiaMessage(e));
  }

  let cf: ConfigFile = {};
  if (file !== undefined) {
    const fv = validateFile(file);
    if (!fv.success) {
      const e = fv.errors[0]!;
      const path = e.path.replace(/^\$input\.?/, "").replace(/\[(\d+)\]/g, ".$1").replace(/\["([^"]+)"\]/g, ".$1").replace(/^\./, "");
      throw new ConfigError(`CONFIG_FILE ${path || "(root)"}`, typiaMessage(e));
    }
    cf = fv.data;
  }

  const providers = new Map<string, ProviderConfig>();
  providers.set("mock", { name: "mock", type: "mock", origin: "", basePath: "", apiKey: null, passThroughKey: false });
  for (const [name, p] of Object.entries(cf.providers ?? {})) {
    const setting = `CONFIG_FILE providers.${name}`;
    if (!/^[a-z0-9][a-z0-9_-]{0,62}$/.test(name)) {
      throw new ConfigError(setting, "provider names are lowercase letters, digits, - and _ (they become metric labels)");
    }
    let apiKey = p.api_key ?? null;
    if (p.api_key_env !== undefined) {
      apiKey = str(env, p.api_key_env);
      if (apiKey === null) throw new ConfigError(`${setting}.api_key_env`, `environment variable ${p.api_key_env} is not set`);
    }
    if (p.type === "mock") {
      providers.set(name, { name, type: "mock", origin: "", basePath: "", apiKey: null, passThroughKey: false });
      continue;
    }
    const base = p.base_url ?? (p.type === "anthropic" ? "https://api.anthropic.com" : null);
    if (base === null) throw new ConfigError(`${setting}.base_url`, `is required for type ${p.type}`);
    if (apiKey === null && p.pass_through_key !== true) {
      throw new ConfigError(`${setting}.api_key`, "set api_key, api_key_env or pass_through_key");
    }
    const { origin, basePath } = parseBase(`${setting}.base_url`, base);
    providers.set(name, { name, type: p.type, origin, basePath, apiKey, passThroughKey: p.pass_through_key === true });
  }
  // Environment providers (they override a file entry of the same name).
  for (const ep of ENV_PROVIDERS) {
    const base = str(env, ep.base);
    const key = str(env, ep.key);
    if (base === null && key === null) continue;
    if (key === null) throw new ConfigError(ep.key, `is required when ${ep.base} is set`);
    const b = base ?? ep.dfltBase;
    if (b === null) throw new ConfigError(ep.base, `is required when ${ep.key} is set`);
    const { origin, basePath } = parseBase(ep.base, b);
    providers.set(ep.name, { name: ep.name, type: ep.name, origin, basePath, apiKey: key, passThroughKey: false });
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
    routes.push({ match: prefix ? r.match.slice(0, -1) : r.match, prefix, provider: r.provider, model: r.model ?? null, fallbacks });
  });

  let defaultProvider = str(env, "MODEL_PROVIDER") ?? cf.default_provider ?? null;
  if (defaultProvider !== null && !providers.has(defaultProvider)) {
    const setting = str(env, "MODEL_PROVIDER") !== null ? "MODEL_PROVIDER" : "CONFIG_FILE default_provider";
    throw new ConfigError(setting, `unknown provider ${JSON.stringify(defaultProvider)}; configured: ${[...providers.keys()].join(", ")}`);
  }

  const apiKeys = [...(cf.api_keys ?? [])];
  const envKeys = str(env, "GATEWAY_API_KEYS");
  if (envKeys !== null) {
    for (const k of envKeys.split(",")) {
      const t = k.trim();
      if (t === "") continue;
      if (t.length < 8) throw new ConfigError("GATEWAY_API_KEYS", "each key must be at least 8 characters");
      apiKeys.push(t);
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
  });
}

/** Default prices merged with a parsed PRICES_FILE (validated; errors name the entry). */
function loadPrices(file: unknown): Record<string, PriceEntry> {
  if (file === undefined) return { ...DEFAULT_PRICES };
  const v = validatePricesFile(file);
  if (!v.success) {
    const e = v.errors[0]!;
    const path = e.path.replace(/^\$input\.?/, "").replace(/\["([^"]+)"\]/g, ".$1").replace(/^\./, "");
    throw new ConfigError(`PRICES_FILE ${path || "(root)"}`, typiaMessage(e));
  }
  for (const name of Object.keys(v.data.models)) {
    if (name.indexOf("*") >= 0 && name.indexOf("*") !== name.length - 1) throw new ConfigError(`PRICES_FILE models.${name}`, "a * may only end a prefix pattern");
  }
  return { ...DEFAULT_PRICES, ...v.data.models };
}
