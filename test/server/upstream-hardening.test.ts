/**
 * The upstream call path against the real mock upstream (its own process): what a client
 * sends never counts against a provider, a pass-through provider never sees the gateway
 * key, upstream replies the gateway cannot relay as they are (HTML errors, non-JSON 200s,
 * compressed bodies, unreadable usage, endless SSE events) are handled, and the request
 * deadline holds mid-stream and settles a half-open probe.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const KEY = "sk-gateway-static-key-0001";
const ADMIN = "admin-key-upstream-hardening-0001";
const HTML_SECRET = "sk-up-html-provider-secret-9999";
let mock: MockHandle;
let seq = 0;

interface Recorded {
  url: string;
  headers: Record<string, string>;
}

async function faults(...f: string[]): Promise<void> {
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  if (f.length > 0) await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: f }) });
}
async function recorded(id: string): Promise<Recorded[]> {
  const all = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Recorded[];
  return all.filter((r) => r.headers["x-request-id"] === id);
}
function newId(tag: string): string {
  return `req-h1-${tag}-${++seq}`;
}
function body(model: string, stream = false, maxTokens = 8): string {
  return JSON.stringify({ model, max_tokens: maxTokens, stream, messages: [{ role: "user", content: "hello there" }] });
}
function call(
  gw: Gateway,
  model: string,
  opts: { stream?: boolean; key?: string; id?: string; headers?: Record<string, string> } = {},
): Promise<Response> {
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-api-key": opts.key ?? KEY,
      "x-request-id": opts.id ?? newId("call"),
      ...opts.headers,
    },
    body: body(model, opts.stream),
  });
}
async function breaker(
  gw: Gateway,
  name: string,
): Promise<{ state: string; consecutive_failures: number; probes_in_flight: number; retry_after_ms: number }> {
  const j = (await (await fetch(`${gw.url}/metrics/circuit-breakers`)).json()) as { breakers: Record<string, any> };
  return j.breakers[name];
}
/** Wait (bounded) until `name`'s open breaker may half-open. */
async function untilHalfOpenable(gw: Gateway, name: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const b = await breaker(gw, name);
    if (b.state !== "open" || b.retry_after_ms === 0) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`breaker ${name} stayed open`);
}
/** The gateway's log lines (pino JSON) for one request id, once its "request" line is written. */
async function logFor(gw: Gateway, id: string): Promise<Record<string, any>[]> {
  // `id` is the client's x-request-id: the request line carries it as client_req_id beside the
  // gateway's own req_id, which every other line of that request carries.
  for (let i = 0; i < 200; i++) {
    const all = gw.lines.map((l) => JSON.parse(l) as Record<string, any>);
    const req = all.find((l) => l.msg === "request" && (l.client_req_id === id || l.req_id === id));
    if (req !== undefined) return all.filter((l) => l.req_id === req.req_id);
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`no request log line for ${id}`);
}

/** One raw HTTP/1.1 exchange, so bytes fetch would refuse to send reach the gateway. */
function raw(port: number, head: Buffer, payload: string, bodyAfterMs = 0): Promise<{ status: number; body: string }> {
  const r = rawOpen(port, head, payload);
  // A slow client: the headers now (the request has arrived), the body later.
  if (bodyAfterMs === 0) r.sendBody();
  else setTimeout(r.sendBody, bodyAfterMs);
  return r.answer;
}
/** Headers sent now; the body when the caller says. */
function rawOpen(port: number, head: Buffer, payload: string): { sendBody: () => void; answer: Promise<{ status: number; body: string }> } {
  let sendBody = (): void => {};
  const answer = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const s = connect(port, "127.0.0.1");
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error("no answer to the raw request within 10 s"));
    }, 10_000);
    s.on("data", (d) => chunks.push(d));
    s.on("error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on("close", () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString("latin1");
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m === null) return reject(new Error(`not an HTTP answer: ${JSON.stringify(text.slice(0, 200))}`));
      resolve({ status: Number(m[1]), body: text.slice(text.indexOf("\r\n\r\n") + 4) });
    });
    s.write(Buffer.concat([head, Buffer.from(`content-length: ${Buffer.byteLength(payload)}\r\nconnection: close\r\n\r\n`)]));
    sendBody = () => s.write(payload);
  });
  return { sendBody, answer };
}
function rawHead(target: string, headers: string): Buffer {
  // latin1: each char below 256 becomes exactly that byte (0x7f, 0xff stay raw).
  return Buffer.from(`POST ${target} HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-api-key: ${KEY}\r\n${headers}`, "latin1");
}

before(async () => {
  mock = await startMock(["--record"]);
});
after(async () => {
  await mock?.stop();
});

