/**
 * The gateway process as an operator sees it: start-up validation, limits, health,
 * metrics scraped by promtool, several acceptor threads on one port, and graceful
 * shutdown in the middle of a stream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { request as httpRequest, Agent } from "node:http";
import { spawnSync } from "node:child_process";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { runExpectingFailure, startGateway, type Gateway } from "../support/gateway.js";

const KEY = "sk-lifecycle-key-123456";
const SMALL = JSON.stringify({ model: "claude-gateway-test", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });

let mock: MockHandle;
before(async () => {
  mock = await startMock();
});
after(async () => {
  await mock?.stop();
});

function post(gw: Gateway, body: string | ReadableStream, extra: RequestInit = {}): Promise<Response> {
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY },
    body,
    ...extra,
  } as RequestInit);
}

/** Raw HTTP/1.1 over one socket: write `data`, collect what comes back until close or `ms`. */
function raw(port: number, data: string, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let out = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => (out += d));
    const t = setTimeout(() => s.destroy(), ms);
    s.on("close", () => {
      clearTimeout(t);
      resolve(out);
    });
    s.on("error", () => undefined);
    s.write(data);
  });
}

/** Resolves once `n` log lines match; fails after `ms` (a hang guard). */
async function logLines(gw: Gateway, match: (line: string) => boolean, n: number, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (gw.lines.filter(match).length < n) {
    if (Date.now() > end) assert.fail(`fewer than ${n} matching log lines within ${ms} ms: ${gw.lines.slice(-8).join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("start-up validation", () => {
  test("a bad setting stops the start with a message naming it", async () => {
    const cases: [Record<string, string>, RegExp][] = [
      [{ PORT: "abc" }, /PORT/],
      [{ HTTP_THREADS: "0" }, /HTTP_THREADS/],
      [{ MODEL_PROVIDER: "nowhere" }, /MODEL_PROVIDER/],
      [{ GRACEFUL_SHUTDOWN_TIMEOUT: "soon" }, /GRACEFUL_SHUTDOWN_TIMEOUT/],
      [{ CONFIG_FILE: "/nonexistent/portcullis.json" }, /CONFIG_FILE/],
      [{ DATABRICKS_API_KEY: "dapi-secret-value-1" }, /DATABRICKS_API_BASE/],
      // Rate limits count per client key: without any key they would silently do nothing.
      [{ RATE_LIMIT_REQUESTS_PER_MINUTE: "60" }, /RATE_LIMIT_REQUESTS_PER_MINUTE: rate limits apply per client key/],
      [{ RATE_LIMIT_TOKENS_PER_MINUTE: "1000" }, /RATE_LIMIT_TOKENS_PER_MINUTE/],
    ];
    for (const [env, re] of cases) {
      const r = await runExpectingFailure(env);
      assert.equal(r.code, 1, JSON.stringify(env));
      assert.match(r.stderr, re);
      assert.ok(!r.stderr.includes("dapi-secret-value-1"), "a key leaked into the start-up error");
      assert.ok(!/\n\s+at /.test(r.stderr), "no stack trace for a configuration mistake");
    }
  });
});

describe("limits and failures", () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      ANTHROPIC_API_BASE: "http://127.0.0.1:1", // nothing listens there
      ANTHROPIC_API_KEY: "sk-upstream-nowhere-1",
      GATEWAY_API_KEYS: KEY,
      MAX_BODY_BYTES: "4096",
      BODY_TIMEOUT_MS: "400",
      CONFIG_FILE: "",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("an unknown model with no default route is a 404 not_found_error", async () => {
    const r = await post(gw, SMALL);
    assert.equal(r.status, 404);
    const j = (await r.json()) as { error: { type: string; message: string } };
    assert.equal(j.error.type, "not_found_error");
    assert.match(j.error.message, /claude-gateway-test/);
  });

  test("an announced body over MAX_BODY_BYTES is a 413 request_too_large", async () => {
    const r = await post(gw, JSON.stringify({ model: "m", max_tokens: 1, messages: [{ role: "user", content: "x".repeat(5000) }] }));
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { error: { type: string } }).error.type, "request_too_large");
  });

  test("a chunked body over the cap gets its 413 even while the client is still sending", async () => {
    const chunk = new TextEncoder().encode("x".repeat(1024));
    let sent = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent++ < 64) c.enqueue(chunk);
        else c.close();
      },
    });
    // The rest of the body is read and dropped (lingering close), so the answer always arrives.
    const r = await post(gw, stream, { duplex: "half" } as RequestInit);
    assert.equal(r.status, 413);
    assert.equal(((await r.json()) as { error: { type: string; message: string } }).error.message, "request body exceeds 4096 bytes");
  });

  test("a stalled body gets 408 and the connection is closed", async () => {
    const out = await raw(
      gw.port,
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\nx-api-key: ${KEY}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"model":`,
      8000,
    );
    assert.match(out, /^HTTP\/1\.1 408 /);
    assert.match(out, /"type":"timeout_error"/);
    const o = (await (await fetch(`${gw.url}/metrics/observability`)).json()) as { requests: { active: number } };
    assert.equal(o.requests.active, 1, "only the observability request itself is in flight");
  });
});

