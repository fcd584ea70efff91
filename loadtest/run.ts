/**
 * `npm run loadtest [-- --duration 10] [-- --rounds 3] [-- --threads N] [-- --quick]
 *                  [-- --soak SECONDS] [-- --streams 1000,5000 [--stream-events 40] [--stream-interval 500]
 *                  [--slow-readers 0.02] [--slow-bytes 16777216]] [-- --peers]`
 *
 * Scenarios, every process on 127.0.0.1 and every run bounded in time:
 *   (a) the mock upstream directly; (b) the bare uWS + undici pass-through (loadtest/ceiling.ts);
 *   (c) the gateway at its defaults (HTTP_THREADS from the CPUs it may use, unless --threads)
 *       with client keys, info logging to a file, the ledger (in a temp dir) and metrics on →
 *       the mock, and beside it the same gateway with HTTP_THREADS=1; (d) (c) with the 100 KB
 *       Claude Code body; (e) (c) streaming a 50-event SSE reply; (f) overload: many
 *       connections, tiny shedding threshold; plus the latency added at concurrency 1, the
 *       gateway's CPU per request and RSS (before, after, peak), an optional soak (RSS over
 *       time), the long-streams scenario with optional slow readers (loadtest/streams-scenario.ts)
 *       and, with --peers, Claude Code Router and Portkey installed on demand (loadtest/peers.ts).
 * Targets of a group run interleaved (direct, ceiling, gateway, direct, …) for N rounds;
 * the tables give medians and per-round paired ratios. Writes loadtest/results.json, the
 * chart docs/performance-chart.svg and the README's performance table from it.
 */
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from "node:fs";
import { cpus, tmpdir, totalmem, type as osType, release } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { claudeCodeRequestText, smallRequest } from "../bench/fixture.js";
import { bytes, fmt, markdownTable, median, parseFlags } from "../bench/format.js";
import { loadRun, sequentialLatencies, type RunResult, type Target } from "./measure.js";
import { peakRssBytes, rssBytes, startGateway, startPortPrinter, type Proc, runScript } from "./procs.js";
import { streamsReport, streamsScenario } from "./streams-scenario.js";
import { soakRun, type Soak } from "./soak.js";
import { writeChart } from "./chart.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import { installPeers, portkeyHeaders, startCcr, startPortkey } from "./peers.js";
import { refreshReadme } from "../bench/readme.js";
import { pairedRatio, shedStats, summarise, type Summary } from "./stats.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const MOCK = here("./mock-upstream.js");
const CEILING = here("./ceiling.js");
const STREAM = here("./stream-upstream.js");
const GATEWAY = here("../server/main.js");
export const RESULTS_PATH = fileURLToPath(new URL("../../loadtest/results.json", import.meta.url));

let rateLimits = false;
/** Target names of `--peers` (loadtest/peers.ts), each also reported as a ratio over the ceiling. */
const PEERS = ["ccr", "portkey"];

/** The gateway at its defaults plus client keys, info logging and a ledger of its own in `dir`. */
function gwEnv(
  mockPort: number,
  streamPort: number,
  dir: string,
  threads: number | null,
  logFile: string,
  extra: Record<string, string> = {},
): Record<string, string> {
  return gatewayEnv({ mockPort, streamPort, dir, threads, logFile, rateLimits, extra });
}

/** HTTP_THREADS as the gateway resolved it (its "listening" log line). */
function listeningThreads(logFile: string): number {
  const line = readFileSync(logFile, "utf8")
    .split("\n")
    .find((l) => l.includes('"msg":"listening"'));
  return line === undefined ? NaN : (JSON.parse(line) as { threads: number }).threads;
}

interface Group {
  id: string;
  title: string;
  targets: Target[];
  connections: number;
  duration: number;
  runs: Map<string, RunResult[]>;
}

async function runGroup(g: Group, rounds: number, log: (s: string) => void): Promise<void> {
  for (const t of g.targets) g.runs.set(t.name, []);
  for (let r = 0; r < rounds; r++) {
    for (const t of g.targets) {
      const res = await loadRun(t, g.connections, g.duration);
      g.runs.get(t.name)!.push(res);
      log(
        `  ${g.id} round ${r + 1}/${rounds} ${t.name}: ${fmt(res.req_per_s)} req/s, p99 ${fmt(res.p99_ms)} ms, statuses ${JSON.stringify(res.statuses)}`,
      );
    }
  }
}

