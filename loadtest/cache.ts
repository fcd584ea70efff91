/**
 * `npm run build && node dist/loadtest/cache.js [--duration 5] [--rounds 1] [--threads 1]`
 *
 * Response-cache hit scenarios (issue 16), every process on 127.0.0.1, targets interleaved per
 * round, against the bare uWS + undici pass-through (loadtest/ceiling.ts) on the same bodies:
 *   (h1) 100% memory hits, small JSON reply;
 *   (h2) 100% memory hits, 50-event SSE reply (the store came from loadtest/stream-upstream.ts);
 *   (h3) 100% Redis hits: a gateway with REDIS_URL whose memory tier (CACHE_MAX_BYTES=1024)
 *        holds one small entry, driven with two bodies in turn, so every lookup misses memory
 *        and is answered from Redis.
 * A hit does no upstream work, so the targets are ≥ 1.5× the ceiling's req/s from memory and
 * ≥ 1.0× from Redis. Prints a markdown table; results go to stdout only.
 */
import autocannon from "autocannon";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { smallRequest } from "../bench/fixture.js";
import { fmt, markdownTable, median, parseFlags } from "../bench/format.js";
import { freePort } from "../test/support/free-port.js";
import { loadRun, type Target } from "./measure.js";
import { startGateway, startUpstreams, type Proc } from "./procs.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const KEY = "sk-loadtest-cache-key-01";
const HEADERS = { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": KEY };

/** Like loadRun, over several bodies in turn (autocannon's `requests`), req/s only. */
async function rotatingRun(
  port: number,
  bodies: readonly string[],
  connections: number,
  duration: number,
): Promise<{ req_per_s: number; non2xx: number }> {
  const r = await autocannon({
    url: `http://127.0.0.1:${port}/v1/messages`,
    connections,
    duration,
    method: "POST",
    headers: HEADERS,
    requests: bodies.map((body) => ({ method: "POST", body })),
  } as unknown as Parameters<typeof autocannon>[0]); // `requests` is missing from loadtest/types
  return { req_per_s: r.requests.total / duration, non2xx: r.non2xx };
}

async function redisServer(port: number): Promise<Proc> {
  const child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    let out = "";
    const t = setTimeout(() => reject(new Error("redis-server did not start")), 15_000);
    child.once("error", reject);
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => {
      out += d;
      if (out.includes("Ready to accept connections")) {
        clearTimeout(t);
        child.stdout!.resume();
        resolve();
      }
    });
  });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return { name: "redis", port, child, stop: async () => (child.kill("SIGKILL"), exited) };
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const duration = Number(flags.get("duration") ?? 5);
  const rounds = Number(flags.get("rounds") ?? 1);
  const threads = String(flags.get("threads") ?? 1);
  const connections = Number(flags.get("connections") ?? 50);
  const log = (s: string) => process.stderr.write(s + "\n");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-loadtest-cache-"));
  const procs: Proc[] = [];
  try {
    const { mock, sse, ceiling, ceilingSse } = await startUpstreams(procs);
    const redis = await redisServer(await freePort());
    procs.push(redis);
    const cfgFile = join(dir, "gateway.json");
    writeFileSync(
      cfgFile,
      JSON.stringify({
        providers: { sse: { type: "anthropic", base_url: `http://127.0.0.1:${sse.port}`, api_key: "sk-upstream-sse-123" } },
        routes: [{ match: "claude-stream-*", provider: "sse" }],
      }),
    );
    const env = {
      HTTP_THREADS: threads,
      MODEL_PROVIDER: "anthropic",
      ANTHROPIC_API_BASE: `http://127.0.0.1:${mock.port}`,
      ANTHROPIC_API_KEY: "sk-upstream-key-123",
      GATEWAY_API_KEYS: KEY,
      CONFIG_FILE: cfgFile,
      LOG_LEVEL: "info",
      CACHE_ENABLED: "true",
    };
    const gw = await startGateway(here("../server/main.js"), { ...env, LOG_FILE: join(dir, "gw.log") });
    procs.push(gw);
    const gwRedis = await startGateway(here("../server/main.js"), {
      ...env,
      LOG_FILE: join(dir, "gw-redis.log"),
      REDIS_URL: `redis://127.0.0.1:${redis.port}`,
      CACHE_MAX_BYTES: "1024",
      CACHE_MAX_ENTRY_BYTES: "1024",
    });
    procs.push(gwRedis);

    const small = JSON.stringify({ ...smallRequest(), temperature: 0 });
    const small2 = JSON.stringify({ ...smallRequest(), temperature: 0, max_tokens: 65 });
    const stream = JSON.stringify({ ...smallRequest(), temperature: 0, model: "claude-stream-sonnet", stream: true });
    const mk = (name: string, p: Proc, body: string): Target => ({
      name,
      port: p.port,
      pid: p.child.pid ?? null,
      path: "/v1/messages",
      headers: HEADERS,
      body,
    });
    // Store the entries (and check they are hits).
    for (const [p, b] of [
      [gw, small],
      [gw, stream],
      [gwRedis, small],
      [gwRedis, small2],
    ] as const) {
      for (let i = 0; i < 2; i++) {
        const r = await fetch(`http://127.0.0.1:${p.port}/v1/messages`, { method: "POST", headers: HEADERS, body: b });
        await r.arrayBuffer();
        if (r.status !== 200) throw new Error(`warm-up: status ${r.status}`);
        if (i === 1 && r.headers.get("x-portcullis-cache") !== "hit" && p === gw)
          throw new Error("warm-up: the second request was not a hit");
      }
    }
    const groups = [
      { id: "h1 JSON, memory hit", ceiling: mk("ceiling", ceiling, small), gateway: mk("gateway", gw, small) },
      { id: "h2 SSE 50 events, memory hit", ceiling: mk("ceiling", ceilingSse, stream), gateway: mk("gateway", gw, stream) },
    ];
    const rows: string[][] = [];
    const results: Record<string, { ceiling: number[]; gateway: number[] }> = {};
    for (const g of groups) results[g.id] = { ceiling: [], gateway: [] };
    results["h3 JSON, Redis hit"] = { ceiling: [], gateway: [] };
    for (let r = 0; r < rounds; r++) {
      for (const g of groups) {
        const c = await loadRun(g.ceiling, connections, duration);
        const h = await loadRun(g.gateway, connections, duration);
        results[g.id]!.ceiling.push(c.req_per_s);
        results[g.id]!.gateway.push(h.req_per_s);
        log(
          `  ${g.id} round ${r + 1}: ceiling ${fmt(c.req_per_s)} req/s, gateway ${fmt(h.req_per_s)} req/s, statuses ${JSON.stringify(h.statuses)}`,
        );
      }
      const c = await rotatingRun(ceiling.port, [small, small2], connections, duration);
      const h = await rotatingRun(gwRedis.port, [small, small2], connections, duration);
      if (h.non2xx > 0) throw new Error(`redis scenario: ${h.non2xx} non-2xx answers`);
      results["h3 JSON, Redis hit"]!.ceiling.push(c.req_per_s);
      results["h3 JSON, Redis hit"]!.gateway.push(h.req_per_s);
      log(`  h3 round ${r + 1}: ceiling ${fmt(c.req_per_s)} req/s, gateway ${fmt(h.req_per_s)} req/s`);
    }
    const m = await (await fetch(`http://127.0.0.1:${gwRedis.port}/metrics/prometheus`)).text();
    const hits = /^cache_requests_total\{result="hit"\} (\d+)$/m.exec(m)?.[1];
    for (const [id, v] of Object.entries(results)) {
      const ratio = median(v.gateway.map((g, i) => g / v.ceiling[i]!));
      const want = id.includes("Redis") ? 1.0 : 1.5;
      rows.push([id, fmt(median(v.ceiling)), fmt(median(v.gateway)), `${fmt(ratio)}×`, `≥ ${want}×`, ratio >= want ? "yes" : "**no**"]);
    }
    process.stdout.write(`## Cache hits (autocannon, ${connections} connections, ${rounds} × ${duration} s, HTTP_THREADS=${threads})\n\n`);
    process.stdout.write(
      markdownTable(["scenario", "ceiling req/s", "gateway req/s", "gateway ÷ ceiling", "target", "met"], rows) + "\n\n",
    );
    process.stdout.write(`Redis gateway: cache hits counted ${hits}; its memory tier holds one entry, so each lookup went to Redis.\n`);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`loadtest/cache: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