describe("client bytes, keys and upstream replies", () => {
  let gw: Gateway;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-h1-"));
    const cfg = join(dir, "config.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        providers: {
          up: { type: "anthropic", base_url: mock.url, api_key: "sk-up-configured-1234" },
          pass: { type: "anthropic", base_url: mock.url, pass_through_key: true },
          dead: { type: "anthropic", base_url: "http://127.0.0.1:1", api_key: "sk-up-dead-1234" },
          html: { type: "anthropic", base_url: mock.url, api_key: HTML_SECRET },
          comp: { type: "anthropic", base_url: mock.url, api_key: "sk-up-comp-1234" },
        },
        routes: [
          { match: "up-*", provider: "up" },
          { match: "pass-*", provider: "pass" },
          { match: "fb-*", provider: "dead", fallbacks: [{ provider: "pass" }] },
          { match: "html-*", provider: "html" },
          { match: "comp-*", provider: "comp" },
        ],
        api_keys: [KEY],
      }),
    );
    gw = await startGateway({
      CONFIG_FILE: cfg,
      ADMIN_API_KEY: ADMIN,
      RETRY_MAX_ATTEMPTS: "2",
      RETRY_BASE_DELAY_MS: "10",
      RETRY_MAX_DELAY_MS: "20",
      CIRCUIT_BREAKER_FAILURE_THRESHOLD: "2",
      RETRY_BUDGET_MS: "1000",
      SSE_MAX_EVENT_BYTES: "65536",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("a header value undici would refuse gets 400 naming it, is never sent, and leaves the breaker closed", async () => {
    const ids = [newId("ua"), newId("ua"), newId("ua")];
    for (const id of ids) {
      const r = await raw(gw.port, rawHead("/v1/messages", `user-agent: a\x7fb\r\nx-request-id: ${id}\r\n`), body("up-model"));
      assert.equal(r.status, 400, r.body);
      const j = JSON.parse(r.body);
      assert.equal(j.error.type, "invalid_request_error");
      assert.match(j.error.message, /user-agent/);
      assert.deepEqual(await recorded(id), [], "nothing reached the provider");
    }
    const b = await breaker(gw, "up");
    assert.equal(b.state, "closed");
    assert.equal(b.consecutive_failures, 0);
    const ok = await call(gw, "up-model");
    assert.equal(ok.status, 200, "other clients are served");
    await ok.arrayBuffer();
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /^upstream_connection_waits_total\{provider="up"\} 1$/m, "only the request that was sent took a connection");
  });

  test("a raw non-ASCII query gets 400 naming the query, is never sent, and leaves the breaker closed", async () => {
    for (let i = 0; i < 3; i++) {
      const id = newId("q");
      const r = await raw(gw.port, rawHead("/v1/messages?a=\xff", `x-request-id: ${id}\r\n`), body("up-model"));
      assert.equal(r.status, 400, r.body);
      const j = JSON.parse(r.body);
      assert.equal(j.error.type, "invalid_request_error");
      assert.match(j.error.message, /query/);
      assert.deepEqual(await recorded(id), []);
    }
    assert.equal((await breaker(gw, "up")).state, "closed");
    const id = newId("q-ok");
    const ok = await fetch(`${gw.url}/v1/messages?beta=true`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": KEY, "x-request-id": id },
      body: body("up-model"),
    });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    assert.equal((await recorded(id))[0]!.url, "/v1/messages?beta=true", "a plain query is still forwarded");
  });

  test("a pass-through provider gets x-upstream-api-key, never the static or virtual gateway key", async () => {
    const vk = await fetch(`${gw.url}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "pt" }),
    });
    assert.equal(vk.status, 201);
    const virtual = ((await vk.json()) as { key: string }).key;
    for (const gatewayKey of [KEY, virtual]) {
      const id = newId("pass");
      const r = await call(gw, "pass-model", { key: gatewayKey, id, headers: { "x-upstream-api-key": "sk-caller-own-5678" } });
      assert.equal(r.status, 200);
      await r.arrayBuffer();
      const [rec] = await recorded(id);
      assert.equal(rec!.headers["x-api-key"], "sk-caller-own-5678");
      assert.ok(!JSON.stringify(rec!.headers).includes(gatewayKey), "the gateway key never reaches the provider");

      const missing = newId("pass-missing");
      const m = await call(gw, "pass-model", { key: gatewayKey, id: missing });
      assert.equal(m.status, 401);
      const j = (await m.json()) as { error: { type: string; message: string } };
      assert.equal(j.error.type, "authentication_error");
      assert.match(j.error.message, /x-upstream-api-key/);
      assert.deepEqual(await recorded(missing), []);
    }
  });

  test("as a fallback target, a pass-through provider also gets only x-upstream-api-key", async () => {
    const id = newId("fb");
    const r = await call(gw, "fb-model", { id, headers: { "x-upstream-api-key": "sk-caller-fallback-5678" } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get("x-portcullis-provider"), "pass");
    await r.arrayBuffer();
    const [rec] = await recorded(id);
    assert.equal(rec!.headers["x-api-key"], "sk-caller-fallback-5678");
    assert.ok(!JSON.stringify(rec!.headers).includes(KEY));
  });

  test("a non-JSON upstream error is replaced by an Anthropic error naming the status; the log keeps it redacted", async () => {
    await faults("status:401;body:html");
    const id = newId("html401");
    const r = await call(gw, "html-model", { id });
    assert.equal(r.status, 401);
    assert.match(r.headers.get("content-type") ?? "", /^application\/json/);
    const text = await r.text();
    assert.ok(!text.includes(HTML_SECRET), "the echoed provider key never reaches the client");
    const j = JSON.parse(text) as { type: string; error: { type: string; message: string }; request_id: string };
    assert.equal(j.type, "error");
    assert.equal(j.error.type, "authentication_error");
    assert.match(j.error.message, /401/);
    assert.equal(j.request_id, r.headers.get("request-id"), "the gateway's own id, not the client's");
    const lines = await logFor(gw, id);
    const logged = lines.find((l) => l.msg === "upstream error body is not JSON; replaced");
    assert.ok(logged !== undefined, "the original body is logged");
    assert.match(logged.body, /<html>/);
    assert.ok(!JSON.stringify(lines).includes(HTML_SECRET), "the log masks the key");
  });

  test("RETRY_BUDGET_MS counts from the request's arrival, not from the upstream call", async () => {
    await faults("status:529", "status:529");
    const id = newId("budget");
    // The body arrives 1.2 s after the headers: the 1 s retry budget is spent before the first attempt.
    const r = await raw(gw.port, rawHead("/v1/messages", `x-request-id: ${id}\r\n`), body("up-model"), 1200);
    assert.equal(r.status, 529, r.body);
    assert.equal((await recorded(id)).length, 1, "no retry once the budget from arrival is spent");
    await faults();
  });

  test("a JSON upstream error still passes through byte for byte", async () => {
    await faults("status:400");
    const r = await call(gw, "html-model");
    assert.equal(r.status, 400);
    const j = (await r.json()) as { error: { message: string } };
    assert.equal(j.error.message, "mock fault");
  });

  test("a non-JSON 200 reply is a 502 GW_ERR_UPSTREAM_PROTOCOL, counted against the provider", async () => {
    await faults("body:html", "body:html");
    const id = newId("html200");
    const r = await call(gw, "html-model", { id });
    assert.equal(r.status, 502);
    const j = (await r.json()) as { error: { type: string } };
    assert.equal(j.error.type, "api_error");
    assert.equal((await recorded(id)).length, 2, "retried like any provider failure");
    const line = (await logFor(gw, id)).find((l) => l.msg === "request");
    assert.equal(line!.error, "GW_ERR_UPSTREAM_PROTOCOL");
    assert.equal((await breaker(gw, "html")).state, "open");
  });

  test("the gateway asks for identity; gzip, br and deflate replies are decoded, JSON and SSE, and their usage counted", async () => {
    const vk = await fetch(`${gw.url}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "comp", limits: { tokens_per_day: 1_000_000 } }),
    });
    const k = (await vk.json()) as { id: string; key: string };
    let expected = 0;
    for (const enc of ["gzip", "br", "deflate"]) {
      await faults(`encoding:${enc}`);
      const id = newId(`json-${enc}`);
      const r = await call(gw, "comp-model", { id, key: k.key });
      assert.equal(r.status, 200);
      const j = (await r.json()) as { type: string; usage: { input_tokens: number; output_tokens: number } };
      assert.equal(j.type, "message", `${enc} JSON decoded`);
      const line = (await logFor(gw, id)).find((l) => l.msg === "request")!;
      assert.equal(line.input_tokens, j.usage.input_tokens);
      assert.equal(line.output_tokens, j.usage.output_tokens);
      expected += j.usage.input_tokens + j.usage.output_tokens;
      assert.equal((await recorded(id))[0]!.headers["accept-encoding"], "identity");

      await faults(`encoding:${enc}`);
      const sid = newId(`sse-${enc}`);
      const s = await call(gw, "comp-model", { id: sid, key: k.key, stream: true });
      assert.equal(s.status, 200);
      const text = await s.text();
      assert.match(text, /^event: message_start/, `${enc} SSE decoded`);
      assert.match(text, /event: message_stop/);
      const input = Number(/"input_tokens":(\d+)/.exec(text)![1]);
      const outs = [...text.matchAll(/"output_tokens":(\d+)/g)];
      const output = Number(outs[outs.length - 1]![1]);
      const sline = (await logFor(gw, sid)).find((l) => l.msg === "request")!;
      assert.equal(sline.input_tokens, input);
      assert.equal(sline.output_tokens, output);
      expected += input + output;
    }
    const keys = (await (await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: any[] };
    const info = keys.data.find((x) => x.id === k.id);
    assert.equal(info.spend.day_tokens, expected, "the budget is charged the real tokens");
  });

  test("a reply whose usage cannot be read is charged its reservation, logged and counted", async () => {
    const vk = await fetch(`${gw.url}/admin/keys`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "nousage", limits: { tokens_per_day: 1_000_000 } }),
    });
    const k = (await vk.json()) as { id: string; key: string };
    await faults("body:no-usage");
    const id = newId("nousage");
    const r = await call(gw, "comp-model", { id, key: k.key });
    assert.equal(r.status, 200);
    const j = (await r.json()) as { usage?: unknown };
    assert.equal(j.usage, undefined, "the mock really sent no usage");
    const lines = await logFor(gw, id);
    assert.ok(lines.some((l) => l.msg === "upstream usage unreadable; charged the reservation"));
    const keys = (await (await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as { data: any[] };
    const info = keys.data.find((x) => x.id === k.id);
    assert.ok(info.spend.day_tokens >= 8, `charged at least max_tokens, got ${info.spend.day_tokens}`);
    assert.equal(info.spend.reserved_tokens, 0);
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /^usage_unreadable_total\{provider="comp"\} 1$/m);
  });

  test("an SSE event larger than SSE_MAX_EVENT_BYTES ends the stream with event: error", async () => {
    await faults("huge-event:300000");
    const r = await call(gw, "comp-model", { stream: true });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.ok(text.length < 300_000, "the oversized event was not relayed");
    assert.match(text, /^event: message_start/);
    const m = /event: error\ndata: (.*)\n\n$/.exec(text);
    assert.ok(m !== null, `ends with an error event: ${text.slice(-200)}`);
    const j = JSON.parse(m[1]!) as { error: { type: string; message: string } };
    assert.equal(j.error.type, "api_error");
    assert.match(j.error.message, /SSE_MAX_EVENT_BYTES/);
  });
});

