/**
 * The gateway end to end: the built server in its own process, the project's mock
 * upstream in another, and the official @anthropic-ai/sdk as the client. Assertions are
 * on what a user sees and on what actually reached the upstream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { MOCK_MODELS, MOCK_SIGNATURE, MOCK_SIGNATURE_RAW } from "../../core/mock-reply.js";

const CLIENT_KEY = "sk-client-key-0123456789";
const UPSTREAM_KEY = "sk-upstream-secret-abcdefghij";

interface Recorded {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

let mock: MockHandle;
let gw: Gateway;
let client: Anthropic;
/** Raw bodies and headers the SDK sent, in order (captured through its fetch option). */
const sent: string[] = [];
const sentHeaders: Headers[] = [];

async function recorded(): Promise<Recorded[]> {
  return (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Recorded[];
}
async function lastRecorded(): Promise<Recorded> {
  const all = await recorded();
  assert.ok(all.length > 0, "the mock recorded no request");
  return all[all.length - 1]!;
}
async function clearRecorded(): Promise<void> {
  await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
}
async function queueFaults(...faults: string[]): Promise<void> {
  const r = await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults }) });
  assert.equal(r.status < 300, true);
}
async function mockStats(): Promise<{ requests: number; active: number }> {
  return (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { requests: number; active: number };
}
async function waitFor(cond: () => Promise<boolean>, what: string, limitMs = 15_000): Promise<void> {
  await until(what, async () => ((await cond()) ? true : undefined), limitMs);
}
function post(path: string, body: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", ...headers },
    body,
  });
}

before(async () => {
  mock = await startMock(["--record"]);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-test-"));
  const cfgPath = join(dir, "config.json");
  writeFileSync(
    cfgPath,
    JSON.stringify({
      routes: [
        { match: "alias-model", provider: "anthropic", model: "claude-upstream-renamed" },
        { match: "local-*", provider: "mock" },
      ],
    }),
  );
  gw = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: UPSTREAM_KEY,
    MODEL_PROVIDER: "anthropic",
    GATEWAY_API_KEYS: CLIENT_KEY,
    CONFIG_FILE: cfgPath,
    // Pass-through semantics are tested here; retries have their own suite (resilience.test).
    RETRY_MAX_ATTEMPTS: "1",
  });
  client = new Anthropic({
    baseURL: gw.url,
    apiKey: CLIENT_KEY,
    maxRetries: 0,
    fetch: async (url: string | URL | Request, init?: RequestInit) => {
      if (typeof init?.body === "string") sent.push(init.body);
      sentHeaders.push(new Headers(init?.headers));
      return fetch(url, init);
    },
  });
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

