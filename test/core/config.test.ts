import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig, type GatewayConfig, type ProviderConfig } from "../../core/config.js";

type Env = Record<string, string | undefined>;

/** loadConfig must throw a ConfigError naming `setting`; returns it for further checks. */
function failsOn(env: Env, file: unknown, setting: string): ConfigError {
  let err: unknown;
  try {
    loadConfig(env, file, 4);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError, `expected a ConfigError for ${setting}, got ${String(err)}`);
  assert.equal(err.setting, setting, `message: ${err.message}`);
  assert.ok(err.message.startsWith(`${setting}: `), "the message starts with the setting");
  return err;
}

function provider(cfg: GatewayConfig, name: string): ProviderConfig {
  const p = cfg.providers.find((x) => x.name === name);
  assert.ok(p, `provider ${name} configured`);
  return p;
}

test("defaults with an empty environment", () => {
  const cfg = loadConfig({}, undefined, 6);
  assert.equal(cfg.port, 8080);
  assert.equal(cfg.host, "0.0.0.0");
  assert.equal(cfg.graceful_shutdown_timeout_ms, 30_000);
  assert.equal(cfg.max_body_bytes, 32 * 1024 * 1024);
  assert.equal(cfg.http_threads, 6, "http_threads defaults to the CPUs passed in");
  assert.equal(cfg.log_level, "info");
  assert.equal(cfg.metrics_enabled, true);
  assert.equal(cfg.health_check_enabled, true);
  assert.equal(cfg.defaultProvider, null);
  assert.deepEqual(cfg.routes, []);
  assert.deepEqual(cfg.apiKeys, []);
  assert.deepEqual(
    cfg.providers.map((p) => p.name),
    ["mock"],
    "only the built-in mock provider",
  );
  assert.ok(Object.isFrozen(cfg));
});

test("empty and blank variables count as unset; values are trimmed", () => {
  const cfg = loadConfig({ PORT: "", HOST: "  ", HTTP_THREADS: " 3 ", METRICS_ENABLED: " OFF " }, undefined, 2);
  assert.equal(cfg.port, 8080);
  assert.equal(cfg.host, "0.0.0.0");
  assert.equal(cfg.http_threads, 3);
  assert.equal(cfg.metrics_enabled, false);
});

test("explicit settings are taken", () => {
  const cfg = loadConfig(
    {
      PORT: "9000",
      HOST: "127.0.0.1",
      LOG_LEVEL: "debug",
      MAX_BODY_BYTES: "1048576",
      GRACEFUL_SHUTDOWN_TIMEOUT: "0",
      HEALTH_CHECK_ENABLED: "no",
    },
    undefined,
    1,
  );
  assert.equal(cfg.port, 9000);
  assert.equal(cfg.host, "127.0.0.1");
  assert.equal(cfg.log_level, "debug");
  assert.equal(cfg.max_body_bytes, 1048576);
  assert.equal(cfg.graceful_shutdown_timeout_ms, 0);
  assert.equal(cfg.health_check_enabled, false);
});

test("each bad value stops start-up with a ConfigError naming the setting", () => {
  const cases: [Env, string][] = [
    [{ PORT: "abc" }, "PORT"],
    [{ PORT: "70000" }, "PORT"],
    [{ PORT: "1e3" }, "PORT"],
    [{ HTTP_THREADS: "0" }, "HTTP_THREADS"],
    [{ LOG_LEVEL: "loud" }, "LOG_LEVEL"],
    [{ MAX_BODY_BYTES: "-1" }, "MAX_BODY_BYTES"],
    [{ GRACEFUL_SHUTDOWN_TIMEOUT: "1.5" }, "GRACEFUL_SHUTDOWN_TIMEOUT"],
    [{ METRICS_ENABLED: "maybe" }, "METRICS_ENABLED"],
    [{ MODEL_PROVIDER: "nope" }, "MODEL_PROVIDER"],
    [{ ANTHROPIC_API_BASE: "ftp://x", ANTHROPIC_API_KEY: "sk-ant-secret-0001" }, "ANTHROPIC_API_BASE"],
    [{ DATABRICKS_API_KEY: "dapi-secret-0002" }, "DATABRICKS_API_BASE"],
    [{ DATABRICKS_API_BASE: "https://dbc.example.com" }, "DATABRICKS_API_KEY"],
    [{ GATEWAY_API_KEYS: "long-enough-key,short" }, "GATEWAY_API_KEYS"],
    [{ UPSTREAM_HTTP2: "on" }, "UPSTREAM_HTTP2"],
    [{ UPSTREAM_HTTP2_STREAMS: "0" }, "UPSTREAM_HTTP2_STREAMS"],
  ];
  for (const [env, setting] of cases) failsOn(env, undefined, setting);
});

