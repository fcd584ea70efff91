/**
 * Secrets the policy denies must not come out through git or through a sandboxed command:
 * a committed `.env` and `server.pem`, changed in the work tree and in the index, never
 * appear (name or content) in git_status or git_diff; a token in `.git/config` and a
 * `node_modules/pkg/.env` are invisible to a sandboxed `grep -rn`. Real git, real bwrap.
 * Also: the gateway's git ignores a repository's own fsmonitor, even on the host.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { loadMcpConfig } from "../../../core/policy/config.js";
import { Tools, type CallCtx } from "../../../server/mcp/tools.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-gitsec-")));
const ws = join(base, "ws");
const ENV_OLD = "API_KEY=committed-secret-1111";
const ENV_NEW = "API_KEY=working-tree-secret-2222";
const PEM = "-----BEGIN PRIVATE KEY-----pem-secret-3333";
const TOKEN = "ghp_tokenInGitConfig4444";
const NM_SECRET = "NPM_SECRET=node-modules-5555";
const SECRETS = [ENV_OLD, ENV_NEW, PEM, TOKEN, NM_SECRET, "committed-secret", "working-tree-secret", "pem-secret"];
const ctx: CallCtx = { keyId: "static-0", rights: null, reqId: "t", onCancel: () => {} };
let tools: Tools;

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", ["-c", "user.email=t@t", "-c", "user.name=t", ...args], { cwd, encoding: "utf8" });

before(() => {
  mkdirSync(join(ws, "node_modules", "pkg"), { recursive: true });
  git(ws, "init", "-q", "-b", "main");
  git(ws, "remote", "add", "origin", `https://x-access-token:${TOKEN}@github.example/o/r.git`);
  writeFileSync(join(ws, "a.txt"), "one\n");
  writeFileSync(join(ws, ".env"), ENV_OLD + "\n");
  writeFileSync(join(ws, "server.pem"), PEM + "\n");
  git(ws, "add", "-f", "a.txt", ".env", "server.pem");
  git(ws, "commit", "-qm", "init");
  writeFileSync(join(ws, "a.txt"), "two\n");
  writeFileSync(join(ws, ".env"), ENV_NEW + "\n");
  writeFileSync(join(ws, "server.pem"), PEM + "-changed\n");
  writeFileSync(join(ws, "node_modules", "pkg", ".env"), NM_SECRET + "\n");
  writeFileSync(join(ws, "node_modules", "pkg", "index.js"), "module.exports = 1;\n");
  execFileSync("chmod", ["-R", "a+rX", base]);
  const cmds = join(base, "commands.json");
  writeFileSync(
    cmds,
    JSON.stringify({
      commands: [
        { name: "grep", argv: ["grep", "-rn", "--", { param: "pattern", type: "string", match: "[A-Za-z0-9_=-]+" }, "."] },
        { name: "cat", argv: ["cat", { param: "file", type: "string", match: "[a-z./_-]+" }] },
      ],
    }),
  );
  tools = new Tools(
    loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH, POLICY_COMMANDS_FILE: cmds }, 1)!,
    pino({ level: "silent" }),
  );
});
after(() => rmSync(base, { recursive: true, force: true }));

async function call(name: string, args: Record<string, unknown>) {
  const r = await tools.call(name, args, ctx);
  return { text: r.content.map((c) => c.text).join(""), isError: r.isError === true };
}
const noSecret = (text: string, what: string) => {
  for (const s of SECRETS) assert.ok(!text.includes(s), `${what} leaked ${s}: ${text}`);
};

test("control: the host's own git shows the denied files' names and contents", () => {
  const all = git(ws, "status", "--porcelain") + git(ws, "diff");
  assert.match(all, /\.env/);
  assert.ok(all.includes(ENV_OLD) && all.includes(ENV_NEW));
});

test("git_status lists changed files but never a denied one", async () => {
  const r = await call("git_status", {});
  assert.equal(r.isError, false, r.text);
  assert.match(r.text, /^ M a\.txt$/m);
  assert.match(r.text, /^## main/m);
  assert.doesNotMatch(r.text, /\.env|server\.pem/);
});

test("git_diff (work tree and index) shows a.txt but neither name nor content of .env or server.pem", async () => {
  const r = await call("git_diff", {});
  assert.equal(r.isError, false, r.text);
  assert.match(r.text, /-one\n\+two/);
  assert.doesNotMatch(r.text, /\.env|server\.pem/);
  noSecret(r.text, "git_diff");
  git(ws, "add", "-f", ".env", "server.pem", "a.txt");
  const staged = await call("git_diff", { staged: true });
  assert.match(staged.text, /\+two/);
  assert.doesNotMatch(staged.text, /\.env|server\.pem/);
  noSecret(staged.text, "git_diff --cached");
  const direct = await call("git_diff", { path: ".env" });
  assert.match(direct.text, /^Refused: .*blocked by policy/);
  git(ws, "reset", "-q");
});

test("a sandboxed grep -rn sees the tree the file tools see: no token from .git/config, no node_modules/pkg/.env", async () => {
  for (const pattern of ["x-access-token", "ghp_tokenInGitConfig4444", "NPM_SECRET", "API_KEY"]) {
    const r = await call("run_command", { command: "grep", args: { pattern } });
    noSecret(r.text, `grep ${pattern}`);
  }
  const control = await call("run_command", { command: "grep", args: { pattern: "exports" } });
  assert.match(control.text, /node_modules\/pkg\/index\.js:1:module\.exports = 1;/, "node_modules itself stays visible");
  const cfg = await call("run_command", { command: "cat", args: { file: ".git/config" } });
  noSecret(cfg.text, "cat .git/config");
  assert.equal((await call("read_file", { path: "node_modules/pkg/.env" })).isError, true);
});

test("the gateway's git ignores the repository's fsmonitor, also unsandboxed on the host", async () => {
  const repo = join(base, "fsm");
  const marker = join(base, "FSM_MARKER");
  mkdirSync(repo);
  git(repo, "init", "-q");
  writeFileSync(join(repo, "f.txt"), "x\n");
  git(repo, "config", "core.fsmonitor", `touch ${marker}; false`);
  // Control: the developer's git runs it.
  git(repo, "status");
  assert.equal(existsSync(marker), true);
  rmSync(marker);
  chmodSync(repo, 0o755);
  const host = new Tools(
    loadMcpConfig({ WORKSPACE_ROOT: repo, PATH: process.env.PATH, SANDBOX_BACKEND: "none", SANDBOX_ALLOW_UNSANDBOXED: "true" }, 1)!,
    pino({ level: "silent" }),
  );
  const r = await host.call("git_status", {}, ctx);
  assert.equal(r.isError, undefined, r.content[0]!.text);
  assert.match(r.content[0]!.text, /\?\? f\.txt/);
  assert.equal(existsSync(marker), false, "fsmonitor did not run");
});
