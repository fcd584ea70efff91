/**
 * MCP sessions across replicas (docs/fleet.md): a session id is an HMAC-signed token
 * (server/mcp/session.ts), so two gateway processes given the same MCP_SESSION_SECRET accept
 * each other's sessions with no shared store: a client initialized on one replica keeps
 * working when the load balancer sends its next call to another. A replica with another
 * secret refuses the session with 404 GW_ERR_MCP_SESSION_UNKNOWN (the client initializes again).
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGateway, type Gateway } from "../support/gateway.js";

const KEY = "sk-fleet-mcp-key-0123456789";
const SECRET = "fleet-mcp-secret-0123456789abcdef0123456789";
const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-fleet-mcp-")));
const ws = join(base, "ws");
let a: Gateway, b: Gateway, other: Gateway;

before(async () => {
  mkdirSync(ws);
  writeFileSync(join(ws, "README.md"), "# shared workspace\n");
  chmodSync(base, 0o755);
  chmodSync(ws, 0o777);
  const env = { WORKSPACE_ROOT: ws, GATEWAY_API_KEYS: KEY, MODEL_PROVIDER: "mock", SANDBOX_TIMEOUT_MS: "10000" };
  [a, b, other] = await Promise.all([
    startGateway({ ...env, MCP_SESSION_SECRET: SECRET }),
    startGateway({ ...env, MCP_SESSION_SECRET: SECRET }),
    startGateway({ ...env, MCP_SESSION_SECRET: "another-secret-0123456789abcdef0123456789" }),
  ]);
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop(), other?.stop()]);
  rmSync(base, { recursive: true, force: true });
});

async function rpc(
  g: Gateway,
  sid: string,
  id: number,
  method: string,
  params: unknown,
): Promise<{ status: number; sid: string; body: any }> {
  const headers: Record<string, string> = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "x-api-key": KEY,
  };
  if (sid !== "") Object.assign(headers, { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" });
  const r = await fetch(`${g.url}/mcp`, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id, method, params }) });
  return { status: r.status, sid: r.headers.get("mcp-session-id") ?? "", body: await r.json() };
}

test("a session initialized on replica A serves tool calls on replica B with the same MCP_SESSION_SECRET", async () => {
  const init = await rpc(a, "", 1, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "t", version: "1" },
  });
  assert.equal(init.status, 200);
  assert.notEqual(init.sid, "");
  const list = await rpc(b, init.sid, 2, "tools/list", {});
  assert.equal(list.status, 200);
  assert.ok(list.body.result.tools.some((t: { name: string }) => t.name === "read_file"));
  const read = await rpc(b, init.sid, 3, "tools/call", { name: "read_file", arguments: { path: "README.md" } });
  assert.equal(read.status, 200);
  assert.match(read.body.result.content[0].text, /shared workspace/);
  const back = await rpc(a, init.sid, 4, "tools/list", {});
  assert.equal(back.status, 200);
});

test("a replica with another MCP_SESSION_SECRET refuses the session with 404 GW_ERR_MCP_SESSION_UNKNOWN", async () => {
  const init = await rpc(a, "", 1, "initialize", {
    protocolVersion: "2025-06-18",
    capabilities: {},
    clientInfo: { name: "t", version: "1" },
  });
  const r = await rpc(other, init.sid, 2, "tools/list", {});
  assert.equal(r.status, 404);
  assert.match(JSON.stringify(r.body), /GW_ERR_MCP_SESSION_UNKNOWN|unknown or expired MCP session/);
});
