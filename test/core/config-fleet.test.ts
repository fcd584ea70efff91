/**
 * Fleet mode's settings (docs/fleet.md): DATABASE_URL picks SQLite or PostgreSQL, a bad value
 * stops the start naming the setting without repeating the value (it may hold a password),
 * and LEDGER_QUEUE_MAX / KEY_SYNC_MS are bounded.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../core/config.js";

const base = { ANTHROPIC_API_KEY: "sk-upstream-cfg-fleet" };

test("without DATABASE_URL the ledger is SQLite at DATABASE_PATH, with the queue and sync defaults", () => {
  const c = loadConfig({ ...base, DATABASE_PATH: "/tmp/x.db" }, undefined, 1);
  assert.equal(c.database_url, null);
  assert.equal(c.database_path, "/tmp/x.db");
  assert.equal(c.ledger_queue_max, 200_000);
  assert.equal(c.key_sync_ms, 500);
});

test("DATABASE_URL=sqlite:PATH is DATABASE_PATH=PATH; postgres:// and postgresql:// select PostgreSQL", () => {
  assert.equal(loadConfig({ ...base, DATABASE_URL: "sqlite:./data/other.db" }, undefined, 1).database_path, "./data/other.db");
  assert.equal(loadConfig({ ...base, DATABASE_URL: "sqlite:./data/other.db" }, undefined, 1).database_url, null);
  for (const u of ["postgres://u:p@db:5432/portcullis", "postgresql://u:p@db/portcullis?sslmode=require"]) {
    assert.equal(loadConfig({ ...base, DATABASE_URL: u }, undefined, 1).database_url, u);
  }
});

test("a bad DATABASE_URL stops the start naming the setting, never echoing the value", () => {
  for (const bad of ["mysql://u:s3cret-pw@db/x", "postgres://:s3cret-pw@/x", "s3cret-pw", "sqlite:"]) {
    assert.throws(
      () => loadConfig({ ...base, DATABASE_URL: bad }, undefined, 1),
      (e: unknown) => e instanceof ConfigError && e.message.startsWith("DATABASE_URL") && !e.message.includes("s3cret-pw"),
      bad,
    );
  }
});

test("LEDGER_QUEUE_MAX and KEY_SYNC_MS out of range stop the start naming them", () => {
  assert.throws(() => loadConfig({ ...base, LEDGER_QUEUE_MAX: "10" }, undefined, 1), /LEDGER_QUEUE_MAX/);
  assert.throws(() => loadConfig({ ...base, KEY_SYNC_MS: "0" }, undefined, 1), /KEY_SYNC_MS/);
});