describe("one deadline per request", () => {
  let gw: Gateway;
  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-h1d-"));
    const cfg = join(dir, "config.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        providers: {
          stream: { type: "anthropic", base_url: mock.url, api_key: "sk-up-stream-1234" },
          probe: { type: "anthropic", base_url: mock.url, api_key: "sk-up-probe-1234" },
          holder: { type: "anthropic", base_url: mock.url, api_key: "sk-up-holder-1234" },
          late: { type: "anthropic", base_url: mock.url, api_key: "sk-up-late-1234" },
        },
        routes: [
          { match: "stream-*", provider: "stream" },
          { match: "probe-*", provider: "probe" },
          { match: "holder-*", provider: "holder" },
          { match: "late-*", provider: "late" },
        ],
      }),
    );
    gw = await startGateway({
      CONFIG_FILE: cfg,
      UPSTREAM_REQUEST_TIMEOUT_MS: "800",
      UPSTREAM_CONNECTIONS: "1",
      RETRY_MAX_ATTEMPTS: "1",
      CIRCUIT_BREAKER_FAILURE_THRESHOLD: "1",
      CIRCUIT_BREAKER_TIMEOUT: "300",
      CIRCUIT_BREAKER_SUCCESS_THRESHOLD: "1",
      CIRCUIT_BREAKER_HALF_OPEN_PROBES: "1",
    });
  });
  after(async () => {
    await gw?.stop();
  });

  test("a stream past the deadline ends with event: error of type timeout_error", async () => {
    await faults("slow-stream:300");
    const r = await call(gw, "stream-model", { stream: true });
    assert.equal(r.status, 200);
    const text = await r.text();
    const m = /event: error\ndata: (.*)\n\n$/.exec(text);
    assert.ok(m !== null, `ends with an error event: ${text.slice(-200)}`);
    const j = JSON.parse(m[1]!) as { error: { type: string; message: string } };
    assert.equal(j.error.type, "timeout_error");
    assert.match(j.error.message, /UPSTREAM_REQUEST_TIMEOUT_MS/);
    assert.doesNotMatch(text, /message_stop/);
  });

  test("the deadline counts from arrival: a request whose body took longer is answered 504 and never sent", async () => {
    const id = newId("late");
    const r = await raw(
      gw.port,
      Buffer.from(`POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-request-id: ${id}\r\n`),
      body("stream-model"),
      1000,
    );
    assert.equal(r.status, 504, r.body);
    assert.equal(JSON.parse(r.body).error.type, "timeout_error");
    assert.deepEqual(await recorded(id), [], "past its deadline, nothing is sent upstream");
  });

  test("with UPSTREAM_CONNECTIONS=1, a request whose deadline passes while it waits for the connection gets 504 and is never sent", async () => {
    await faults("hang");
    // The waiter arrives first (its deadline is the earlier one) but its body comes later.
    const waiterId = newId("waiter");
    const waiter = rawOpen(
      gw.port,
      Buffer.from(`POST /v1/messages HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\nx-request-id: ${waiterId}\r\n`),
      body("late-model"),
    );
    for (let i = 0; ; i++) {
      const o = (await (await fetch(`${gw.url}/metrics/observability`)).json()) as { requests: { active: number } };
      if (o.requests.active >= 2) break; // the waiter's request is in (this one counts itself)
      assert.ok(i < 400, "the waiter's request never arrived");
      await new Promise((r) => setTimeout(r, 10));
    }
    // The holder takes the only connection; the mock never answers it.
    const holderId = newId("holder");
    const holder = call(gw, "holder-model", { id: holderId });
    for (let i = 0; (await recorded(holderId)).length === 0; i++) {
      assert.ok(i < 400, "the holder never reached the mock");
      await new Promise((r) => setTimeout(r, 10));
    }
    waiter.sendBody();
    const w = await waiter.answer;
    assert.equal(w.status, 504, w.body);
    assert.equal(JSON.parse(w.body).error.type, "timeout_error");
    const h = await holder;
    assert.equal(h.status, 504);
    await h.arrayBuffer();
    // One connection, first come first served: once this is answered, the waiter's fate is settled.
    const next = await call(gw, "late-model");
    assert.equal(next.status, 200, "the waiter's provider is not blamed for it");
    await next.arrayBuffer();
    assert.deepEqual(await recorded(waiterId), [], "the waiter was never sent");
    assert.equal((await breaker(gw, "late")).consecutive_failures, 0);
  });

  test("a half-open probe whose client goes away gives its slot back", async () => {
    await faults("status:500");
    const first = await call(gw, "probe-model");
    assert.equal(first.status, 500);
    await first.arrayBuffer();
    await untilHalfOpenable(gw, "probe");
    await faults("hang");
    const ac = new AbortController();
    const id = newId("abort");
    const pending = fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": id },
      body: body("probe-model"),
      signal: ac.signal,
    });
    for (let i = 0; (await recorded(id)).length === 0; i++) {
      assert.ok(i < 400, "the probe never reached the mock");
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal((await breaker(gw, "probe")).probes_in_flight, 1);
    ac.abort();
    await assert.rejects(pending);
    for (let i = 0; (await breaker(gw, "probe")).probes_in_flight !== 0; i++) {
      assert.ok(i < 400, "the probe slot was never given back");
      await new Promise((r) => setTimeout(r, 10));
    }
    await faults();
    const ok = await call(gw, "probe-model");
    assert.equal(ok.status, 200, "the next probe is admitted");
    await ok.arrayBuffer();
    assert.equal((await breaker(gw, "probe")).state, "closed");
  });

  test("a half-open probe that hits the deadline is settled: the breaker recovers", async () => {
    await faults("status:500");
    const first = await call(gw, "probe-model");
    assert.equal(first.status, 500);
    await first.arrayBuffer();
    assert.equal((await breaker(gw, "probe")).state, "open");
    await untilHalfOpenable(gw, "probe");
    await faults("hang");
    const probe = await call(gw, "probe-model");
    assert.equal(probe.status, 504, "the probe ran into the deadline");
    assert.equal(((await probe.json()) as { error: { type: string } }).error.type, "timeout_error");
    const b = await breaker(gw, "probe");
    assert.equal(b.probes_in_flight, 0, "the probe slot is not leaked");
    assert.equal(b.state, "open", "a deadline is a provider failure: the breaker reopened");
    await untilHalfOpenable(gw, "probe");
    await faults();
    const ok = await call(gw, "probe-model");
    assert.equal(ok.status, 200, "the next probe is admitted and succeeds");
    await ok.arrayBuffer();
    assert.equal((await breaker(gw, "probe")).state, "closed");
  });
});
