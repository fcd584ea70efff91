import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig, type ProviderConfig } from "../../core/config.js";

const SECRET = "sk-ant-very-secret-value-0123";

function provider(entry: Record<string, unknown>, env: Record<string, string> = {}): ProviderConfig {
  const cfg = loadConfig(env, { providers: { up: { type: "anthropic", ...entry } } }, 1);
  return cfg.providers.find((p) => p.name === "up")!;
}

/** The ConfigError `entry` raises: its setting and message (asserted never to hold the key). */
function refused(entry: Record<string, unknown>, env: Record<string, string> = {}): ConfigError {
  try {
    provider(entry, env);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.ok(!e.message.includes(SECRET), `the key's value is in the message: ${e.message}`);
    return e;
  }
  assert.fail("the configuration was accepted");
}

test("api_key_envs and api_keys make one pool (literal keys first), with weights and per-key limits; apiKey is the first key", () => {
  const p = provider(
    { api_keys: ["sk-literal-1"], api_key_envs: ["KEY_A", { env: "KEY_B", weight: 3, rpm: 50, tpm: 40000 }] },
    { KEY_A: "sk-a-value", KEY_B: "sk-b-value" },
  );
  assert.deepEqual(p.keys, [
    { label: "api_keys.0", key: "sk-literal-1", weight: 1, rpm: 0, tpm: 0 },
    { label: "KEY_A", key: "sk-a-value", weight: 1, rpm: 0, tpm: 0 },
    { label: "KEY_B", key: "sk-b-value", weight: 3, rpm: 50, tpm: 40000 },
  ]);
  assert.equal(p.apiKey, "sk-literal-1");
});

test("one api_key or api_key_env keeps working, with no pool", () => {
  assert.equal(provider({ api_key: "sk-one" }).keys, null);
  const p = provider({ api_key_env: "ONE" }, { ONE: "sk-env-one" });
  assert.equal(p.apiKey, "sk-env-one");
  assert.equal(p.keys, null);
});

test("an empty pool stops the start naming the provider and the field", () => {
  assert.equal(refused({ api_keys: [] }).setting, "CONFIG_FILE providers.up.api_keys");
  assert.equal(refused({ api_key_envs: [] }).setting, "CONFIG_FILE providers.up.api_key_envs");
});

test("a missing env var stops the start naming the entry and the variable", () => {
  const e = refused({ api_key_envs: ["KEY_A", "KEY_MISSING"] }, { KEY_A: SECRET });
  assert.equal(e.setting, "CONFIG_FILE providers.up.api_key_envs.1");
  assert.match(e.message, /KEY_MISSING is not set/);
});

test("a duplicate key or env var stops the start naming both entries, never the value", () => {
  const sameValue = refused({ api_keys: [{ key: SECRET }], api_key_envs: ["KEY_A"] }, { KEY_A: SECRET });
  assert.equal(sameValue.setting, "CONFIG_FILE providers.up.api_key_envs.0");
  assert.match(sameValue.message, /same key as api_keys\.0/);
  const sameEnv = refused({ api_key_envs: ["KEY_A", { env: "KEY_A", weight: 2 }] }, { KEY_A: SECRET });
  assert.equal(sameEnv.setting, "CONFIG_FILE providers.up.api_key_envs.1");
  assert.match(sameEnv.message, /KEY_A again/);
});

test("a bad weight or limit stops the start naming the entry, never the key", () => {
  assert.equal(refused({ api_keys: [{ key: SECRET, weight: 0 }] }).setting, "CONFIG_FILE providers.up.api_keys.0.weight");
  assert.equal(refused({ api_keys: [SECRET, { key: "sk-2", weight: -1 }] }).setting, "CONFIG_FILE providers.up.api_keys.1.weight");
  assert.equal(refused({ api_key_envs: [{ env: "K", rpm: 1.5 }] }, { K: SECRET }).setting, "CONFIG_FILE providers.up.api_key_envs.0.rpm");
});

test("a pool beside api_key, with pass_through_key, or on a provider that takes no key is refused", () => {
  assert.match(refused({ api_key: SECRET, api_keys: ["sk-2"] }).message, /replaces api_key/);
  assert.match(refused({ pass_through_key: true, api_keys: ["sk-2"] }).message, /pass_through_key/);
  const e = (() => {
    try {
      loadConfig({}, { providers: { g: { type: "vertex", project_id: "p", region: "global", api_keys: [SECRET] } } }, 1);
    } catch (x) {
      return x as ConfigError;
    }
    assert.fail("accepted");
  })();
  assert.equal(e.setting, "CONFIG_FILE providers.g.api_keys");
  assert.ok(!e.message.includes(SECRET));
});

test("at most 32 keys per provider", () => {
  const keys = Array.from({ length: 33 }, (_, i) => `sk-key-${i}`);
  assert.match(refused({ api_keys: keys }).message, /at most 32/);
  assert.equal(provider({ api_keys: keys.slice(0, 32) }).keys?.length, 32);
});

test("a Bedrock provider takes a pool of API keys", () => {
  const cfg = loadConfig(
    { K1: "br-1", K2: "br-2" },
    { providers: { aws: { type: "bedrock", region: "us-east-1", api_key_envs: ["K1", "K2"] } } },
    1,
  );
  const p = cfg.providers.find((x) => x.name === "aws")!;
  assert.deepEqual(
    p.keys?.map((k) => k.label),
    ["K1", "K2"],
  );
  assert.equal(p.apiKey, "br-1");
});

test("UPSTREAM_KEY_REST_MS and UPSTREAM_KEY_REST_MAX_MS: defaults 10 s and 5 min, bounded to an hour", () => {
  const d = loadConfig({}, undefined, 1);
  assert.equal(d.upstream_key_rest_ms, 10_000);
  assert.equal(d.upstream_key_rest_max_ms, 300_000);
  assert.throws(() => loadConfig({ UPSTREAM_KEY_REST_MAX_MS: "3600001" }, undefined, 1), /UPSTREAM_KEY_REST_MAX_MS/);
  assert.throws(() => loadConfig({ UPSTREAM_KEY_REST_MS: "0" }, undefined, 1), /UPSTREAM_KEY_REST_MS/);
});
