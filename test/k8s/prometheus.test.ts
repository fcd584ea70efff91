/**
 * A real Prometheus (Debian's `prometheus`) on 127.0.0.1 scrapes a gateway every second with
 * the PrometheusRule's groups loaded (evaluated every second). Traffic with injected
 * upstream errors, slow replies, an opened breaker and shed requests goes through the
 * gateway; then the HTTP API must show the series, and each alert expression must evaluate
 * as that traffic implies, both as a query and as the rule's own state (pending: every
 * alert has a `for`, which the test does not wait out). Finally the gateway stops and
 * PortcullisInstanceDown goes pending.
 *
 * No wall-clock upper bound on the gateway: every wait is "poll until true", with a
 * generous deadline that only bounds a broken run.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { freePort } from "../support/free-port.js";
import { until as untilShared } from "../support/wait.js";
import {
  adapterQuery,
  adapterRules,
  alertRules,
  dashboardExprs,
  grafanaToPromQL,
  MONITORING,
  one,
  ruleFileText,
  splitComparison,
  which,
} from "./support.js";

const SHED_THRESHOLD = 6; // LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD
const SHED = 3300; // > 300 s x 10/s
const SLOW_MS = 3000; // > the 2 s p95 threshold, in the (2.5, 5] bucket
const SLOW = 3;
const FAST = 17; // 3 of 20 slow: p95 falls among the slow ones

interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

let dir: string;
let mock: MockHandle;
let gw: Gateway;
let prom: ChildProcess | undefined;
let promUrl: string;
let promLog = "";
let shedCount = 0;
let gatewayStopped = false;

async function query(expr: string): Promise<Sample[]> {
  const r = await fetch(`${promUrl}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const j = (await r.json()) as { status: string; error?: string; data: { resultType: string; result: Sample[] } };
  assert.equal(j.status, "success", `${expr}: ${j.error}`);
  assert.equal(j.data.resultType, "vector", expr);
  return j.data.result;
}

/** Poll until `check` returns a value (not undefined); the deadline only bounds a broken run. */
function until<T>(what: string, check: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  return untilShared(what, check, ms, 200, () => promLog.slice(-2000));
}

const value = (s: Sample): number => Number(s.value[1]);

async function alertStates(): Promise<Map<string, { state: string; labels: Record<string, string> }[]>> {
  const j = (await (await fetch(`${promUrl}/api/v1/rules?type=alert`)).json()) as {
    data: {
      groups: {
        rules: { name: string; health: string; lastError?: string; alerts: { state: string; labels: Record<string, string> }[] }[];
      }[];
    };
  };
  const out = new Map<string, { state: string; labels: Record<string, string> }[]>();
  for (const g of j.data.groups) for (const r of g.rules) out.set(r.name, r.alerts);
  return out;
}

function body(model: string): string {
  return JSON.stringify({ model, max_tokens: 8, messages: [{ role: "user", content: "hi" }] });
}
function call(model: string, signal?: AbortSignal): Promise<Response> {
  return fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: body(model), signal });
}
async function faults(...f: string[]): Promise<void> {
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  if (f.length > 0) await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: f }) });
}
async function status(r: Promise<Response>): Promise<number> {
  const x = await r;
  await x.arrayBuffer();
  return x.status;
}
async function gatewayCounter(line: RegExp): Promise<number> {
  const m = line.exec(await (await fetch(`${gw.url}/metrics/prometheus`)).text());
  return m ? Number(m[1]) : 0;
}

