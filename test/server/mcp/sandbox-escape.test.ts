/**
 * Escapes from inside the real bubblewrap sandbox: a nested user namespace (`unshare -r`),
 * each system call the seccomp filter denies (made directly with perl's `syscall`), and
 * descriptors the gateway's parent left open. Each check has a control outside the
 * sandbox showing the same call succeeds or the same descriptor exists there.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { loadMcpConfig, type McpConfig } from "../../../core/policy/config.js";
import { ARCHES, DENIED_SYSCALLS } from "../../../core/policy/seccomp.js";
import { planFor, runSandboxed, type RunResult } from "../../../server/mcp/runner.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-escape-")));
const ws = join(base, "ws");
let cfg: McpConfig;

before(() => {
  execFileSync("mkdir", ["-p", ws]);
  for (const d of [base, ws]) chmodSync(d, 0o755);
  writeFileSync(
    join(ws, "probe.pl"),
    'for my $n (@ARGV) { $! = 0; my $r = syscall($n, 0, 0, 0, 0, 0, 0); print "$n $r ", ($! + 0), "\\n"; }\n',
  );
  chmodSync(join(ws, "probe.pl"), 0o644);
  cfg = loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH, SANDBOX_TIMEOUT_MS: "10000" }, 1)!;
});
after(() => rmSync(base, { recursive: true, force: true }));

function run(argv: string[]): Promise<RunResult> {
  return runSandboxed(cfg, planFor(cfg), argv, ws, false, cfg.sandbox.timeoutMs).result;
}

test("a nested user namespace cannot be made inside the sandbox (unshare -r id)", async () => {
  const r = await run(["unshare", "-r", "id"]);
  assert.notEqual(r.exitCode, 0, r.stdout);
  assert.doesNotMatch(r.stdout, /uid=0/);
  const plain = await run(["id", "-u"]);
  assert.equal(plain.exitCode, 0, "the sandbox itself runs: " + plain.stderr);
});

test("every system call on the seccomp list fails with EPERM inside; outside, the same calls do not", async () => {
  const table = ARCHES[process.arch];
  assert.ok(table, `a syscall table for ${process.arch}`);
  const nrs = DENIED_SYSCALLS.map((n) => table.nr[n]);
  const inside = await run(["perl", join(ws, "probe.pl"), ...nrs.map(String)]);
  assert.equal(inside.exitCode, 0, inside.stderr);
  const lines = inside.stdout.trim().split("\n");
  assert.equal(lines.length, nrs.length);
  lines.forEach((l, i) => assert.equal(l, `${nrs[i]} -1 1`, `${DENIED_SYSCALLS[i]} must fail with EPERM (errno 1)`));
  // Control: without the filter unshare(0) and ptrace(PTRACE_TRACEME) succeed, mount(NULL...) is EFAULT.
  const outside = execFileSync("perl", [join(ws, "probe.pl"), String(table.nr.unshare), String(table.nr.mount)], { encoding: "utf8" });
  assert.match(outside, new RegExp(`^${table.nr.unshare} 0 0\\n${table.nr.mount} -1 14\\n$`));
  // Everything else still works: the filter allows by default.
  const ok = await run(["perl", "-e", "print getppid() >= 0 ? qq(fine\\n) : qq(no\\n)"]);
  assert.equal(ok.stdout, "fine\n");
});

test("descriptors the gateway inherited do not reach the command: only 0, 1 and 2 are open inside", async () => {
  // A gateway whose parent left fd 7 open (no close-on-exec), as a shell or supervisor might.
  const runner = fileURLToPath(new URL("../../../server/mcp/runner.js", import.meta.url));
  const config = fileURLToPath(new URL("../../../core/policy/config.js", import.meta.url));
  const script = `
    const { loadMcpConfig } = await import(${JSON.stringify(config)});
    const { planFor, runSandboxed } = await import(${JSON.stringify(runner)});
    const cfg = loadMcpConfig({ WORKSPACE_ROOT: ${JSON.stringify(ws)}, PATH: process.env.PATH }, 1);
    const fds = (await import("node:fs")).readdirSync("/proc/self/fd");
    const r = await runSandboxed(cfg, planFor(cfg), ["sh", "-c", "ls /proc/$$/fd"], ${JSON.stringify(ws)}, false, 10000).result;
    console.log(JSON.stringify({ gateway: fds, inside: r.stdout.trim().split("\\n"), err: r.stderr }));`;
  const p = spawnSync("bash", ["-c", 'exec 7</etc/hostname; exec "$@"', "bash", process.execPath, "--input-type=module", "-e", script], {
    encoding: "utf8",
    timeout: 30_000,
  });
  assert.equal(p.status, 0, p.stderr);
  const out = JSON.parse(p.stdout.trim().split("\n").pop()!) as { gateway: string[]; inside: string[]; err: string };
  assert.ok(out.gateway.includes("7"), "control: the gateway process has fd 7 open");
  assert.deepEqual(
    out.inside.map(Number).sort((a, b) => a - b),
    [0, 1, 2],
    `inside: ${out.inside.join(" ")} ${out.err}`,
  );
});
