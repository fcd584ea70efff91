/**
 * Resilience against the real mock upstream with injected faults: retries and
 * retry-after, no retry after the first byte, circuit breakers, fallbacks, load shedding
 * and rate limits. No wall-clock upper bounds: only orders and minimum gaps.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

const KEY = "sk-resilience-key-1234";
let mock: MockHandle;

async function stats(): Promise<{ requests: number; active: number }> {
  return (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { requests: number; active: number };
}
async function faults(...f: string[]): Promise<void> {
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  if (f.length > 0) await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: f }) });
}
function body(model: string, stream = false): string {
  return JSON.stringify({ model, max_tokens: 8, stream, messages: [{ role: "user", content: "hi" }] });
}
function call(gw: Gateway, model: string, opts: { stream?: boolean; key?: string } = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": opts.key ?? KEY },
    body: body(model, opts.stream),
  });
}
async function breakers(gw: Gateway): Promise<Record<string, { state: string }>> {
  return ((await (await fetch(`${gw.url}/metrics/circuit-breakers`)).json()) as { breakers: Record<string, { state: string }> }).breakers;
}
async function settle(gw: Gateway): Promise<void> {
  await until("nothing left in flight, upstream or here", async () => {
    const o = (await (await fetch(`${gw.url}/metrics/observability`)).json()) as { requests: { active: number } };
    return o.requests.active === 1 && (await stats()).active === 0 ? true : undefined;
  });
}

before(async () => {
  mock = await startMock();
});
after(async () => {
  await mock?.stop();
});

describe("retries, breakers and fallbacks", () => {
  let gw: Gateway;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-res-"));
    const cfg = join(dir, "config.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        providers: {
          flaky: { type: "anthropic", base_url: mock.url, api_key: "sk-up-flaky-123" },
          fragile: { type: "anthropic", base_url: mock.url, api_key: "sk-up-fragile-123" },
          dead: { type: "anthropic", base_url: "http://127.0.0.1:1", api_key: "sk-up-dead-123" },
          backup: { type: "anthropic", base_url: mock.url, api_key: "sk-up-backup-123" },
        },
        routes: [
          { match: "flaky-*", provider: "flaky" },
          { match: "fragile-*", provider: "fragile" },
          { match: "failover-*", provider: "dead", fallbacks: [{ provider: "backup", model: "backup-model" }] },
        ],
        api_keys: [KEY],
      }),
    );
    gw = await startGateway({
      CONFIG_FILE: cfg,
      RETRY_MAX_ATTEMPTS: "3",
      RETRY_BASE_DELAY_MS: "20",
      RETRY_MAX_DELAY_MS: "100",
      CIRCUIT_BREAKER_FAILURE_THRESHOLD: "3",
      CIRCUIT_BREAKER_TIMEOUT: "700",
      CIRCUIT_BREAKER_SUCCESS_THRESHOLD: "2",
      CIRCUIT_BREAKER_HALF_OPEN_PROBES: "1",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("retries recover a flaky upstream (529, then a reset) before anything reaches the client", async () => {
    await faults("status:529", "reset");
    const before = (await stats()).requests;
    const r = await call(gw, "flaky-model");
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { type: string }).type, "message");
    assert.equal((await stats()).requests - before, 3, "two failures, then the success");
  });

  test("retry-after is honoured: the retry waits at least that long", async () => {
    await faults("status:429;retry-after:1");
    const t0 = Date.now();
    const r = await call(gw, "flaky-model");
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    assert.ok(Date.now() - t0 >= 1000, "the retry came before retry-after allowed");
  });

  test("a client error is never retried and passes through", async () => {
    await faults("status:400");
    const before = (await stats()).requests;
    const r = await call(gw, "flaky-model");
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { error: { type: string } }).error.type, "invalid_request_error");
    assert.equal((await stats()).requests - before, 1);
  });

  test("nothing is retried after the first byte: a cut stream ends in an SSE error", async () => {
    await faults("cut-stream:2");
    const before = (await stats()).requests;
    const r = await call(gw, "flaky-model", { stream: true });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.match(text, /event: error\ndata: \{"type":"error","error":\{"type":"api_error"/);
    assert.equal((await stats()).requests - before, 1, "no retry once streaming started");
  });

  test("the breaker opens, fails fast, half-opens and closes", async () => {
    await faults("status:500", "status:500", "status:500");
    const r1 = await call(gw, "fragile-model");
    assert.equal(r1.status, 500, "out of attempts, the last upstream answer passes through");
    await r1.arrayBuffer();
    assert.equal((await breakers(gw)).fragile!.state, "open");
    const before = (await stats()).requests;
    const r2 = await call(gw, "fragile-model");
    assert.equal(r2.status, 503);
    assert.ok(Number(r2.headers.get("retry-after")) >= 1);
    assert.equal(((await r2.json()) as { error: { type: string } }).error.type, "overloaded_error");
    assert.equal((await stats()).requests, before, "fail fast: nothing sent upstream while open");
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /circuit_breaker_state\{provider="fragile",state="open"\} 1/);
    assert.match(prom, /circuit_breaker_state\{provider="flaky",state="closed"\} 1/);
    assert.match(prom, /http_requests_rejected_total\{reason="circuit_open"\} [1-9]/);
    assert.match(
      prom,
      /http_request_errors_total\{route="messages",provider="fragile",type="overloaded_error"\} [1-9]/,
      "a fail-fast 503 names the provider",
    );
    // Until CIRCUIT_BREAKER_TIMEOUT has passed every call fails fast (503, nothing sent);
    // the first call after it is admitted as a probe.
    const r3 = await until("the breaker to admit a probe after its timeout", async () => {
      const r = await call(gw, "fragile-model");
      if (r.status !== 503) return r;
      await r.arrayBuffer();
      return undefined;
    });
    assert.equal(r3.status, 200, "a probe is admitted once the timeout passed");
    await r3.arrayBuffer();
    assert.equal((await stats()).requests, before + 1, "only the probe reached the upstream");
    assert.equal((await breakers(gw)).fragile!.state, "half_open", "one success of the two needed");
    const r4 = await call(gw, "fragile-model");
    assert.equal(r4.status, 200);
    await r4.arrayBuffer();
    assert.equal((await breakers(gw)).fragile!.state, "closed");
    await gw.waitForLine(
      "the fragile breaker's transition to closed",
      (l) => l.msg === "circuit breaker transition" && l.provider === "fragile" && l.to === "closed",
    );
    const transitions = gw.lines
      .filter((l) => l.includes("circuit breaker transition") && l.includes('"provider":"fragile"'))
      .map((l) => JSON.parse(l).to);
    assert.deepEqual(transitions, ["open", "half_open", "closed"]);
  });

  test("a fallback serves while the primary is down, and says so in a header only", async () => {
    await faults();
    const r = await call(gw, "failover-model");
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-portcullis-provider"), "backup");
    const j = (await r.json()) as { model: string };
    assert.equal(j.model, "backup-model", "the fallback's own model name was spliced in");
  });

  test("after all of it the process is healthy with nothing in flight", async () => {
    await settle(gw);
    const ready = await fetch(`${gw.url}/health/ready`);
    assert.equal(ready.status, 200);
    await ready.arrayBuffer();
  });
});

describe("load shedding and rate limits", () => {
  test("overload is shed with 503 + retry-after while /health/live answers", async () => {
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-abcdefgh",
      MODEL_PROVIDER: "anthropic",
      LOAD_SHEDDING_ACTIVE_REQUESTS_THRESHOLD: "2",
      RETRY_MAX_ATTEMPTS: "1",
    });
    try {
      await faults(...Array.from({ length: 8 }, () => "delay:600"));
      const pending = Array.from({ length: 8 }, () =>
        fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: body("claude-x") }),
      );
      // The two admitted requests are held upstream (delay:600): probe health meanwhile.
      await until("two requests to be held upstream", async () => ((await stats()).active >= 2 ? true : undefined));
      const live = await fetch(`${gw.url}/health/live`);
      assert.equal(live.status, 200, "health is never shed");
      await live.arrayBuffer();
      const results = await Promise.all(pending);
      const statuses = results.map((r) => r.status).sort();
      assert.ok(statuses.includes(200), "some requests were admitted");
      assert.ok(statuses.includes(503), "overload was shed");
      assert.deepEqual([...new Set(statuses)].sort(), [200, 503]);
      for (const r of results) {
        const j = (await r.json()) as { error?: { type: string } };
        if (r.status === 503) {
          assert.equal(j.error?.type, "overloaded_error");
          assert.ok(Number(r.headers.get("retry-after")) >= 1);
        }
      }
      const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
      assert.match(prom, /http_requests_rejected_total\{reason="active_requests"\} [1-9]/);
      await faults();
      await settle(gw);
      const after = await fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: body("claude-x"),
      });
      assert.equal(after.status, 200, "an idle process does not shed");
      await after.arrayBuffer();
    } finally {
      await gw.stop();
    }
  });

  test("a key over its requests per minute gets 429 with retry-after and anthropic-ratelimit-* headers", async () => {
    const other = "sk-resilience-other-5678";
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-abcdefgh",
      MODEL_PROVIDER: "anthropic",
      GATEWAY_API_KEYS: `${KEY},${other}`,
      RATE_LIMIT_REQUESTS_PER_MINUTE: "3",
    });
    try {
      await faults();
      for (let i = 0; i < 3; i++) {
        const r = await call(gw, "claude-x");
        assert.equal(r.status, 200);
        await r.arrayBuffer();
      }
      const r = await call(gw, "claude-x");
      assert.equal(r.status, 429);
      assert.ok(Number(r.headers.get("retry-after")) >= 1);
      assert.equal(r.headers.get("anthropic-ratelimit-requests-limit"), "3");
      assert.equal(r.headers.get("anthropic-ratelimit-requests-remaining"), "0");
      assert.ok(!Number.isNaN(Date.parse(r.headers.get("anthropic-ratelimit-requests-reset") ?? "")));
      assert.equal(((await r.json()) as { error: { type: string } }).error.type, "rate_limit_error");
      const o = await call(gw, "claude-x", { key: other });
      assert.equal(o.status, 200, "limits are per key");
      await o.arrayBuffer();
      const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
      assert.match(prom, /http_requests_rejected_total\{reason="rate_limit_requests"\} 1/);
    } finally {
      await gw.stop();
    }
  });

  test("timeouts: no first byte gives 504; a stream that stalls ends in an SSE timeout_error", async () => {
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-abcdefgh",
      MODEL_PROVIDER: "anthropic",
      UPSTREAM_HEADERS_TIMEOUT_MS: "300",
      UPSTREAM_BODY_TIMEOUT_MS: "300",
      RETRY_MAX_ATTEMPTS: "1",
    });
    try {
      await faults("hang");
      const r = await fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: body("claude-x"),
      });
      assert.equal(r.status, 504);
      assert.equal(((await r.json()) as { error: { type: string } }).error.type, "timeout_error");
      await faults("slow-stream:2500");
      const s = await fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: body("claude-x", true),
      });
      assert.equal(s.status, 200);
      const text = await s.text();
      assert.match(text, /event: error\ndata: \{"type":"error","error":\{"type":"timeout_error"/);
      await faults();
      await settle(gw);
    } finally {
      await gw.stop();
    }
  });
});
