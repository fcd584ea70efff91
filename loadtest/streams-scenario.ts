/**
 * The long-streams scenario of `npm run loadtest -- --streams 1000,5000` (issue 12): for each
 * N, N concurrent slow streams (loadtest/streams.ts) through the upstream directly, the
 * ceiling, the gateway at its defaults and a gateway sized for N; with `--slow-readers SHARE`
 * the same N again with that share of clients reading slowly. Its own processes: a slow
 * stream upstream, a ceiling in front of it, the two gateways. Also runnable alone, printing
 * its tables and writing nothing:
 *
 *   node dist/loadtest/streams-scenario.js --streams 1000 [--slow-readers 0.02] [--threads N] [--targets gateway,ceiling]
 *   node dist/loadtest/streams-scenario.js --streams 1000,10000 --h2 [--targets gateway_h2,gateway_h1]
 *
 * `--h2` swaps the upstream for the HTTP/2 one over TLS (loadtest/stream-upstream-h2.ts) and
 * the targets for a gateway speaking h2 to it and one speaking HTTP/1.1, both sized for N.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { smallRequest } from "../bench/fixture.js";
import { bytes, fmt, markdownTable, parseFlags } from "../bench/format.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import type { Target } from "./measure.js";
import { startGateway, startPortPrinter, type Proc, runScript } from "./procs.js";
import { SLOW_HOLD_MS, streamsRun, type StreamsResult } from "./streams.js";
import { h2GatewayExtra, startH2Upstream } from "./upstream-h2.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** The soft open-file limit this process (and the children it starts) runs with. */
export function openFileLimit(): number {
  const m = /Max open files\s+(\d+)/.exec(readFileSync("/proc/self/limits", "utf8"));
  return m === null ? Infinity : Number(m[1]);
}

export interface ScenarioEnv {
  dir: string;
  mockPort: number;
  threads: number | null;
  rateLimits: boolean;
}

/** Runs every N of `--streams`; started processes are appended to `procs` (the caller stops them). */
export async function streamsScenario(
  flags: Map<string, string>,
  procs: Proc[],
  env: ScenarioEnv,
  log: (s: string) => void,
): Promise<StreamsResult[]> {
  const streams: StreamsResult[] = [];
  const counts = flags.get("streams")!.split(",").map(Number);
  const events = Number(flags.get("stream-events") ?? 20);
  const interval = Number(flags.get("stream-interval") ?? 500);
  const life = (events * interval) / 1000;
  const slowShare = Number(flags.get("slow-readers") ?? 0);
  const max = Math.max(...counts);
  // `--h2`: the stream upstream speaks HTTP/2 over TLS, met by a gateway with UPSTREAM_HTTP2=auto
  // and one with =off (both sized for N); no direct or ceiling target (HTTP/1.1 only).
  if (flags.has("h2")) return h2Scenario(flags, procs, env, log, counts, events, interval);
  const slow = await startPortPrinter("slow-stream-upstream", here("./stream-upstream.js"), [
    "--port",
    "0",
    "--events",
    String(events),
    "--interval",
    String(interval),
    "--bulk-bytes",
    String(Number(flags.get("slow-bytes") ?? 16 * 1024 * 1024)),
  ]);
  procs.push(slow);
  const ceilingSlow = await startPortPrinter("ceiling-slow", here("./ceiling.js"), [
    "--port",
    "0",
    "--upstream",
    `http://127.0.0.1:${slow.port}`,
    "--connections",
    String(max),
  ]);
  procs.push(ceilingSlow);
  const gw = (file: string, extra: Record<string, string> = {}) =>
    startGateway(here("../server/main.js"), gatewayEnv({ ...env, streamPort: slow.port, logFile: join(env.dir, file), extra }));
  const gwDefault = await gw("gateway-streams.log");
  procs.push(gwDefault);
  // What a streaming pod needs: no upstream queue below the stream count, no shedding below it.
  const gwSized = await gw("gateway-streams-sized.log", {
    UPSTREAM_CONNECTIONS: String(max),
    LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD: String(2 * max),
  });
  procs.push(gwSized);
  const body = JSON.stringify({ ...smallRequest(), model: "claude-stream-slow", stream: true });
  const slowBody = JSON.stringify({ ...smallRequest(), model: "claude-stream-bulk", stream: true });
  const mk = (name: string, p: Proc): Target => ({
    name,
    port: p.port,
    pid: p.child.pid ?? null,
    path: "/v1/messages",
    headers: HEADERS,
    body,
  });
  const only = flags.get("targets")?.split(",") ?? null;
  const targets = [mk("direct", slow), mk("ceiling", ceilingSlow), mk("gateway", gwDefault), mk("gateway_sized", gwSized)].filter(
    (t) => only === null || only.includes(t.name),
  );
  for (const n of counts) {
    const bound = Math.ceil(life * 3 + 30);
    for (const t of fitting(targets, n, log)) {
      const r = await streamsRun(t, n, events, interval, bound);
      streams.push(r);
      log(
        `  streams ${n} ${t.name}: ${r.completed} completed, ${r.errors} errors ${JSON.stringify(r.statuses)}, first event max ${fmt(r.first_event_max_ms)} ms, relay delay p99 ${fmt(r.relay_delay_p99_ms)} ms, ${bytes(r.rss_per_stream_bytes)}/stream, ${fmt(r.cpu_ms_per_s_held)} CPU ms/s held`,
      );
    }
    // The same N with a share of slow readers (the sized gateway adds nothing here).
    const count = Math.round(slowShare * n);
    if (count === 0) continue;
    const slowReaders = { count, body: slowBody, upstreamPort: slow.port };
    for (const t of fitting(targets, n, () => {}).filter((x) => x.name !== "gateway_sized")) {
      const r = await streamsRun(t, n, events, interval, bound, slowReaders);
      streams.push(r);
      log(
        `  streams ${n} ${t.name} with ${count} slow readers: fast ${r.completed} completed, ${r.errors} errors, relay delay p99 ${fmt(r.relay_delay_p99_ms)} ms; slow ${r.slow_completed} completed, ${r.slow_errors} errors, upstream wrote ${bytes(r.slow_upstream_sent_bytes)} per slow stream while held, ${bytes(r.rss_per_slow_reader_bytes)} RSS per slow reader`,
      );
    }
  }
  await Promise.all([gwDefault.stop(), gwSized.stop()]);
  return streams;
}

