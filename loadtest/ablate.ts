/**
 * What each default feature costs per request: the load-test gateway (client keys, info
 * logging to a file, ledger, metrics, `HTTP_THREADS` default) against itself with one thing
 * changed, and against the bare ceiling, small body, 50 connections, in interleaved rounds
 * (ceiling, then every variant, `--rounds` times; medians). CPU is read per thread from
 * /proc, so the table also says where the process spends it: the acceptor threads (the
 * busiest `HTTP_THREADS`; the ceiling serves on its main thread), the main thread, and the
 * rest (ledger writer, V8's GC and compiler helpers, libuv's pool).
 *
 *   npm run loadtest:ablate -- [--duration 6] [--rounds 3] [--connections 50] [--warmup 2] [--rate N] [--json FILE]
 *
 * `--rate N` holds every target at N requests per second: CPU per request then compares
 * like with like (at full speed it also depends on how the cores are shared that second).
 *
 * Each target gets `--warmup` unmeasured seconds first (JIT, pools). Load goes to 127.0.0.1
 * only; the run ends by itself (rounds × (variants + 1) × (warm-up + duration)).
 */
import { tmpdir } from "node:os";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { median, parseFlags } from "../bench/format.js";
import { defaultHttpThreads } from "../server/config-load.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import { loadRun } from "./measure.js";
import { runScript, startGateway, startUpstreams, threadCpuMs, type Proc } from "./procs.js";

/** The variants: each changes one setting of the load-test gateway. */
export const VARIANTS: readonly { name: string; what: string; env: Record<string, string> }[] = [
  { name: "defaults", what: "the load-test gateway: client keys, info log line, ledger, metrics", env: {} },
  { name: "no request log line", what: "LOG_LEVEL=warn", env: { LOG_LEVEL: "warn" } },
  { name: "no client keys", what: "GATEWAY_API_KEYS unset (no key hash, no key id in the row)", env: { GATEWAY_API_KEYS: "" } },
  { name: "one acceptor thread", what: "HTTP_THREADS=1", env: { HTTP_THREADS: "1" } },
  {
    name: "all three",
    what: "LOG_LEVEL=warn, no client keys, HTTP_THREADS=1: what is left is the pipeline, ledger row, metrics and relay",
    env: { LOG_LEVEL: "warn", GATEWAY_API_KEYS: "", HTTP_THREADS: "1" },
  },
];

export interface AblationRow {
  name: string;
  what: string;
  /** Medians over the rounds. */
  req_per_s: number;
  cpu_us_per_req: number;
  acceptors_us_per_req: number;
  main_us_per_req: number;
  other_threads_us_per_req: number;
  non_2xx: number;
}

interface Sample {
  req_per_s: number;
  requests: number;
  non2xx: number;
  acceptors: number;
  main: number;
  other: number;
}

/**
 * One run against `port`, with `pid`'s CPU split by thread (ms per request): the `acceptors`
 * busiest threads other than the main one, or the main thread itself when it serves (the ceiling).
 */
