/**
 * The settings a container deployment leans on: HTTP_THREADS follows the cgroup v2 CPU
 * quota, METRICS_PORT, LEDGER_RETENTION_DAYS and LEDGER_MAX_MB are validated and name
 * themselves when bad, MODEL_PROVIDER=auto takes the one configured provider, and a gateway
 * with no provider refuses to start naming the setting to add.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkServable, ConfigError, cpuThreads, loadConfig } from "../../core/config.js";

function failsOn(env: Record<string, string>, setting: string, message?: RegExp): void {
  assert.throws(
    () => checkServable(loadConfig(env, undefined, 4)), // either step: what the start-up runs
    (e: unknown) => e instanceof ConfigError && e.setting === setting && (message === undefined || message.test(e.message)),
    setting,
  );
}

test("HTTP_THREADS default: the CPUs available, capped by the cgroup v2 cpu.max quota, at least 1", () => {
  assert.equal(cpuThreads(8, null), 8, "no cgroup file: every CPU");
  assert.equal(cpuThreads(8, "max 100000\n"), 8, "no quota");
  assert.equal(cpuThreads(8, "100000 100000\n"), 1, "a 1000m limit gets one thread");
  assert.equal(cpuThreads(8, "250000 100000"), 2, "2500m rounds down: a thread per whole CPU");
  assert.equal(cpuThreads(8, "50000 100000"), 1, "500m still gets one");
  assert.equal(cpuThreads(2, "400000 100000"), 2, "never more than the CPUs");
  assert.equal(cpuThreads(4, "garbage"), 4, "an unreadable quota is ignored");
  assert.equal(loadConfig({}, undefined, cpuThreads(8, "100000 100000")).http_threads, 1);
  assert.equal(
    loadConfig({ HTTP_THREADS: "3" }, undefined, cpuThreads(8, "100000 100000")).http_threads,
    3,
    "an explicit HTTP_THREADS wins",
  );
});

test("METRICS_PORT: unset = health and metrics on PORT; a number; never the client port", () => {
  assert.equal(loadConfig({}, undefined, 1).metrics_port, null);
  assert.equal(loadConfig({ METRICS_PORT: "9090" }, undefined, 1).metrics_port, 9090);
  assert.equal(loadConfig({ PORT: "0", METRICS_PORT: "0" }, undefined, 1).metrics_port, 0, "0 = any free port (tests)");
  assert.throws(
    () => loadConfig({ METRICS_PORT: "nine" }, undefined, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "METRICS_PORT",
  );
  assert.throws(
    () => loadConfig({ METRICS_PORT: "70000" }, undefined, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "METRICS_PORT",
  );
  assert.throws(
    () => loadConfig({ PORT: "8080", METRICS_PORT: "8080" }, undefined, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "METRICS_PORT" && /must differ from PORT/.test(e.message),
  );
});

test("LEDGER_RETENTION_DAYS (default 30) and LEDGER_MAX_MB (default 0, no cap) are validated", () => {
  const d = loadConfig({}, undefined, 1);
  assert.equal(d.ledger_retention_days, 30);
  assert.equal(d.ledger_max_mb, 0);
  assert.equal(loadConfig({ LEDGER_RETENTION_DAYS: "0", LEDGER_MAX_MB: "3072" }, undefined, 1).ledger_max_mb, 3072);
  for (const [k, v] of [
    ["LEDGER_RETENTION_DAYS", "-1"],
    ["LEDGER_RETENTION_DAYS", "1.5"],
    ["LEDGER_RETENTION_DAYS", "forever"],
    ["LEDGER_MAX_MB", "-5"],
    ["LEDGER_MAX_MB", "3G"],
  ] as const) {
    assert.throws(
      () => loadConfig({ [k]: v }, undefined, 1),
      (e: unknown) => e instanceof ConfigError && e.setting === k,
      `${k}=${v}`,
    );
  }
});

test("MODEL_PROVIDER=auto: the one configured provider; none or several stop the start naming the setting", () => {
  assert.equal(loadConfig({ MODEL_PROVIDER: "auto", ANTHROPIC_API_KEY: "sk-ant-12345678" }, undefined, 1).defaultProvider, "anthropic");
  assert.equal(
    loadConfig(
      { MODEL_PROVIDER: "auto", DATABRICKS_API_KEY: "dapi-12345678", DATABRICKS_API_BASE: "https://x.cloud.databricks.com" },
      undefined,
      1,
    ).defaultProvider,
    "databricks",
  );
  const file = { providers: { a: { type: "anthropic", api_key: "sk-a-12345678" } } };
  assert.equal(loadConfig({ MODEL_PROVIDER: "auto" }, file, 1).defaultProvider, "a", "a provider of the config file counts too");
  failsOn(
    {
      MODEL_PROVIDER: "auto",
      ANTHROPIC_API_KEY: "sk-ant-12345678",
      DATABRICKS_API_KEY: "dapi-12345678",
      DATABRICKS_API_BASE: "https://x.cloud.databricks.com",
    },
    "MODEL_PROVIDER",
    /several providers are configured \(anthropic, databricks\)/,
  );
  failsOn({ MODEL_PROVIDER: "auto" }, "ANTHROPIC_API_KEY", /MODEL_PROVIDER=auto: no provider is configured/);
  assert.equal(
    loadConfig({ ANTHROPIC_API_KEY: "sk-ant-12345678" }, undefined, 1).defaultProvider,
    null,
    "unset stays unset: unrouted models get 404",
  );
});

test("no provider at all and no MCP tools: the start-up error names the setting to add", () => {
  failsOn(
    {},
    "ANTHROPIC_API_KEY",
    /no provider is configured: set ANTHROPIC_API_KEY, or AZURE_ANTHROPIC_API_KEY with AZURE_ANTHROPIC_API_BASE, or DATABRICKS_API_KEY with DATABRICKS_API_BASE/,
  );
  failsOn({ GATEWAY_API_KEYS: "client-key-12345678" }, "ANTHROPIC_API_KEY");
  assert.doesNotThrow(() => checkServable(loadConfig({ MODEL_PROVIDER: "mock" }, undefined, 1)), "the built-in mock, named");
  assert.doesNotThrow(
    () => checkServable(loadConfig({ ANTHROPIC_API_KEY: "sk-ant-12345678" }, undefined, 1)),
    "a provider without a default: unrouted models get 404, as documented",
  );
  // A provider's base without its key names the key (the existing rule, unchanged).
  assert.throws(
    () => loadConfig({ DATABRICKS_API_BASE: "https://x.cloud.databricks.com" }, undefined, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "DATABRICKS_API_KEY",
  );
});
