/**
 * The MCP audit trail end to end: the built gateway with two acceptor threads, tool calls
 * over separate connections (so both threads serve some), then
 * `tool_calls_total{tool,decision}` in /metrics/prometheus (shared across the threads,
 * promtool-clean) and, after SIGTERM, one row per call in the SQLite ledger's `audit`
 * table with the same fields as the `tool_call` log line and no secrets.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { request } from "node:http";
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { startGateway, type Gateway } from "../../support/gateway.js";
import { until } from "../../support/wait.js";

const KEY = "sk-mcp-audit-key-0123456789";
const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-mcp-audit-")));
const ws = join(base, "ws");
const DB = join(base, "data", "ledger.db");
const SECRET_ENV = "API_TOKEN=audit-never-stored";
const SECRET_CONTENT = "secret-file-content-never-stored";
let gw: Gateway;

/** One JSON-RPC POST on its own connection (agent: false), so calls spread over the threads. */
function rpc(body: unknown, sid?: string): Promise<{ status: number; sid: string | undefined; body: Record<string, unknown> }> {
  const data = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "x-api-key": KEY,
    "content-length": Buffer.byteLength(data),
  };
  if (sid !== undefined) {
    headers["mcp-session-id"] = sid;
    headers["mcp-protocol-version"] = "2025-06-18";
  }
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}/mcp`, { method: "POST", agent: false, headers }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (d: string) => (text += d));
      res.on("end", () =>
        resolve({
          status: res.statusCode!,
          sid: res.headers["mcp-session-id"] as string | undefined,
          body: text === "" ? {} : (JSON.parse(text) as Record<string, unknown>),
        }),
      );
    });
    req.on("error", reject);
    req.end(data);
  });
}

let sid = "";
let nextId = 10;
async function call(name: string, args: Record<string, unknown>): Promise<{ text: string; isError: boolean }> {
  const r = await rpc({ jsonrpc: "2.0", id: nextId++, method: "tools/call", params: { name, arguments: args } }, sid);
  assert.equal(r.status, 200);
  const result = r.body.result as { content: { text: string }[]; isError?: boolean };
  return { text: result.content.map((c) => c.text).join(""), isError: result.isError === true };
}

before(async () => {
  mkdirSync(ws, { recursive: true });
  writeFileSync(join(ws, "README.md"), "# audit demo\n");
  writeFileSync(join(ws, ".env"), SECRET_ENV + "\n");
  chmodSync(base, 0o755);
  chmodSync(ws, 0o755);
  const cmds = join(base, "commands.json");
  writeFileSync(cmds, JSON.stringify({ commands: [{ name: "count-lines", argv: ["wc", "-l", { param: "file", type: "path" }] }] }));
  gw = await startGateway({
    WORKSPACE_ROOT: ws,
    POLICY_COMMANDS_FILE: cmds,
    GATEWAY_API_KEYS: KEY,
    MODEL_PROVIDER: "mock",
    HTTP_THREADS: "2",
    DATABASE_PATH: DB,
    // Long batches: the rows still wait in the acceptors at SIGTERM, so the shutdown flush must write them.
    LEDGER_BATCH_MS: "10000",
    SANDBOX_TIMEOUT_MS: "10000",
  });
  const init = await rpc({
    jsonrpc: "2.0",
    id: 1,
    method: "initialize",
    params: { protocolVersion: "2025-06-18", capabilities: {}, clientInfo: { name: "audit-test", version: "1" } },
  });
  assert.equal(init.status, 200);
  sid = init.sid!;
});

after(async () => {
  await gw?.stop();
  rmSync(base, { recursive: true, force: true });
});

const EXPECTED: Record<string, number> = {
  "read_file/allow": 8,
  "read_file/deny": 3,
  "read_file/error": 2,
  "write_file/allow": 1,
  "list_dir/allow": 1,
  "run_command/allow": 1,
  "run_command/deny": 1,
};
const TOTAL = Object.values(EXPECTED).reduce((a, b) => a + b, 0);

test("allowed, denied and failed tool calls on two threads add up in tool_calls_total; promtool accepts it", async () => {
  for (let i = 0; i < 8; i++) assert.equal((await call("read_file", { path: "README.md" })).text, "# audit demo\n");
  for (const path of [".env", "../outside", "/etc/shadow"]) assert.match((await call("read_file", { path })).text, /^Refused: /);
  for (const path of ["missing-1.txt", "missing-2.txt"]) assert.match((await call("read_file", { path })).text, /^Failed: .*no such file/);
  assert.equal((await call("write_file", { path: "notes.txt", content: SECRET_CONTENT })).isError, false);
  assert.equal((await call("list_dir", {})).isError, false);
  assert.match((await call("run_command", { command: "count-lines", args: { file: "README.md" } })).text, /^exit code 0\n/);
  assert.match((await call("run_command", { command: "count-lines", args: { file: ".env" } })).text, /^Refused: /);

  // Log lines arrive asynchronously on the gateway's stdout.
  const auditLines = () => gw.lines.filter((l) => l.includes('"msg":"tool_call"'));
  await until(`${TOTAL} audit lines`, () => (auditLines().length >= TOTAL ? true : undefined));
  const lines = auditLines().map((l) => JSON.parse(l) as { thread: number });
  assert.equal(lines.length, TOTAL);
  assert.equal(new Set(lines.map((l) => l.thread)).size, 2, "separate connections reach both acceptor threads");

  const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
  assert.match(text, /# HELP tool_calls_total .+\n# TYPE tool_calls_total counter\n/);
  for (const [k, n] of Object.entries(EXPECTED)) {
    const [tool, decision] = k.split("/");
    assert.ok(
      text.includes(`\ntool_calls_total{tool="${tool}",decision="${decision}"} ${n}\n`),
      `tool_calls_total ${k} = ${n}\n${text
        .split("\n")
        .filter((l) => l.startsWith("tool_calls"))
        .join("\n")}`,
    );
  }
  // MCP is on: every tool x decision is a series, at zero until used.
  assert.ok(text.includes(`\ntool_calls_total{tool="git_diff",decision="allow"} 0\n`));
  const series = text.split("\n").filter((l) => l.startsWith("tool_calls_total{"));
  assert.equal(series.length, 8 * 3);
  assert.equal(
    series.reduce((a, l) => a + Number(l.split(" ").at(-1)), 0),
    TOTAL,
  );

  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
  assert.ok(r.error === undefined, `promtool could not run (install Debian's prometheus package): ${r.error}`);
  assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
});

