import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startMock } from "../support/spawn-mock.js";
import { until } from "../support/wait.js";
import { MOCK_SIGNATURE_RAW } from "../../core/mock-reply.js";

let mock: Awaited<ReturnType<typeof startMock>>;

before(async () => {
  mock = await startMock(["--record"]);
});

after(async () => {
  await mock?.stop();
});

const body = (extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 64, messages: [{ role: "user", content: "ping" }], ...extra });

function post(path: string, payload: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${mock.url}${path}`, { method: "POST", headers: { "content-type": "application/json", ...headers }, body: payload });
}

async function stats(): Promise<{ requests: number; active: number }> {
  return (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { requests: number; active: number };
}

function sseEvents(text: string): string[] {
  return text
    .split("\n\n")
    .filter((f) => f !== "")
    .map((f) => /^event: (\S+)\ndata: /.exec(f)![1]!);
}

test("JSON reply on every provider base path", async () => {
  for (const path of ["/v1/messages", "/anthropic/v1/messages", "/serving-endpoints/anthropic/v1/messages"]) {
    const res = await post(path, body());
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^application\/json/);
    assert.ok(res.headers.get("request-id"));
    const m = (await res.json()) as any;
    assert.equal(m.type, "message");
    assert.equal(m.model, "claude-sonnet-4-5");
    assert.equal(m.content[0].text, "Mock reply to: ping");
  }
});

test("thinking signature bytes are served verbatim", async () => {
  const res = await post("/v1/messages", body({ thinking: { type: "enabled", budget_tokens: 1024 } }));
  const text = await res.text();
  assert.ok(text.includes(`"signature":"${MOCK_SIGNATURE_RAW}"`));
});

test("SSE reply with x-mock-events", async () => {
  const res = await post("/v1/messages", body({ stream: true }), { "x-mock-events": "12" });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
  const events = sseEvents(await res.text());
  assert.equal(events[0], "message_start");
  assert.equal(events.filter((e) => e === "content_block_delta").length, 12);
  assert.deepEqual(events.slice(-2), ["message_delta", "message_stop"]);
});

test("count_tokens and models", async () => {
  const ct = await post("/v1/messages/count_tokens", body());
  assert.equal(ct.status, 200);
  const n = ((await ct.json()) as any).input_tokens;
  assert.ok(Number.isInteger(n) && n >= 1);
  const models = await fetch(`${mock.url}/v1/models`);
  assert.equal(models.status, 200);
  const list = (await models.json()) as any;
  assert.ok(Array.isArray(list.data) && list.data.length > 0);
  assert.equal(list.data[0].type, "model");
});

test("recording keeps method, url with query, lowercase headers and raw body", async () => {
  await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
  const raw = '{"model":"m",  "messages":[{"role":"user","content":"caf\\u00e9 \\/ raw"}] }';
  const res = await post("/anthropic/v1/messages?api-version=2023-06-01&x=1", raw, {
    "X-Api-Key": "sk-test",
    "Anthropic-Version": "2023-06-01",
  });
  assert.equal(res.status, 200);
  await res.text();
  const recs = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as any[];
  assert.equal(recs.length, 1);
  const r = recs[0];
  assert.equal(r.method, "POST");
  assert.equal(r.url, "/anthropic/v1/messages?api-version=2023-06-01&x=1");
  assert.equal(r.headers["x-api-key"], "sk-test");
  assert.equal(r.headers["anthropic-version"], "2023-06-01");
  assert.equal(r.headers["content-type"], "application/json");
  assert.equal(r.body, raw);
  assert.ok(typeof r.at === "number" && Math.abs(r.at - Date.now()) < 60_000, "arrival time (Date.now) recorded");

  await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
  assert.deepEqual(await (await fetch(`${mock.url}/__mock/requests`)).json(), []);
});

test("status:529 fault via header and status:429 with retry-after via queue", async () => {
  const res = await post("/v1/messages", body(), { "x-mock-fault": "status:529" });
  assert.equal(res.status, 529);
  assert.deepEqual(await res.json(), { type: "error", error: { type: "overloaded_error", message: "mock fault" } });

  const q = await post("/__mock/faults", JSON.stringify({ faults: ["status:429;retry-after:2"] }));
  assert.equal(q.status, 200);
  await q.text();
  const r1 = await post("/v1/messages", body());
  assert.equal(r1.status, 429);
  assert.equal(r1.headers.get("retry-after"), "2");
  assert.equal(((await r1.json()) as any).error.type, "rate_limit_error");
  const r2 = await post("/v1/messages", body());
  assert.equal(r2.status, 200, "queued fault consumed by one request");
  await r2.text();
});

test("key faults: every request with a listed key (x-api-key, api-key or a bearer) gets its fault, others none; a bad spec is refused", async () => {
  const set = await post("/__mock/key-faults", JSON.stringify({ keys: { "k-busy": "status:429;retry-after:2", "k-gone": "status:401" } }));
  assert.equal(set.status, 200);
  await set.text();
  for (let i = 0; i < 2; i++) {
    const busy = await post("/v1/messages", body(), { "x-api-key": "k-busy" });
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get("retry-after"), "2");
    await busy.text();
  }
  const bearer = await post("/v1/chat/completions", body(), { authorization: "Bearer k-gone" });
  assert.equal(bearer.status, 401);
  await bearer.text();
  const azure = await post("/v1/messages", body(), { "api-key": "k-gone" });
  assert.equal(azure.status, 401);
  await azure.text();
  const ok = await post("/v1/messages", body(), { "x-api-key": "k-fine" });
  assert.equal(ok.status, 200);
  await ok.text();
  const bad = await post("/__mock/key-faults", JSON.stringify({ keys: { k: "stauts:500" } }));
  assert.equal(bad.status, 400);
  await bad.text();
  await fetch(`${mock.url}/__mock/key-faults`, { method: "DELETE" });
  const after = await post("/v1/messages", body(), { "x-api-key": "k-busy" });
  assert.equal(after.status, 200, "the table is cleared");
  await after.text();
});

test("unknown fault spec is rejected loudly", async () => {
  const res = await post("/v1/messages", body(), { "x-mock-fault": "stauts:500" });
  assert.equal(res.status, 400);
  assert.equal(((await res.json()) as any).error.type, "invalid_request_error");
});

test("cut-stream:3 delivers 3 frames then drops the connection", async () => {
  const res = await post("/v1/messages", body({ stream: true }), { "x-mock-fault": "cut-stream:3" });
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const dec = new TextDecoder();
  let text = "";
  let failed = false;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += dec.decode(value, { stream: true });
    }
  } catch {
    failed = true;
  }
  assert.ok(failed, "body must end with an error, not a clean EOF");
  assert.deepEqual(sseEvents(text), ["message_start", "content_block_start", "ping"]);
});

test("reset fault closes without a response", async () => {
  await assert.rejects(post("/v1/messages", body(), { "x-mock-fault": "reset" }));
});

test("stats: a hung request stays active until the client aborts", async () => {
  const s0 = await stats();
  assert.equal(s0.active, 0);
  const ac = new AbortController();
  const pending = fetch(`${mock.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-mock-fault": "hang" },
    body: body(),
    signal: ac.signal,
  }).catch((err: unknown) => err);
  // The mock's counters live in its process: poll them, with a bound.
  const s = await until("the mock to see the hung request", async () => {
    const v = await stats();
    return v.active >= 1 ? v : undefined;
  });
  assert.equal(s.active, 1);
  assert.equal(s.requests, s0.requests + 1);
  ac.abort();
  assert.ok((await pending) instanceof Error);
  await until("the aborted request to leave the mock's active count", async () => ((await stats()).active === 0 ? true : undefined));
});

test("delay and slow-stream still produce complete replies", async () => {
  const d = await post("/v1/messages", body(), { "x-mock-fault": "delay:20" });
  assert.equal(d.status, 200);
  assert.equal(((await d.json()) as any).type, "message");
  const s = await post("/v1/messages", body({ stream: true }), { "x-mock-fault": "slow-stream:5", "x-mock-events": "3" });
  const events = sseEvents(await s.text());
  assert.equal(events.at(-1), "message_stop");
  assert.equal(events.filter((e) => e === "content_block_delta").length, 3);
});
