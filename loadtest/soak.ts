/**
 * `--soak SECONDS`: one long run at the usual connection count, sampling the target's RSS
 * every few seconds, to show whether memory is flat under sustained load (the target:
 * within ±10% after warm-up) or grows.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { smallRequest } from "../bench/fixture.js";
import { parseFlags } from "../bench/format.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import { loadRun, type RunResult, type Target } from "./measure.js";
import { rssBytes, startGateway, startPortPrinter, type Proc, runScript } from "./procs.js";

export interface Soak {
  seconds: number;
  every_s: number;
  rss_bytes: number[];
  /** max ÷ min − 1 over the samples after the first tenth of the run. */
  drift: number;
  run: RunResult;
}

export async function soakRun(t: Target, connections: number, seconds: number): Promise<Soak> {
  // Every 10 s (issue 12), more often in a short soak.
  const every = Math.max(1, Math.min(10, Math.round(seconds / 20)));
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(rssBytes(t.pid!)), every * 1000);
  let run: RunResult;
  try {
    run = await loadRun(t, connections, seconds);
  } finally {
    clearInterval(timer);
  }
  const steady = samples.slice(Math.floor(samples.length / 10));
  const drift = steady.length === 0 ? NaN : Math.max(...steady) / Math.min(...steady) - 1;
  return { seconds, every_s: every, rss_bytes: samples, drift, run };
}

/** Alone: `node dist/loadtest/soak.js --seconds 600 [--threads N] [--connections 50]`, the gateway → the mock; prints the samples, writes nothing. */
async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const seconds = Number(flags.get("seconds") ?? 600);
  const connections = Number(flags.get("connections") ?? 50);
  const threads = flags.has("threads") ? Number(flags.get("threads")) : null;
  const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "portcullis-soak-"));
  const procs: Proc[] = [];
  try {
    const mock = await startPortPrinter("mock", here("./mock-upstream.js"), ["--port", "0"]);
    procs.push(mock);
    const gw = await startGateway(
      here("../server/main.js"),
      gatewayEnv({ mockPort: mock.port, streamPort: mock.port, dir, threads, logFile: join(dir, "gateway.log") }),
    );
    procs.push(gw);
    const rssBefore = rssBytes(gw.child.pid!);
    const t = {
      name: "gateway",
      port: gw.port,
      pid: gw.child.pid!,
      path: "/v1/messages",
      headers: HEADERS,
      body: JSON.stringify(smallRequest()),
    };
    await loadRun(t, connections, 5); // warm-up
    const s = await soakRun(t, connections, seconds);
    const mib = (b: number) => (b / 1048576).toFixed(0);
    process.stdout.write(
      `RSS before ${mib(rssBefore)} MiB; every ${s.every_s} s: ${s.rss_bytes.map(mib).join(", ")} MiB; after the first tenth max ÷ min − 1 = ${(s.drift * 100).toFixed(1)}%; ${Math.round(s.run.req_per_s)} req/s, ${s.run.errors} errors, statuses ${JSON.stringify(s.run.statuses)}\n`,
    );
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(import.meta.url, "soak", main);
