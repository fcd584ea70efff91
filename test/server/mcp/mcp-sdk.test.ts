/**
 * The MCP server end to end: the built gateway in its own process (two acceptor threads,
 * so a session must survive landing on either) and the official MCP SDK client over the
 * Streamable HTTP transport.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { startGateway, type Gateway } from "../../support/gateway.js";
import { until } from "../../support/wait.js";
import { processesMatching } from "../../support/procs.js";

const KEY0 = "sk-mcp-key-zero-0123456789";
const KEY1 = "sk-mcp-key-one-0123456789";
const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-mcp-")));
const ws = join(base, "ws");
let gw: Gateway;
const clients: Client[] = [];

type TextResult = { content: { type: string; text: string }[]; isError?: boolean };

async function connectClient(key: string): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(new URL(`${gw.url}/mcp`), { requestInit: { headers: { "x-api-key": key } } });
  const client = new Client({ name: "portcullis-test", version: "1.0.0" });
  await client.connect(transport);
  clients.push(client);
  return client;
}
async function call(c: Client, name: string, args: Record<string, unknown>): Promise<TextResult> {
  return (await c.callTool({ name, arguments: args })) as TextResult;
}
function text(r: TextResult): string {
  return r.content.map((x) => x.text).join("");
}
function rpc(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json", accept: "application/json, text/event-stream", "x-api-key": KEY0, ...headers },
    body: JSON.stringify(body),
  });
}
const INIT = {
  jsonrpc: "2.0",
  id: 1,
  method: "initialize",
  params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "raw", version: "1" } },
};

before(async () => {
  mkdirSync(join(ws, "src"), { recursive: true });
  writeFileSync(join(ws, "src", "app.ts"), "export function greet() {\n  return 'hello';\n}\n");
  writeFileSync(join(ws, ".env"), "API_TOKEN=never-shown\n");
  writeFileSync(join(ws, "README.md"), "# demo\n");
  const git = (...a: string[]) =>
    execFileSync("git", ["-c", "user.name=t", "-c", "user.email=t@example.com", ...a], { cwd: ws, stdio: "ignore" });
  git("init", "-q");
  git("add", "src/app.ts", "README.md");
  git("commit", "-qm", "init");
  chmodSync(base, 0o755);
  chmodSync(ws, 0o755);
  const cmds = join(base, "commands.json");
  writeFileSync(
    cmds,
    JSON.stringify({
      commands: [
        { name: "count-lines", description: "wc -l of one file", argv: ["wc", "-l", { param: "file", type: "path" }] },
        { name: "grep", argv: ["grep", "-rn", "--", { param: "pattern", type: "string", match: "^[\\w./-]+$" }, "."] },
        { name: "sleep", argv: ["sleep", { param: "seconds", type: "integer", min: 1, max: 5 }] },
        {
          name: "curl-home",
          argv: ["node", "-e", "fetch('http://1.1.1.1').then(()=>console.log('ONLINE'),e=>{console.log('OFFLINE');process.exit(7)})"],
        },
      ],
      tool_access: { "static-1": ["read_file", "list_dir"], "*": ["*"] },
    }),
  );
  gw = await startGateway({
    WORKSPACE_ROOT: ws,
    POLICY_COMMANDS_FILE: cmds,
    GATEWAY_API_KEYS: `${KEY0},${KEY1}`,
    MODEL_PROVIDER: "mock",
    HTTP_THREADS: "2",
    SANDBOX_TIMEOUT_MS: "10000",
  });
});

after(async () => {
  for (const c of clients) await c.close().catch(() => {});
  await gw?.stop();
  rmSync(base, { recursive: true, force: true });
});

test("the official SDK client connects, negotiates and lists the tools with JSON Schemas", async () => {
  const c = await connectClient(KEY0);
  assert.equal(c.getServerVersion()?.name, "portcullis");
  assert.deepEqual(c.getServerCapabilities()?.tools, { listChanged: false });
  const { tools } = await c.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), [
    "edit_file",
    "git_diff",
    "git_status",
    "list_dir",
    "read_file",
    "run_command",
    "search",
    "write_file",
  ]);
  for (const t of tools) assert.equal(t.inputSchema.type, "object", t.name);
  const rc = tools.find((t) => t.name === "run_command")!;
  assert.deepEqual((rc.inputSchema.properties as Record<string, { enum?: string[] }>).command!.enum, [
    "count-lines",
    "grep",
    "sleep",
    "curl-home",
  ]);
  assert.match(rc.description!, /count-lines - wc -l of one file/);
});

test("file tools: read, write, edit, list, search", async () => {
  const c = await connectClient(KEY0);
  assert.equal(text(await call(c, "read_file", { path: "src/app.ts" })), "export function greet() {\n  return 'hello';\n}\n");
  const w = await call(c, "write_file", { path: "notes/todo.md", content: "- ship it\n", create_dirs: true });
  assert.equal(w.isError, undefined, text(w));
  assert.equal(readFileSync(join(ws, "notes/todo.md"), "utf8"), "- ship it\n");
  const e = await call(c, "edit_file", { path: "src/app.ts", old_string: "'hello'", new_string: "'hello, world'" });
  assert.match(text(e), /1 replacement/);
  assert.match(readFileSync(join(ws, "src/app.ts"), "utf8"), /hello, world/);
  const l = text(await call(c, "list_dir", {}));
  assert.ok(l.split("\n").includes("src/") && !l.includes(".env") && !l.includes(".git/"), l);
  assert.match(text(await call(c, "search", { query: "GREET" })), /^src\/app\.ts:1: export function greet/);
});

test("refusals are tool errors with a clear reason", async () => {
  const c = await connectClient(KEY0);
  for (const [args, why] of [
    [{ path: ".env" }, /Refused: path ".env" is blocked by policy/],
    [{ path: "../../etc/passwd" }, /Refused: path escapes the workspace/],
    [{ path: "/etc/shadow" }, /Refused: absolute path is outside the workspace/],
    [{ path: "%2e%2e/x" }, /percent-escape/],
    [{ path: "src\u0000" }, /NUL/],
    [{ path: "missing.txt" }, /Failed: missing.txt: no such file/],
    [{}, /invalid arguments: path/],
  ] as [Record<string, unknown>, RegExp][]) {
    const r = await call(c, "read_file", args);
    assert.equal(r.isError, true, JSON.stringify(args));
    assert.match(text(r), why);
  }
  const big = await call(c, "write_file", { path: "big.txt", content: "x".repeat(1024 * 1024 + 1) });
  assert.equal(big.isError, true);
  assert.match(text(big), /write limit/);
  await assert.rejects(c.callTool({ name: "rm_rf", arguments: {} }), /unknown tool/);
});

test("run_command: typed arguments, sandboxed, exit code and output; injection refused", async () => {
  const c = await connectClient(KEY0);
  const r = await call(c, "run_command", { command: "count-lines", args: { file: "src/app.ts" } });
  assert.equal(r.isError, undefined, text(r));
  assert.match(text(r), new RegExp(`^exit code 0\\n--- stdout ---\\n3 ${ws}/src/app.ts`));
  const g = await call(c, "run_command", { command: "grep", args: { pattern: "greet" } });
  assert.match(text(g), /src\/app\.ts:1:export function greet/);
  const none = await call(c, "run_command", { command: "grep", args: { pattern: "nothing-matches-this" } });
  assert.equal(none.isError, true);
  assert.match(text(none), /^exit code 1/);
  for (const bad of ["; rm -rf ~", "$(id)", "`id`", "a\nb", "--output=/etc/x", "-rf", "*"]) {
    const x = await call(c, "run_command", { command: "grep", args: { pattern: bad } });
    assert.equal(x.isError, true, bad);
    assert.match(text(x), /^Refused: argument pattern:/, bad);
  }
  const cat = await call(c, "run_command", { command: "count-lines", args: { file: "src/../README.md" } });
  assert.match(text(cat), /^exit code 0\n--- stdout ---\n1 /);
  const p = await call(c, "run_command", { command: "count-lines", args: { file: ".env" } });
  assert.match(text(p), /Refused: path ".env" is blocked/);
  // Blocked files are hidden inside the sandbox too: grep cannot read the .env.
  const hidden = await call(c, "run_command", { command: "grep", args: { pattern: "API_TOKEN" } });
  assert.match(text(hidden), /^exit code 1$/, text(hidden));
  assert.ok(!text(hidden).includes("never-shown"));
  const off = await call(c, "run_command", { command: "curl-home" });
  assert.match(text(off), /^exit code 7\n--- stdout ---\nOFFLINE/, "no network in the sandbox");
  const unknown = await call(c, "run_command", { command: "bash" });
  assert.match(text(unknown), /Refused: unknown command "bash"; allowed: count-lines, grep, sleep, curl-home/);
});

test("git_status and git_diff run in the sandbox", async () => {
  const c = await connectClient(KEY0);
  const s = text(await call(c, "git_status", {}));
  assert.match(s, /^exit code 0/);
  assert.match(s, / M src\/app\.ts/);
  assert.match(s, /\?\? notes\//);
  const d = text(await call(c, "git_diff", { path: "src/app.ts" }));
  assert.match(d, /-  return 'hello';\n\+  return 'hello, world';/);
  assert.match(text(await call(c, "git_diff", { staged: true })), /^exit code 0$/);
});

test("a key limited to certain tools sees and may call only those", async () => {
  const c = await connectClient(KEY1);
  const { tools } = await c.listTools();
  assert.deepEqual(tools.map((t) => t.name).sort(), ["list_dir", "read_file"]);
  const r = await call(c, "write_file", { path: "x.txt", content: "no" });
  assert.equal(r.isError, true);
  assert.match(text(r), /Refused: tool write_file is not allowed for this key/);
  assert.match(text(await call(c, "read_file", { path: "README.md" })), /# demo/);
});

test("HTTP level: keys, sessions, protocol version, origin, GET/DELETE", async () => {
  const noKey = await fetch(`${gw.url}/mcp`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(INIT),
  });
  assert.equal(noKey.status, 401);
  assert.equal(((await noKey.json()) as { error: { type: string } }).error.type, "authentication_error");
  assert.equal((await rpc(INIT, { "x-api-key": "sk-wrong-key-000000" })).status, 401);

  const init = await rpc(INIT);
  assert.equal(init.status, 200);
  const sid = init.headers.get("mcp-session-id")!;
  assert.match(sid, /^[\x21-\x7e]+$/, "visible ASCII");
  assert.equal(((await init.json()) as { result: { protocolVersion: string } }).result.protocolVersion, "2025-06-18");
  const old = await rpc({ ...INIT, params: { ...INIT.params, protocolVersion: "1999-01-01" } });
  assert.equal(
    ((await old.json()) as { result: { protocolVersion: string } }).result.protocolVersion,
    "2025-11-25",
    "unknown version: the server offers its latest",
  );

  const list = { jsonrpc: "2.0", id: 2, method: "tools/list" };
  assert.equal((await rpc(list)).status, 400, "no session");
  assert.equal((await rpc(list, { "mcp-session-id": sid.slice(0, -2) + "xx" })).status, 404, "forged session");
  assert.equal((await rpc(list, { "mcp-session-id": sid, "x-api-key": KEY1 })).status, 404, "another key's session");
  assert.equal((await rpc(list, { "mcp-session-id": sid, "mcp-protocol-version": "2000-01-01" })).status, 400);
  // Every thread knows the session (signed, no shared state).
  for (let i = 0; i < 6; i++) assert.equal((await rpc(list, { "mcp-session-id": sid, "mcp-protocol-version": "2025-06-18" })).status, 200);
  const note = await rpc({ jsonrpc: "2.0", method: "notifications/initialized" }, { "mcp-session-id": sid });
  assert.equal(note.status, 202);
  const unknown = (await (await rpc({ jsonrpc: "2.0", id: 3, method: "resources/list" }, { "mcp-session-id": sid })).json()) as {
    error: { code: number };
  };
  assert.equal(unknown.error.code, -32601);
  const bad = await fetch(`${gw.url}/mcp`, { method: "POST", headers: { "x-api-key": KEY0, "mcp-session-id": sid }, body: "{nope" });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: number } }).error.code, -32700);

  assert.equal((await rpc(INIT, { origin: "http://evil.example" })).status, 403);
  const get = await fetch(`${gw.url}/mcp`, { headers: { "x-api-key": KEY0, accept: "text/event-stream" } });
  assert.equal(get.status, 405);
  assert.equal(get.headers.get("allow"), "POST");
  assert.equal((await fetch(`${gw.url}/mcp`, { method: "DELETE", headers: { "x-api-key": KEY0 } })).status, 405);
});

test("a long command does not hold up /v1/messages or health checks", async () => {
  const c = await connectClient(KEY0);
  const order: string[] = [];
  const long = call(c, "run_command", { command: "sleep", args: { seconds: 2 } }).then((r) => {
    order.push("sleep");
    return r;
  });
  await until("the sandboxed sleep to be running", () => (processesMatching("sleep 2").length > 0 ? true : undefined));
  const msg = await fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY0, "anthropic-version": "2023-06-01" },
    body: JSON.stringify({ model: "claude-test", max_tokens: 16, messages: [{ role: "user", content: "hi" }] }),
  });
  order.push(`messages ${msg.status}`);
  const live = await fetch(`${gw.url}/health/live`);
  order.push(`live ${live.status}`);
  const r = await long;
  assert.equal(r.isError, undefined, text(r));
  assert.deepEqual(order, ["messages 200", "live 200", "sleep"]);
});

test("every tool call leaves one audit line: key id, tool, argument summary, decision, reason, exit code, duration", async () => {
  // Log lines reach the gateway's stdout asynchronously: wait for the earlier tests' calls.
  const auditLines = () => gw.lines.filter((l) => l.includes('"msg":"tool_call"')).map((l) => JSON.parse(l) as Record<string, unknown>);
  const audit = await until("20 audit lines, the last a static-1 write_file", () => {
    const a = auditLines();
    return a.length >= 20 && a.some((x) => x.key_id === "static-1" && x.tool === "write_file") ? a : undefined;
  });
  assert.ok(audit.length >= 20, `${audit.length} audit lines`);
  const denied = audit.find((a) => a.tool === "read_file" && a.decision === "deny" && String(a.reason).includes(".env"));
  assert.ok(denied, "a denied read of .env is audited");
  assert.equal(denied!.key_id, "static-0");
  assert.deepEqual(denied!.args, { path: ".env" });
  const ran = audit.find((a) => a.tool === "run_command" && a.exit_code === 0);
  assert.ok(ran && typeof ran.duration_ms === "number" && ran.decision === "allow");
  const wrote = audit.find((a) => a.tool === "write_file" && a.decision === "allow");
  assert.deepEqual((wrote!.args as Record<string, unknown>).content, "<10 bytes>", "file content is summarised, not logged");
  assert.ok(audit.some((a) => a.key_id === "static-1" && a.tool === "write_file" && a.decision === "deny"));
  assert.ok(!gw.lines.some((l) => l.includes("never-shown")), "secrets never reach the log");
});

test("without WORKSPACE_ROOT there is no /mcp (404)", async () => {
  const plain = await startGateway({ GATEWAY_API_KEYS: KEY0, MODEL_PROVIDER: "mock" });
  try {
    const r = await fetch(`${plain.url}/mcp`, {
      method: "POST",
      headers: { "x-api-key": KEY0, "content-type": "application/json" },
      body: JSON.stringify(INIT),
    });
    assert.equal(r.status, 404);
  } finally {
    await plain.stop();
  }
});
