/**
 * `npm run build && node dist/loadtest/bedrock.js [--duration 5] [--rounds 2] [--connections 50]`
 *
 * One short, targeted load run for Bedrock: the mock upstream in Bedrock mode (SigV4
 * verified on every request), the bare uWS + undici pass-through (loadtest/ceiling.ts) to
 * the mock's Anthropic route, and the gateway with an Anthropic route, a Bedrock route
 * signed with SigV4 and a Bedrock route with an API key. The mock's own capacity in Bedrock
 * mode is measured by replaying one pre-signed request at it (the signature stays valid
 * for five minutes), since its SigV4 check costs it CPU the Anthropic route does not.
 * Targets run interleaved; the table gives medians and each target's ratio to the ceiling.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { smallRequest } from "../bench/fixture.js";
import { fmt, median, parseFlags } from "../bench/format.js";
import { loadRun, type RunResult, type Target } from "./measure.js";
import { startGateway, startPortPrinter, type Proc } from "./procs.js";
import { AwsCredentials, BedrockSigner } from "../server/providers/aws-auth.js";
import { bedrockBody } from "../core/providers/bedrock/request.js";

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));
const flags = parseFlags(process.argv.slice(2));
const duration = Number(flags.get("duration") ?? 5);
const rounds = Number(flags.get("rounds") ?? 2);
const connections = Number(flags.get("connections") ?? 50);
const AKID = "AKIALOADTEST00000001";
const SECRET = "loadtest-secret-0123456789abcdefghijklmn";
const CLIENT_KEY = "sk-loadtest-client-key-01";
const MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

const procs: Proc[] = [];
const dir = mkdtempSync(join(tmpdir(), "portcullis-bedrock-load-"));
try {
  const mock = await startPortPrinter("mock", here("./mock-upstream.js"), [
    "--aws-credentials",
    `${AKID}:${SECRET}`,
    "--bedrock-api-key",
    "bedrock-load-key",
  ]);
  procs.push(mock);
  const ceiling = await startPortPrinter("ceiling", here("./ceiling.js"), ["--port", "0", "--upstream", `http://127.0.0.1:${mock.port}`]);
  procs.push(ceiling);
  const mockUrl = `http://127.0.0.1:${mock.port}`;
  const cfg = join(dir, "gateway.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        anthropic: { type: "anthropic", base_url: mockUrl, api_key: "sk-upstream-key-123" },
        sigv4: { type: "bedrock", region: "us-east-1", base_url: mockUrl },
        apikey: { type: "bedrock", region: "us-east-1", base_url: mockUrl, api_key: "bedrock-load-key" },
      },
      routes: [
        { match: "claude-sigv4-*", provider: "sigv4", model: MODEL_ID },
        { match: "claude-apikey-*", provider: "apikey", model: MODEL_ID },
      ],
      default_provider: "anthropic",
    }),
  );
  const gw = await startGateway(here("../server/main.js"), {
    HTTP_THREADS: "1",
    CONFIG_FILE: cfg,
    GATEWAY_API_KEYS: CLIENT_KEY,
    LOG_LEVEL: "info",
    LOG_FILE: join(dir, "gw.log"),
    AWS_ACCESS_KEY_ID: AKID,
    AWS_SECRET_ACCESS_KEY: SECRET,
    DATABASE_PATH: join(dir, "ledger.db"),
  });
  procs.push(gw);

  const small = smallRequest() as Record<string, unknown>;
  const bodyFor = (model: string) => JSON.stringify({ ...small, model });
  const h = { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": CLIENT_KEY };
  // A pre-signed Bedrock request for the mock's own capacity.
  const creds = new AwsCredentials("load", pino({ level: "silent" }), async () => ({ accessKeyId: AKID, secretAccessKey: SECRET }));
  const signer = new BedrockSigner(mockUrl, "us-east-1", creds);
  const path = `/model/${encodeURIComponent(MODEL_ID)}/invoke`;
  const bbody = bedrockBody(small, [], [], false);
  const signed = await signer.sign(path, { "content-type": "application/json", accept: "application/json" }, bbody);
  creds.close();
  const targets: Target[] = [
    {
      name: "mock, Anthropic route",
      port: mock.port,
      pid: mock.child.pid!,
      path: "/v1/messages",
      headers: h,
      body: bodyFor("claude-sonnet-4-5"),
    },
    { name: "mock, Bedrock route (pre-signed)", port: mock.port, pid: mock.child.pid!, path, headers: signed, body: bbody.toString() },
    { name: "ceiling", port: ceiling.port, pid: ceiling.child.pid!, path: "/v1/messages", headers: h, body: bodyFor("claude-sonnet-4-5") },
    {
      name: "gateway → anthropic",
      port: gw.port,
      pid: gw.child.pid!,
      path: "/v1/messages",
      headers: h,
      body: bodyFor("claude-sonnet-4-5"),
    },
    {
      name: "gateway → bedrock (SigV4)",
      port: gw.port,
      pid: gw.child.pid!,
      path: "/v1/messages",
      headers: h,
      body: bodyFor("claude-sigv4-sonnet"),
    },
    {
      name: "gateway → bedrock (API key)",
      port: gw.port,
      pid: gw.child.pid!,
      path: "/v1/messages",
      headers: h,
      body: bodyFor("claude-apikey-sonnet"),
    },
  ];
  const runs = new Map<string, RunResult[]>(targets.map((t) => [t.name, []]));
  for (let r = 0; r < rounds; r++) {
    for (const t of targets) {
      const res = await loadRun(t, connections, duration);
      runs.get(t.name)!.push(res);
      process.stderr.write(`round ${r + 1}/${rounds} ${t.name}: ${fmt(res.req_per_s)} req/s, statuses ${JSON.stringify(res.statuses)}\n`);
    }
  }
  const ceil = median(runs.get("ceiling")!.map((x) => x.req_per_s));
  process.stdout.write(
    `\n${connections} connections, ${duration} s × ${rounds} rounds, small body, 1 gateway thread\n\n| target | req/s (median) | × ceiling | p99 ms | non-2xx |\n| --- | --- | --- | --- | --- |\n`,
  );
  for (const t of targets) {
    const rs = runs.get(t.name)!;
    const rps = median(rs.map((x) => x.req_per_s));
    const bad = rs.reduce(
      (n, x) =>
        n +
        Object.entries(x.statuses)
          .filter(([s]) => !s.startsWith("2"))
          .reduce((a, [, v]) => a + v, 0) +
        x.errors,
      0,
    );
    process.stdout.write(`| ${t.name} | ${fmt(rps)} | ${(rps / ceil).toFixed(2)} | ${fmt(median(rs.map((x) => x.p99_ms)))} | ${bad} |\n`);
  }
} finally {
  await Promise.all(procs.reverse().map((p) => p.stop()));
  rmSync(dir, { recursive: true, force: true });
}
