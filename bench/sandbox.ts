/**
 * Sandbox start-up cost per command: the median wall time of N runs (default 100) of a
 * trivial command (`true`) through the real sandbox, spawned one after another the way
 * run_command spawns them; then the median time of the walk that finds the paths to mask
 * (server/mcp/sandbox-view.ts) over a synthetic 20,000-file tree. Not part of `npm test`:
 * it needs bwrap and prints numbers for docs/mcp.md, it asserts nothing.
 *
 *   npm run build && node dist/bench/sandbox.js [runs]
 *
 * (The first version of this script, without the walk, measured the sandbox before the
 * launcher, seccomp and cgroup changes; docs/mcp.md gives both numbers.)
 */
import { chmodSync, mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMcpConfig } from "../core/policy/config.js";
import { PathPolicy } from "../core/policy/paths.js";
import { sandboxView } from "../server/mcp/sandbox-view.js";
import { planFor, runSandboxed } from "../server/mcp/runner.js";

const runs = Number(process.argv[2] ?? 100);
const ws = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-bench-sbx-")));
chmodSync(ws, 0o755);
const cfg = loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH, SANDBOX_ALLOW_UNSANDBOXED: "false" }, 1)!;
const plan = planFor(cfg);
const times: number[] = [];
const walk: number[] = [];
try {
  for (let i = 0; i < runs + 5; i++) {
    const t0 = performance.now();
    const r = await runSandboxed(cfg, plan, ["true"], ws, false, 10_000).result;
    const dt = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`sandboxed true failed: ${r.spawnError ?? r.stderr}`);
    if (i >= 5) times.push(dt); // the first few warm the page cache
  }
  // The mask walk over 200 directories of 100 files, two of each a denied .env.
  for (let d = 0; d < 200; d++) {
    mkdirSync(join(ws, `d${d}`));
    for (let f = 0; f < 100; f++) writeFileSync(join(ws, `d${d}`, f % 50 === 0 ? `.env.${f}` : `f${f}.ts`), "");
  }
  const policy = new PathPolicy({ roots: [ws], allowed: ["**"], blocked: [] });
  for (let i = 0; i < 12; i++) {
    const t0 = performance.now();
    await sandboxView(policy, 1_000_000, 60_000);
    if (i >= 2) walk.push(performance.now() - t0);
  }
} finally {
  rmSync(ws, { recursive: true, force: true });
}
times.sort((a, b) => a - b);
const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(2);
walk.sort((a, b) => a - b);
const walkMs = Number(walk[Math.floor(walk.length / 2)]!.toFixed(1));
console.log(
  JSON.stringify({
    backend: cfg.sandbox.backend,
    runs,
    median_ms: Number(q(0.5)),
    p10_ms: Number(q(0.1)),
    p90_ms: Number(q(0.9)),
    mask_walk_20k_files_median_ms: walkMs,
  }),
);
