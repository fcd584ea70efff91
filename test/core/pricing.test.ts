import { test } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_PRICES, OTHER_MODEL, PriceTable, costMicros } from "../../core/pricing.js";
import { loadConfig } from "../../core/config.js";

test("exact names win, then the longest prefix, else other at cost 0", () => {
  const t = PriceTable.withOverrides({ models: { "my-model": { input: 2, output: 4, cache_write: 3, cache_read: 0.5 } } });
  assert.equal(t.lookup("claude-opus-4-5-20251101").input, 5, "opus 4.5 is not priced as opus 4");
  assert.equal(t.lookup("claude-opus-4-1-20250805").input, 15);
  assert.equal(t.lookup("claude-sonnet-4-5-20250929").output, 15);
  assert.equal(t.lookup("claude-sonnet-4-5").label, "claude-sonnet-4");
  assert.equal(t.lookup("my-model").label, "my-model");
  assert.equal(t.lookup("my-model-2").label, OTHER_MODEL, "an exact entry is not a prefix");
  const o = t.lookup("gpt-5");
  assert.equal(o, t.other);
  assert.equal(costMicros(o, 1000, 1000, 1000, 1000), 0);
  assert.equal(t.labels[t.labels.length - 1], OTHER_MODEL);
  assert.equal(new Set(t.labels).size, t.labels.length, "labels are unique (bounded metric labels)");
});

test("cost is integer micro-dollars, rounded up, with all four token kinds", () => {
  const t = new PriceTable(DEFAULT_PRICES);
  const p = t.lookup("claude-sonnet-4-5");
  // 1000 in * 3 + 200 out * 15 + 100 cw * 3.75 + 1000 cr * 0.3 = 3000 + 3000 + 375 + 300
  assert.equal(costMicros(p, 1000, 200, 100, 1000), 6675);
  assert.equal(costMicros(t.lookup("claude-3-haiku-20240307"), 1, 0, 0, 0), 1, "a fraction of a micro-dollar rounds up");
});

test("PRICES_FILE entries override defaults and bad ones stop the start naming the entry", () => {
  const cfg = loadConfig({}, undefined, 1, { models: { "claude-sonnet-4*": { input: 1, output: 2, cache_write: 1, cache_read: 0.1 } } });
  assert.equal(new PriceTable(cfg.prices).lookup("claude-sonnet-4-5").input, 1);
  assert.throws(
    () => loadConfig({}, undefined, 1, { models: { "claude-x": { input: -1, output: 2, cache_write: 1, cache_read: 0.1 } } }),
    (e: Error & { setting?: string }) => e.setting === "PRICES_FILE models.claude-x.input",
  );
  assert.throws(
    () => loadConfig({}, undefined, 1, { models: { "a*b": { input: 1, output: 2, cache_write: 1, cache_read: 0.1 } } }),
    /PRICES_FILE models.a\*b/,
  );
});

test("budget settings are validated at start-up and name the setting", () => {
  assert.throws(() => loadConfig({ BUDGET_FAIL_MODE: "maybe" }, undefined, 1), /BUDGET_FAIL_MODE/);
  assert.throws(() => loadConfig({ MAX_KEYS: "0" }, undefined, 1), /MAX_KEYS/);
  assert.throws(() => loadConfig({ LEDGER_BATCH_MS: "abc" }, undefined, 1), /LEDGER_BATCH_MS/);
  let msg = "";
  try {
    loadConfig({ ADMIN_API_KEY: "short-secret" }, undefined, 1);
  } catch (e) {
    msg = (e as Error).message;
  }
  assert.match(msg, /ADMIN_API_KEY/);
  assert.ok(!msg.includes("short-secret"), "the admin key is never echoed");
  const c = loadConfig({}, undefined, 1);
  assert.equal(c.database_path, "./data/portcullis.db");
  assert.equal(c.budget_fail_mode, "closed");
  assert.equal(c.admin_api_key, null);
});