test("RATE_LIMIT_* without any client key stops the start; with static keys, file keys or the admin API it is taken", () => {
  const e = failsOn({ RATE_LIMIT_REQUESTS_PER_MINUTE: "60" }, undefined, "RATE_LIMIT_REQUESTS_PER_MINUTE");
  assert.match(e.message, /per client key.*GATEWAY_API_KEYS/);
  failsOn({ RATE_LIMIT_TOKENS_PER_MINUTE: "1000" }, undefined, "RATE_LIMIT_TOKENS_PER_MINUTE");
  assert.equal(loadConfig({ RATE_LIMIT_REQUESTS_PER_MINUTE: "0" }, undefined, 1).rate_limit_requests_per_minute, 0);
  assert.equal(
    loadConfig({ RATE_LIMIT_REQUESTS_PER_MINUTE: "60", GATEWAY_API_KEYS: "sk-client-key-1" }, undefined, 1).rate_limit_requests_per_minute,
    60,
  );
  assert.equal(
    loadConfig({ RATE_LIMIT_REQUESTS_PER_MINUTE: "60" }, { api_keys: ["sk-client-key-1"] }, 1).rate_limit_requests_per_minute,
    60,
  );
  assert.equal(
    loadConfig({ RATE_LIMIT_TOKENS_PER_MINUTE: "9", ADMIN_API_KEY: "admin-key-0123456789" }, undefined, 1).rate_limit_tokens_per_minute,
    9,
  );
});

test("MODEL_PROVIDER=nope lists the configured providers", () => {
  const e = failsOn({ MODEL_PROVIDER: "nope" }, undefined, "MODEL_PROVIDER");
  assert.match(e.message, /"nope"/);
  assert.match(e.message, /mock/);
});

test("anthropic from the environment: default base URL", () => {
  const cfg = loadConfig({ ANTHROPIC_API_KEY: "sk-ant-123", MODEL_PROVIDER: "anthropic" }, undefined, 1);
  const p = provider(cfg, "anthropic");
  assert.equal(p.type, "anthropic");
  assert.equal(p.origin, "https://api.anthropic.com");
  assert.equal(p.basePath, "");
  assert.equal(p.apiKey, "sk-ant-123");
  assert.equal(p.passThroughKey, false);
  assert.equal(cfg.defaultProvider, "anthropic");
});

test("databricks and azure from the environment keep the base path, without a trailing slash", () => {
  const cfg = loadConfig(
    {
      DATABRICKS_API_BASE: "https://adb-123.azuredatabricks.net/some/prefix/",
      DATABRICKS_API_KEY: "dapi123",
      AZURE_ANTHROPIC_API_BASE: "https://res.services.ai.azure.com:8443/anthropic",
      AZURE_ANTHROPIC_API_KEY: "az-key",
    },
    undefined,
    1,
  );
  const d = provider(cfg, "databricks");
  assert.equal(d.origin, "https://adb-123.azuredatabricks.net");
  assert.equal(d.basePath, "/some/prefix");
  assert.equal(d.apiKey, "dapi123");
  const a = provider(cfg, "azure-anthropic");
  assert.equal(a.origin, "https://res.services.ai.azure.com:8443");
  assert.equal(a.basePath, "/anthropic");
});

test("AZURE_ANTHROPIC_API_KEY alone is an error: there is no default Azure base", () => {
  failsOn({ AZURE_ANTHROPIC_API_KEY: "az-key" }, undefined, "AZURE_ANTHROPIC_API_BASE");
});

test("a base URL with credentials, a query or a fragment is refused", () => {
  for (const base of ["https://u:p@api.example.com", "https://api.example.com/?a=1", "https://api.example.com/#x"]) {
    failsOn({ ANTHROPIC_API_BASE: base, ANTHROPIC_API_KEY: "sk-ant-1" }, undefined, "ANTHROPIC_API_BASE");
  }
});

