/** `--peers` without a reachable npm registry: the run stops with a message that says so, instead of hanging. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { installPeers } from "../../loadtest/peers.js";
import { freePort } from "../support/free-port.js";

test("installing the peers fails with a message naming the npm registry when npm cannot reach it", async () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-peers-"));
  const saved = { ...process.env };
  // A port nothing listens on; no retries, no cache to fall back on.
  process.env.npm_config_registry = `http://127.0.0.1:${await freePort()}/`;
  process.env.npm_config_fetch_retries = "0";
  process.env.npm_config_cache = join(dir, "cache");
  process.env.npm_config_offline = "false";
  try {
    await assert.rejects(
      installPeers(join(dir, "peers"), () => {}),
      (e: Error) => {
        assert.match(e.message, /--peers: npm could not install @musistudio\/claude-code-router@2\.0\.0, @portkey-ai\/gateway@1\.15\.2/);
        assert.match(e.message, /npm registry/);
        return true;
      },
    );
  } finally {
    process.env = saved;
    rmSync(dir, { recursive: true, force: true });
  }
});
