/**
 * One autocannon run against one target, with the target process's CPU time and RSS, and
 * the concurrency-1 latency probe. Latencies come from autocannon's per-response event
 * (ms, sub-ms resolution), split into 2xx and the rest, so an overload run can report the
 * p99 of admitted requests alone.
 */
import autocannon from "autocannon";
import { Client } from "undici";
import { cpuMs, rssBytes } from "./procs.js";
import { percentile } from "./stats.js";

export interface Target {
  /** e.g. "direct", "ceiling", "gateway" */
  name: string;
  port: number;
  /** The process whose CPU and RSS are charged to this target (null: none). */
  pid: number | null;
  path: string;
  headers: Record<string, string>;
  body: string;
}

export interface RunResult {
  target: string;
  connections: number;
  duration_s: number;
  requests: number;
  req_per_s: number;
  p50_ms: number;
  p99_ms: number;
  /** p99 over 2xx responses only. */
  p99_2xx_ms: number;
  statuses: Record<string, number>;
  errors: number;
  timeouts: number;
  cpu_ms: number;
  cpu_ms_per_req: number;
  rss_after_bytes: number;
}

/** `rate`: requests per second over all connections (autocannon's overallRate); unset: as fast as the target answers. */
export async function loadRun(t: Target, connections: number, durationS: number, rate?: number): Promise<RunResult> {
  const all: number[] = [];
  const ok: number[] = [];
  const statuses: Record<string, number> = {};
  const cpu0 = t.pid === null ? NaN : cpuMs(t.pid);
  const t0 = performance.now();
  const inst = autocannon({
    url: `http://127.0.0.1:${t.port}${t.path}`,
    connections,
    duration: durationS,
    pipelining: 1,
    timeout: 10,
    method: "POST",
    headers: t.headers,
    body: t.body,
    ...(rate === undefined ? {} : { overallRate: rate }),
  });
  inst.on("response", (_client: unknown, status: number, _bytes: number, ms: number) => {
    all.push(ms);
    if (status >= 200 && status < 300) ok.push(ms);
    statuses[status] = (statuses[status] ?? 0) + 1;
  });
  const r = await inst;
  const wall = (performance.now() - t0) / 1000;
  const cpu = t.pid === null ? NaN : cpuMs(t.pid) - cpu0;
  all.sort((a, b) => a - b);
  ok.sort((a, b) => a - b);
  const n = all.length;
  return {
    target: t.name,
    connections,
    duration_s: durationS,
    requests: n,
    req_per_s: n / Math.min(wall, r.duration || wall),
    p50_ms: percentile(all, 0.5),
    p99_ms: percentile(all, 0.99),
    p99_2xx_ms: percentile(ok, 0.99),
    statuses,
    errors: r.errors,
    timeouts: r.timeouts,
    cpu_ms: cpu,
    cpu_ms_per_req: cpu / Math.max(1, n),
    rss_after_bytes: t.pid === null ? NaN : rssBytes(t.pid),
  };
}

/**
 * Concurrency 1: `perBlock` sequential requests per target per block, targets interleaved
 * block by block, over one keep-alive connection each. Returns every latency in µs.
 */
export async function sequentialLatencies(targets: readonly Target[], blocks: number, perBlock: number): Promise<Map<string, number[]>> {
  const clients = new Map(targets.map((t) => [t.name, new Client(`http://127.0.0.1:${t.port}`, { pipelining: 1 })]));
  const out = new Map<string, number[]>(targets.map((t) => [t.name, []]));
  try {
    for (let b = -1; b < blocks; b++) {
      for (const t of targets) {
        const c = clients.get(t.name)!;
        for (let i = 0; i < perBlock; i++) {
          const s = process.hrtime.bigint();
          const res = await c.request({ path: t.path, method: "POST", headers: t.headers, body: t.body });
          await res.body.arrayBuffer();
          const us = Number(process.hrtime.bigint() - s) / 1000;
          if (res.statusCode !== 200) throw new Error(`${t.name}: status ${res.statusCode} at concurrency 1`);
          if (b >= 0) out.get(t.name)!.push(us); // block -1 warms up
        }
      }
    }
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()));
  }
  return out;
}
