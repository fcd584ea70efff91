/**
 * `portcullis --help`: every setting with its default and meaning. The typed settings come
 * from the schema itself: the names from core/config.ts ENV_NAMES, the defaults from
 * loadConfig on an empty environment, and the meanings from MEANINGS, a Record over the
 * Settings keys, so a setting added to the schema without a meaning does not compile. The
 * settings outside that schema (providers, keys, files, the MCP tools) are listed in OTHER;
 * test/bin checks that every setting documented in README.md and docs/ is in the output.
 */
import { ENV_NAMES, loadConfig, type Settings } from "../core/config.js";

const MEANINGS: Record<keyof Settings, string> = {
  port: "client listen port (0 = any free port)",
  host: "listen address",
  http_threads: "acceptor threads on the port (SO_REUSEPORT)",
  log_level: "pino level: fatal, error, warn, info, debug, trace or silent",
  log_file: "write the JSON log to this file instead of stdout",
  max_body_bytes: "request body cap, enforced while reading (413)",
  body_timeout_ms: "a body not received in time gets 408",
  graceful_shutdown_timeout_ms: "how long in-flight requests and streams may finish after SIGTERM",
  upstream_connect_timeout_ms: "connect timeout to a provider (504)",
  upstream_headers_timeout_ms: "time to a provider's first response byte (504)",
  upstream_body_timeout_ms: "idle time between response chunks or stream events (504)",
  upstream_connections: "keep-alive connections per upstream origin",
  upstream_http2: "auto: HTTP/2 to https upstreams that offer it (ALPN), else HTTP/1.1; off: HTTP/1.1 only",
  upstream_http2_streams: "streams per HTTP/2 upstream connection before the pool opens another",
  upstream_request_timeout_ms: "one deadline per request from its arrival: pool wait, retries and streams included (504)",
  sse_max_event_bytes: "an upstream SSE event still incomplete past this many bytes ends the stream with event: error",
  retry_max_attempts: "attempts per provider (1 = no retries)",
  retry_base_delay_ms: "backoff base (full jitter)",
  retry_max_delay_ms: "backoff cap",
  retry_budget_ms: "no retry starts whose wait would end later than this after arrival",
  upstream_key_rest_ms: "a pool key that answered 429 without a retry-after rests this long",
  upstream_key_rest_max_ms: "cap on a pool key's rest, whatever its retry-after says",
  circuit_breaker_failure_threshold: "consecutive provider failures that open its breaker",
  circuit_breaker_timeout_ms: "how long an open breaker fails fast before half-opening",
  circuit_breaker_success_threshold: "successful probes that close a half-open breaker",
  circuit_breaker_half_open_probes: "probes admitted at once while half-open (default: the success threshold)",
  load_shedding_heap_threshold: "shed when a thread's heap / heap limit exceeds this",
  load_shedding_memory_threshold: "shed when RSS / the cgroup memory limit exceeds this",
  load_shedding_active_requests_threshold: "shed when more requests than this are in flight",
  load_shedding_event_loop_delay_ms: "shed when a thread's event-loop delay (p99) exceeds this",
  load_shedding_check_interval_ms: "how often each thread refreshes its shedding verdict",
  rate_limit_requests_per_minute: "per client key (0 = off)",
  rate_limit_tokens_per_minute: "per client key (0 = off)",
  metrics_enabled: "serve /metrics/*",
  health_check_enabled: "serve /health/*",
  admin_api_key: "bearer token for /admin/* (16+ characters); unset = no admin API",
  database_path: "the SQLite usage ledger",
  database_url: "sqlite:PATH, or postgres://… for the ledger and keys shared by every replica (fleet mode)",
  ledger_queue_max: "rows kept while the ledger fails; past it the oldest are dropped",
  key_sync_ms: "fleet mode: how often each replica reconciles its keys from PostgreSQL",
  rate_lease_renew_ms: "fleet rate limits: how often request leases are renewed and token spend reported",
  rate_lease_idle_ms: "fleet rate limits: unused request units go back to the fleet after this quiet time",
  budget_lease_ms: "fleet mode with Redis: how often budget leases are renewed and returned",
  budget_lease_idle_ms: "fleet mode with Redis: a key's budget lease unused this long is returned",
  budget_lease_share: "fleet mode with Redis: one budget grant takes at most 1/N of what is left",
  budget_lease_wait_ms: "fleet mode with Redis: how long a request waits for its key's lease before a 503 (0 = no wait)",
  budget_fail_mode: "when the ledger is unavailable: open or closed",
  max_keys: "virtual key slots in shared memory",
  ledger_batch_ms: "the main thread collects the threads' usage rows at least this often",
  ledger_batch_rows: "...or as soon as a thread has this many MCP audit records",
  metrics_port: "second port for /health/* and /metrics/* (then not on PORT); unset = on PORT",
  ledger_retention_days: "usage and audit rows older than this are pruned (never the current month); 0 = keep all",
  ledger_max_mb: "cap on the ledger's pages in use: past it the oldest rows are pruned first; 0 = no cap",
  usage_metrics_user_label_max:
    "distinct metadata.user_id values with their own Prometheus user label (gateway_user_*); the rest count as other; 0 = off",
};

