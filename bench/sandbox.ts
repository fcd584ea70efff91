/**
 * Sandbox start-up cost per command: the median wall time of N runs (default 100) of a
 * trivial command (`true`) through the real sandbox, spawned one after another the way
 * run_command spawns them. Not part of `npm test`: it needs bwrap and prints a number
 * for docs/mcp.md, it asserts nothing.
 *
 *   npm run build && node dist/bench/sandbox.js [runs]
 */
import { chmodSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadMcpConfig } from "../core/policy/config.js";
import { planFor, runSandboxed } from "../server/mcp/runner.js";

const runs = Number(process.argv[2] ?? 100);
const ws = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-bench-sbx-")));
chmodSync(ws, 0o755);
const cfg = loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH, SANDBOX_ALLOW_UNSANDBOXED: "false" }, 1)!;
const plan = planFor(cfg);
const times: number[] = [];
try {
  for (let i = 0; i < runs + 5; i++) {
    const t0 = performance.now();
    const r = await runSandboxed(cfg, plan, ["true"], ws, false, 10_000).result;
    const dt = performance.now() - t0;
    if (r.exitCode !== 0) throw new Error(`sandboxed true failed: ${r.spawnError ?? r.stderr}`);
    if (i >= 5) times.push(dt); // the first few warm the page cache
  }
} finally {
  rmSync(ws, { recursive: true, force: true });
}
times.sort((a, b) => a - b);
const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(2);
console.log(JSON.stringify({ backend: cfg.sandbox.backend, runs, median_ms: Number(q(0.5)), p10_ms: Number(q(0.1)), p90_ms: Number(q(0.9)) }));
