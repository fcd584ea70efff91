/**
 * Where the gateway's memory goes, per V8 isolate, at idle and after load:
 *
 *   node dist/loadtest/memory.js [--threads N] [--duration 8] [--connections 50] [--settle 15] [--env K=V,K=V] [--snapshots DIR]
 *
 * Starts the mock, the 50-event SSE upstream and one gateway as `npm run loadtest` does
 * (loadtest/gateway-env.ts), with loadtest/heap-probe.cjs preloaded into every thread. It
 * samples idle, runs the small body, the 103 KB body and the SSE reply back to back, scrapes
 * /metrics once (so the metrics render thread has worked), waits `--settle` seconds and
 * samples again. Prints each isolate's heap (V8's committed size, used size, young
 * generation) and the process's RSS, and how much of it no V8 heap accounts for (native
 * code, uWS and undici buffers, SQLite, malloc arenas), then the RSS by kind of mapping
 * (/proc/PID/smaps: files, V8 pages, malloc arenas, JIT code, stacks). Bounded: a few load runs of
 * `--duration` seconds. `--env` adds gateway settings (e.g. MALLOC_ARENA_MAX=2) to compare;
 * `--snapshots DIR` writes each thread's heap snapshot there after the final full GC.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { claudeCodeRequestText, smallRequest } from "../bench/fixture.js";
import { bytes, markdownTable, parseFlags } from "../bench/format.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import { loadRun, type Target } from "./measure.js";
import { startGateway, startPortPrinter, type Proc, runScript } from "./procs.js";

/** One line of loadtest/heap-probe.cjs. */
export interface ProbeLine {
  at: number;
  thread: number;
  role: string;
  heap_total: number;
  heap_used: number;
  external: number;
  spaces: Record<string, number>;
  rss?: number;
  rss_peak?: number;
  rss_anon?: number;
  /** Sampled right after a forced full GC. */
  gc?: boolean;
}

export interface IsolateRow {
  role: string;
  thread: number;
  idle: ProbeLine | null;
  after: ProbeLine | null;
  /** After a forced full GC, once the run is over: what is really held. */
  collected: ProbeLine | null;
}

/** Each thread's last sample at or before `at` (null: it had not reported by then). */
export function lastSamples(lines: readonly ProbeLine[], at: number): Map<number, ProbeLine> {
  const out = new Map<number, ProbeLine>();
  for (const l of lines) {
    if (l.at > at) continue;
    const prev = out.get(l.thread);
    if (prev === undefined || l.at >= prev.at) out.set(l.thread, l);
  }
  return out;
}

/** One row per thread seen in either moment, by thread id (the main thread is 0). */
export function isolateRows(lines: readonly ProbeLine[], idleAt: number, afterAt: number): IsolateRow[] {
  const idle = lastSamples(lines, idleAt);
  const after = lastSamples(lines, afterAt);
  const collected = new Map<number, ProbeLine>();
  for (const l of lines) if (l.gc === true && l.at > afterAt) collected.set(l.thread, l);
  const threads = [...new Set([...idle.keys(), ...after.keys()])].sort((a, b) => a - b);
  return threads.map((t) => {
    const l = (after.get(t) ?? idle.get(t))!;
    return { role: l.role, thread: t, idle: idle.get(t) ?? null, after: after.get(t) ?? null, collected: collected.get(t) ?? null };
  });
}

const young = (l: ProbeLine | null): number => (l === null ? NaN : (l.spaces.new_space ?? 0) + (l.spaces.new_large_object_space ?? 0));
const pair = (a: number, b: number): string => `${bytes(a)} → ${bytes(b)}`;