/** Defaults that depend on the machine, shown as words. */
const DEFAULT_WORDS: Partial<Record<keyof Settings, string>> = {
  http_threads: "CPUs the process may use (cgroup cpu.max quota included)",
  circuit_breaker_half_open_probes: "CIRCUIT_BREAKER_SUCCESS_THRESHOLD",
};

/** Settings read outside the Settings schema: [name, default, meaning]. */
export const OTHER: readonly (readonly [string, string, string])[] = [
  ["CONFIG_FILE", "none", "JSON file with providers, routes, default_provider and api_keys (portcullis check-config FILE)"],
  ["MODEL_PROVIDER", "none", "default provider for models no route matches; auto = the one configured provider"],
  ["GATEWAY_API_KEYS", "none", "comma-separated client keys (8+ characters)"],
  ["ANTHROPIC_API_KEY", "none", "provider anthropic"],
  ["ANTHROPIC_API_BASE", "https://api.anthropic.com", "provider anthropic's base URL"],
  ["AZURE_ANTHROPIC_API_KEY", "none", "provider azure-anthropic (with AZURE_ANTHROPIC_API_BASE)"],
  ["AZURE_ANTHROPIC_API_BASE", "none", "Azure AI Foundry .../anthropic base URL"],
  ["DATABRICKS_API_KEY", "none", "provider databricks (with DATABRICKS_API_BASE)"],
  ["DATABRICKS_API_BASE", "none", "Databricks workspace base URL"],
  ["AWS_BEARER_TOKEN_BEDROCK", "none", "provider bedrock: a Bedrock API key sent as a bearer instead of SigV4"],
  ["GOOGLE_APPLICATION_CREDENTIALS", "none (metadata server)", "provider vertex: service-account JSON file"],
  ["PRICES_FILE", "none", "JSON price table that overrides or extends the defaults"],
  ["WORKSPACE_ROOT", "none (MCP off)", "MCP workspace roots, comma-separated absolute directories"],
  ["POLICY_FILE_ALLOWED_PATHS", "**", "MCP: allow globs relative to a root"],
  ["POLICY_FILE_BLOCKED_PATHS", "none", "MCP: deny globs added to the built-in list"],
  ["POLICY_COMMANDS_FILE", "none", "MCP: JSON command templates and tool_access"],
  [
    "POLICY_ALLOW_GIT_FILES",
    "false",
    "MCP: let write_file/edit_file create .gitmodules, .gitattributes and other .git* files (never .git itself)",
  ],
  ["POLICY_MAX_READ_BYTES", "1048576", "MCP: bytes per read_file call"],
  ["POLICY_MAX_WRITE_BYTES", "1048576", "MCP: largest write_file content"],
  ["MCP_SEARCH_MAX_RESULTS", "100", "MCP: result cap for search"],
  ["MCP_LIST_MAX_ENTRIES", "1000", "MCP: entry cap for list_dir"],
  ["MCP_ALLOW_ANONYMOUS", "false", "MCP: serve the tools when no client keys are configured"],
  ["MCP_ALLOWED_ORIGINS", "none", "MCP: Origin values allowed (browser clients)"],
  ["MCP_SESSION_SECRET", "random per start", "MCP: HMAC key for session ids, 32+ characters, the same on every replica"],
  ["MCP_SESSION_TTL_SECONDS", "86400", "MCP: session lifetime"],
  ["SANDBOX_BACKEND", "bwrap", "MCP commands: bwrap, docker, podman or none"],
  ["SANDBOX_ALLOW_UNSANDBOXED", "false", "required (true) for SANDBOX_BACKEND=none"],
  ["SANDBOX_IMAGE", "none", "container image for SANDBOX_BACKEND docker or podman"],
  ["SANDBOX_CGROUP", "auto", "auto, off, or a delegated cgroup v2 directory for per-command limits (else rlimits)"],
  ["SANDBOX_MASK_MAX_ENTRIES", "200000", "most workspace entries checked for masking before a command; past it the command is refused"],
  ["SANDBOX_MASK_MAX_MS", "2000", "longest time for that check; past it the command is refused"],
  ["SANDBOX_TIMEOUT_MS", "30000", "wall-clock limit per command"],
  ["SANDBOX_OUTPUT_BYTES", "262144", "cap on a command's stdout + stderr"],
  ["SANDBOX_CPU_SECONDS", "60", "CPU seconds per command"],
  ["SANDBOX_MEMORY_MB", "2048", "address space per command"],
  ["SANDBOX_PIDS", "256", "processes per command"],
  ["SANDBOX_FILE_BYTES", "268435456", "largest file a command may write"],
  ["SANDBOX_CPUS", "1", "CPUs per command (containers)"],
  ["SANDBOX_UID", "65534 as root, else the gateway's", "user the sandbox runs as"],
  ["SANDBOX_GID", "65534 as root, else the gateway's", "group the sandbox runs as"],
  ["SANDBOX_RO_BINDS", "none", "extra read-only paths inside the sandbox"],
  ["CACHE_ENABLED", "false", "response cache for every key (docs/cache.md); a key's own cache setting wins"],
  ["PROMPT_CACHE_ENABLED", "false", "the same switch under the performance report's name"],
  ["CACHE_SCOPE", "key", "key: entries private to the client key; shared: one cache for all keys"],
  ["CACHE_CANDIDATES", "zero", "requests cached without x-portcullis-cache: use: zero (temperature 0), zero-or-absent, any"],
  ["CACHE_TTL_SECONDS", "3600", "lifetime of a cached answer"],
  ["CACHE_MAX_ENTRY_BYTES", "1048576", "larger answers are not cached"],
  ["CACHE_MAX_BYTES", "67108864", "bound of the cache's memory tier (LRU)"],
  ["REDIS_URL", "none", "Redis for state shared by replicas: the response cache's entries"],
  ["CACHE_REDIS_TIMEOUT_MS", "100", "longest wait for a cache read from Redis before it counts as a miss"],
  ["OTEL_EXPORTER_OTLP_ENDPOINT", "none (tracing off)", "OpenTelemetry: OTLP/HTTP base URL; traces go to <base>/v1/traces"],
  ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "none", "OpenTelemetry: full traces URL (overrides the base)"],
  ["OTEL_EXPORTER_OTLP_HEADERS", "none", "OpenTelemetry: key=value,... headers sent with every export"],
  ["OTEL_EXPORTER_OTLP_TRACES_HEADERS", "none", "OpenTelemetry: the same, for traces (wins per key)"],
  ["OTEL_SERVICE_NAME", "portcullis", "OpenTelemetry: service.name"],
  ["OTEL_TRACES_SAMPLER", "parentbased_always_on", "OpenTelemetry: sampler"],
  ["OTEL_TRACES_SAMPLER_ARG", "1", "OpenTelemetry: ratio of the *traceidratio samplers"],
  ["OTEL_BSP_SCHEDULE_DELAY", "5000", "OpenTelemetry: ms between batch exports"],
  ["OTEL_BSP_MAX_QUEUE_SIZE", "2048", "OpenTelemetry: spans queued per thread before dropping"],
  ["OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "512", "OpenTelemetry: spans per export"],
  ["OTEL_BSP_EXPORT_TIMEOUT", "30000", "OpenTelemetry: ms an export may take"],
  ["OTEL_SDK_DISABLED", "false", "OpenTelemetry: true turns tracing off"],
];

