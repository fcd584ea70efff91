/**
 * OpenTelemetry traces end to end: the real gateway exports over OTLP/HTTP (JSON) to a real
 * HTTP receiver in this test; the real mock upstream fails twice and a fallback provider
 * streams the answer. The span tree, the GenAI attributes, the client's traceparent as the
 * parent and the traceparent each attempt sent upstream are checked; an unreachable
 * collector loses spans into otel_spans_dropped_total and requests still succeed.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { freePort } from "../support/free-port.js";

/** OTLP/JSON's ExportTraceServiceRequest, the parts read here (opentelemetry-proto trace/v1). */
interface AnyValue {
  stringValue?: string;
  intValue?: string | number;
  boolValue?: boolean;
  doubleValue?: number;
}
interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: AnyValue }[];
  events?: { name: string; attributes?: { key: string; value: AnyValue }[] }[];
  status?: { code?: number; message?: string };
}
interface ExportRequest {
  resourceSpans: { resource: { attributes: { key: string; value: AnyValue }[] }; scopeSpans: { spans: OtlpSpan[] }[] }[];
}

const KEY = "gw-trace-key-123456";
let mock: MockHandle;
let receiver: Server;
let receiverUrl: string;
const spans: OtlpSpan[] = [];
const services = new Set<string>();

function attr(s: OtlpSpan, k: string): string | number | boolean | undefined {
  const v = s.attributes.find((a) => a.key === k)?.value;
  if (v === undefined) return undefined;
  return v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue;
}

before(async () => {
  mock = await startMock(["--record"]);
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as ExportRequest;
      for (const rs of body.resourceSpans) {
        for (const a of rs.resource.attributes) if (a.key === "service.name") services.add(a.value.stringValue!);
        for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}");
    });
  });
  const port = await freePort("127.0.0.1");
  await new Promise<void>((r) => receiver.listen(port, "127.0.0.1", r));
  receiverUrl = `http://127.0.0.1:${port}`;
});
after(async () => {
  await mock?.stop();
  await new Promise((r) => receiver?.close(r));
});

function configFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-otel-"));
  const cfg = join(dir, "config.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        primary: { type: "anthropic", base_url: mock.url, api_key: "sk-up-primary-123" },
        backup: { type: "anthropic", base_url: mock.url, api_key: "sk-up-backup-123" },
      },
      routes: [{ match: "traced-*", provider: "primary", fallbacks: [{ provider: "backup", model: "backup-model" }] }],
      api_keys: [KEY],
    }),
  );
  return cfg;
}