/**
 * The targets whose process can hold N streams under this process's open-file limit (the
 * children inherit it): a relay over HTTP/1.1 holds two sockets per stream (client and
 * upstream), one over h2 (the upstream streams share a few connections), the upstream
 * directly one; this process holds one per stream. The others are skipped with the reason.
 */
function fitting(targets: readonly Target[], n: number, log: (s: string) => void): Target[] {
  const fds = openFileLimit();
  return targets.filter((t) => {
    const perStream = t.name === "direct" || t.name === "gateway_h2" ? 1 : 2;
    if (perStream * n + 1024 <= fds) return true;
    log(
      `  streams ${n} ${t.name}: skipped, the open-file limit (${fds}) is below ${perStream} × ${n} + 1024; raise it (npm run loadtest does, to the hard limit)`,
    );
    return false;
  });
}

/** `--h2`: N streams through a gateway speaking h2 to the upstream, and one speaking HTTP/1.1 to the same upstream. */
async function h2Scenario(
  flags: Map<string, string>,
  procs: Proc[],
  env: ScenarioEnv,
  log: (s: string) => void,
  counts: number[],
  events: number,
  interval: number,
): Promise<StreamsResult[]> {
  const max = Math.max(...counts);
  const up = await startH2Upstream(env.dir, ["--port", "0", "--events", String(events), "--interval", String(interval)]);
  procs.push(up.proc);
  const gw = async (name: string, extra: Record<string, string>): Promise<Target> => {
    const p = await startGateway(
      here("../server/main.js"),
      gatewayEnv({
        ...env,
        streamPort: up.proc.port,
        logFile: join(env.dir, `${name}.log`),
        extra: { ...h2GatewayExtra(env.dir, up.proc.port, up.cert), LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD: String(2 * max), ...extra },
      }),
    );
    procs.push(p);
    const body = JSON.stringify({ ...smallRequest(), model: "claude-stream-slow", stream: true });
    return { name, port: p.port, pid: p.child.pid ?? null, path: "/v1/messages", headers: HEADERS, body };
  };
  const only = flags.get("targets")?.split(",") ?? ["gateway_h2", "gateway_h1"];
  const targets: Target[] = [];
  if (only.includes("gateway_h2")) targets.push(await gw("gateway_h2", { UPSTREAM_HTTP2: "auto" }));
  if (only.includes("gateway_h1")) targets.push(await gw("gateway_h1", { UPSTREAM_HTTP2: "off", UPSTREAM_CONNECTIONS: String(max) }));
  if (flags.has("slow-readers")) log("  --slow-readers: not run with --h2");
  const out: StreamsResult[] = [];
  for (const n of counts) {
    for (const t of fitting(targets, n, log)) {
      const r = await streamsRun(t, n, events, interval, Math.ceil(((events * interval) / 1000) * 3 + 30));
      out.push(r);
      log(
        `  streams ${n} ${t.name}: ${r.completed} completed, ${r.errors} errors ${JSON.stringify(r.statuses)}, first event max ${fmt(r.first_event_max_ms)} ms, relay delay p50 / p99 ${fmt(r.relay_delay_p50_ms)} / ${fmt(r.relay_delay_p99_ms)} ms, ${bytes(r.rss_per_stream_bytes)}/stream, ${fmt(r.cpu_ms_per_s_held)} CPU ms/s held, ${fmt(r.wall_s)} s`,
      );
    }
  }
  return out;
}