describe("pass-through with the official SDK", () => {
  test("a JSON message round-trips and the upstream gets the provider's key, never the client's", async () => {
    await clearRecorded();
    const msg = await client.messages.create({
      model: "claude-gateway-test",
      max_tokens: 64,
      messages: [{ role: "user", content: "hello through the gateway" }],
    });
    assert.equal(msg.type, "message");
    assert.equal(msg.role, "assistant");
    const text = msg.content.find((b) => b.type === "text");
    assert.ok(text && text.type === "text" && text.text.includes("hello through the gateway"));
    const r = await lastRecorded();
    assert.equal(r.headers["x-api-key"], UPSTREAM_KEY);
    assert.ok(!JSON.stringify(r.headers).includes(CLIENT_KEY), "client key leaked upstream");
    assert.equal(r.headers["anthropic-version"], sentHeaders[sentHeaders.length - 1]!.get("anthropic-version"));
    assert.equal(r.body, sent[sent.length - 1], "body must arrive byte-identical");
  });

  test("the response carries the gateway's own request-id; a client's x-request-id goes upstream beside it", async () => {
    const a = await post("/v1/messages", JSON.stringify({ model: "claude-x", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }));
    assert.equal(a.status, 200);
    assert.match(a.headers.get("request-id") ?? "", /^req_[A-Za-z0-9]+_[a-z0-9]+_[a-z0-9]+$/);
    await a.arrayBuffer();
    await clearRecorded();
    const b = await post(
      "/v1/messages",
      JSON.stringify({ model: "claude-x", max_tokens: 5, messages: [{ role: "user", content: "hi" }] }),
      { "x-request-id": "trace-abc.123" },
    );
    assert.equal(b.status, 200);
    await b.arrayBuffer();
    const id = b.headers.get("request-id") ?? "";
    assert.match(id, /^req_/, "a client's id is never the gateway's id (it need not be unique)");
    assert.notEqual(id, a.headers.get("request-id"));
    assert.equal((await lastRecorded()).headers["x-request-id"], "trace-abc.123", "the client's id is propagated upstream");
    const c = await post("/v1/messages", "{}", { "x-request-id": "bad id with spaces" });
    const body = (await c.json()) as { request_id: string };
    assert.match(c.headers.get("request-id") ?? "", /^req_/);
    assert.equal(body.request_id, c.headers.get("request-id"));
  });

  test("streaming with finalMessage() gives the same content as the JSON reply", async () => {
    const params = { model: "claude-gateway-test", max_tokens: 64, messages: [{ role: "user" as const, content: "stream me" }] };
    const events: string[] = [];
    const stream = client.messages.stream(params);
    stream.on("streamEvent", (e) => events.push(e.type));
    const final = await stream.finalMessage();
    const json = await client.messages.create(params);
    assert.deepEqual(
      final.content.map((b) => (b.type === "text" ? b.text : b.type)),
      json.content.map((b) => (b.type === "text" ? b.text : b.type)),
    );
    assert.equal(events[0], "message_start");
    assert.equal(events[events.length - 1], "message_stop");
    assert.ok(events.filter((e) => e === "content_block_delta").length >= 2, "deltas were relayed");
  });

  test("SSE is relayed with its event: lines intact", async () => {
    const r = await post(
      "/v1/messages",
      JSON.stringify({ model: "claude-x", max_tokens: 5, stream: true, messages: [{ role: "user", content: "hi" }] }),
    );
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type") ?? "", /^text\/event-stream/);
    const text = await r.text();
    assert.match(text, /^event: message_start\ndata: \{/);
    assert.match(text, /event: message_stop\ndata: \{"type":"message_stop"\}\n\n$/);
  });

  test("tool_use -> tool_result round trip", async () => {
    const tools = [
      {
        name: "lookup",
        description: "look something up",
        input_schema: { type: "object" as const, properties: { query: { type: "string" } } },
      },
    ];
    const first = await client.messages.create({
      model: "claude-gateway-test",
      max_tokens: 64,
      tools,
      messages: [{ role: "user", content: "use the lookup tool for the answer" }],
    });
    assert.equal(first.stop_reason, "tool_use");
    const use = first.content.find((b) => b.type === "tool_use");
    assert.ok(use && use.type === "tool_use");
    assert.equal(use.name, "lookup");
    assert.deepEqual(use.input, { query: "the answer" });
    const second = await client.messages.create({
      model: "claude-gateway-test",
      max_tokens: 64,
      tools,
      messages: [
        { role: "user", content: "use the lookup tool for the answer" },
        { role: "assistant", content: first.content },
        { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "forty-two" }] },
      ],
    });
    assert.equal(second.stop_reason, "end_turn");
    const t = second.content.find((b) => b.type === "text");
    assert.ok(t && t.type === "text" && t.text.includes("forty-two"));
  });

  test("thinking signatures arrive byte-identical in both directions", async () => {
    const body = {
      model: "claude-gateway-test",
      max_tokens: 2048,
      thinking: { type: "enabled" as const, budget_tokens: 1024 },
      messages: [{ role: "user" as const, content: "think" }],
    };
    const msg = await client.messages.create(body);
    const th = msg.content.find((b) => b.type === "thinking");
    assert.ok(th && th.type === "thinking");
    assert.equal(th.signature, MOCK_SIGNATURE);
    // Raw bytes: the escaped form the upstream wrote must reach the client unchanged.
    const raw = await (await post("/v1/messages", JSON.stringify(body))).text();
    assert.ok(raw.includes(MOCK_SIGNATURE_RAW), "response was re-serialised");
    // And a signature the client sends back (escaped) reaches the upstream unchanged.
    const turn =
      `{"model":"claude-gateway-test","max_tokens":2048,"thinking":{"type":"enabled","budget_tokens":1024},"messages":[` +
      `{"role":"user","content":"think"},{"role":"assistant","content":[{"type":"thinking","thinking":"hm","signature":"${MOCK_SIGNATURE_RAW}"},{"type":"text","text":"ok"}]},` +
      `{"role":"user","content":"again"}]}`;
    await clearRecorded();
    const r = await post("/v1/messages", turn);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    assert.equal((await lastRecorded()).body, turn);
  });

  test("headers, query string and unknown fields reach the upstream unchanged", async () => {
    await clearRecorded();
    const body =
      '{"model":"claude-gateway-test","max_tokens":32,"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{"type":"ephemeral"}}]},' +
      '{"role":"system","content":"beta system turn"},{"role":"user","content":"y"}],' +
      '"context_management":{"edits":[{"type":"clear_tool_uses_20250919"}]},"output_config":{"effort":"high"},"metadata":{"user_id":"u-1"},' +
      '"unknown_future_field":{"nested":[1,2.50,"\\u00e9"]}}';
    const r = await post("/v1/messages?beta=true", body, {
      "anthropic-beta": "context-management-2025-06-27,interleaved-thinking-2025-05-14",
    });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const rec = await lastRecorded();
    assert.equal(rec.url, "/v1/messages?beta=true");
    assert.equal(rec.headers["anthropic-beta"], "context-management-2025-06-27,interleaved-thinking-2025-05-14");
    assert.equal(rec.headers["anthropic-version"], "2023-06-01");
    assert.equal(rec.body, body);
  });

  test("the SDK's beta client works through the gateway", async () => {
    await clearRecorded();
    const msg = await client.beta.messages.create({
      model: "claude-gateway-test",
      max_tokens: 16,
      betas: ["interleaved-thinking-2025-05-14"],
      messages: [{ role: "user", content: "beta" }],
    });
    assert.equal(msg.type, "message");
    const rec = await lastRecorded();
    assert.equal(rec.headers["anthropic-beta"], "interleaved-thinking-2025-05-14");
    assert.equal(rec.body, sent[sent.length - 1]);
  });

  test("a routed model is renamed by splicing; every other byte is untouched", async () => {
    await clearRecorded();
    const body =
      '{ "max_tokens" : 8,\n "model" : "alias-model", "messages":[{"role":"user","content":"\\u00e9 \\/ x"}], "z":{"model":"inner"} }';
    const r = await post("/v1/messages", body);
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const rec = await lastRecorded();
    assert.equal(rec.body, body.replace('"alias-model"', '"claude-upstream-renamed"'));
  });

  test("a prefix route sends claude-free names to the built-in mock provider", async () => {
    await clearRecorded();
    const msg = await client.messages.create({ model: "local-tiny", max_tokens: 8, messages: [{ role: "user", content: "local" }] });
    assert.equal(msg.model, "local-tiny");
    assert.equal((await recorded()).length, 0, "the mock provider must not touch the network");
  });

  test("count_tokens and models", async () => {
    const c = await client.messages.countTokens({
      model: "local-tiny",
      messages: [{ role: "user", content: "count these tokens please" }],
    });
    assert.ok(c.input_tokens > 0);
    await clearRecorded();
    const u = await client.messages.countTokens({ model: "claude-gateway-test", messages: [{ role: "user", content: "upstream count" }] });
    assert.ok(u.input_tokens > 0);
    assert.equal((await lastRecorded()).url, "/v1/messages/count_tokens");
    // The routed name, then the upstream's own list (fetched by the gateway in the background).
    await waitFor(async () => gw.lines.some((l) => l.includes('"msg":"provider model list loaded"')), "the upstream model list");
    const models = await client.models.list();
    assert.deepEqual(
      models.data.map((m) => m.id),
      ["alias-model", ...MOCK_MODELS.map((m) => m.id)],
    );
  });
});

