/**
 * HTTP/2 against HTTP/1.1 from the gateway to the same upstream: loadtest/stream-upstream-h2.ts
 * (TLS, both protocols), one gateway with `UPSTREAM_HTTP2=auto` and one with `off`, both at the
 * load test's defaults (gateway-env.ts) and trusting this run's certificate through
 * NODE_EXTRA_CA_CERTS. Interleaved autocannon rounds of the small body (JSON) and the 50-event
 * SSE reply; req/s, p50/p99 and the gateway's CPU ms per request from /proc. Prints its table
 * and writes nothing:
 *
 *   node dist/loadtest/upstream-h2.js [--duration 5] [--rounds 2] [--connections 50] [--threads N]
 *
 * Also the helpers the streams scenario's `--h2` mode uses (loadtest/streams-scenario.ts).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { smallRequest } from "../bench/fixture.js";
import { fmt, markdownTable, parseFlags } from "../bench/format.js";
import { gatewayEnv, HEADERS } from "./gateway-env.js";
import { loadRun, type RunResult, type Target } from "./measure.js";
import { type Proc, runScript, startGateway, startPortPrinter } from "./procs.js";
import { pairedRatio, summarise } from "./stats.js";
import { selfSignedCert } from "./tls-cert.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

/** The HTTP/2 stream upstream with a certificate made in `dir`; `cert` is what a gateway must trust. */
export async function startH2Upstream(dir: string, args: string[]): Promise<{ proc: Proc; cert: string }> {
  const c = selfSignedCert(dir);
  const proc = await startPortPrinter("stream-upstream-h2", here("./stream-upstream-h2.js"), ["--cert", c.cert, "--key", c.key, ...args]);
  return { proc, cert: c.cert };
}

/**
 * Environment additions that point a load-test gateway (gatewayEnv) at the TLS upstream on
 * `port` for every model, trusting `cert`.
 */
export function h2GatewayExtra(dir: string, port: number, cert: string): Record<string, string> {
  const cfg = join(dir, "gateway-h2.json");
  const base = `https://127.0.0.1:${port}`;
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: { sse: { type: "anthropic", base_url: base, api_key: "sk-upstream-sse-123" } },
      routes: [{ match: "claude-stream-*", provider: "sse" }],
    }),
  );
  return { ANTHROPIC_API_BASE: base, CONFIG_FILE: cfg, NODE_EXTRA_CA_CERTS: cert };
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const duration = Number(flags.get("duration") ?? 5);
  const rounds = Number(flags.get("rounds") ?? 2);
  const connections = Number(flags.get("connections") ?? 50);
  const threads = flags.has("threads") ? Number(flags.get("threads")) : null;
  const dir = mkdtempSync(join(tmpdir(), "portcullis-h2-"));
  const procs: Proc[] = [];
  try {
    const up = await startH2Upstream(dir, ["--port", "0", "--events", "50"]);
    procs.push(up.proc);
    const port = up.proc.port;
    const gw = async (mode: "auto" | "off") => {
      const extra = { ...h2GatewayExtra(dir, port, up.cert), UPSTREAM_HTTP2: mode };
      const p = await startGateway(
        here("../server/main.js"),
        gatewayEnv({ dir, mockPort: port, streamPort: port, threads, logFile: join(dir, `gateway-${mode}.log`), extra }),
      );
      procs.push(p);
      return p;
    };
    const [h2, h1] = [await gw("auto"), await gw("off")];
    const groups = [
      { name: "small body", body: JSON.stringify(smallRequest()) },
      { name: "SSE, 50 text_delta events", body: JSON.stringify({ ...smallRequest(), model: "claude-stream-50", stream: true }) },
    ];
    const rows: (string | number)[][] = [];
    for (const g of groups) {
      const t = (name: string, p: Proc): Target => ({
        name,
        port: p.port,
        pid: p.child.pid ?? null,
        path: "/v1/messages",
        headers: HEADERS,
        body: g.body,
      });
      const targets = [t("gateway, UPSTREAM_HTTP2=auto (h2)", h2), t("gateway, UPSTREAM_HTTP2=off (HTTP/1.1)", h1)];
      const runs = new Map<string, RunResult[]>(targets.map((x) => [x.name, []]));
      for (const x of targets) await loadRun(x, connections, 1); // warm-up: connections, JIT
      for (let r = 0; r < rounds; r++) {
        for (const x of r % 2 === 0 ? targets : [...targets].reverse()) {
          const res = await loadRun(x, connections, duration);
          runs.get(x.name)!.push(res);
          process.stderr.write(
            `  ${g.name} ${x.name}: ${fmt(res.req_per_s)} req/s, ${fmt(res.cpu_ms_per_req)} CPU ms/req, ${JSON.stringify(res.statuses)}\n`,
          );
        }
      }
      const ratio = pairedRatio(runs.get(targets[0]!.name)!, runs.get(targets[1]!.name)!);
      for (const x of targets) {
        const s = summarise(x.name, runs.get(x.name)!);
        rows.push([
          g.name,
          x.name,
          s.rounds_req_per_s.map((v) => fmt(v)).join(" / "),
          `${fmt(s.p50_ms)} / ${fmt(s.p99_ms)}`,
          fmt(s.cpu_ms_per_req),
          x === targets[0] ? fmt(ratio) : "",
          JSON.stringify(s.statuses),
        ]);
      }
    }
    process.stdout.write(
      `${markdownTable(["group", "target", "req/s (rounds)", "p50 / p99 ms", "gateway CPU ms/req", "h2 ÷ HTTP/1.1", "statuses"], rows)}\n`,
    );
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

runScript(import.meta.url, "upstream-h2", main);
