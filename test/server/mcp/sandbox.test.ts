/**
 * The real bubblewrap sandbox, probed from inside: no network (a loopback listener on
 * the host is unreachable), no host files outside the binds, a read-only system and
 * workspace, and a fork bomb, runaway output and an endless loop each contained and killed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMcpConfig, type McpConfig } from "../../../core/policy/config.js";
import { planFor, runSandboxed, type RunResult } from "../../../server/mcp/runner.js";
import { until } from "../../support/wait.js";
import { processesMatching } from "../../support/procs.js";

/** Fails, saying what to install, when bwrap is missing (the tests never skip the sandbox). */
function requireBwrap(): void {
  try {
    execFileSync("bwrap", ["--version"], { stdio: "ignore" });
  } catch {
    assert.fail("bwrap is not installed: install bubblewrap (npm test's pretest step, scripts/system-deps.sh, does it as root)");
  }
}

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-sbx-")));
const ws = join(base, "ws");
const hostSecret = join(base, "host-secret.txt");
let cfg: McpConfig;
let server: Server;
let port = 0;

before(async () => {
  requireBwrap();
  mkdirSync(ws);
  writeFileSync(join(ws, "hello.txt"), "hi\n");
  writeFileSync(hostSecret, "host only\n");
  // The sandbox runs as SANDBOX_UID (nobody when the tests run as root): let it in.
  for (const d of [base, ws]) chmodSync(d, 0o755);
  cfg = loadMcpConfig(
    { WORKSPACE_ROOT: ws, PATH: process.env.PATH, SANDBOX_TIMEOUT_MS: "3000", SANDBOX_OUTPUT_BYTES: "65536", SANDBOX_PIDS: "32" },
    1,
  )!;
  server = createServer((s) => {
    s.on("error", () => {});
    s.end("reached\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as { port: number }).port;
});
after(() => {
  server?.close();
  rmSync(base, { recursive: true, force: true });
});

function run(argv: string[], writes = false, timeoutMs = cfg.sandbox.timeoutMs): Promise<RunResult> {
  return runSandboxed(cfg, planFor(cfg), argv, ws, writes, timeoutMs).result;
}

const NODE_CONNECT = `require("net").connect(${"PORT"}, "127.0.0.1").on("connect", () => { console.log("CONNECTED"); process.exit(0); }).on("error", (e) => { console.log("ERR " + e.code); process.exit(3); })`;

describe("bubblewrap sandbox", () => {
  test("a command runs with its argv, in the workspace, with a scrubbed environment", async () => {
    process.env.PORTCULLIS_TEST_SECRET = "should-not-leak";
    const r = await run(["sh", "-c", 'pwd; cat hello.txt; env | sort; echo "$1"', "sh", "$(id) `id`; rm -rf ~"]);
    assert.equal(r.exitCode, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.equal(lines[0], ws);
    assert.equal(lines[1], "hi");
    assert.ok(!r.stdout.includes("should-not-leak") && !r.stdout.includes("PORTCULLIS"), "host environment not passed");
    assert.ok(lines.includes("$(id) `id`; rm -rf ~"), "an argument is data, never expanded");
  });

  test("network: a loopback listener on the host cannot be reached", async () => {
    // Control: the listener is reachable from outside the sandbox.
    await new Promise<void>((resolve, reject) =>
      connect(port, "127.0.0.1")
        .on("connect", function (this: import("node:net").Socket) {
          this.destroy();
          resolve();
        })
        .on("error", reject),
    );
    const r = await run(["node", "-e", NODE_CONNECT.replace("PORT", String(port))]);
    assert.equal(r.exitCode, 3, r.stdout + r.stderr);
    assert.match(r.stdout, /ERR (ECONNREFUSED|ENETUNREACH|EADDRNOTAVAIL)/);
    assert.ok(!r.stdout.includes("CONNECTED"));
    const ifs = await run(["cat", "/proc/net/dev"]);
    assert.ok(!/eth|ens|enp|wlan/.test(ifs.stdout), `only loopback inside: ${ifs.stdout}`);
  });

  test("host files: /etc/shadow and paths outside the binds cannot be read", async () => {
    for (const f of ["/etc/shadow", hostSecret, "/root/.bashrc", process.cwd() + "/package.json"]) {
      const r = await run(["cat", f]);
      assert.notEqual(r.exitCode, 0, `${f} must not be readable: ${r.stdout}`);
      assert.ok(!r.stdout.includes("host only"));
    }
    const ls = await run(["ls", "/"]);
    assert.ok(!ls.stdout.split("\n").includes("root") && !ls.stdout.split("\n").includes("home"), ls.stdout);
  });

  test("read-only: the system and (by default) the workspace cannot be written", async () => {
    for (const f of ["/usr/pwned", "/etc/pwned", join(ws, "pwned"), join(ws, "hello.txt")]) {
      const r = await run(["sh", "-c", 'echo x > "$1"', "sh", f]);
      assert.notEqual(r.exitCode, 0, `${f} must not be writable`);
    }
    assert.equal(readFileSync(join(ws, "hello.txt"), "utf8"), "hi\n");
    assert.equal(existsSync(join(ws, "pwned")), false);
    const tmp = await run(["sh", "-c", "echo ok > /tmp/x && cat /tmp/x"]);
    assert.equal(tmp.stdout, "ok\n", "tmpfs /tmp is writable");
  });

  test("a template that writes gets the workspace read-write", async () => {
    chmodSync(ws, 0o777);
    try {
      const r = await run(["sh", "-c", "echo made > made.txt"], true);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(readFileSync(join(ws, "made.txt"), "utf8"), "made\n");
    } finally {
      chmodSync(ws, 0o755);
    }
  });

  test("the process limit (SANDBOX_PIDS=32) stops a command from starting more processes", async () => {
    // Start up to 100 background sleeps, printing the count after each; the shell dies at
    // the first fork the limit refuses. The same loop without the limit starts all 100.
    const loop = "n=0; while [ $n -lt 100 ]; do sleep 30 </dev/null >/dev/null 2>&1 & n=$((n+1)); echo $n; done";
    const r = await run(["sh", "-c", loop]);
    assert.equal(r.timedOut, false);
    assert.notEqual(r.exitCode, 0, r.stdout);
    assert.match(r.stderr, /fork/i, "the shell reports the refused fork");
    const started = Number(r.stdout.trim().split("\n").at(-1));
    assert.ok(started >= 1 && started < 32, `started ${started} processes under a limit of 32`);
    const unlimited = await runSandboxed(
      cfg,
      { ...planFor(cfg), limits: { ...cfg.sandbox.limits, pids: 1000 } },
      ["sh", "-c", loop],
      ws,
      false,
      10_000,
    ).result;
    assert.equal(unlimited.exitCode, 0, unlimited.stderr);
    assert.equal(unlimited.stdout.trim().split("\n").at(-1), "100", "the control run is not limited");
  });

  test("a fork bomb ends (refused forks or the deadline) and nothing of it survives", async () => {
    const r = await run(["sh", "-c", "f() { f | f & }; f; sleep 60"], false, 2000);
    assert.ok(r.timedOut || r.exitCode !== 0, JSON.stringify(r).slice(0, 300));
    // The pid namespace dies with bwrap: wait (bounded) until the kernel has reaped it.
    await until(
      "the fork bomb's processes to be gone",
      () => (processesMatching("f() { f | f & }").length === 0 ? true : undefined),
      10_000,
    );
  });

  test("runaway output is cut at SANDBOX_OUTPUT_BYTES and the command killed", async () => {
    const r = await run(["yes", "spam"]);
    assert.equal(r.truncated, true);
    assert.equal(Buffer.byteLength(r.stdout), 65536);
    assert.equal(r.timedOut, false, "killed for output, not by the clock");
  });

  test("an endless loop is killed at the wall-clock limit", async () => {
    const r = await run(["sh", "-c", "while :; do :; done"], false, 500);
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, null);
    assert.equal(r.signal, "SIGKILL");
  });

  test("memory is capped (address-space limit)", async () => {
    const r = await run([
      "node",
      "-e",
      "const b = []; for (let i = 0; i < 64; i++) b.push(Buffer.alloc(64 * 1024 * 1024, 1)); console.log('ALLOCATED')",
    ]);
    assert.notEqual(r.exitCode, 0);
    assert.ok(!r.stdout.includes("ALLOCATED"), "4 GiB must not fit in SANDBOX_MEMORY_MB (2048)");
  });
});
