/**
 * The deployment artifacts against a live gateway started with the ConfigMap's settings:
 * every metric (and label) that the alert rules, the dashboard and the prometheus-adapter
 * rule name is in the real /metrics/prometheus output, and the probe paths, the ports (the
 * client port and METRICS_PORT), the ServiceMonitor path and the Dockerfile's HEALTHCHECK
 * all work against the server.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { Client } from "undici";
import { loadConfig } from "../../core/config.js";
import { ERROR_TYPES } from "../../core/errors.js";
import { ROUTES } from "../../core/metrics.js";
import {
  ROOT,
  SYNTHETIC,
  TARGET_LABELS,
  TOKEN_METRICS,
  alertRules,
  adapterRules,
  alternation,
  container,
  dashboardExprs,
  deployment,
  metricNames,
  MONITORING,
  one,
  parseExposition,
  preStopSeconds,
  requiredGraceSeconds,
  selectors,
  settingsConfigMap,
  type Exposition,
} from "./support.js";

const KEY = "sk-k8s-live-client-1234";
let mock: MockHandle;
let gw: Gateway;
let expo: Exposition;
let text: string;
/** The METRICS_PORT listener (health and metrics), as the pod's probes and Prometheus reach it. */
let opsUrl: string;

const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
  fetch(`${gw.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
// A model of the default price table, so tokens and cost are counted.
const msg = (model = "claude-sonnet-4-5", extra: Record<string, unknown> = {}) => ({
  model,
  max_tokens: 8,
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

before(async () => {
  mock = await startMock();
  gw = await startGateway({
    ...settingsConfigMap(),
    HOST: "127.0.0.1",
    PORT: "0",
    METRICS_PORT: "0", // 9090 in the pod; any free port here
    DATABASE_PATH: join(mkdtempSync(join(tmpdir(), "portcullis-k8s-")), "portcullis.db"), // /app/data in the pod
    // What the Secret provides in the cluster.
    GATEWAY_API_KEYS: KEY,
    ANTHROPIC_API_KEY: "sk-upstream-live-abcdefgh",
    ANTHROPIC_API_BASE: mock.url,
  });
  const listening = JSON.parse(gw.lines.find((l) => l.includes('"msg":"listening"'))!) as { metrics_port: number };
  assert.ok(listening.metrics_port > 0 && listening.metrics_port !== gw.port, "a second port for health and metrics");
  opsUrl = `http://127.0.0.1:${listening.metrics_port}`;
  // Traffic that makes every label set the rules and panels read exist: success, stream,
  // count_tokens, models, a client error, an upstream error.
  const drain = async (r: Promise<Response>): Promise<number> => {
    const x = await r;
    await x.arrayBuffer();
    return x.status;
  };
  assert.equal(await drain(post("/v1/messages", msg())), 200);
  assert.equal(await drain(post("/v1/messages", msg("claude-sonnet-4-5", { stream: true }))), 200);
  assert.equal(
    await drain(post("/v1/messages/count_tokens", { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "hi" }] })),
    200,
  );
  assert.equal(await drain(fetch(`${gw.url}/v1/models`, { headers: { "x-api-key": KEY } })), 200);
  assert.equal(await drain(post("/v1/messages", "{not json")), 400);
  await fetch(`${mock.url}/__mock/faults`, {
    method: "POST",
    body: JSON.stringify({ faults: ["status:500", "status:500", "status:500"] }),
  });
  assert.equal(await drain(post("/v1/messages", msg())), 500);
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  text = await (await fetch(`${opsUrl}/metrics/prometheus`)).text();
  expo = parseExposition(text);
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

/** Every expression of the rules, the dashboard and the adapter rule. */
function allExprs(): { where: string; expr: string }[] {
  return [
    ...alertRules().map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
    ...dashboardExprs(),
    ...adapterRules().flatMap((r) => [
      { where: "adapter seriesQuery", expr: r.seriesQuery },
      {
        where: "adapter metricsQuery",
        expr: r.metricsQuery
          .replace(/<<\.Series>>/g, "http_requests_total")
          .replace(/<<\.LabelMatchers>>,?/g, "")
          .replace(/<<\.GroupBy>>/g, "pod"),
      },
    ]),
  ];
}

