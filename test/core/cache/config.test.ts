/** Response-cache settings (core/cache/config.ts): defaults, and a bad value names its setting. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { loadCacheConfig } from "../../../core/cache/config.js";
import { ConfigError } from "../../../core/env.js";

test("defaults: off, per key, temperature 0, one hour, 1 MiB entries, 64 MiB, no Redis", () => {
  assert.deepEqual(
    { ...loadCacheConfig({}) },
    {
      enabled: false,
      scope: "key",
      candidates: "zero",
      ttlMs: 3_600_000,
      maxEntryBytes: 1_048_576,
      maxBytes: 67_108_864,
      redisUrl: null,
      redisTimeoutMs: 100,
    },
  );
});

test("CACHE_ENABLED and PROMPT_CACHE_ENABLED each turn it on", () => {
  assert.equal(loadCacheConfig({ CACHE_ENABLED: "true" }).enabled, true);
  assert.equal(loadCacheConfig({ PROMPT_CACHE_ENABLED: "true" }).enabled, true);
});

test("a bad value stops the start naming the setting (and never echoes a Redis URL)", () => {
  const bad: [Record<string, string>, string][] = [
    [{ CACHE_ENABLED: "maybe" }, "CACHE_ENABLED"],
    [{ CACHE_ENABLED: "true", PROMPT_CACHE_ENABLED: "maybe" }, "PROMPT_CACHE_ENABLED"],
    [{ CACHE_SCOPE: "global" }, "CACHE_SCOPE"],
    [{ CACHE_CANDIDATES: "some" }, "CACHE_CANDIDATES"],
    [{ CACHE_TTL_SECONDS: "0" }, "CACHE_TTL_SECONDS"],
    [{ CACHE_MAX_BYTES: "1e6" }, "CACHE_MAX_BYTES"],
    [{ CACHE_MAX_ENTRY_BYTES: "2000000", CACHE_MAX_BYTES: "1000000" }, "CACHE_MAX_ENTRY_BYTES"],
    [{ REDIS_URL: "http://user:secretpw@host" }, "REDIS_URL"],
    [{ CACHE_REDIS_TIMEOUT_MS: "-1" }, "CACHE_REDIS_TIMEOUT_MS"],
  ];
  for (const [env, name] of bad) {
    assert.throws(
      () => loadCacheConfig(env),
      (e: unknown) => e instanceof ConfigError && e.setting === name && !e.message.includes("secretpw"),
      name,
    );
  }
});
