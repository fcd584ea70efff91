/**
 * `node dist/bench/observe-load.js [--duration 4] [--rounds 2] [--refreshes 50]`
 *
 * What observing costs, measured on real processes (a targeted, short run; not part of
 * `npm test`): the gateway's throughput with tracing off and on (an OTLP/HTTP receiver in
 * this process accepts and discards the spans), rounds interleaved, as a paired ratio, with
 * the main thread's share of the CPU (where spans are built and exported); and
 * the gateway's CPU per dashboard refresh (GET /dashboard/data, rendered in its worker).
 */
import { createServer } from "node:http";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { smallRequest } from "./fixture.js";
import { markdownTable, median, parseFlags } from "./format.js";
import { loadRun, type Target } from "../loadtest/measure.js";
import { cpuMs, startGateway, startPortPrinter } from "../loadtest/procs.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const KEY = "sk-observe-bench-key-01";
const ADMIN = "adm-observe-bench-0123456789";

/** utime + stime of the process's main thread (its tid is the pid), in ms. */
function mainThreadCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/task/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const duration = Number(flags.get("duration") ?? 4);
  const rounds = Number(flags.get("rounds") ?? 2);
  const refreshes = Number(flags.get("refreshes") ?? 50);
  let spans = 0;
  const receiver = createServer((req, res) => {
    req.on("data", () => {});
    req.on("end", () => {
      spans++;
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
  const rport = (receiver.address() as { port: number }).port;
  const mock = await startPortPrinter("mock", here("../loadtest/mock-upstream.js"), ["--port", "0"]);
  const base = {
    ANTHROPIC_API_BASE: `http://127.0.0.1:${mock.port}`,
    ANTHROPIC_API_KEY: "sk-upstream-bench-1",
    MODEL_PROVIDER: "anthropic",
    GATEWAY_API_KEYS: KEY,
    HTTP_THREADS: "1",
    LOG_LEVEL: "warn",
    ADMIN_API_KEY: ADMIN,
    DATABASE_PATH: ":memory:",
  };
  const off = await startGateway(here("../server/main.js"), base);
  const on = await startGateway(here("../server/main.js"), {
    ...base,
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${rport}`,
    OTEL_BSP_SCHEDULE_DELAY: "500",
  });
  const target = (name: string, port: number, pid: number): Target => ({
    name,
    port,
    pid,
    path: "/v1/messages",
    headers: { "content-type": "application/json", "x-api-key": KEY },
    body: JSON.stringify(smallRequest()),
  });
  const tOff = target("tracing off", off.port, off.child.pid!),
    tOn = target("tracing on", on.port, on.child.pid!);
  const rows: { off: number; on: number; offCpu: number; onCpu: number; offMain: number; onMain: number }[] = [];
  const mainPerReq = async (t: Target) => {
    const m0 = mainThreadCpuMs(t.pid!);
    const r = await loadRun(t, 20, duration);
    return { r, main: (mainThreadCpuMs(t.pid!) - m0) / Math.max(1, r.requests) };
  };
  try {
    for (let i = 0; i < rounds; i++) {
      const a = await mainPerReq(tOff);
      const b = await mainPerReq(tOn);
      rows.push({
        off: a.r.req_per_s,
        on: b.r.req_per_s,
        offCpu: a.r.cpu_ms_per_req,
        onCpu: b.r.cpu_ms_per_req,
        offMain: a.main,
        onMain: b.main,
      });
    }
    // Dashboard: a minute of ring data is there from the runs above; refresh back to back.
    const pid = off.child.pid!;
    const c0 = cpuMs(pid);
    for (let i = 0; i < refreshes; i++) {
      const r = await fetch(`http://127.0.0.1:${off.port}/dashboard/data`, { headers: { authorization: `Bearer ${ADMIN}` } });
      if (r.status !== 200) throw new Error(`dashboard data: ${r.status}`);
      await r.arrayBuffer();
    }
    const perRefresh = (cpuMs(pid) - c0) / refreshes;
    process.stdout.write(
      markdownTable(
        ["", "tracing off", "tracing on", "on / off"],
        [
          [
            "req/s (median of rounds)",
            median(rows.map((r) => r.off)).toFixed(0),
            median(rows.map((r) => r.on)).toFixed(0),
            median(rows.map((r) => r.on / r.off)).toFixed(3),
          ],
          [
            "gateway CPU ms per request",
            median(rows.map((r) => r.offCpu)).toFixed(4),
            median(rows.map((r) => r.onCpu)).toFixed(4),
            median(rows.map((r) => r.onCpu / r.offCpu)).toFixed(3),
          ],
          ["of which the main thread", median(rows.map((r) => r.offMain)).toFixed(4), median(rows.map((r) => r.onMain)).toFixed(4), ""],
          [
            "other threads (acceptor, V8 helpers, worker)",
            median(rows.map((r) => r.offCpu - r.offMain)).toFixed(4),
            median(rows.map((r) => r.onCpu - r.onMain)).toFixed(4),
            median(rows.map((r) => (r.onCpu - r.onMain) / (r.offCpu - r.offMain))).toFixed(3),
          ],
        ],
      ) + "\n",
    );
    process.stdout.write(`OTLP exports received: ${spans}\n`);
    process.stdout.write(`dashboard: ${perRefresh.toFixed(2)} ms of gateway CPU per GET /dashboard/data (${refreshes} refreshes)\n`);
  } finally {
    await Promise.all([off.stop(), on.stop(), mock.stop()]);
    receiver.close();
  }
}

main().catch((e) => {
  process.stderr.write(`observe-load: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
