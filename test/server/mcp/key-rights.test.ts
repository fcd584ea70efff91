/**
 * Per-key tool rights, end to end through the built gateway: a virtual key created without
 * `tools` gets none (tools/list is empty, a call is refused and audited with
 * reason=tool_not_allowed), `tools` and `commands` grant exactly what they name, a PATCH
 * changes them, a static key keeps the rights it had, and a key stored before tool rights
 * existed keeps every tool after the migration. /health/ready reports the sandbox.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { hash } from "node:crypto";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { startGateway, type Gateway } from "../../support/gateway.js";

const ADMIN = "sk-admin-key-rights-0123456789";
const STATIC = "sk-static-key-rights-0123456789";
const OLD = "sk-pc-old-key-from-before-tool-rights";
const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-rights-")));
const ws = join(base, "ws");
const DB = join(base, "ledger.db");
let gw: Gateway;

before(async () => {
  mkdirSync(ws);
  writeFileSync(join(ws, "README.md"), "# rights\n");
  chmodSync(base, 0o755);
  chmodSync(ws, 0o777);
  // A ledger as the previous release wrote it: a keys table with no tools/commands columns.
  const db = new Database(DB);
  db.exec(
    "CREATE TABLE keys (id TEXT PRIMARY KEY, name TEXT NOT NULL, digest TEXT NOT NULL UNIQUE, models TEXT, limits TEXT NOT NULL, created_at TEXT NOT NULL, revoked_at TEXT)",
  );
  db.prepare("INSERT INTO keys VALUES (?, ?, ?, NULL, '{}', ?, NULL)").run(
    "key_old",
    "old",
    hash("sha256", OLD, "hex"),
    new Date().toISOString(),
  );
  db.close();
  const cmds = join(base, "commands.json");
  writeFileSync(
    cmds,
    JSON.stringify({
      commands: [
        { name: "one", argv: ["echo", "one"] },
        { name: "two", argv: ["echo", "two"] },
      ],
    }),
  );
  gw = await startGateway({
    WORKSPACE_ROOT: ws,
    POLICY_COMMANDS_FILE: cmds,
    GATEWAY_API_KEYS: STATIC,
    ADMIN_API_KEY: ADMIN,
    MODEL_PROVIDER: "mock",
    DATABASE_PATH: DB,
    SANDBOX_TIMEOUT_MS: "10000",
  });
});
after(async () => {
  await gw?.stop();
  rmSync(base, { recursive: true, force: true });
});

async function admin(method: string, path: string, body?: unknown): Promise<{ status: number; json: any }> {
  const r = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: r.status, json: await r.json() };
}

/** An initialized MCP session for `key`: returns a JSON-RPC caller. */
async function session(key: string) {
  let id = 1;
  let sid = "";
  const post = async (method: string, params: unknown) => {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/json, text/event-stream",
      "x-api-key": key,
    };
    if (sid !== "") Object.assign(headers, { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" });
    const r = await fetch(`${gw.url}/mcp`, { method: "POST", headers, body: JSON.stringify({ jsonrpc: "2.0", id: id++, method, params }) });
    if (sid === "") sid = r.headers.get("mcp-session-id") ?? "";
    assert.equal(r.status, 200);
    return (await r.json()) as { result: any };
  };
  await post("initialize", { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "t", version: "1" } });
  return {
    names: async () => ((await post("tools/list", {})).result.tools as { name: string }[]).map((t) => t.name).sort(),
    call: async (name: string, args: unknown) => {
      const r = (await post("tools/call", { name, arguments: args })).result as { content: { text: string }[]; isError?: boolean };
      return { text: r.content[0]!.text, isError: r.isError === true };
    },
  };
}

const ALL = ["edit_file", "git_diff", "git_status", "list_dir", "read_file", "run_command", "search", "write_file"];

test("a new virtual key gets no tools unless its record names them; refusals are audited as tool_not_allowed", async () => {
  const none = await admin("POST", "/admin/keys", { name: "haiku-only", models: ["claude-haiku-*"] });
  assert.equal(none.status, 201);
  assert.deepEqual(none.json.tools, []);
  const s = await session(none.json.key);
  assert.deepEqual(await s.names(), []);
  const r = await s.call("write_file", { path: "pwned.txt", content: "x" });
  assert.equal(r.isError, true);
  assert.equal(r.text, "Refused: tool write_file is not allowed for this key");
  const audit = async () => gw.lines.map((l) => JSON.parse(l)).find((l) => l.msg === "tool_call" && l.key_id === none.json.id);
  for (let i = 0; i < 100 && (await audit()) === undefined; i++) await new Promise((res) => setTimeout(res, 20));
  const line = await audit();
  assert.ok(line, "the refusal is in the log");
  assert.equal(line.decision, "deny");
  assert.equal(line.reason, "tool_not_allowed");

  // PATCH grants tools; the change reaches the acceptor before the answer.
  const p = await admin("PATCH", `/admin/keys/${none.json.id}`, { tools: ["read_file"] });
  assert.equal(p.status, 200);
  assert.deepEqual(p.json.tools, ["read_file"]);
  assert.deepEqual(await s.names(), ["read_file"]);
  assert.equal((await s.call("read_file", { path: "README.md" })).text, "# rights\n");
});

test("tools and commands grant exactly what they name", async () => {
  const k = await admin("POST", "/admin/keys", { name: "runner", tools: ["run_command", "list_dir"], commands: ["one"] });
  assert.equal(k.status, 201);
  assert.deepEqual(k.json.commands, ["one"]);
  const s = await session(k.json.key);
  assert.deepEqual(await s.names(), ["list_dir", "run_command"]);
  assert.match((await s.call("run_command", { command: "one" })).text, /^exit code 0\n--- stdout ---\none/);
  assert.equal((await s.call("run_command", { command: "two" })).text, "Refused: command two is not allowed for this key");
  assert.equal((await admin("POST", "/admin/keys", { name: "bad", tools: ["rm_rf"] })).status, 400, "unknown tool names are refused");
  const star = await admin("POST", "/admin/keys", { name: "all", tools: ["*"] });
  assert.deepEqual(await (await session(star.json.key)).names(), ALL);
});

test("a static key keeps its rights, and a key stored before tool rights keeps every tool", async () => {
  assert.deepEqual(await (await session(STATIC)).names(), ALL);
  const list = await admin("GET", "/admin/keys");
  const old = (list.json.data as { id: string; tools: string[]; commands: string[] | null }[]).find((k) => k.id === "key_old")!;
  assert.deepEqual(old.tools, ["*"]);
  assert.equal(old.commands, null);
  assert.deepEqual(await (await session(OLD)).names(), ALL);
});

test("/health/ready reports the sandbox: available, with the limits mode", async () => {
  let sandbox: any;
  for (let i = 0; i < 200; i++) {
    sandbox = ((await (await fetch(`${gw.url}/health/ready`)).json()) as any).components.sandbox;
    if (sandbox.status !== "checking") break;
    await new Promise((res) => setTimeout(res, 25));
  }
  assert.equal(sandbox.status, "available", JSON.stringify(sandbox));
  assert.equal(sandbox.ok, true);
  assert.equal(sandbox.backend, "bwrap");
  assert.ok(
    sandbox.limits === "cgroup" || (sandbox.limits === "rlimits" && typeof sandbox.limits_reason === "string"),
    JSON.stringify(sandbox),
  );
});