function groupTable(g: Group): { md: string; summaries: Summary[]; ratios: Record<string, number> } {
  const summaries = g.targets.map((t) => summarise(t.name, g.runs.get(t.name)!));
  const gw = g.runs.get("gateway")!;
  const ratios: Record<string, number> = {};
  if (g.runs.has("ceiling")) ratios.gateway_over_ceiling = pairedRatio(gw, g.runs.get("ceiling")!);
  if (g.runs.has("direct")) ratios.gateway_over_direct = pairedRatio(gw, g.runs.get("direct")!);
  for (const other of ["gateway_1t", ...PEERS])
    if (g.runs.has(other) && g.runs.has("ceiling"))
      ratios[`${other}_over_ceiling`] = pairedRatio(g.runs.get(other)!, g.runs.get("ceiling")!);
  const md = markdownTable(
    ["target", "req/s (median)", "rounds req/s", "p50 ms", "p99 ms", "CPU ms/req", "non-2xx", "errors"],
    summaries.map((s) => [
      s.target,
      fmt(s.req_per_s),
      s.rounds_req_per_s.map((x) => fmt(x)).join(" / "),
      fmt(s.p50_ms),
      fmt(s.p99_ms),
      fmt(s.cpu_ms_per_req),
      String(Object.entries(s.statuses).reduce((a, [k, v]) => a + (k.startsWith("2") ? 0 : v), 0)),
      String(s.errors),
    ]),
  );
  const rt = Object.entries(ratios)
    .map(([k, v]) => `${k.replace(/_/g, " ")}: **${fmt(v * 100)}%**`)
    .join("; ");
  return { md: `${md}\n\n${rt} (median of per-round ratios)`, summaries, ratios };
}

/** How long the gateway idles after the load before "RSS after" is read. */
const IDLE_SETTLE_MS = 12_000;