/** The scenario's markdown tables (none when it did not run). */
export function streamsReport(streams: readonly StreamsResult[]): string[] {
  const out: string[] = [];
  if (streams.length === 0) return out;
  out.push(
    `### Long streams: N concurrent slow streams (${streams[0]!.events_per_stream} events, ${streams[0]!.interval_ms} ms apart)`,
    "",
  );
  out.push(
    markdownTable(
      [
        "N",
        "target",
        "completed",
        "errors",
        "statuses",
        "first event p50 / max ms",
        "relay delay p50 / p99 ms",
        "RSS per stream",
        "CPU ms/s held",
      ],
      streams.map((r) => [
        String(r.streams),
        r.slow_readers === 0 ? r.target : `${r.target}, ${r.slow_readers} slow`,
        String(r.completed),
        String(r.errors),
        JSON.stringify(r.statuses),
        `${fmt(r.first_event_p50_ms)} / ${fmt(r.first_event_max_ms)}`,
        `${fmt(r.relay_delay_p50_ms)} / ${fmt(r.relay_delay_p99_ms)}`,
        bytes(r.rss_per_stream_bytes),
        fmt(r.cpu_ms_per_s_held),
      ]),
    ),
    "",
  );
  const slowRows = streams.filter((r) => r.slow_readers > 0);
  if (slowRows.length === 0) return out;
  out.push(
    `### Slow readers: a share of the N clients read nothing for ${Math.min(SLOW_HOLD_MS, slowRows[0]!.events_per_stream * slowRows[0]!.interval_ms) / 1000} s, then the rest (${bytes(slowRows[0]!.slow_stream_bytes)} each)`,
    "",
  );
  out.push(
    markdownTable(
      [
        "N",
        "target",
        "slow readers",
        "completed / errors",
        "upstream wrote per slow stream while held",
        "RSS per slow reader",
        "others' relay delay p50 / p99 ms",
      ],
      slowRows.map((r) => [
        String(r.streams),
        r.target,
        String(r.slow_readers),
        `${r.slow_completed} / ${r.slow_errors}`,
        bytes(r.slow_upstream_sent_bytes),
        bytes(r.rss_per_slow_reader_bytes),
        `${fmt(r.relay_delay_p50_ms)} / ${fmt(r.relay_delay_p99_ms)}`,
      ]),
    ),
    "",
  );
  return out;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (!flags.has("streams")) throw new Error("--streams N[,N…] is required");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-streams-"));
  const procs: Proc[] = [];
  const log = (s: string) => process.stderr.write(`${s}\n`);
  try {
    // The gateway's default provider; the streams go to the stream upstream by route.
    const mock = await startPortPrinter("mock", here("./mock-upstream.js"), ["--port", "0"]);
    procs.push(mock);
    const threads = flags.has("threads") ? Number(flags.get("threads")) : null;
    const streams = await streamsScenario(flags, procs, { dir, mockPort: mock.port, threads, rateLimits: false }, log);
    process.stdout.write(`${streamsReport(streams).join("\n")}\n`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(import.meta.url, "streams", main);