describe("upstream connect failure", () => {
  test("maps to 502 api_error in Anthropic's shape", async () => {
    const gw = await startGateway({
      ANTHROPIC_API_BASE: "http://127.0.0.1:1",
      ANTHROPIC_API_KEY: "sk-upstream-nowhere-1",
      MODEL_PROVIDER: "anthropic",
    });
    try {
      const r = await fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: SMALL });
      assert.equal(r.status, 502);
      const j = (await r.json()) as { type: string; error: { type: string }; request_id: string };
      assert.equal(j.type, "error");
      assert.equal(j.error.type, "api_error");
      assert.equal(j.request_id, r.headers.get("request-id"));
    } finally {
      await gw.stop();
    }
  });
});

describe("health, metrics and threads", () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-abcdefgh",
      MODEL_PROVIDER: "anthropic",
      HTTP_THREADS: "2",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("a fresh process is live and ready, and says why", async () => {
    const live = await fetch(`${gw.url}/health/live`);
    assert.equal(live.status, 200);
    await live.arrayBuffer();
    const ready = await fetch(`${gw.url}/health/ready`);
    assert.equal(ready.status, 200);
    const j = (await ready.json()) as { status: string; components: Record<string, { ok: boolean }> };
    assert.equal(j.status, "ready");
    for (const c of ["draining", "workers", "heap", "providers"]) assert.equal(j.components[c]?.ok, true, c);
  });

  test("two acceptor threads share one port and one set of metrics", async () => {
    const agent = new Agent({ keepAlive: false });
    const one = () =>
      new Promise<number>((resolve, reject) => {
        const req = httpRequest(
          `${gw.url}/v1/messages`,
          { method: "POST", agent, headers: { "content-type": "application/json" } },
          (res) => {
            res.resume();
            res.on("end", () => resolve(res.statusCode ?? 0));
          },
        );
        req.on("error", reject);
        req.end(SMALL);
      });
    const statuses: number[] = [];
    for (let round = 0; round < 10; round++) statuses.push(...(await Promise.all(Array.from({ length: 10 }, one))));
    assert.deepEqual([...new Set(statuses)], [200]);
    const o = (await (await fetch(`${gw.url}/metrics/observability`)).json()) as {
      requests: { detail: { route: string; provider: string; status_class: string; value: number }[] };
    };
    const served = o.requests.detail.find((d) => d.route === "messages" && d.provider === "anthropic" && d.status_class === "2xx");
    assert.equal(served?.value, 100, "both threads count into the one shared buffer");
    // Each thread logs its requests asynchronously: wait for all 100 lines (bounded).
    await logLines(gw, (l) => l.includes('"msg":"request"') && l.includes('"route":"messages"'), 100);
    const threads = new Set(gw.lines.filter((l) => l.includes('"msg":"request"')).map((l) => JSON.parse(l).thread));
    assert.equal(threads.size, 2, "100 separate connections should reach both threads");
  });

  test("promtool accepts /metrics/prometheus and the SPEC's names are there", async () => {
    await post(gw, "{not json").then((r) => r.arrayBuffer());
    const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    for (const name of [
      "http_requests_total",
      "http_request_errors_total",
      "http_request_duration_seconds_bucket",
      "process_resident_memory_bytes",
      "nodejs_heap_size_used_bytes",
    ]) {
      assert.ok(text.includes(`\n${name}`) || text.startsWith(name), `missing ${name}`);
    }
    assert.match(text, /http_requests_total\{route="messages",provider="anthropic",status_class="2xx"\} \d+/);
    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.ok(r.error === undefined, `promtool could not run (install Debian's prometheus package): ${r.error}`);
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  });
});

describe("graceful shutdown", () => {
  test("SIGTERM mid-stream: readiness fails, no new connections, the stream completes, exit 0", async () => {
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-abcdefgh",
      MODEL_PROVIDER: "anthropic",
      GRACEFUL_SHUTDOWN_TIMEOUT: "20000",
    });
    await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: ["slow-stream:150"] }) });
    // A keep-alive connection opened before the signal, to probe readiness while draining.
    const probe = connect(gw.port, "127.0.0.1");
    await new Promise((r) => probe.once("connect", r));
    const res = await post(
      gw,
      JSON.stringify({ model: "claude-gateway-test", max_tokens: 8, stream: true, messages: [{ role: "user", content: "hi" }] }),
    );
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = dec.decode((await reader.read()).value);
    gw.proc.kill("SIGTERM");
    await logLines(gw, (l) => l.includes('"msg":"draining"'), 1);
    const readiness = await new Promise<string>((resolve) => {
      let out = "";
      probe.setEncoding("utf8");
      probe.on("data", (d: string) => {
        out += d;
        if (out.includes("\r\n\r\n") && out.includes("}")) resolve(out);
      });
      probe.write("GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n");
    });
    probe.destroy();
    assert.match(readiness, /^HTTP\/1\.1 503 /);
    assert.match(readiness, /"draining":\{"ok":false\}/);
    const fresh = await fetch(`${gw.url}/health/live`).then(
      () => "accepted",
      () => "refused",
    );
    assert.equal(fresh, "refused", "the listen socket must be closed while draining");
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    assert.match(text, /event: message_stop\n/, "the in-flight stream must complete");
    assert.ok(!text.includes("event: error"));
    assert.equal(await gw.exited, 0);
    assert.ok(gw.lines.some((l) => l.includes('"msg":"stopped"')));
  });
});