describe("tracing to a collector", () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({
      CONFIG_FILE: configFile(),
      OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
      OTEL_SERVICE_NAME: "portcullis-under-test",
      OTEL_BSP_SCHEDULE_DELAY: "50",
      RETRY_MAX_ATTEMPTS: "2",
      RETRY_BASE_DELAY_MS: "10",
      RETRY_MAX_DELAY_MS: "20",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("a retried, then fallen-back, streamed request is one server span with one client span per attempt", async () => {
    await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
    const q = await fetch(`${mock.url}/__mock/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ faults: ["status:529", "status:529"] }),
    });
    assert.equal(q.status, 200);
    const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736",
      clientSpan = "00f067aa0ba902b7";
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": KEY,
        traceparent: `00-${clientTrace}-${clientSpan}-01`,
        "x-claude-code-session-id": "sess-otel-1",
      },
      body: JSON.stringify({
        model: "traced-model",
        max_tokens: 16,
        stream: true,
        messages: [{ role: "user", content: "secret prompt text" }],
      }),
    });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-portcullis-provider"), "backup");
    assert.match(await r.text(), /event: message_stop/);

    const server = await until(
      "the request's server span at the receiver",
      () => spans.find((s) => s.kind === 2 && s.traceId === clientTrace),
      15_000,
    );
    const children = await until(
      "three attempt spans",
      () => {
        const c = spans.filter((s) => s.parentSpanId === server.spanId);
        return c.length === 3 ? c : undefined;
      },
      15_000,
    );
    assert.equal(server.name, "POST /v1/messages");
    assert.equal(server.parentSpanId, clientSpan, "the client's traceparent is the parent");
    assert.ok(services.has("portcullis-under-test"));
    assert.equal(attr(server, "gen_ai.operation.name"), "chat");
    assert.equal(attr(server, "gen_ai.request.model"), "traced-model");
    assert.equal(attr(server, "gen_ai.response.model"), "backup-model");
    assert.equal(attr(server, "gen_ai.provider.name"), "anthropic");
    assert.equal(attr(server, "portcullis.provider"), "backup", "the configured provider that answered");
    assert.equal(attr(server, "http.response.status_code"), 200);
    assert.equal(attr(server, "portcullis.key_id"), "static-0");
    assert.equal(attr(server, "session.id"), "sess-otel-1");
    assert.equal(attr(server, "portcullis.attempts"), 3);
    assert.ok(Number(attr(server, "gen_ai.usage.input_tokens")) > 0);
    assert.ok(Number(attr(server, "gen_ai.usage.output_tokens")) > 0);
    assert.ok(
      server.events?.some((e) => e.name === "gen_ai.first_token"),
      "time to first token as an event",
    );
    const reasons = server.attributes.find((x) => x.key === "gen_ai.response.finish_reasons")?.value as
      | { arrayValue?: { values: AnyValue[] } }
      | undefined;
    assert.deepEqual(
      reasons?.arrayValue?.values.map((v) => v.stringValue),
      ["end_turn"],
    );

    const byAttempt = children.sort((a, b) => Number(attr(a, "portcullis.attempt")) - Number(attr(b, "portcullis.attempt")));
    assert.deepEqual(
      byAttempt.map((s) => [
        attr(s, "portcullis.provider"),
        attr(s, "http.response.status_code"),
        attr(s, "portcullis.retry"),
        s.status?.code ?? 0,
      ]),
      [
        ["primary", 529, false, 2],
        ["primary", 529, true, 2],
        ["backup", 200, false, 0],
      ],
    );
    for (const c of byAttempt) {
      assert.equal(c.kind, 3, "CLIENT");
      assert.equal(c.traceId, clientTrace);
      assert.equal(attr(c, "gen_ai.provider.name"), "anthropic");
      assert.equal(attr(c, "portcullis.breaker.decision"), "admitted");
    }
    assert.equal(attr(byAttempt[2]!, "gen_ai.request.model"), "backup-model");

    // Each attempt told the provider its own span as the parent.
    const seen = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as { url: string; headers: Record<string, string> }[];
    const sent = seen.filter((x) => x.url.startsWith("/v1/messages")).map((x) => x.headers.traceparent);
    assert.deepEqual(
      sent,
      byAttempt.map((c) => `00-${clientTrace}-${c.spanId}-01`),
    );

    const all = JSON.stringify(spans);
    assert.ok(!all.includes("secret prompt text"), "no prompt text in any span");
    assert.ok(!all.includes(KEY) && !all.includes("sk-up-"), "no key in any span");
  });

  test("a translated stream (/v1/chat/completions to an Anthropic provider) has its first-token event and stop reason", async () => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY}` },
      body: JSON.stringify({
        model: "traced-model",
        stream: true,
        stream_options: { include_usage: true },
        messages: [{ role: "user", content: "hi" }],
      }),
    });
    assert.equal(r.status, 200);
    assert.match(await r.text(), /data: \[DONE\]/);
    const id = r.headers.get("request-id");
    const s = await until(
      "the chat request's span",
      () => spans.find((x) => x.kind === 2 && attr(x, "portcullis.request_id") === id),
      15_000,
    );
    assert.equal(s.name, "POST /v1/chat/completions");
    assert.ok(
      s.events?.some((e) => e.name === "gen_ai.first_token"),
      "time to first token as an event",
    );
    const reasons = s.attributes.find((x) => x.key === "gen_ai.response.finish_reasons")?.value as
      | { arrayValue?: { values: AnyValue[] } }
      | undefined;
    assert.deepEqual(
      reasons?.arrayValue?.values.map((v) => v.stringValue),
      ["end_turn"],
      "the upstream's stop reason",
    );
    assert.ok(Number(attr(s, "gen_ai.usage.output_tokens")) > 0);
  });

  test("a request without traceparent starts its own trace", async () => {
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": KEY },
      body: JSON.stringify({ model: "traced-model", max_tokens: 16, messages: [{ role: "user", content: "plain" }] }),
    });
    assert.equal(r.status, 200);
    const id = r.headers.get("request-id");
    const s = await until(
      "the span of the untraced request",
      () => spans.find((x) => x.kind === 2 && attr(x, "portcullis.request_id") === id),
      15_000,
    );
    assert.equal(s.parentSpanId ?? "", "");
    const reasons = s.attributes.find((x) => x.key === "gen_ai.response.finish_reasons")?.value as
      | { arrayValue?: { values: AnyValue[] } }
      | undefined;
    assert.deepEqual(
      reasons?.arrayValue?.values.map((v) => v.stringValue),
      ["end_turn"],
      "read from a JSON answer too",
    );
  });
});

