/**
 * Per-command cgroups: the mode decided at start-up says why it fell back to rlimits, and
 * the launcher really moves the command into the cgroup directory it is given (checked
 * with a plain directory standing in for the cgroup, since this machine delegates no
 * cgroup v2 controllers; the kernel's enforcement of memory.max is not exercised here).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMcpConfig } from "../../../core/policy/config.js";
import { Cgroups } from "../../../server/mcp/cgroup.js";
import { planFor, runSandboxed } from "../../../server/mcp/runner.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-cg-")));
after(() => rmSync(base, { recursive: true, force: true }));
const limits = { cpuSeconds: 10, memoryMb: 64, pids: 32, fileBytes: 1 << 20, cpus: 1 };

test("rlimits mode names what is missing: off, a directory without controllers, or this host's own cgroup", () => {
  assert.deepEqual(Cgroups.setup("off", limits).status, { mode: "rlimits", reason: "SANDBOX_CGROUP=off", base: null });
  writeFileSync(join(base, "cgroup.controllers"), "hugetlb\n");
  const s = Cgroups.setup(base, limits).status;
  assert.equal(s.mode, "rlimits");
  assert.match(s.reason!, /controllers memory, pids, cpu not delegated .* \(it has: hugetlb\)/);
  const auto = Cgroups.setup("auto", limits).status;
  assert.ok(auto.mode === "cgroup" || /cgroup/.test(auto.reason!), JSON.stringify(auto));
});

test("the launcher joins the command's cgroup before bwrap starts (its pid is written to cgroup.procs)", async () => {
  const ws = join(base, "ws");
  const cg = join(base, "cmd-1");
  for (const d of [ws, cg]) {
    mkdirSync(d);
    chmodSync(d, 0o755);
  }
  chmodSync(base, 0o755);
  const cfg = loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH }, 1)!;
  let killed = 0;
  const r = await runSandboxed(cfg, planFor(cfg), ["true"], ws, false, 10_000, {
    cgroup: { dir: cg, kill: () => killed++, remove: () => {} },
  }).result;
  assert.equal(r.exitCode, 0, r.stderr);
  assert.match(readFileSync(join(cg, "cgroup.procs"), "utf8"), /^\d+\n$/);
  assert.equal(killed, 0);
  // A cgroup that cannot be joined stops the command before it runs.
  const bad = await runSandboxed(cfg, planFor(cfg), ["true"], ws, false, 10_000, {
    cgroup: { dir: join(base, "missing"), kill: () => {}, remove: () => {} },
  }).result;
  assert.equal(bad.exitCode, 125);
  assert.match(bad.stderr, /cannot join cgroup/);
});
