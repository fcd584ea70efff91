import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, realpathSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, loadConfig } from "../../../core/config.js";
import { loadMcpConfig, nodeIo } from "../../../core/policy/config.js";

const dir = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-mcpcfg-")));
const ws = join(dir, "ws");
mkdirSync(ws);
symlinkSync(ws, join(dir, "ws-link"));
function cmdFile(content: unknown): string {
  const f = join(dir, `cmds-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(f, typeof content === "string" ? content : JSON.stringify(content));
  return f;
}
function throwsSetting(f: () => unknown, setting: string, msg?: RegExp): void {
  try {
    f();
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.setting, setting, e.message);
    if (msg) assert.match(e.message, msg);
    return;
  }
  assert.fail(`expected ConfigError for ${setting}`);
}

test("no WORKSPACE_ROOT: MCP is off (null), also through loadConfig", () => {
  assert.equal(loadMcpConfig({}, 1), null);
  assert.equal(loadConfig({}, undefined, 1).mcp, null);
});

test("defaults: roots realpath'd, bwrap backend, caps, random session secret", () => {
  const c = loadMcpConfig({ WORKSPACE_ROOT: join(dir, "ws-link"), PATH: process.env.PATH }, 1)!;
  assert.deepEqual(c.roots, [ws]);
  assert.deepEqual(c.allowedPaths, ["**"]);
  assert.equal(c.sandbox.backend, "bwrap");
  assert.equal(c.maxReadBytes, 1024 * 1024);
  assert.equal(c.sessionSecret.length, 64);
  assert.equal(c.toolAccess, null);
  assert.equal(c.allowGitFiles, false);
  assert.equal(c.sandbox.cgroup, "auto");
  assert.equal(c.sandbox.seccomp, true);
  assert.deepEqual([c.sandbox.maskMaxEntries, c.sandbox.maskMaxMs], [200_000, 2000]);
  assert.ok(Object.isFrozen(c));
  // Through loadConfig with GATEWAY_API_KEYS the key count is passed on.
  const g = loadConfig({ WORKSPACE_ROOT: ws, GATEWAY_API_KEYS: "k-12345678", PATH: process.env.PATH }, undefined, 1);
  assert.deepEqual(g.mcp?.roots, [ws]);
  structuredClone(g); // it crosses to the acceptor threads as workerData
});

test("bad values stop the start naming the setting", () => {
  const base = { WORKSPACE_ROOT: ws, PATH: process.env.PATH };
  throwsSetting(() => loadMcpConfig({ WORKSPACE_ROOT: "relative/dir" }, 1), "WORKSPACE_ROOT", /absolute/);
  throwsSetting(() => loadMcpConfig({ WORKSPACE_ROOT: join(dir, "missing") }, 1), "WORKSPACE_ROOT", /not an existing directory/);
  throwsSetting(() => loadMcpConfig({ WORKSPACE_ROOT: "/" }, 1), "WORKSPACE_ROOT", /file-system root/);
  throwsSetting(() => loadMcpConfig(base, 0), "WORKSPACE_ROOT", /MCP_ALLOW_ANONYMOUS/);
  assert.ok(loadMcpConfig({ ...base, MCP_ALLOW_ANONYMOUS: "true" }, 0));
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_BACKEND: "chroot" }, 1), "SANDBOX_BACKEND");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_BACKEND: "bwrap", PATH: "/nonexistent" }, 1), "SANDBOX_BACKEND", /bubblewrap/);
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_TIMEOUT_MS: "abc" }, 1), "SANDBOX_TIMEOUT_MS");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_PIDS: "2" }, 1), "SANDBOX_PIDS", /from 8/);
  throwsSetting(() => loadMcpConfig({ ...base, POLICY_MAX_READ_BYTES: "-1" }, 1), "POLICY_MAX_READ_BYTES");
  throwsSetting(() => loadMcpConfig({ ...base, POLICY_FILE_BLOCKED_PATHS: "/etc/**" }, 1), "POLICY_FILE_BLOCKED_PATHS", /relative/);
  throwsSetting(() => loadMcpConfig({ ...base, MCP_SESSION_SECRET: "short" }, 1), "MCP_SESSION_SECRET");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_RO_BINDS: "/nonexistent/x" }, 1), "SANDBOX_RO_BINDS");
  const fakeIo = {
    ...nodeIo,
    which: (n: string) => (n === "docker" ? "/usr/bin/docker" : nodeIo.which(n, process.env.PATH!)),
    answers: () => true,
  };
  throwsSetting(
    () => loadMcpConfig({ ...base, SANDBOX_BACKEND: "docker", SANDBOX_IMAGE: "node:20" }, 1, { ...fakeIo, answers: () => false }),
    "SANDBOX_BACKEND",
    /version failed/,
  );
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_BACKEND: "none" }, 1), "SANDBOX_BACKEND", /SANDBOX_ALLOW_UNSANDBOXED=true/);
  assert.equal(loadMcpConfig({ ...base, SANDBOX_BACKEND: "none", SANDBOX_ALLOW_UNSANDBOXED: "true" }, 1)?.sandbox.backend, "none");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_CGROUP: "relative" }, 1), "SANDBOX_CGROUP");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_MASK_MAX_ENTRIES: "5" }, 1), "SANDBOX_MASK_MAX_ENTRIES");
  throwsSetting(() => loadMcpConfig({ ...base, POLICY_ALLOW_GIT_FILES: "maybe" }, 1), "POLICY_ALLOW_GIT_FILES");
  throwsSetting(() => loadMcpConfig({ ...base, SANDBOX_BACKEND: "docker" }, 1, fakeIo), "SANDBOX_IMAGE");
  assert.equal(
    loadMcpConfig({ ...base, SANDBOX_BACKEND: "docker", SANDBOX_IMAGE: "node:20" }, 1, fakeIo)?.sandbox.engine,
    "/usr/bin/docker",
  );
});

test("the command file is validated with typia; errors name the field", () => {
  const base = { WORKSPACE_ROOT: ws, PATH: process.env.PATH };
  throwsSetting(() => loadMcpConfig({ ...base, POLICY_COMMANDS_FILE: join(dir, "nope.json") }, 1), "POLICY_COMMANDS_FILE", /cannot read/);
  throwsSetting(() => loadMcpConfig({ ...base, POLICY_COMMANDS_FILE: cmdFile("{not json") }, 1), "POLICY_COMMANDS_FILE");
  throwsSetting(
    () =>
      loadMcpConfig(
        { ...base, POLICY_COMMANDS_FILE: cmdFile({ commands: [{ name: "t", argv: ["x", { param: "p", type: "string" }] }] }) },
        1,
      ),
    "POLICY_COMMANDS_FILE commands.0.argv.1.match",
    /expected/,
  );
  throwsSetting(
    () =>
      loadMcpConfig(
        { ...base, POLICY_COMMANDS_FILE: cmdFile({ commands: [{ name: "t", argv: ["x", { param: "p", type: "string", match: "[" }] }] }) },
        1,
      ),
    "POLICY_COMMANDS_FILE commands.0.argv.1.match",
  );
  throwsSetting(
    () =>
      loadMcpConfig(
        {
          ...base,
          POLICY_COMMANDS_FILE: cmdFile({
            commands: [
              { name: "t", argv: ["x"] },
              { name: "t", argv: ["y"] },
            ],
          }),
        },
        1,
      ),
    "POLICY_COMMANDS_FILE commands.1.name",
  );
  throwsSetting(
    () => loadMcpConfig({ ...base, POLICY_COMMANDS_FILE: cmdFile({ tool_access: { "static-3": ["read_file"] } }) }, 2),
    "POLICY_COMMANDS_FILE tool_access.static-3",
  );
  throwsSetting(
    () => loadMcpConfig({ ...base, POLICY_COMMANDS_FILE: cmdFile({ tool_access: { "*": ["rm_rf"] } }) }, 2),
    "POLICY_COMMANDS_FILE tool_access.*",
    /unknown tool/,
  );
  const ok = loadMcpConfig(
    {
      ...base,
      POLICY_COMMANDS_FILE: cmdFile({ commands: [{ name: "t", argv: ["x"] }], tool_access: { "static-1": ["read_file"], "*": [] } }),
    },
    2,
  )!;
  assert.equal(ok.commands.length, 1);
  assert.deepEqual(ok.toolAccess, { "static-1": ["read_file"], "*": [] });
});