describe("the rules and the dashboard read what a live gateway exports", () => {
  test("every metric they name is in /metrics/prometheus", () => {
    const missing: string[] = [];
    const named = new Set<string>();
    for (const { where, expr } of allExprs()) {
      for (const name of metricNames(expr)) {
        if (SYNTHETIC.has(name)) continue;
        named.add(name);
        if (!expo.samples.has(name)) missing.push(`${name} (${where})`);
      }
    }
    assert.ok(named.size >= 9, `the expressions were parsed: ${[...named].join(", ")}`);
    for (const m of TOKEN_METRICS) assert.ok(named.has(m), `the dashboard reads ${m}`);
    assert.deepEqual(missing, [], `named but not exported:\n${missing.join("\n")}`);
  });

  test("every label they match or group by is on that metric, with values the gateway produces", () => {
    const vocab = (metric: string, label: string): Set<string> => {
      const seen = new Set((expo.samples.get(metric) ?? []).map((l) => l[label]).filter((v): v is string => v !== undefined));
      if (label === "route") for (const r of ROUTES) seen.add(r);
      if (label === "type") for (const r of ERROR_TYPES) seen.add(r);
      if (label === "status_class") for (const c of ["1xx", "2xx", "3xx", "4xx", "5xx"]) seen.add(c);
      return seen;
    };
    const problems: string[] = [];
    for (const { where, expr } of allExprs()) {
      const sels = selectors(expr);
      for (const { metric, matchers } of sels) {
        if (SYNTHETIC.has(metric)) continue;
        const samples = expo.samples.get(metric);
        if (!samples || samples.length === 0) {
          problems.push(`${where}: ${metric} has no samples`);
          continue;
        }
        const labels = new Set(samples.flatMap((l) => Object.keys(l)));
        for (const m of matchers) {
          if (TARGET_LABELS.has(m.label)) continue;
          if (!labels.has(m.label)) {
            problems.push(`${where}: ${metric} has no label ${m.label}`);
            continue;
          }
          const values = m.op === "=" || m.op === "!=" ? [m.value] : alternation(m.value);
          if (values === null) continue;
          const known = vocab(metric, m.label);
          for (const v of values) if (!known.has(v)) problems.push(`${where}: ${metric}{${m.label}} never takes the value ${v}`);
        }
        // by (...) labels of the aggregation around this selector: they must exist on the metric.
        for (const by of expr.matchAll(/\bby\s*\(([^)]*)\)/g)) {
          for (const l of by[1]!
            .split(",")
            .map((s) => s.trim())
            .filter(Boolean)) {
            if (TARGET_LABELS.has(l)) continue;
            if (sels.length === 1 && !labels.has(l)) problems.push(`${where}: grouped by ${l}, which ${metric} does not have`);
          }
        }
      }
    }
    assert.deepEqual(problems, []);
  });

  test("the rejection reasons and breaker states the rules select are all exported from start-up", () => {
    const reasons = new Set(expo.samples.get("http_requests_rejected_total")!.map((l) => l.reason));
    for (const r of alternation(/reason=~"([^"]+)"/.exec(alertRules().find((a) => a.alert === "PortcullisLoadShedding")!.expr)![1]!)!) {
      assert.ok(reasons.has(r), `reason ${r}`);
    }
    const states = new Set(expo.samples.get("circuit_breaker_state")!.map((l) => l.state));
    assert.deepEqual([...states].sort(), ["closed", "half_open", "open"]);
    assert.match(text, /^http_request_errors_total\{route="messages",provider="anthropic",type="api_error"\} 1$/m, "the upstream 500");
    for (const m of TOKEN_METRICS) {
      assert.ok(
        expo.samples.get(m)?.some((l) => l.provider === "anthropic" && l.model === "claude-sonnet-4"),
        `${m}{provider,model} for the calls made (model label = the price-table entry)`,
      );
    }
  });
});

describe("the ledger's size, which PortcullisLedgerNearFull reads", () => {
  test("ledger_size_bytes is the SQLite file's size on disk (database and WAL)", () => {
    const m = /^ledger_size_bytes ([0-9]+)$/m.exec(text);
    assert.ok(m, "exported");
    const db = gw.lines.map((l) => JSON.parse(l) as { msg: string; database?: string }).find((l) => l.msg === "ledger opened")!.database!;
    const onDisk = statSync(db).size;
    assert.ok(Number(m[1]) >= onDisk - 1024 && Number(m[1]) > 0, `ledger_size_bytes ${m[1]} vs the file's ${onDisk} bytes`);
  });
});