/** [env name, default, meaning] for every setting, the schema's first. */
export function settingsTable(): [string, string, string][] {
  const dflt = loadConfig({}, undefined, 1) as unknown as Record<string, unknown>;
  const rows: [string, string, string][] = [];
  for (const key of Object.keys(ENV_NAMES) as (keyof Settings)[]) {
    const v = dflt[key];
    rows.push([ENV_NAMES[key], DEFAULT_WORDS[key] ?? (v === null ? "none" : String(v)), MEANINGS[key]]);
  }
  for (const o of OTHER) rows.push([o[0], o[1], o[2]]);
  return rows;
}

export function helpText(): string {
  const rows = settingsTable();
  const w = Math.max(...rows.map((r) => r[0].length));
  return [
    "Usage: portcullis [command]",
    "",
    "Commands:",
    "  (none), start              start the gateway with the settings of the environment",
    "  check-config FILE          validate a CONFIG_FILE (with the environment) and exit; 1 names the bad field",
    "  keys create --name NAME [--models a,b] [--tokens-per-day N] [--tokens-per-month N]",
    "              [--usd-per-day X] [--usd-per-month X] [--url URL]",
    "                             create a virtual key through the admin API (ADMIN_API_KEY from the",
    "                             environment; URL defaults to http://127.0.0.1:$PORT); prints the key once",
    "  --help, -h                 this text",
    "",
    "Settings (environment variables; defaults in brackets):",
    ...rows.map(([name, d, meaning]) => `  ${name.padEnd(w)}  ${meaning} [${d}]`),
    "",
  ].join("\n");
}
