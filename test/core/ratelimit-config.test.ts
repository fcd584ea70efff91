/**
 * Fleet rate limits' settings (docs/fleet.md): RATE_LEASE_RENEW_MS and RATE_LEASE_IDLE_MS have
 * their documented defaults, and a value out of range stops the start naming the setting.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../core/config.js";

const base = { ANTHROPIC_API_KEY: "sk-upstream-cfg-rl" };

test("the lease settings default to 50 ms renewals and a 1 s quiet period, and take valid values", () => {
  const c = loadConfig(base, undefined, 1);
  assert.equal(c.rate_lease_renew_ms, 50);
  assert.equal(c.rate_lease_idle_ms, 1000);
  const d = loadConfig({ ...base, RATE_LEASE_RENEW_MS: "200", RATE_LEASE_IDLE_MS: "30000" }, undefined, 1);
  assert.equal(d.rate_lease_renew_ms, 200);
  assert.equal(d.rate_lease_idle_ms, 30_000);
});

test("a lease setting out of range or not a number stops the start naming it", () => {
  for (const [name, bad] of [
    ["RATE_LEASE_RENEW_MS", "5"],
    ["RATE_LEASE_RENEW_MS", "5000"],
    ["RATE_LEASE_RENEW_MS", "fast"],
    ["RATE_LEASE_IDLE_MS", "10"],
    ["RATE_LEASE_IDLE_MS", "120000"],
  ] as const) {
    assert.throws(
      () => loadConfig({ ...base, [name]: bad }, undefined, 1),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith(name),
      `${name}=${bad}`,
    );
  }
});
