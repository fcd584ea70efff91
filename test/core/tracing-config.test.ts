/**
 * OpenTelemetry settings (core/tracing-config.ts): off by default, the standard OTEL_*
 * variables mapped, and a bad value stopping the start with the variable's name.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError } from "../../core/env.js";
import { loadTracingConfig } from "../../core/tracing-config.js";

test("tracing is off without an endpoint, or with OTEL_SDK_DISABLED", () => {
  assert.equal(loadTracingConfig({}), null);
  assert.equal(loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://c:4318", OTEL_SDK_DISABLED: "true" }), null);
});

test("the base endpoint gets /v1/traces; the traces endpoint is used as is; headers are decoded and merged", () => {
  const c = loadTracingConfig({
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318/",
    OTEL_EXPORTER_OTLP_HEADERS: "Authorization=Bearer%20abc,x-team=a",
    OTEL_EXPORTER_OTLP_TRACES_HEADERS: "x-team=b",
  })!;
  assert.equal(c.url, "http://collector:4318/v1/traces");
  assert.deepEqual(c.headers, { authorization: "Bearer abc", "x-team": "b" });
  assert.equal(c.serviceName, "portcullis");
  assert.equal(c.sampler, "parentbased_always_on");
  assert.equal(c.ratio, 1);
  assert.equal(
    loadTracingConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:1", OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "https://b/x/traces" })!.url,
    "https://b/x/traces",
  );
  const r = loadTracingConfig({
    OTEL_EXPORTER_OTLP_ENDPOINT: "http://a:1",
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: "0.25",
    OTEL_SERVICE_NAME: "gw-eu",
  })!;
  assert.deepEqual([r.sampler, r.ratio, r.serviceName], ["parentbased_traceidratio", 0.25, "gw-eu"]);
});

test("a bad value names its variable, even while tracing is off", () => {
  const bad: [Record<string, string>, string][] = [
    [{ OTEL_EXPORTER_OTLP_ENDPOINT: "collector:4318" }, "OTEL_EXPORTER_OTLP_ENDPOINT"],
    [{ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "ftp://c/v1/traces" }, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"],
    [{ OTEL_TRACES_SAMPLER: "sometimes" }, "OTEL_TRACES_SAMPLER"],
    [{ OTEL_TRACES_SAMPLER_ARG: "1.5" }, "OTEL_TRACES_SAMPLER_ARG"],
    [{ OTEL_BSP_SCHEDULE_DELAY: "-1" }, "OTEL_BSP_SCHEDULE_DELAY"],
    [{ OTEL_BSP_MAX_QUEUE_SIZE: "10", OTEL_BSP_MAX_EXPORT_BATCH_SIZE: "20" }, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE"],
    [{ OTEL_EXPORTER_OTLP_HEADERS: "no-equals-sign" }, "OTEL_EXPORTER_OTLP_HEADERS"],
    [{ OTEL_EXPORTER_OTLP_HEADERS: "x=%0d%0aevil: 1" }, "OTEL_EXPORTER_OTLP_HEADERS"],
    [{ OTEL_SDK_DISABLED: "maybe" }, "OTEL_SDK_DISABLED"],
  ];
  for (const [env, name] of bad) {
    assert.throws(
      () => loadTracingConfig(env),
      (e: unknown) => e instanceof ConfigError && e.setting === name,
      JSON.stringify(env),
    );
  }
});