const USAGE = `npm run loadtest [-- --duration 10] [-- --rounds 3] [-- --threads N] [-- --quick]
                 [-- --soak SECONDS] [-- --streams 1000,5000 [--stream-events 40] [--stream-interval 500]
                 [--slow-readers 0.02] [--slow-bytes 16777216]] [-- --peers]
Runs every scenario on 127.0.0.1 (bounded in time), then writes loadtest/results.json, the chart and the
README's performance table. docs/performance.md explains the scenarios and the targets.
`;

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  if (flags.has("help")) {
    process.stdout.write(USAGE);
    return;
  }
  const quick = flags.has("quick");
  const rounds = Number(flags.get("rounds") ?? (quick ? 1 : 3));
  const duration = Number(flags.get("duration") ?? (quick ? 3 : 10));
  const shortDuration = Math.max(2, Math.round(duration / 2));
  const threads = flags.has("threads") ? Number(flags.get("threads")) : null;
  const connections = Number(flags.get("connections") ?? 50);
  rateLimits = flags.has("rate-limits");
  const log = (s: string) => process.stderr.write(s + "\n");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-loadtest-"));
  const procs: Proc[] = [];
  // One shutdown, shared by the normal path, errors and Ctrl-C, so no child is orphaned.
  let stopping: Promise<void> | null = null;
  const stopAll = (): Promise<void> => (stopping ??= Promise.all(procs.map((p) => p.stop())).then(() => undefined));
  process.once("SIGINT", () => void stopAll().finally(() => process.exit(130)));

  try {
    const mock = await startPortPrinter("mock", MOCK, ["--port", "0"]);
    procs.push(mock);
    const sse = await startPortPrinter("stream-upstream", STREAM, ["--port", "0", "--events", "50"]);
    procs.push(sse);
    const ceiling = await startPortPrinter("ceiling", CEILING, ["--port", "0", "--upstream", `http://127.0.0.1:${mock.port}`]);
    procs.push(ceiling);
    const ceilingSse = await startPortPrinter("ceiling-sse", CEILING, ["--port", "0", "--upstream", `http://127.0.0.1:${sse.port}`]);
    procs.push(ceilingSse);
    const gwLog = join(dir, "gateway.log");
    const gw = await startGateway(GATEWAY, gwEnv(mock.port, sse.port, dir, threads, gwLog));
    procs.push(gw);
    const gw1 = await startGateway(GATEWAY, gwEnv(mock.port, sse.port, dir, 1, join(dir, "gateway-1t.log")));
    procs.push(gw1);
    const gwPid = gw.child.pid!;
    const rssBefore = rssBytes(gwPid);
    log(
      `loadtest: mock :${mock.port}, ceiling :${ceiling.port}, gateway :${gw.port}, 1-thread gateway :${gw1.port}, ${rounds} rounds × ${duration} s`,
    );

    const small = JSON.stringify(smallRequest());
    const large = claudeCodeRequestText();
    const streamBody = JSON.stringify({ ...smallRequest(), model: "claude-stream-sonnet", stream: true });
    const mk = (name: string, p: Proc, body: string): Target => ({
      name,
      port: p.port,
      pid: p.child.pid ?? null,
      path: "/v1/messages",
      headers: HEADERS,
      body,
    });

    // --peers: Claude Code Router and Portkey beside the gateway, on the same mock (loadtest/peers.ts).
    const peers: Target[][] = [[], []];
    if (flags.has("peers")) {
      const peersDir = join(dir, "peers");
      await installPeers(peersDir, log);
      const ccr = await startCcr(peersDir, mock.port);
      procs.push(ccr);
      const portkey = await startPortkey(peersDir);
      procs.push(portkey);
      peers.forEach((list, i) => {
        const body = i === 0 ? small : large;
        list.push(mk("ccr", ccr, body), { ...mk("portkey", portkey, body), headers: portkeyHeaders(mock.port) });
      });
      log(`loadtest: peers: Claude Code Router :${ccr.port}, Portkey :${portkey.port}`);
    }

    const groups: Group[] = [
      {
        id: "small",
        title: `Small body, ${connections} connections, ${duration} s — scenarios (a) direct, (b) ceiling, (c) gateway`,
        targets: [
          mk("direct", mock, small),
          mk("ceiling", ceiling, small),
          mk("gateway", gw, small),
          mk("gateway_1t", gw1, small),
          ...peers[0]!,
        ],
        connections,
        duration,
        runs: new Map(),
      },
      {
        id: "large",
        title: `(d) Claude Code body (${Math.round(large.length / 1024)} KB), ${connections} connections, ${shortDuration} s`,
        targets: [mk("direct", mock, large), mk("ceiling", ceiling, large), mk("gateway", gw, large), ...peers[1]!],
        connections,
        duration: shortDuration,
        runs: new Map(),
      },
      {
        id: "stream",
        title: `(e) Streaming, 50 text_delta events per reply (loadtest/stream-upstream.ts), ${connections} connections, ${shortDuration} s`,
        targets: [mk("direct", sse, streamBody), mk("ceiling", ceilingSse, streamBody), mk("gateway", gw, streamBody)],
        connections,
        duration: shortDuration,
        runs: new Map(),
      },
    ];

    log("loadtest: warm-up");
    for (const g of groups) for (const t of g.targets) await loadRun(t, connections, quick ? 1 : 2);
    const gwThreads = listeningThreads(gwLog); // written at start-up, on disk by now
    log(`loadtest: gateway HTTP_THREADS=${gwThreads}${threads === null ? " (its default)" : ""}`);
    for (const g of groups) {
      log(`loadtest: group ${g.id}`);
      await runGroup(g, rounds, log);
    }

    log("loadtest: concurrency 1");
    const c1Blocks = quick ? 3 : 10;
    const c1 = await sequentialLatencies(
      [mk("direct", mock, small), mk("ceiling", ceiling, small), mk("gateway", gw, small)],
      c1Blocks,
      200,
    );
    const c1med = Object.fromEntries([...c1].map(([k, v]) => [k, median(v)]));
    await gw1.stop();
    let soak: Soak | null = null;
    if (flags.has("soak")) {
      const secs = Number(flags.get("soak"));
      log(`loadtest: soak, ${secs} s at ${connections} connections`);
      soak = await soakRun(mk("gateway", gw, small), connections, secs);
    }
    const rssAfter = rssBytes(gwPid);
    const rssPeak = peakRssBytes(gwPid);
    // Once idle, each thread gives memory back within ~10 s of its last request (server/idle-reclaim.ts).
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    const rssIdle = rssBytes(gwPid);
    // Proof that info logging to the file was on: one line per request.
    const logLines = countInFile(gwLog, '"msg":"request"');
    await gw.stop(); // idempotent: stopAll calls it again harmlessly

    // (f) overload: a second gateway with a tiny active-requests threshold.
    const shedThreshold = Number(flags.get("shed-threshold") ?? 4);
    const overloadConns = Number(flags.get("overload-connections") ?? 400);
    const gwOver = await startGateway(
      GATEWAY,
      gwEnv(mock.port, sse.port, dir, threads, join(dir, "gateway-overload.log"), {
        LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD: String(shedThreshold),
      }),
    );
    procs.push(gwOver);
    log(`loadtest: overload, ${overloadConns} connections, active threshold ${shedThreshold}`);
    await loadRun(mk("gateway", gwOver, small), overloadConns, 1);
    const over: RunResult[] = [];
    for (let r = 0; r < rounds; r++) over.push(await loadRun(mk("gateway", gwOver, small), overloadConns, shortDuration));
    const overRss = rssBytes(gwOver.child.pid!);
    const overSum = summarise("gateway", over);
    const shed = shedStats(overSum.statuses, overSum.errors);

    await gwOver.stop();

    // Long streams: N concurrent slow streams per target (loadtest/streams-scenario.ts).
    const streams = flags.has("streams") ? await streamsScenario(flags, procs, { dir, mockPort: mock.port, threads, rateLimits }, log) : [];

    // ---------------------------------------------------------------- report
    const machine = {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      memory_gb: Math.round(totalmem() / 2 ** 30),
      os: `${osType()} ${release()}`,
      node: process.version,
    };
    const out: string[] = [];
    const tables = groups.map((g) => ({ g, ...groupTable(g) }));
    out.push(`## Load test (autocannon; medians of ${rounds} interleaved rounds)`, "");
    out.push(
      `${machine.cpu}, ${machine.cores} cores, Node ${machine.node}; gateway HTTP_THREADS=${gwThreads}${threads === null ? " (its default)" : ""}; load generator, upstream, ceiling and gateway share the machine.`,
      "",
    );
    for (const t of tables) out.push(`### ${t.g.title}`, "", t.md, "");

    const smallT = tables[0]!;
    const direct = smallT.summaries.find((s) => s.target === "direct")!;
    const gwS = smallT.summaries.find((s) => s.target === "gateway")!;
    out.push("### Issue 2 note: gateway vs the mock directly (small body, 50 connections, 10 s)", "");
    out.push(
      markdownTable(
        ["target", "req/s", "p50 ms", "p99 ms"],
        [
          ["mock direct", fmt(direct.req_per_s), fmt(direct.p50_ms), fmt(direct.p99_ms)],
          ["gateway → mock", fmt(gwS.req_per_s), fmt(gwS.p50_ms), fmt(gwS.p99_ms)],
        ],
      ),
    );
    out.push(
      "",
      `gateway ÷ direct: ${fmt(smallT.ratios.gateway_over_direct! * 100)}%; gateway RSS before ${bytes(rssBefore)}, at the end of the whole load test ${bytes(rssAfter)}, ${IDLE_SETTLE_MS / 1000} s later (idle) ${bytes(rssIdle)}, peak ${bytes(rssPeak)}.`,
      "",
    );
    if (soak !== null)
      out.push(
        `### Soak: ${soak.seconds} s at ${connections} connections`,
        "",
        `RSS samples (every ${soak.every_s} s): ${soak.rss_bytes.map((b) => bytes(b)).join(", ")}; after the first tenth, max ÷ min − 1 = **${fmt(soak.drift * 100)}%**; ${fmt(soak.run.req_per_s)} req/s, errors ${soak.run.errors}.`,
        "",
      );

    const added = c1med.gateway! - c1med.direct!;
    out.push(`### Concurrency 1 (${c1Blocks} interleaved blocks × 200 sequential requests per target, small body)`, "");
    out.push(
      markdownTable(
        ["target", "median µs", "added over direct µs"],
        ["direct", "ceiling", "gateway"].map((k) => [k, fmt(c1med[k]!), k === "direct" ? "—" : fmt(c1med[k]! - c1med.direct!)]),
      ),
      "",
    );

    out.push(
      `### (f) Overload: ${overloadConns} connections, LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD=${shedThreshold}, ${rounds} × ${shortDuration} s`,
      "",
    );
    out.push(
      markdownTable(
        ["req/s", "shed (503) rate", "p99 admitted (2xx) ms", "p99 all ms", "failures other than 503", "statuses"],
        [
          [
            fmt(overSum.req_per_s),
            `${fmt(shed.shed_rate * 100)}%`,
            fmt(overSum.p99_2xx_ms),
            fmt(overSum.p99_ms),
            String(shed.other_failures),
            JSON.stringify(overSum.statuses),
          ],
        ],
      ),
      "",
    );

    out.push(...streamsReport(streams));
    const ratio = smallT.ratios.gateway_over_ceiling!;
    const targets = [
      { target: "gateway ≥ 80% of the bare pass-through's req/s (small body)", value: `${fmt(ratio * 100)}%`, met: ratio >= 0.8 },
      { target: "added latency at concurrency 1 ≤ 100 µs", value: `${fmt(added)} µs`, met: added <= 100 },
      {
        target: `RSS after the load test (${IDLE_SETTLE_MS / 1000} s idle) ≤ 150 MB`,
        value: `${bytes(rssIdle)} (${bytes(rssAfter)} at its end)`,
        met: rssIdle <= 150e6,
      },
      { target: "overload: no errors other than 503", value: String(shed.other_failures), met: shed.other_failures === 0 },
    ];
    out.push(
      "### Targets",
      "",
      markdownTable(
        ["target", "measured", "met"],
        targets.map((t) => [t.target, t.value, t.met ? "yes" : "**no**"]),
      ),
      "",
    );
    process.stdout.write(out.join("\n") + "\n");

    writeFileSync(
      RESULTS_PATH,
      JSON.stringify(
        {
          generated_at: new Date().toISOString(),
          machine,
          rounds,
          duration_s: duration,
          threads: gwThreads,
          threads_flag: threads,
          connections,
          groups: tables.map((t) => ({
            id: t.g.id,
            title: t.g.title,
            summaries: t.summaries,
            ratios: t.ratios,
            runs: Object.fromEntries(t.g.runs),
          })),
          issue2: {
            direct_req_per_s: direct.req_per_s,
            gateway_req_per_s: gwS.req_per_s,
            gateway_over_direct: smallT.ratios.gateway_over_direct,
            rss_before_bytes: rssBefore,
            rss_after_bytes: rssAfter,
          },
          concurrency1: { median_us: c1med, added_us: added, samples_per_target: c1Blocks * 200 },
          overload: {
            connections: overloadConns,
            active_threshold: shedThreshold,
            summary: overSum,
            ...shed,
            rss_after_bytes: overRss,
            runs: over,
          },
          gateway_request_log_lines: logLines,
          gateway_rss: { before_bytes: rssBefore, after_bytes: rssAfter, idle_after_bytes: rssIdle, peak_bytes: rssPeak },
          soak,
          streams,
          targets,
        },
        null,
        2,
      ) + "\n",
    );
    log(`loadtest: wrote ${RESULTS_PATH}`);
    writeChart();
    refreshReadme();
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(import.meta.url, "loadtest", main);

/** Occurrences of `needle` in a file read in chunks: a long soak's log is past the longest string V8 can make. */
function countInFile(path: string, needle: string): number {
  const pat = Buffer.from(needle);
  const buf = Buffer.allocUnsafe(1 << 20);
  const fd = openSync(path, "r");
  let n = 0,
    keep = 0;
  try {
    for (;;) {
      const got = readSync(fd, buf, keep, buf.length - keep, null);
      if (got === 0) break;
      const end = keep + got;
      let i = buf.indexOf(pat, 0);
      while (i >= 0 && i + pat.length <= end) {
        n++;
        i = buf.indexOf(pat, i + pat.length);
      }
      // Keep the last needle-length - 1 bytes: a match split across two chunks is found in the next.
      keep = Math.min(pat.length - 1, end);
      buf.copy(buf, 0, end - keep, end);
    }
  } finally {
    closeSync(fd);
  }
  return n;
}