describe("probes, ports and paths match the server", () => {
  test("each probe path of the Deployment answers 200 on the metrics port, and 404 on the client port", async () => {
    const c = container();
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) {
      assert.equal(c[probe].httpGet.port, "metrics");
      const r = await fetch(`${opsUrl}${c[probe].httpGet.path}`);
      assert.equal(r.status, 200, probe);
      await r.arrayBuffer();
      const client = await fetch(`${gw.url}${c[probe].httpGet.path}`);
      assert.equal(client.status, 404, `${probe} path is not on the client port`);
      assert.equal(((await client.json()) as { type: string }).type, "error");
    }
    const m = await fetch(`${gw.url}/metrics/prometheus`);
    assert.equal(m.status, 404, "metrics are not on the client port");
    await m.arrayBuffer();
    const v = await fetch(`${opsUrl}/v1/models`, { headers: { "x-api-key": KEY } });
    assert.equal(v.status, 404, "the API is not on the metrics port");
    await v.arrayBuffer();
  });

  test("readiness fails while the gateway drains a request in flight; liveness is a different probe", async () => {
    // The paths are the ones the server uses for those meanings (README "Endpoints").
    const c = container();
    const readyPath = c.readinessProbe.httpGet.path;
    assert.equal(readyPath, "/health/ready");
    assert.notEqual(c.livenessProbe.httpGet.path, readyPath, "a draining pod must not look dead to the kubelet");
    // A gateway of its own (the shared one serves the other tests), with a request that hangs
    // upstream so the drain stays open until this test ends it.
    const upstream = await startMock();
    const g = await startGateway({
      ...settingsConfigMap(),
      HOST: "127.0.0.1",
      PORT: "0",
      DATABASE_PATH: join(mkdtempSync(join(tmpdir(), "portcullis-k8s-drain-")), "portcullis.db"),
      GATEWAY_API_KEYS: KEY,
      ANTHROPIC_API_KEY: "sk-upstream-live-abcdefgh",
      ANTHROPIC_API_BASE: upstream.url,
      METRICS_PORT: "0",
    });
    const gOps = `http://127.0.0.1:${(JSON.parse(g.lines.find((l) => l.includes('"msg":"listening"'))!) as { metrics_port: number }).metrics_port}`;
    const kept = new Client(gOps, { keepAliveTimeout: 60_000 });
    /** A readiness probe: its status and body, or "no connection" when none was accepted. */
    const probe = async (viaKept: boolean): Promise<{ status: number; body: any } | "no connection"> => {
      try {
        if (viaKept) {
          const r = await kept.request({ path: readyPath, method: "GET" });
          return { status: r.statusCode, body: await r.body.json() };
        }
        const r = await fetch(`${gOps}${readyPath}`);
        return { status: r.status, body: await r.json() };
      } catch {
        return "no connection";
      }
    };
    try {
      const before = await probe(true);
      assert.ok(before !== "no connection" && before.status === 200 && before.body.status === "ready", JSON.stringify(before));
      await fetch(`${upstream.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: ["hang"] }) });
      // Settles (with the upstream's reset) when the finally block stops the upstream.
      void fetch(`${g.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": KEY },
        body: JSON.stringify(msg()),
      })
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
      await until("the upstream to hold the request", async () =>
        ((await (await fetch(`${upstream.url}/__mock/stats`)).json()) as { active: number }).active === 1 ? true : undefined,
      );

      g.proc.kill("SIGTERM");
      const drainLine = await g.waitForLine("the acceptor to start draining", (l) => l.msg === "draining");
      assert.equal(drainLine.inflight, 1);
      // Both ways a kubelet can probe: on a connection opened before the drain, and on a new one.
      // Either is answered 503 with the draining component failed, or no connection is accepted;
      // never 200 "ready".
      for (const viaKept of [true, false]) {
        const p = await probe(viaKept);
        if (p !== "no connection") {
          assert.equal(p.status, 503, JSON.stringify(p.body));
          assert.equal(p.body.components.draining.ok, false);
        }
      }
      assert.equal(g.proc.exitCode, null, "the gateway is still draining its request, not gone");
    } finally {
      await kept.destroy();
      await upstream.stop(); // ends the hung request, so the drain completes
      await g.stop();
    }
  });

  test("the ServiceMonitor's path serves the Prometheus text format", async () => {
    const path = one("ServiceMonitor", undefined, MONITORING).spec.endpoints[0].path;
    const r = await fetch(`${opsUrl}${path}`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/plain/);
    assert.ok(parseExposition(await r.text()).samples.has("http_requests_total"));
  });

  test("the server's default port, the ConfigMap, the containerPort, the Service and the image agree on 8080", () => {
    const cm = settingsConfigMap();
    const defaults = loadConfig({}, undefined, 1);
    assert.equal(defaults.port, 8080);
    const effective = loadConfig({ ...cm, ANTHROPIC_API_KEY: "sk-upstream-live-abcdefgh" }, undefined, 1); // + what the Secret adds
    assert.equal(effective.port, Number(cm.PORT));
    assert.equal(effective.port, container().ports.find((p: { name: string }) => p.name === "http").containerPort);
    assert.equal(effective.metrics_port, container().ports.find((p: { name: string }) => p.name === "metrics").containerPort);
    const docker = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    assert.match(docker, new RegExp(`^EXPOSE ${effective.port}$`, "m"));
    assert.match(docker, new RegExp(`PORT=${effective.port}\\b`));
    // The drain the kubelet waits for is the one the gateway really applies.
    const pod = deployment().spec.template.spec;
    assert.equal(
      pod.terminationGracePeriodSeconds,
      requiredGraceSeconds(preStopSeconds(container()), effective.graceful_shutdown_timeout_ms),
    );
  });

  test("the Dockerfile's HEALTHCHECK command passes against the gateway, and fails when nothing listens", () => {
    const docker = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
    const m = /^HEALTHCHECK .*?CMD (\[.*\])\s*$/m.exec(docker);
    assert.ok(m, "HEALTHCHECK CMD in exec form");
    const argv = JSON.parse(m[1]!) as string[];
    assert.equal(argv[0], "node");
    const opsPort = Number(new URL(opsUrl).port);
    const run = (env: Record<string, string>) => spawnSync(process.execPath, argv.slice(1), { env, timeout: 10_000 });
    assert.equal(run({ PORT: String(gw.port), METRICS_PORT: String(opsPort) }).status, 0, "health on METRICS_PORT when set");
    assert.notEqual(run({ PORT: String(gw.port) }).status, 0, "not on the client port then");
    assert.notEqual(run({ PORT: "1" }).status, 0);
  });
});