test("an open breaker that skips a provider is an event on the request span, with no attempt span for it", async () => {
  const gw = await startGateway({
    CONFIG_FILE: configFile(),
    OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
    OTEL_BSP_SCHEDULE_DELAY: "50",
    RETRY_MAX_ATTEMPTS: "1",
    CIRCUIT_BREAKER_FAILURE_THRESHOLD: "1",
    CIRCUIT_BREAKER_TIMEOUT: "600000",
  });
  try {
    const q = await fetch(`${mock.url}/__mock/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ faults: ["status:529"] }),
    });
    assert.equal(q.status, 200);
    const send = () =>
      fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": KEY },
        body: JSON.stringify({ model: "traced-model", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
      });
    const first = await send(); // 529 on primary opens its breaker; backup answers
    assert.equal(first.headers.get("x-portcullis-provider"), "backup");
    const second = await send();
    assert.equal(second.status, 200);
    const id = second.headers.get("request-id");
    const server = await until(
      "the second request's span",
      () => spans.find((x) => x.kind === 2 && attr(x, "portcullis.request_id") === id),
      15_000,
    );
    const refused = server.events?.find((e) => e.name === "breaker_refused");
    assert.ok(refused, "breaker_refused event");
    assert.equal(refused.attributes?.find((a) => a.key === "portcullis.provider")?.value.stringValue, "primary");
    const kids = await until(
      "its attempt span",
      () => {
        const c = spans.filter((x) => x.parentSpanId === server.spanId);
        return c.length > 0 ? c : undefined;
      },
      15_000,
    );
    assert.deepEqual(
      kids.map((k) => attr(k, "portcullis.provider")),
      ["backup"],
    );
    assert.equal(attr(server, "portcullis.attempts"), 1);
  } finally {
    await gw.stop();
  }
});

test("an unreachable collector drops spans into otel_spans_dropped_total and requests still succeed", async () => {
  const dead = await freePort("127.0.0.1"); // nothing listens there
  const gw = await startGateway({
    CONFIG_FILE: configFile(),
    OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${dead}`,
    OTEL_BSP_SCHEDULE_DELAY: "20",
    OTEL_BSP_EXPORT_TIMEOUT: "2000",
  });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await fetch(`${gw.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": KEY },
        body: JSON.stringify({ model: "traced-model", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal(r.status, 200);
    }
    await until(
      "spans counted as dropped",
      async () => {
        const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
        const m = /^otel_spans_dropped_total (\d+)$/m.exec(prom);
        return m !== null && Number(m[1]) >= 6 ? true : undefined; // 3 server + 3 client spans
      },
      20_000,
    );
  } finally {
    await gw.stop();
  }
});

test("tracing off: the same request exports nothing and no traceparent goes upstream", async () => {
  const before = spans.length;
  await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
  const gw = await startGateway({ CONFIG_FILE: configFile() });
  try {
    const r = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": KEY,
        traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
      },
      body: JSON.stringify({ model: "traced-model", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
    });
    assert.equal(r.status, 200);
    // (The gateway also fetches each provider's GET /v1/models at start-up: not this request.)
    const seen = ((await (await fetch(`${mock.url}/__mock/requests`)).json()) as { url: string; headers: Record<string, string> }[]).filter(
      (x) => x.url.startsWith("/v1/messages"),
    );
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.headers.traceparent, undefined);
  } finally {
    await gw.stop();
  }
  assert.equal(spans.length, before);
});