test("after SIGTERM every tool call is an audit row in SQLite, with the log line's fields and no secrets", async () => {
  assert.equal(await gw.stop("SIGTERM"), 0);
  const db = new Database(DB, { readonly: true });
  try {
    type Row = {
      request_id: string;
      ts: number;
      key_id: string;
      tool: string;
      args: string | null;
      decision: string;
      reason: string | null;
      exit_code: number | null;
      duration_ms: number;
    };
    const rows = db
      .prepare("SELECT request_id, ts, key_id, tool, args, decision, reason, exit_code, duration_ms FROM audit ORDER BY seq")
      .all() as Row[];
    assert.equal(rows.length, TOTAL);
    const counts: Record<string, number> = {};
    for (const row of rows) counts[`${row.tool}/${row.decision}`] = (counts[`${row.tool}/${row.decision}`] ?? 0) + 1;
    assert.deepEqual(counts, EXPECTED);
    for (const row of rows) {
      assert.equal(row.key_id, "static-0");
      assert.ok(row.request_id.length > 0 && row.ts > Date.now() - 600_000 && row.duration_ms >= 0, JSON.stringify(row));
    }
    // The same records as the log lines, request by request.
    const logged = new Map(
      gw.lines
        .filter((l) => l.includes('"msg":"tool_call"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .map((l) => [l.req_id, l]),
    );
    for (const row of rows) {
      const l = logged.get(row.request_id)!;
      assert.ok(l, row.request_id);
      assert.deepEqual(
        [row.tool, row.decision, row.reason, row.exit_code, row.duration_ms],
        [l.tool, l.decision, l.reason ?? null, l.exit_code ?? null, l.duration_ms],
      );
      assert.deepEqual(row.args === null ? undefined : JSON.parse(row.args), l.args);
    }
    const env = rows.find((x) => x.tool === "read_file" && x.decision === "deny" && x.args === '{"path":".env"}');
    assert.match(env!.reason!, /blocked by policy/);
    assert.match(rows.find((x) => x.decision === "error")!.reason!, /no such file/);
    assert.equal(rows.find((x) => x.tool === "run_command" && x.decision === "allow")!.exit_code, 0);
    assert.deepEqual(JSON.parse(rows.find((x) => x.tool === "write_file")!.args!), {
      path: "notes.txt",
      content: `<${SECRET_CONTENT.length} bytes>`,
    });
    const all = JSON.stringify(db.prepare("SELECT * FROM audit").all());
    assert.ok(
      !all.includes(SECRET_CONTENT) && !all.includes("audit-never-stored") && !all.includes(KEY),
      "no file content, no .env value, no client key",
    );
    assert.equal((db.prepare("SELECT COUNT(*) AS n FROM usage").get() as { n: number }).n, 0, "MCP calls are not usage rows");
  } finally {
    db.close();
  }
});