test("config file providers and routes", () => {
  const file = {
    providers: {
      main: { type: "anthropic", api_key: "sk-file-1" },
      dbx: { type: "databricks", base_url: "https://dbc.example.com", api_key: "dapi-file" },
      byok: { type: "azure-anthropic", base_url: "https://az.example.com/anthropic", pass_through_key: true },
      fake: { type: "mock" },
    },
    routes: [
      { match: "claude-*", provider: "main" },
      { match: "claude-opus-4", provider: "dbx", model: "databricks-claude-opus-4" },
      { match: "*", provider: "fake" },
    ],
    default_provider: "main",
    api_keys: ["file-key-123456"],
  };
  const cfg = loadConfig({ GATEWAY_API_KEYS: " env-key-1234567 , ,other-key-89" }, file, 1);
  assert.deepEqual(cfg.routes, [
    { match: "claude-", prefix: true, provider: "main", model: null, fallbacks: [] },
    { match: "claude-opus-4", prefix: false, provider: "dbx", model: "databricks-claude-opus-4", fallbacks: [] },
    { match: "", prefix: true, provider: "fake", model: null, fallbacks: [] },
  ]);
  assert.equal(cfg.defaultProvider, "main");
  const main = provider(cfg, "main");
  assert.equal(main.origin, "https://api.anthropic.com", "anthropic in the file defaults its base URL too");
  assert.equal(main.apiKey, "sk-file-1");
  const byok = provider(cfg, "byok");
  assert.equal(byok.passThroughKey, true);
  assert.equal(byok.apiKey, null);
  assert.equal(byok.basePath, "/anthropic");
  assert.equal(provider(cfg, "fake").type, "mock");
  assert.deepEqual(cfg.apiKeys, ["file-key-123456", "env-key-1234567", "other-key-89"]);
});

test("MODEL_PROVIDER overrides the file's default_provider; env providers override file entries", () => {
  const file = { providers: { anthropic: { type: "anthropic", api_key: "from-file" } }, default_provider: "anthropic" };
  const cfg = loadConfig({ MODEL_PROVIDER: "mock", ANTHROPIC_API_KEY: "from-env" }, file, 1);
  assert.equal(cfg.defaultProvider, "mock");
  assert.equal(provider(cfg, "anthropic").apiKey, "from-env");
  assert.equal(cfg.providers.filter((p) => p.name === "anthropic").length, 1);
});

test("bad config file shapes name the field", () => {
  const cases: [unknown, string][] = [
    [{ routes: [{ match: "claude-*", provider: "ghost" }] }, "CONFIG_FILE routes.0.provider"],
    [{ routes: [{ match: "a*b*", provider: "mock" }] }, "CONFIG_FILE routes.0.match"],
    [{ routes: [{ match: "", provider: "mock" }] }, "CONFIG_FILE routes.0.match"],
    [{ providers: { x: { type: "gemini", api_key: "k" } } }, "CONFIG_FILE providers.x.type"],
    [{ providers: { x: { type: "azure-openai", api_key: "k" } } }, "CONFIG_FILE providers.x.base_url"],
    [{ providers: { x: { type: "openai", api_key: "k", api_version: "2024-10-21" } } }, "CONFIG_FILE providers.x.api_version"],
    [{ providers: { x: { type: "anthropic", api_key: "k", max_tokens_field: "max_tokens" } } }, "CONFIG_FILE providers.x.max_tokens_field"],
    [
      { providers: { x: { type: "openai", api_key: "k", max_tokens_field: "max_new_tokens" } } },
      "CONFIG_FILE providers.x.max_tokens_field",
    ],
    [{ providers: { x: { type: "databricks", api_key: "k" } } }, "CONFIG_FILE providers.x.base_url"],
    [{ providers: { x: { type: "anthropic" } } }, "CONFIG_FILE providers.x.api_key"],
    [{ providers: { x: { type: "anthropic", base_url: "ftp://h", api_key: "k" } } }, "CONFIG_FILE providers.x.base_url"],
    [{ providers: { Bad_Name: { type: "mock" } } }, "CONFIG_FILE providers.Bad_Name"],
    [{ default_provider: "ghost" }, "CONFIG_FILE default_provider"],
    [{ routes: "claude-*" }, "CONFIG_FILE routes"],
    [[], "CONFIG_FILE (root)"],
  ];
  for (const [file, setting] of cases) failsOn({}, file, setting);
});

test("an unknown provider type names the field and the accepted types", () => {
  const e = failsOn({}, { providers: { x: { type: "gemini", api_key: "k" } } }, "CONFIG_FILE providers.x.type");
  assert.match(e.message, /"gemini"/);
  assert.match(e.message, /anthropic/);
});

