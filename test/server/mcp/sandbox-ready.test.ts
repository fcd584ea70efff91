/**
 * A sandbox that cannot start (bwrap refused user namespaces, as under the Kubernetes
 * "restricted" pod standard) shows at start-up: /health/ready reports
 * `sandbox: unavailable` with bwrap's own reason, the log says so once, and a command
 * fails at once with that reason instead of each call discovering it.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGateway, type Gateway } from "../../support/gateway.js";

const KEY = "sk-sandbox-ready-0123456789";
const WHY = "bwrap: No permissions to create a new namespace, likely because the kernel does not allow non-privileged user namespaces.";
const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-sbxready-")));
let gw: Gateway;

before(async () => {
  const ws = join(base, "ws");
  const bin = join(base, "bin");
  mkdirSync(ws);
  mkdirSync(bin);
  chmodSync(base, 0o755);
  // A bwrap that fails the way the real one does without user namespaces.
  writeFileSync(join(bin, "bwrap"), `#!/bin/sh\necho '${WHY}' >&2\nexit 1\n`, { mode: 0o755 });
  const cmds = join(base, "commands.json");
  writeFileSync(cmds, JSON.stringify({ commands: [{ name: "hello", argv: ["echo", "hello"] }] }));
  gw = await startGateway({
    WORKSPACE_ROOT: ws,
    POLICY_COMMANDS_FILE: cmds,
    GATEWAY_API_KEYS: KEY,
    MODEL_PROVIDER: "mock",
    PATH: `${bin}:${process.env.PATH}`,
  });
});
after(async () => {
  await gw?.stop();
  rmSync(base, { recursive: true, force: true });
});

test("readiness says sandbox: unavailable with bwrap's reason; the gateway itself stays ready", async () => {
  let body: any;
  for (let i = 0; i < 200; i++) {
    body = await (await fetch(`${gw.url}/health/ready`)).json();
    if (body.components.sandbox.status !== "checking") break;
    await new Promise((res) => setTimeout(res, 25));
  }
  const s = body.components.sandbox;
  assert.equal(s.status, "unavailable", JSON.stringify(s));
  assert.equal(s.ok, false);
  assert.match(s.reason, /No permissions to create a new namespace/);
  assert.equal(body.status, "ready", "/v1/messages does not depend on the sandbox");
  assert.ok(
    gw.lines.some((l) => l.includes("sandbox self-test failed") && l.includes("No permissions")),
    "logged at start-up",
  );
});

test("a command then fails at once with the reason", async () => {
  const h = { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": KEY };
  const init = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: h,
    body: JSON.stringify({
      jsonrpc: "2.0",
      id: 1,
      method: "initialize",
      params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } },
    }),
  });
  const sid = init.headers.get("mcp-session-id")!;
  const r = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { ...h, "mcp-session-id": sid },
    body: JSON.stringify({ jsonrpc: "2.0", id: 2, method: "tools/call", params: { name: "run_command", arguments: { command: "hello" } } }),
  });
  const result = ((await r.json()) as any).result;
  assert.equal(result.isError, true);
  assert.match(result.content[0].text, /^Failed: the sandbox is unavailable: .*No permissions to create a new namespace/);
});