/** The report: one row per isolate, the sum, and the process's RSS with the part no V8 heap holds. */
export function memoryTable(rows: readonly IsolateRow[]): string {
  const sum = (pick: (r: IsolateRow) => ProbeLine | null, f: (l: ProbeLine) => number) =>
    rows.reduce((a, r) => {
      const l = pick(r);
      return a + (l === null ? 0 : f(l));
    }, 0);
  const body = rows.map((r) => [
    `${r.role} (thread ${r.thread})`,
    pair(r.idle?.heap_total ?? NaN, r.after?.heap_total ?? NaN),
    pair(r.idle?.heap_used ?? NaN, r.after?.heap_used ?? NaN),
    pair(young(r.idle), young(r.after)),
    pair(r.idle?.external ?? NaN, r.after?.external ?? NaN),
    `${bytes(r.collected?.heap_used ?? NaN)} / ${bytes(r.collected?.external ?? NaN)}`,
  ]);
  const totalIdle = sum(
    (r) => r.idle,
    (l) => l.heap_total,
  );
  const totalAfter = sum(
    (r) => r.after,
    (l) => l.heap_total,
  );
  body.push([
    "**all isolates**",
    pair(totalIdle, totalAfter),
    pair(
      sum(
        (r) => r.idle,
        (l) => l.heap_used,
      ),
      sum(
        (r) => r.after,
        (l) => l.heap_used,
      ),
    ),
    pair(
      sum((r) => r.idle, young),
      sum((r) => r.after, young),
    ),
    "",
    `${bytes(
      sum(
        (r) => r.collected,
        (l) => l.heap_used,
      ),
    )} / ${bytes(
      sum(
        (r) => r.collected,
        (l) => l.external,
      ),
    )}`,
  ]);
  const main = rows.find((r) => r.role === "main");
  const rssIdle = main?.idle?.rss ?? NaN;
  const rssAfter = main?.after?.rss ?? NaN;
  body.push([
    "**process RSS**",
    pair(rssIdle, rssAfter),
    `peak ${bytes(main?.after?.rss_peak ?? NaN)}`,
    "",
    "",
    `RSS ${bytes(main?.collected?.rss ?? NaN)}`,
  ]);
  body.push(["RSS not in any V8 heap", pair(rssIdle - totalIdle, rssAfter - totalAfter), "", "", "", ""]);
  return markdownTable(
    ["isolate", "heap committed idle → after", "heap used", "young generation", "external (buffers)", "after a full GC: used / external"],
    body,
  );
}

/** Where a process's resident memory is, by kind of mapping (bytes of RSS), from /proc/PID/smaps. */
export type SmapsKinds = Record<(typeof SMAPS_KINDS)[number], number>;
export const SMAPS_KINDS = [
  "files (node binary, libraries)",
  "V8 heap pages (256 KiB)",
  "malloc arenas",
  "JIT code",
  "thread stacks (8 MiB)",
  "other anonymous (mmap'd buffers, shared memory)",
] as const;

/**
 * Classifies smaps mappings: file-backed; anonymous 256 KiB mappings (V8's regular pages);
 * glibc's malloc arenas (`[heap]`, and the per-thread heaps, which glibc aligns to their 64 MiB
 * reservation); executable anonymous memory (V8's code); 8 MiB stacks; the rest.
 */