test("OpenAI-format providers: openai defaults to api.openai.com/v1, azure-openai gets a default api-version", () => {
  const file = {
    providers: {
      o: { type: "openai", api_key: "k" },
      ol: { type: "openai", base_url: "http://127.0.0.1:11434/v1", pass_through_key: true },
      az: { type: "azure-openai", base_url: "https://r.openai.azure.com", api_key_env: "AZ" },
    },
  };
  const cfg = loadConfig({ AZ: "azk" }, file, 1);
  assert.deepEqual([provider(cfg, "o").origin, provider(cfg, "o").basePath], ["https://api.openai.com", "/v1"]);
  assert.deepEqual([provider(cfg, "ol").origin, provider(cfg, "ol").basePath], ["http://127.0.0.1:11434", "/v1"]);
  assert.equal(provider(cfg, "az").apiVersion, "2024-10-21");
  assert.equal(provider(cfg, "az").apiKey, "azk");
  assert.equal(provider(cfg, "o").maxTokensField, "max_completion_tokens");
});

test("api_key_env reads the key from the named variable", () => {
  const file = { providers: { main: { type: "anthropic", api_key_env: "MY_KEY" } }, default_provider: "main" };
  const cfg = loadConfig({ MY_KEY: "  sk-from-env  " }, file, 1);
  assert.equal(provider(cfg, "main").apiKey, "sk-from-env");
});

test("api_key_env naming an unset (or blank) variable is an error naming it", () => {
  const file = { providers: { main: { type: "anthropic", api_key_env: "MY_KEY" } } };
  for (const env of [{}, { MY_KEY: "   " }]) {
    const e = failsOn(env, file, "CONFIG_FILE providers.main.api_key_env");
    assert.match(e.message, /MY_KEY/);
  }
});

test("error messages never contain an API key value", () => {
  const secret = "sk-ant-SECRET-9f8e7d6c";
  const cases: [Env, unknown][] = [
    [{ ANTHROPIC_API_BASE: "ftp://x", ANTHROPIC_API_KEY: secret }, undefined],
    [{ ANTHROPIC_API_BASE: "not a url", ANTHROPIC_API_KEY: secret }, undefined],
    [{ AZURE_ANTHROPIC_API_KEY: secret }, undefined],
    [{ DATABRICKS_API_KEY: secret }, undefined],
    [{ GATEWAY_API_KEYS: `${secret},short` }, undefined],
    [{ ANTHROPIC_API_KEY: secret, MODEL_PROVIDER: "nope" }, undefined],
    [{}, { providers: { x: { type: "databricks", api_key: secret } } }],
    [{}, { providers: { x: { type: "nope", api_key: secret } } }],
    [{}, { providers: { x: { type: "anthropic", base_url: "ftp://h", api_key: secret } } }],
    [{ K: secret }, { providers: { x: { type: "anthropic", api_key_env: "K" } }, routes: [{ match: "m", provider: "y" }] }],
  ];
  for (const [env, file] of cases) {
    assert.throws(
      () => loadConfig(env, file, 1),
      (e: unknown) => e instanceof ConfigError && !e.message.includes(secret) && !e.message.includes("SECRET"),
      `leaks the key for ${JSON.stringify({ env: Object.keys(env), file })}`,
    );
  }
});

test("a too-short key in the file's api_keys is not echoed in the error", () => {
  const e = failsOn({}, { api_keys: ["good-key-123456", "sk-9f8e"] }, "CONFIG_FILE api_keys.1");
  assert.ok(!e.message.includes("sk-9f8e"), `the key leaks: ${e.message}`);
});

test("SSE_MAX_EVENT_BYTES defaults to 16 MiB, takes a value, and refuses one below 1024 naming itself", () => {
  assert.equal(loadConfig({}, undefined, 1).sse_max_event_bytes, 16 * 1024 * 1024);
  assert.equal(loadConfig({ SSE_MAX_EVENT_BYTES: "65536" }, undefined, 1).sse_max_event_bytes, 65536);
  failsOn({ SSE_MAX_EVENT_BYTES: "100" }, undefined, "SSE_MAX_EVENT_BYTES");
  failsOn({ SSE_MAX_EVENT_BYTES: "lots" }, undefined, "SSE_MAX_EVENT_BYTES");
});