before(async () => {
  const bin = which("prometheus");
  assert.ok(bin, "the prometheus server is missing: apt-get install prometheus (npm test's pretest step does it as root)");
  dir = mkdtempSync(join(tmpdir(), "portcullis-prom-"));
  mock = await startMock();
  const cfg = join(dir, "gateway.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        main: { type: "anthropic", base_url: mock.url, api_key: "sk-up-main-12345678" },
        broken: { type: "anthropic", base_url: mock.url, api_key: "sk-up-broken-12345678" },
      },
      routes: [{ match: "broken-*", provider: "broken" }],
      default_provider: "main",
    }),
  );
  gw = await startGateway({
    CONFIG_FILE: cfg,
    RETRY_MAX_ATTEMPTS: "1",
    CIRCUIT_BREAKER_FAILURE_THRESHOLD: "3",
    CIRCUIT_BREAKER_TIMEOUT: "600000",
    LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD: String(SHED_THRESHOLD),
  });

  const endpoint = one("ServiceMonitor", undefined, MONITORING).spec.endpoints[0];
  writeFileSync(join(dir, "rules.yml"), ruleFileText());
  writeFileSync(
    join(dir, "prometheus.yml"),
    [
      "global:",
      "  scrape_interval: 1s",
      "  scrape_timeout: 1s",
      "  evaluation_interval: 1s",
      "rule_files: [rules.yml]",
      "scrape_configs:",
      // The job name the ServiceMonitor's jobLabel produces in the cluster.
      "  - job_name: portcullis",
      `    metrics_path: ${endpoint.path}`,
      `    scheme: ${endpoint.scheme}`,
      "    static_configs:",
      `      - targets: ["127.0.0.1:${gw.port}"]`,
      "",
    ].join("\n"),
  );
  const port = await freePort();
  promUrl = `http://127.0.0.1:${port}`;
  prom = spawn(
    bin,
    [
      `--config.file=${join(dir, "prometheus.yml")}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=127.0.0.1:${port}`,
      "--storage.tsdb.retention.time=1h",
      "--log.level=warn",
    ],
    { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
  );
  prom.stdout!.on("data", (d: Buffer) => (promLog += d.toString()));
  prom.stderr!.on("data", (d: Buffer) => (promLog += d.toString()));
  await until("prometheus ready", async () => ((await fetch(`${promUrl}/-/ready`)).ok ? true : undefined));
  await until("the gateway scraped", async () => ((await query('up{job="portcullis"}')).some((s) => value(s) === 1) ? true : undefined));

  // Warm-up: a series that first appears with a non-zero value loses that value from
  // rate(), so first create every label set the assertions read (a success on main, an
  // upstream error on broken, one shed call) and wait until Prometheus has scraped them.
  await faults();
  assert.equal(await status(call("claude-sonnet-4-5")), 200);
  await faults("status:500");
  assert.equal(await status(call("broken-model")), 500);

  // Shedding: hold SHED_THRESHOLD calls upstream ("hang"), then every other call is refused.
  await faults(...Array.from({ length: SHED_THRESHOLD }, () => "hang"));
  const ac = new AbortController();
  const held = Array.from({ length: SHED_THRESHOLD }, () =>
    call("claude-sonnet-4-5", ac.signal)
      .then(
        (r) => r.arrayBuffer(),
        () => null,
      )
      .catch(() => null),
  );
  await until("calls held upstream", async () => {
    const s = (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { active: number };
    return s.active >= SHED_THRESHOLD ? true : undefined;
  });
  assert.equal(await status(call("claude-sonnet-4-5")), 503, "shed while the slots are held");
  shedCount = 1;
  await until("warm-up scraped", async () =>
    (await query('http_request_errors_total{job="portcullis",provider="broken",type="api_error"}')).length === 1 &&
    (await query('http_request_errors_total{job="portcullis",provider="none",type="overloaded_error"}')).length === 1 &&
    (await query('http_request_duration_seconds_count{job="portcullis",provider="main"}')).length === 1
      ? true
      : undefined,
  );
  // The shedding alert is "rate over [5m] > 10/s": more than 3000 rejections in the window.
  let next = 0;
  const statuses = new Map<number, number>();
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (next < SHED) {
        next++;
        const s = await status(call("claude-sonnet-4-5"));
        statuses.set(s, (statuses.get(s) ?? 0) + 1);
      }
    }),
  );
  assert.deepEqual([...statuses.keys()], [503], "with the slots held, every call is shed");
  shedCount += statuses.get(503)!;
  ac.abort();
  await Promise.all(held);
  await faults();
  await until("held calls released", async () => {
    const s = (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { active: number };
    return s.active === 0 ? true : undefined;
  });

  // Slow replies: 3 of 20 calls take 3 s, so p95 for provider main is above 2 s.
  await faults(...Array.from({ length: SLOW }, () => `delay:${SLOW_MS}`));
  const slow = await Promise.all(Array.from({ length: SLOW }, () => status(call("claude-sonnet-4-5"))));
  assert.deepEqual(slow, Array(SLOW).fill(200));
  await faults();
  for (let i = 0; i < FAST; i++) assert.equal(await status(call("claude-sonnet-4-5")), 200);

  // Upstream errors open provider broken's breaker (threshold 3, no retries); then it fails fast.
  await faults("status:500", "status:500");
  assert.equal(await status(call("broken-model")), 500);
  assert.equal(await status(call("broken-model")), 500);
  assert.equal(await status(call("broken-model")), 503, "the breaker is open: fail fast");
  await faults();

  assert.equal(
    await gatewayCounter(/^http_requests_rejected_total\{reason="active_requests"\} (\d+)$/m),
    shedCount,
    "the gateway counted every shed call",
  );
  // Wait for a scrape that started after the last call ended.
  const end = Date.now() / 1000;
  await until("a scrape after the traffic", async () => {
    const r = await query('timestamp(up{job="portcullis"})');
    return r.length === 1 && value(r[0]!) > end + 0.05 ? true : undefined;
  });
});