describe("errors in Anthropic's shape", () => {
  test("missing and wrong keys get 401 authentication_error; Bearer works", async () => {
    const noKey = await fetch(`${gw.url}/v1/messages`, { method: "POST", body: '{"model":"m","max_tokens":1,"messages":[]}' });
    assert.equal(noKey.status, 401);
    assert.equal(((await noKey.json()) as { error: { type: string } }).error.type, "authentication_error");
    const wrong = new Anthropic({ baseURL: gw.url, apiKey: "sk-wrong-key-000000000", maxRetries: 0 });
    await assert.rejects(
      wrong.messages.create({ model: "m", max_tokens: 1, messages: [{ role: "user", content: "x" }] }),
      Anthropic.AuthenticationError,
    );
    const bearer = new Anthropic({ baseURL: gw.url, apiKey: null, authToken: CLIENT_KEY, maxRetries: 0 });
    const ok = await bearer.messages.create({ model: "local-x", max_tokens: 1, messages: [{ role: "user", content: "x" }] });
    assert.equal(ok.type, "message");
  });

  test("a battery of bad inputs gets 400 invalid_request_error naming the field", async () => {
    const cases: [string, string][] = [
      ['{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}', "model"],
      ['{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}', "max_tokens"],
      ['{"model":"m","max_tokens":5,"messages":[{"role":"bot","content":"x"}]}', "messages.0.role"],
      ['{"model":"m","max_tokens":5,"messages":"nope"}', "messages"],
      ['{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"text"}]}]}', "messages.0.content.0.text"],
      ['{"model":"m","max_tokens":5,"temperature":3,"messages":[{"role":"user","content":"x"}]}', "temperature"],
      ['{"model":"m","max_tokens":5,"stop_sequences":[1],"messages":[{"role":"user","content":"x"}]}', "stop_sequences.0"],
      ["[1,2]", "body"],
    ];
    for (const [body, field] of cases) {
      const r = await post("/v1/messages", body);
      assert.equal(r.status, 400, body);
      const j = (await r.json()) as { type: string; error: { type: string; message: string }; request_id: string };
      assert.equal(j.type, "error");
      assert.equal(j.error.type, "invalid_request_error");
      assert.ok(j.error.message.startsWith(field + ":"), `${body} -> ${j.error.message}`);
      assert.match(j.request_id, /^req_/);
    }
    const bad = await post("/v1/messages", '{"model": "m", ');
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /not valid JSON/);
    const sdkBad = client.messages.create({ model: "m", max_tokens: -1, messages: [{ role: "user", content: "x" }] });
    await assert.rejects(sdkBad, (e: unknown) => e instanceof Anthropic.BadRequestError && /max_tokens/.test(e.message));
  });

  test("unknown paths are 404 not_found_error", async () => {
    const r = await fetch(`${gw.url}/v2/nothing`);
    assert.equal(r.status, 404);
    assert.equal(((await r.json()) as { error: { type: string } }).error.type, "not_found_error");
  });

  test("upstream errors pass through with their status and body", async () => {
    await queueFaults("status:529");
    await assert.rejects(
      client.messages.create({ model: "claude-gateway-test", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
      (e: unknown) => e instanceof Anthropic.APIError && e.status === 529 && /mock fault/.test(e.message),
    );
    await queueFaults("status:429;retry-after:7");
    const r = await post(
      "/v1/messages",
      JSON.stringify({ model: "claude-gateway-test", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    );
    assert.equal(r.status, 429);
    assert.equal(r.headers.get("retry-after"), "7");
    assert.equal(((await r.json()) as { error: { type: string } }).error.type, "rate_limit_error");
  });

  test("a stream cut by the upstream ends with an Anthropic event: error, not a silent end", async () => {
    await queueFaults("cut-stream:3");
    const r = await post(
      "/v1/messages",
      JSON.stringify({ model: "claude-gateway-test", max_tokens: 5, stream: true, messages: [{ role: "user", content: "x" }] }),
    );
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.match(text, /^event: message_start\n/);
    assert.match(
      text,
      /\n\nevent: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"[^"]+"\},"request_id":"req_[^"]+"\}\n\n$/,
    );
    assert.ok(!text.includes("message_stop"));
    await queueFaults("cut-stream:2");
    const s = client.messages.stream({ model: "claude-gateway-test", max_tokens: 5, messages: [{ role: "user", content: "x" }] });
    await assert.rejects(s.finalMessage());
  });

  test("a client abort cancels the upstream request and frees the slot", async () => {
    await queueFaults("hang");
    const ac = new AbortController();
    const before = (await mockStats()).active;
    const req = fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      signal: ac.signal,
      headers: { "x-api-key": CLIENT_KEY, "content-type": "application/json" },
      body: JSON.stringify({ model: "claude-gateway-test", max_tokens: 5, messages: [{ role: "user", content: "x" }] }),
    }).catch((e: Error) => e);
    await waitFor(async () => (await mockStats()).active > before, "the upstream request to hang");
    ac.abort();
    assert.ok((await req) instanceof Error, "the aborted fetch must reject");
    await waitFor(async () => (await mockStats()).active === before, "the upstream request to be cancelled");
    await waitFor(async () => {
      const o = (await (await fetch(`${gw.url}/metrics/observability`)).json()) as { requests: { active: number } };
      return o.requests.active === 1; // only the observability request itself
    }, "active requests back to zero");
  });

  test("keys never reach the log", async () => {
    // The log is written asynchronously, in order: once this request's line is out, so are
    // the lines of every request the tests above made.
    const last = await post(
      "/v1/messages",
      JSON.stringify({ model: "claude-gateway-test", max_tokens: 5, messages: [{ role: "user", content: "last" }] }),
    );
    await last.arrayBuffer();
    const id = last.headers.get("request-id");
    await gw.waitForLine("the last request's log line", (l) => l.msg === "request" && l.req_id === id);
    const all = gw.lines.join("\n");
    assert.ok(
      gw.lines.some((l) => l.includes('"msg":"request"')),
      "expected request log lines",
    );
    assert.ok(!all.includes(CLIENT_KEY), "client key in the log");
    assert.ok(!all.includes(UPSTREAM_KEY), "upstream key in the log");
    const line = JSON.parse(gw.lines.find((l) => l.includes('"msg":"request"') && l.includes('"provider":"anthropic"'))!);
    for (const k of ["req_id", "route", "provider", "model", "status", "latency_ms"]) assert.ok(k in line, `log line lacks ${k}`);
  });
});
