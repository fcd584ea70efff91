/**
 * `node dist/loadtest/openai.js [--duration 5] [--rounds 1] [--connections 50]`
 *
 * The OpenAI side under load (docs/openai.md), each scenario against the bare uWS + undici
 * pass-through (loadtest/ceiling.ts) carrying the request the upstream receives:
 *   chat-pass     POST /v1/chat/completions → OpenAI-format upstream (byte-faithful)
 *   chat→anth     POST /v1/chat/completions → Anthropic-format upstream (translated both ways)
 *   msgs→openai   POST /v1/messages → OpenAI-format upstream (translated both ways)
 * each as JSON and as a 50-event SSE reply (loadtest/stream-upstream.ts), plus the native
 * Anthropic pass-through (`POST /v1/messages` → Anthropic-format upstream) measured in the same
 * run as the reference these ratios should be read against. Targets run
 * interleaved per round; ratios are medians of per-round gateway ÷ ceiling.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { fmt, markdownTable, parseFlags } from "../bench/format.js";
import { loadRun, type RunResult, type Target } from "./measure.js";
import { startGateway, startUpstreams, type Proc } from "./procs.js";
import { pairedRatio, summarise } from "./stats.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const KEY = "sk-loadtest-openai-key-01";
const HEADERS = { "content-type": "application/json", "anthropic-version": "2023-06-01", authorization: `Bearer ${KEY}` };
const ANTH = { model: "claude-sonnet-4-5", max_tokens: 64, messages: [{ role: "user", content: "Hello, world" }] };
const CHAT = { model: "gpt-4o", max_completion_tokens: 64, messages: [{ role: "user", content: "Hello, world" }] };
const TARGET = { pass: 0.8, translated: 0.6 };

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const duration = Number(flags.get("duration") ?? 5);
  const rounds = Number(flags.get("rounds") ?? 1);
  const connections = Number(flags.get("connections") ?? 50);
  const log = (s: string) => process.stderr.write(s + "\n");
  const dir = mkdtempSync(join(tmpdir(), "portcullis-lt-openai-"));
  const procs: Proc[] = [];
  try {
    const { mock, sse, ceiling: ceil, ceilingSse: ceilSse } = await startUpstreams(procs);
    const cfg = join(dir, "gateway.json");
    const base = (p: Proc) => `http://127.0.0.1:${p.port}`;
    writeFileSync(
      cfg,
      JSON.stringify({
        providers: {
          oa: { type: "openai", base_url: `${base(mock)}/v1`, api_key: "sk-up-oa" },
          "oa-sse": { type: "openai", base_url: `${base(sse)}/v1`, api_key: "sk-up-oa" },
          an: { type: "anthropic", base_url: base(mock), api_key: "sk-up-an" },
          "an-sse": { type: "anthropic", base_url: base(sse), api_key: "sk-up-an" },
        },
        routes: [
          { match: "gpt-json", provider: "oa", model: "gpt-4o" },
          { match: "gpt-sse", provider: "oa-sse", model: "gpt-4o" },
          { match: "claude-json", provider: "an", model: "claude-sonnet-4-5" },
          { match: "claude-sse", provider: "an-sse", model: "claude-sonnet-4-5" },
        ],
      }),
    );
    const gw = await startGateway(here("../server/main.js"), {
      HTTP_THREADS: "1",
      GATEWAY_API_KEYS: KEY,
      CONFIG_FILE: cfg,
      LOG_LEVEL: "info",
      LOG_FILE: join(dir, "gw.log"),
      DATABASE_PATH: join(dir, "ledger.db"),
    });
    procs.push(gw);
    const t = (name: string, p: Proc, path: string, body: object): Target => ({
      name,
      port: p.port,
      pid: p.child.pid ?? null,
      path,
      headers: HEADERS,
      body: JSON.stringify(body),
    });
    const s = (b: object) => ({ ...b, stream: true });
    const scenarios = [
      {
        id: "native msgs JSON (reference)",
        target: TARGET.pass,
        ceiling: t("ceiling", ceil, "/v1/messages", ANTH),
        gateway: t("gateway", gw, "/v1/messages", { ...ANTH, model: "claude-json" }),
      },
      {
        id: "chat-pass JSON",
        target: TARGET.pass,
        ceiling: t("ceiling", ceil, "/v1/chat/completions", CHAT),
        gateway: t("gateway", gw, "/v1/chat/completions", { ...CHAT, model: "gpt-json" }),
      },
      {
        id: "chat→anth JSON",
        target: TARGET.translated,
        ceiling: t("ceiling", ceil, "/v1/messages", ANTH),
        gateway: t("gateway", gw, "/v1/chat/completions", { ...CHAT, model: "claude-json" }),
      },
      {
        id: "msgs→openai JSON",
        target: TARGET.translated,
        ceiling: t("ceiling", ceil, "/v1/chat/completions", CHAT),
        gateway: t("gateway", gw, "/v1/messages", { ...ANTH, model: "gpt-json" }),
      },
      {
        id: "native msgs SSE×50 (reference)",
        target: TARGET.pass,
        ceiling: t("ceiling", ceilSse, "/v1/messages", s(ANTH)),
        gateway: t("gateway", gw, "/v1/messages", s({ ...ANTH, model: "claude-sse" })),
      },
      {
        id: "chat-pass SSE×50",
        target: TARGET.pass,
        ceiling: t("ceiling", ceilSse, "/v1/chat/completions", s(CHAT)),
        gateway: t("gateway", gw, "/v1/chat/completions", s({ ...CHAT, model: "gpt-sse" })),
      },
      {
        id: "chat→anth SSE×50",
        target: TARGET.translated,
        ceiling: t("ceiling", ceilSse, "/v1/messages", s(ANTH)),
        gateway: t("gateway", gw, "/v1/chat/completions", s({ ...CHAT, model: "claude-sse" })),
      },
      {
        id: "msgs→openai SSE×50",
        target: TARGET.translated,
        ceiling: t("ceiling", ceilSse, "/v1/chat/completions", s(CHAT)),
        gateway: t("gateway", gw, "/v1/messages", s({ ...ANTH, model: "gpt-sse" })),
      },
    ];
    const rows: string[][] = [];
    for (const sc of scenarios) {
      await loadRun(sc.gateway, connections, 1); // warm-up
      const c: RunResult[] = [],
        g: RunResult[] = [];
      for (let r = 0; r < rounds; r++) {
        c.push(await loadRun(sc.ceiling, connections, duration));
        g.push(await loadRun(sc.gateway, connections, duration));
      }
      const cs = summarise("ceiling", c),
        gs = summarise("gateway", g);
      const ratio = pairedRatio(g, c);
      log(
        `  ${sc.id}: ceiling ${fmt(cs.req_per_s)} req/s, gateway ${fmt(gs.req_per_s)} req/s (${fmt(ratio * 100)}%), gateway statuses ${JSON.stringify(gs.statuses)}`,
      );
      rows.push([
        sc.id,
        fmt(cs.req_per_s),
        fmt(gs.req_per_s),
        fmt(gs.p99_ms),
        `${fmt(ratio * 100)}%`,
        `${sc.target * 100}%`,
        ratio >= sc.target ? "yes" : "**no**",
        JSON.stringify(gs.statuses),
      ]);
    }
    process.stdout.write(
      `## OpenAI scenarios (${rounds} round(s) × ${duration} s, ${connections} connections, HTTP_THREADS=1)\n\n` +
        markdownTable(
          ["scenario", "ceiling req/s", "gateway req/s", "gateway p99 ms", "gateway ÷ ceiling", "target", "met", "gateway statuses"],
          rows,
        ) +
        "\n",
    );
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`loadtest/openai: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  },
);