async function measure(
  port: number,
  pid: number,
  acceptors: number | "main",
  connections: number,
  duration: number,
  warmup: number,
  rate: number | undefined,
): Promise<Sample> {
  const body = JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 64, messages: [{ role: "user", content: "hello" }] });
  // Unmeasured: the JIT compiles the hot path, the pools fill.
  if (warmup > 0) await loadRun({ name: "warm-up", port, pid: null, path: "/v1/messages", headers: HEADERS, body }, connections, warmup);
  const before = threadCpuMs(pid);
  const r = await loadRun({ name: "x", port, pid: null, path: "/v1/messages", headers: HEADERS, body }, connections, duration, rate);
  const after = threadCpuMs(pid);
  const used: { tid: number; ms: number }[] = [];
  for (const [tid, ms] of after) used.push({ tid, ms: ms - (before.get(tid) ?? 0) });
  used.sort((a, b) => b.ms - a.ms);
  let acc = 0;
  let main = 0;
  let other = 0;
  let taken = 0;
  for (const u of used) {
    if (u.tid === pid) {
      if (acceptors === "main") acc += u.ms;
      else main += u.ms;
    } else if (acceptors !== "main" && taken < acceptors) {
      acc += u.ms;
      taken++;
    } else other += u.ms;
  }
  const n = Math.max(1, r.requests);
  const non2xx = Object.entries(r.statuses).reduce((s, [k, v]) => (k.startsWith("2") ? s : s + v), 0) + r.errors;
  return { req_per_s: r.req_per_s, requests: r.requests, non2xx, acceptors: acc / n, main: main / n, other: other / n };
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  for (const k of flags.keys())
    if (!["duration", "rounds", "connections", "warmup", "rate", "json"].includes(k))
      throw new Error(`unknown flag --${k} (known: --duration, --rounds, --connections, --warmup, --rate, --json)`);
  const duration = Number(flags.get("duration") ?? 6);
  const rounds = Number(flags.get("rounds") ?? 3);
  const connections = Number(flags.get("connections") ?? 50);
  const warmup = Number(flags.get("warmup") ?? 2);
  const rate = flags.has("rate") ? Number(flags.get("rate")) : undefined;
  if (rate !== undefined && (!Number.isInteger(rate) || rate < 1))
    throw new Error(`--rate must be a positive integer (got ${flags.get("rate")})`);
  for (const [k, v] of [
    ["duration", duration],
    ["rounds", rounds],
    ["connections", connections],
  ] as const)
    if (!Number.isInteger(v) || v < 1) throw new Error(`--${k} must be a positive integer (got ${flags.get(k)})`);
  if (!Number.isInteger(warmup) || warmup < 0) throw new Error(`--warmup must be 0 or a positive integer (got ${flags.get("warmup")})`);
  const threads = defaultHttpThreads();
  const procs: Proc[] = [];
  const dir = mkdtempSync(join(tmpdir(), "portcullis-ablate-"));
  const samples = new Map<string, Sample[]>([["ceiling", []], ...VARIANTS.map((v) => [v.name, []] as [string, Sample[]])]);
  try {
    const up = await startUpstreams(procs);
    const gwScript = fileURLToPath(new URL("../server/main.js", import.meta.url));
    for (let round = 0; round < rounds; round++) {
      process.stderr.write(`round ${round + 1}/${rounds}: ceiling`);
      samples.get("ceiling")!.push(await measure(up.ceiling.port, up.ceiling.child.pid!, "main", connections, duration, warmup, rate));
      for (const v of VARIANTS) {
        process.stderr.write(`, ${v.name}`);
        const vdir = mkdtempSync(join(dir, "gw-"));
        const env = gatewayEnv({
          mockPort: up.mock.port,
          streamPort: up.sse.port,
          dir: vdir,
          threads: null,
          logFile: join(vdir, "gw.log"),
          extra: v.env,
        });
        const gw = await startGateway(gwScript, env);
        try {
          const acceptors = v.env.HTTP_THREADS === undefined ? threads : Number(v.env.HTTP_THREADS);
          samples.get(v.name)!.push(await measure(gw.port, gw.child.pid!, acceptors, connections, duration, warmup, rate));
        } finally {
          await gw.stop();
        }
      }
      process.stderr.write("\n");
    }
  } finally {
    for (const p of procs.reverse()) await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  const row = (name: string, what: string): AblationRow => {
    const s = samples.get(name)!;
    return {
      name,
      what,
      req_per_s: Math.round(median(s.map((x) => x.req_per_s))),
      cpu_us_per_req: round1(median(s.map((x) => (x.acceptors + x.main + x.other) * 1000))),
      acceptors_us_per_req: round1(median(s.map((x) => x.acceptors * 1000))),
      main_us_per_req: round1(median(s.map((x) => x.main * 1000))),
      other_threads_us_per_req: round1(median(s.map((x) => x.other * 1000))),
      non_2xx: s.reduce((a, x) => a + x.non2xx, 0),
    };
  };
  const rows = [row("ceiling", "bare uWS + undici pass-through (one thread)"), ...VARIANTS.map((v) => row(v.name, v.what))];
  const ceiling = rows[0]!;
  const base = rows[1]!;
  const out = { duration_s: duration, warmup_s: warmup, rounds, connections, rate: rate ?? null, http_threads_default: threads, rows };
  console.log(
    `small body, ${connections} connections, ${rate === undefined ? "full speed" : `${rate} req/s`}, ${duration} s × ${rounds} interleaved rounds (medians); HTTP_THREADS default here: ${threads}\n`,
  );
  console.log("| variant | req/s | ÷ ceiling | CPU µs/req | vs defaults | acceptors | main | other threads | non-2xx |");
  console.log("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const r of rows) {
    const delta =
      r === ceiling
        ? ""
        : r === base
          ? "0"
          : `${r.cpu_us_per_req - base.cpu_us_per_req > 0 ? "+" : ""}${round1(r.cpu_us_per_req - base.cpu_us_per_req)}`;
    console.log(
      `| ${r.name} | ${r.req_per_s} | ${(r.req_per_s / ceiling.req_per_s).toFixed(2)} | ${r.cpu_us_per_req} | ${delta} | ${r.acceptors_us_per_req} | ${r.main_us_per_req} | ${r.other_threads_us_per_req} | ${r.non_2xx} |`,
    );
  }
  const json = flags.get("json");
  if (json !== undefined) writeFileSync(json, `${JSON.stringify(out, null, 2)}\n`);
  const bad = rows.filter((r) => r.non_2xx > 0);
  if (bad.length > 0) throw new Error(`non-2xx responses in ${bad.map((r) => r.name).join(", ")}: the numbers are not comparable`);
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

runScript(import.meta.url, "ablate", main);