after(async () => {
  if (prom && prom.exitCode === null && prom.signalCode === null) {
    const exited = new Promise((r) => prom!.once("exit", r));
    prom.kill("SIGTERM");
    const t = setTimeout(() => prom!.kill("SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  }
  if (!gatewayStopped) await gw?.stop();
  await mock?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const alert = (name: string) => alertRules().find((r) => r.alert === name)!;

describe("a real Prometheus evaluates the rules against a live gateway", () => {
  test("the rules load and evaluate without errors", async () => {
    const j = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as {
      data: { groups: { name: string; rules: { name: string; type: string; health: string; lastError?: string }[] }[] };
    };
    const rules = j.data.groups.flatMap((g) => g.rules);
    assert.deepEqual(
      rules.map((r) => r.name).sort(),
      alertRules()
        .map((r) => r.alert)
        .sort(),
    );
    for (const r of rules) assert.equal(r.health, "ok", `${r.name}: ${r.lastError}`);
  });

  test("the series exist, with the counts the traffic implies", async () => {
    const one1 = async (expr: string): Promise<number> => {
      const r = await query(expr);
      assert.equal(r.length, 1, `${expr}: ${JSON.stringify(r)}`);
      return value(r[0]!);
    };
    assert.equal(await one1('http_requests_total{job="portcullis",route="messages",provider="main",status_class="2xx"}'), 1 + SLOW + FAST);
    assert.equal(await one1('http_request_errors_total{job="portcullis",route="messages",provider="broken",type="api_error"}'), 3);
    assert.equal(await one1('http_requests_rejected_total{job="portcullis",reason="circuit_open"}'), 1);
    assert.equal(await one1('http_requests_rejected_total{job="portcullis",reason="active_requests"}'), shedCount);
    // Shed requests carry provider="none"; the open breaker's fail-fast names the provider that refused.
    assert.equal(
      await one1('http_request_errors_total{job="portcullis",route="messages",provider="none",type="overloaded_error"}'),
      shedCount,
    );
    assert.equal(await one1('http_request_errors_total{job="portcullis",route="messages",provider="broken",type="overloaded_error"}'), 1);
    assert.equal(await one1('circuit_breaker_state{job="portcullis",provider="broken",state="open"}'), 1);
    assert.equal(await one1('circuit_breaker_state{job="portcullis",provider="main",state="closed"}'), 1);
    assert.ok((await one1('process_resident_memory_bytes{job="portcullis"}')) > 0);
    assert.equal(await one1('gateway_draining{job="portcullis"}'), 0);
  });

  test("PortcullisHighErrorRate: the error ratio is above 5%, the rule is pending", async () => {
    const a = alert("PortcullisHighErrorRate");
    const { value: v, threshold } = splitComparison(a.expr);
    const r = await query(v);
    assert.equal(r.length, 1);
    // Nearly every call in the window was shed or failed upstream.
    assert.ok(value(r[0]!) > 0.9 && value(r[0]!) <= 1, `ratio ${value(r[0]!)}`);
    assert.ok(value(r[0]!) > threshold);
    assert.equal((await query(a.expr)).length, 1);
    await until("HighErrorRate pending", async () => ((await alertStates()).get(a.alert)?.[0]?.state === "pending" ? true : undefined));
  });

  test("PortcullisCircuitBreakerOpen: only provider broken, and the rule is pending for it", async () => {
    const a = alert("PortcullisCircuitBreakerOpen");
    const r = await query(a.expr);
    assert.deepEqual(
      r.map((s) => s.metric.provider),
      ["broken"],
    );
    await until("BreakerOpen pending", async () => {
      const al = (await alertStates()).get(a.alert) ?? [];
      return al.length === 1 && al[0]!.state === "pending" && al[0]!.labels.provider === "broken" ? true : undefined;
    });
  });

  test("PortcullisLoadShedding: above 10/s over 5m after more than 3000 rejections", async () => {
    const a = alert("PortcullisLoadShedding");
    const { value: v, threshold } = splitComparison(a.expr);
    const r = await query(v);
    assert.equal(r.length, 1);
    // rate over [5m] divides the increase by 300 s (plus at most a small extrapolation).
    assert.ok(value(r[0]!) >= (shedCount / 300) * 0.99, `${value(r[0]!)} for ${shedCount} rejections`);
    assert.ok(value(r[0]!) > threshold);
    await until("LoadShedding pending", async () => ((await alertStates()).get(a.alert)?.[0]?.state === "pending" ? true : undefined));
  });

  test("PortcullisHighLatencyP95: p95 above 2 s for provider main only, shed calls excluded", async () => {
    const a = alert("PortcullisHighLatencyP95");
    const { value: v, threshold } = splitComparison(a.expr);
    const byProvider = new Map((await query(v)).map((s) => [s.metric.provider, value(s)]));
    assert.ok(!byProvider.has("none"), "shed requests are excluded");
    assert.ok(byProvider.get("main")! > threshold, `p95 main ${byProvider.get("main")}`);
    assert.ok((byProvider.get("broken") ?? 0) < threshold, "fast failures are fast");
    assert.deepEqual(
      (await query(a.expr)).map((s) => s.metric.provider),
      ["main"],
    );
    await until("HighLatencyP95 pending", async () => ((await alertStates()).get(a.alert)?.[0]?.state === "pending" ? true : undefined));
  });

  test("PortcullisHighMemory: a small fraction of the limit, not firing", async () => {
    const a = alert("PortcullisHighMemory");
    const { value: v, threshold } = splitComparison(a.expr);
    const r = await query(v);
    assert.equal(r.length, 1);
    assert.ok(value(r[0]!) > 0 && value(r[0]!) < threshold, `ratio ${value(r[0]!)}`);
    assert.deepEqual(await query(a.expr), []);
    assert.equal((await alertStates()).get(a.alert)?.length, 0);
  });

  test("PortcullisLedgerNearFull: the ledger's share of its volume is small and positive, not firing", async () => {
    const a = alert("PortcullisLedgerNearFull");
    const { value: v, threshold } = splitComparison(a.expr);
    const r = await query(v);
    assert.equal(r.length, 1);
    assert.ok(value(r[0]!) > 0 && value(r[0]!) < threshold, `ratio ${value(r[0]!)}`);
    assert.deepEqual(await query(a.expr), []);
    assert.equal((await alertStates()).get(a.alert)?.length, 0);
  });

  test("the prometheus-adapter query for http_requests_per_second gives a per-target rate", async () => {
    const [rule] = adapterRules();
    const r = await query(adapterQuery(rule!, "http_requests_total", 'job="portcullis"', "instance"));
    assert.equal(r.length, 1);
    assert.ok(value(r[0]!) > 0);
    assert.equal(r[0]!.metric.instance, `127.0.0.1:${gw.port}`);
  });

  test("every dashboard query is valid PromQL and every panel has data", async () => {
    for (const { where, expr } of dashboardExprs()) {
      const r = await query(grafanaToPromQL(expr)); // asserts status success (parsed and evaluated)
      assert.ok(r.length > 0, `${where} has no data: ${expr}`);
    }
    // Tokens and cost of the priced calls, by model.
    const cost = await query('sum by (model) (cost_total{job="portcullis"})');
    assert.deepEqual(
      cost.map((s) => s.metric.model),
      ["claude-sonnet-4"],
    );
    assert.ok(value(cost[0]!) > 0);
  });

  test("PortcullisInstanceDown: stop the gateway, up goes to 0 and the rule goes pending", async () => {
    const a = alert("PortcullisInstanceDown");
    assert.deepEqual(await query(a.expr), [], "not while it runs");
    assert.equal(await gw.stop(), 0);
    gatewayStopped = true;
    await until("up == 0", async () => ((await query(a.expr)).length === 1 ? true : undefined));
    await until("InstanceDown pending", async () => ((await alertStates()).get(a.alert)?.[0]?.state === "pending" ? true : undefined));
  });
});