export function smapsKinds(smaps: string): SmapsKinds {
  const out = Object.fromEntries(SMAPS_KINDS.map((k) => [k, 0])) as SmapsKinds;
  let kind: (typeof SMAPS_KINDS)[number] | null = null;
  for (const l of smaps.split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(l);
    if (m !== null) {
      const start = BigInt(`0x${m[1]}`);
      const size = Number(BigInt(`0x${m[2]}`) - start);
      const [perms, name] = [m[3]!, m[4]!];
      if (name.startsWith("/")) kind = SMAPS_KINDS[0];
      else if (name === "[heap]" || (perms.startsWith("rw") && name === "" && start % (64n << 20n) === 0n)) kind = SMAPS_KINDS[2];
      else if (name !== "") kind = SMAPS_KINDS[5];
      else if (perms.includes("x")) kind = SMAPS_KINDS[3];
      else if (size === 256 * 1024) kind = SMAPS_KINDS[1];
      else if (size === 8 * 1024 * 1024) kind = SMAPS_KINDS[4];
      else kind = SMAPS_KINDS[5];
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(l);
    if (rss !== null && kind !== null) out[kind] += Number(rss[1]) * 1024;
  }
  return out;
}

/** The RSS by kind of mapping at two moments. */
export function smapsTable(idle: SmapsKinds, after: SmapsKinds): string {
  const sum = (k: SmapsKinds) => Object.values(k).reduce((a, b) => a + b, 0);
  return markdownTable(
    ["resident memory by mapping", "idle → after"],
    [...SMAPS_KINDS.map((k) => [k, pair(idle[k], after[k])]), ["**total**", pair(sum(idle), sum(after))]],
  );
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const threads = flags.has("threads") ? Number(flags.get("threads")) : null;
  const duration = Number(flags.get("duration") ?? 8);
  const connections = Number(flags.get("connections") ?? 50);
  const settle = Number(flags.get("settle") ?? 15);
  const extra: Record<string, string> = {};
  for (const kv of (flags.get("env") ?? "").split(",").filter((s) => s.includes("="))) {
    const i = kv.indexOf("=");
    extra[kv.slice(0, i)] = kv.slice(i + 1);
  }
  const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), "portcullis-memory-"));
  const probeFile = join(dir, "heap.jsonl");
  const gcFile = join(dir, "gc-now");
  const procs: Proc[] = [];
  const log = (s: string) => process.stderr.write(`${s}\n`);
  try {
    const mock = await startPortPrinter("mock", here("./mock-upstream.js"), ["--port", "0"]);
    procs.push(mock);
    const sse = await startPortPrinter("stream-upstream", here("./stream-upstream.js"), ["--port", "0", "--events", "50"]);
    procs.push(sse);
    const probe = fileURLToPath(new URL("../../loadtest/heap-probe.cjs", import.meta.url));
    const env = gatewayEnv({ mockPort: mock.port, streamPort: sse.port, dir, threads, logFile: join(dir, "gateway.log"), extra });
    const gw = await startGateway(here("../server/main.js"), {
      ...env,
      NODE_OPTIONS: `--require=${probe} --expose-gc`,
      HEAP_PROBE_GC_FILE: gcFile,
      ...(flags.has("snapshots") ? { HEAP_PROBE_SNAPSHOT_DIR: flags.get("snapshots")! } : {}),
      HEAP_PROBE_FILE: probeFile,
      HEAP_PROBE_MS: "500",
    });
    procs.push(gw);
    const mk = (body: string): Target => ({
      name: "gateway",
      port: gw.port,
      pid: gw.child.pid!,
      path: "/v1/messages",
      headers: HEADERS,
      body,
    });
    await new Promise((r) => setTimeout(r, 4000)); // start-up work (model lists, first GCs) settles
    const idleAt = Date.now();
    const smaps = () => smapsKinds(readFileSync(`/proc/${gw.child.pid}/smaps`, "utf8"));
    const smapsIdle = smaps();
    const bodies = [
      ["small", JSON.stringify(smallRequest())],
      ["103 KB", claudeCodeRequestText()],
      ["SSE", JSON.stringify({ ...smallRequest(), model: "claude-stream-sonnet", stream: true })],
    ] as const;
    for (const [name, body] of bodies) {
      const r = await loadRun(mk(body), connections, name === "small" ? duration : Math.max(2, duration / 2));
      log(
        `memory: ${name} ${Math.round(r.req_per_s)} req/s, statuses ${JSON.stringify(r.statuses)}, CPU ${r.cpu_ms_per_req.toFixed(3)} ms/req`,
      );
    }
    const scrape = await fetch(`http://127.0.0.1:${gw.port}/metrics/prometheus`);
    log(`memory: /metrics/prometheus ${scrape.status}, ${(await scrape.text()).length} bytes`);
    // Idle again: what stays. V8's memory reducer looks ~8 s after the last full GC.
    await new Promise((r) => setTimeout(r, settle * 1000));
    const afterAt = Date.now();
    const smapsAfter = smaps();
    writeFileSync(gcFile, "");
    // Every thread samples once more, after a full GC (and writes its snapshot: slower).
    await new Promise((r) => setTimeout(r, flags.has("snapshots") ? 15_000 : 2000));
    await gw.stop();
    const lines = readFileSync(probeFile, "utf8")
      .split("\n")
      .filter((l) => l !== "")
      .map((l) => JSON.parse(l) as ProbeLine);
    process.stdout.write(`${memoryTable(isolateRows(lines, idleAt, afterAt))}\n\n${smapsTable(smapsIdle, smapsAfter)}\n`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(import.meta.url, "memory", main);
