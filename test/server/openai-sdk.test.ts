/**
 * The OpenAI side end to end: the official `openai` SDK through the gateway to an
 * OpenAI-format upstream (pass-through) and to an Anthropic-format upstream (translated),
 * and the official `@anthropic-ai/sdk` to an OpenAI-format upstream (translated). The
 * upstream is the project's mock in its own process, recording what it received.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { claudeCodeRequest } from "../../bench/fixture.js";

const CLIENT_KEY = "sk-client-openai-0001";
const OA_KEY = "sk-upstream-openai-key";
const ANTH_KEY = "sk-upstream-anthropic-key";
const AZ_KEY = "azure-upstream-key-123";
let mock: MockHandle;
let gw: Gateway;
let oa: OpenAI;
let an: Anthropic;

interface Recorded {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

async function recorded(): Promise<Recorded[]> {
  return (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Recorded[];
}
/** The next upstream call gets this fault (the gateway forwards no x-mock-* header). */
async function fault(spec: string): Promise<void> {
  const r = await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: [spec] }) });
  assert.equal(r.status, 200);
}

/** The last request the upstream saw, leaving out the gateway's own model-list fetches (they run in the background). */
async function lastRecorded(): Promise<Recorded> {
  const r = (await recorded()).filter((x) => !x.url.startsWith("/v1/models"));
  assert.ok(r.length > 0, "the upstream saw a request");
  return r[r.length - 1]!;
}

before(async () => {
  mock = await startMock(["--record"]);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-openai-"));
  const cfg = join(dir, "config.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        oa: { type: "openai", base_url: `${mock.url}/v1`, api_key: OA_KEY },
        anth: { type: "anthropic", base_url: mock.url, api_key: ANTH_KEY },
        az: { type: "azure-openai", base_url: mock.url, api_key: AZ_KEY, api_version: "2024-10-21" },
      },
      routes: [
        { match: "gpt-pass", provider: "oa", model: "gpt-upstream-renamed" },
        { match: "gpt-reasoner", provider: "oa", model: "deepseek-reasoner" },
        { match: "claude-up", provider: "anth" },
        { match: "az-model", provider: "az", model: "my-deployment" },
        { match: "local-mock", provider: "mock" },
        { match: "gpt-fb", provider: "oa", fallbacks: [{ provider: "anth", model: "claude-fallback" }] },
      ],
    }),
  );
  gw = await startGateway({ GATEWAY_API_KEYS: CLIENT_KEY, CONFIG_FILE: cfg, RETRY_MAX_ATTEMPTS: "1" });
  oa = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: CLIENT_KEY, maxRetries: 0 });
  an = new Anthropic({ baseURL: gw.url, apiKey: CLIENT_KEY, maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

const TOOLS: OpenAI.Chat.Completions.ChatCompletionTool[] = [
  {
    type: "function",
    function: { name: "search", description: "search", parameters: { type: "object", properties: { query: { type: "string" } } } },
  },
];

test("openai SDK create → OpenAI-format upstream: byte-faithful body with the model renamed, upstream key, reply as received", async () => {
  const raw = '{"model":"gpt-pass","messages":[{"role":"user","content":"hi \\u00e9"}],"x_unknown":{"keep":1}}';
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
    body: raw,
  });
  assert.equal(res.status, 200);
  const body = (await res.json()) as Record<string, any>;
  assert.equal(body.choices[0].message.content, "Mock reply to: hi é");
  assert.equal(body.model, "gpt-upstream-renamed", "the upstream's reply is relayed as received");
  const up = await lastRecorded();
  assert.equal(up.url, "/v1/chat/completions");
  assert.equal(up.body, raw.replace('"gpt-pass"', '"gpt-upstream-renamed"'));
  assert.equal(up.headers.authorization, `Bearer ${OA_KEY}`);
  assert.ok(!JSON.stringify(up.headers).includes(CLIENT_KEY), "the client's key never reaches the upstream");

  const c = await oa.chat.completions.create({ model: "gpt-pass", messages: [{ role: "user", content: "hello" }] });
  assert.equal(c.choices[0]!.message.content, "Mock reply to: hello");
});

test("openai SDK create → Anthropic-format upstream: translated both ways with finish_reason and usage incl. cached tokens", async () => {
  const c = await oa.chat.completions.create({
    model: "claude-up",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "hello" },
    ],
    max_completion_tokens: 50,
    user: "u-7",
  });
  assert.equal(c.object, "chat.completion");
  assert.equal(c.model, "claude-up");
  assert.equal(c.choices[0]!.message.content, "Mock reply to: hello");
  assert.equal(c.choices[0]!.finish_reason, "stop");
  assert.ok(c.usage!.prompt_tokens > 0 && c.usage!.completion_tokens > 0);
  assert.equal(c.usage!.prompt_tokens_details!.cached_tokens, 0);
  const up = await lastRecorded();
  assert.equal(up.url, "/v1/messages");
  assert.equal(up.headers["x-api-key"], ANTH_KEY);
  assert.equal(up.headers["anthropic-version"], "2023-06-01");
  assert.deepEqual(JSON.parse(up.body), {
    model: "claude-up",
    max_tokens: 50,
    messages: [{ role: "user", content: [{ type: "text", text: "hello" }] }],
    system: [{ type: "text", text: "Be brief." }],
    metadata: { user_id: "u-7" },
  });
});

for (const model of ["claude-up", "gpt-pass"]) {
  test(`openai SDK stream with include_usage (${model}): text deltas, one usage chunk at the end`, async () => {
    const stream = await oa.chat.completions.create({
      model,
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "stream me" }],
    });
    let text = "";
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const ch of stream) {
      chunks.push(ch);
      text += ch.choices[0]?.delta?.content ?? "";
    }
    assert.equal(text, "Mock reply to: stream me");
    const usage = chunks.filter((c) => c.usage);
    assert.equal(usage.length, 1, "exactly one usage chunk");
    assert.equal(chunks.at(-1), usage[0], "the usage chunk is last");
    assert.deepEqual(usage[0]!.choices, []);
    assert.equal(chunks.at(-2)!.choices[0]!.finish_reason, "stop");
  });
}

for (const model of ["claude-up", "gpt-pass"]) {
  test(`openai SDK tool-call round trip (${model}): .stream() + finalChatCompletion(), then the tool result answered, plain and streamed`, async () => {
    // The Anthropic mock calls a tool only when the prompt asks for one (README "The demo's mock").
    const ask = 'use the search tool with {"query":"mock"}';
    const messages: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = [{ role: "user", content: ask }];
    const runner = oa.chat.completions.stream({ model, messages, tools: TOOLS });
    const final = await runner.finalChatCompletion();
    const choice = final.choices[0]!;
    assert.equal(choice.finish_reason, "tool_calls");
    const call = choice.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall;
    assert.equal(call.function.name, "search");
    assert.deepEqual(JSON.parse(call.function.arguments), { query: "mock" });
    assert.ok(call.id.length > 0);

    const plain = await oa.chat.completions.create({ model, messages: [{ role: "user", content: ask }], tools: TOOLS });
    assert.deepEqual(
      JSON.parse(
        (plain.choices[0]!.message.tool_calls![0]! as OpenAI.Chat.Completions.ChatCompletionMessageFunctionToolCall).function.arguments,
      ),
      { query: "mock" },
    );

    messages.push(choice.message as OpenAI.Chat.Completions.ChatCompletionMessageParam, {
      role: "tool",
      tool_call_id: call.id,
      content: "three cats",
    });
    const after = await oa.chat.completions.create({ model, messages, tools: TOOLS });
    // The Anthropic mock names the tool it answers for; the OpenAI mock does not.
    const answer = model === "claude-up" ? "Mock reply to tool result: (search) three cats" : "Mock reply to tool result: three cats";
    assert.equal(after.choices[0]!.message.content, answer);
    const streamed = oa.chat.completions.stream({ model, messages, tools: TOOLS });
    assert.equal((await streamed.finalChatCompletion()).choices[0]!.message.content, answer);
  });
}

test("openai SDK to the built-in mock provider: JSON and stream translated", async () => {
  const c = await oa.chat.completions.create({ model: "local-mock", messages: [{ role: "user", content: "yo" }] });
  assert.equal(c.choices[0]!.message.content, "Mock reply to: yo");
  const s = oa.chat.completions.stream({ model: "local-mock", messages: [{ role: "user", content: "yo" }] });
  assert.equal((await s.finalChatCompletion()).choices[0]!.message.content, "Mock reply to: yo");
});

test("malformed Chat Completions requests get 400 in OpenAI's error shape naming the field", async () => {
  const send = (body: string) =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
      body,
    });
  const cases: [string, string][] = [
    ['{"model":"gpt-pass"}', "messages"],
    ['{"model":"gpt-pass","messages":[{"role":"robot","content":"x"}]}', "messages.0.role"],
    [
      '{"model":"gpt-pass","messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}',
      "messages.0.content.0.image_url.url",
    ],
    ['{"model":"gpt-pass","messages":[{"role":"user","content":"x"}],"temperature":3}', "temperature"],
    [
      '{"model":"claude-up","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}',
      "messages.1.tool_calls.0.function.arguments",
    ],
  ];
  for (const [body, param] of cases) {
    const r = await send(body);
    assert.equal(r.status, 400, body);
    const e = (await r.json()) as { error: { message: string; type: string; param: string | null; code: string } };
    assert.equal(e.error.type, "invalid_request_error");
    assert.equal(e.error.code, "GW_ERR_REQ_VALIDATION");
    assert.equal(e.error.param, param, body);
    assert.ok(e.error.message.includes(param), e.error.message);
  }
  const t = (await (await send('{"model":"gpt-pass","messages":[{"role":"user","content":"x"}],"temperature":3}')).json()) as {
    error: { message: string };
  };
  assert.match(t.error.message, /between 0 and 2, got 3/, "OpenAI's temperature range is named");
  const bad = await send("{not json");
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: { code: string } }).error.code, "GW_ERR_REQ_INVALID_JSON");
  const noKey = await fetch(`${gw.url}/v1/chat/completions`, { method: "POST", body: "{}" });
  assert.equal(noKey.status, 401);
  assert.deepEqual(Object.keys(((await noKey.json()) as { error: object }).error), ["message", "type", "param", "code"]);
  await assert.rejects(
    oa.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] }),
    (e: unknown) => e instanceof OpenAI.NotFoundError,
  );
});

test("upstream errors reach each client in its own shape; a mid-stream failure is an error chunk, then the end", async () => {
  await fault("status:429");
  await assert.rejects(
    oa.chat.completions.create({ model: "claude-up", messages: [{ role: "user", content: "x" }] }),
    (e: unknown) => e instanceof OpenAI.RateLimitError && typeof (e.error as { message?: string }).message === "string",
  );
  await fault("status:400");
  await assert.rejects(
    an.messages.create({ model: "gpt-pass", max_tokens: 10, messages: [{ role: "user", content: "x" }] }),
    (e: unknown) =>
      e instanceof Anthropic.BadRequestError && (e.error as { error?: { type?: string } }).error?.type === "invalid_request_error",
  );
  for (const model of ["claude-up", "gpt-pass"]) {
    await fault("cut-stream:3");
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
      body: JSON.stringify({ model, stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    const text = await res.text();
    assert.match(
      text,
      /\n\ndata: \{"error":\{"message":"upstream [^"]+","type":"server_error","param":null,"code":"GW_ERR_UPSTREAM_STREAM_CUT"\}\}\n\n$/,
      model,
    );
    assert.match(text, /^data: \{"id"/, "the stream had started before the cut");
    assert.ok(!text.includes("[DONE]"));
  }
  await fault("cut-stream:3");
  await assert.rejects(
    an.messages.stream({ model: "gpt-pass", max_tokens: 10, messages: [{ role: "user", content: "x" }] }).finalMessage(),
    (e: unknown) => e instanceof Anthropic.APIError,
    "an Anthropic client sees an error event when the OpenAI-format upstream stream is cut",
  );
  await fault("stream-error:3");
  const s = await oa.chat.completions.create({ model: "claude-up", stream: true, messages: [{ role: "user", content: "x" }] });
  await assert.rejects(
    async () => {
      for await (const _ of s) {
        /* drain */
      }
    },
    (e: unknown) => e instanceof OpenAI.APIError,
  );
});

test("anthropic SDK → OpenAI-format upstream: create, stream + finalMessage(), streamed tool_use round trip", async () => {
  const m = await an.messages.create({
    model: "gpt-pass",
    max_tokens: 64,
    system: [{ type: "text", text: "sys", cache_control: { type: "ephemeral" } }],
    messages: [{ role: "user", content: "hello" }],
  });
  assert.equal(m.type, "message");
  assert.deepEqual(m.content, [{ type: "text", text: "Mock reply to: hello" }]);
  assert.equal(m.stop_reason, "end_turn");
  assert.ok(m.usage.input_tokens > 0 && m.usage.output_tokens > 0);
  const up = JSON.parse((await lastRecorded()).body);
  assert.deepEqual(up, {
    model: "gpt-upstream-renamed",
    messages: [
      { role: "system", content: "sys" },
      { role: "user", content: "hello" },
    ],
    max_completion_tokens: 64,
  });

  const s = an.messages.stream({ model: "gpt-pass", max_tokens: 64, messages: [{ role: "user", content: "stream" }] });
  const fm = await s.finalMessage();
  assert.deepEqual(fm.content, [{ type: "text", text: "Mock reply to: stream" }]);
  assert.ok(fm.usage.output_tokens > 0);

  const tools: Anthropic.Tool[] = [{ name: "search", input_schema: { type: "object", properties: { query: { type: "string" } } } }];
  const messages: Anthropic.MessageParam[] = [{ role: "user", content: "find" }];
  const t = await an.messages
    .stream({ model: "gpt-pass", max_tokens: 64, tools, messages, thinking: { type: "enabled", budget_tokens: 1024 } })
    .finalMessage();
  assert.equal(t.stop_reason, "tool_use");
  const use = t.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
  assert.equal(use.name, "search");
  assert.deepEqual(use.input, { query: "mock" });
  assert.deepEqual(
    t.content.map((b) => b.type),
    ["text", "tool_use"],
  );
  messages.push(
    { role: "assistant", content: t.content as Anthropic.ContentBlockParam[] },
    { role: "user", content: [{ type: "tool_result", tool_use_id: use.id, content: "42 results" }] },
  );
  const back = await an.messages.stream({ model: "gpt-pass", max_tokens: 64, tools, messages }).finalMessage();
  assert.deepEqual(back.content, [{ type: "text", text: "Mock reply to tool result: 42 results" }]);
  const sent = JSON.parse((await lastRecorded()).body);
  assert.deepEqual(sent.messages.at(-1), { role: "tool", tool_call_id: use.id, content: "42 results" });
  assert.ok(!JSON.stringify(sent).includes("thinking"));
});

test("anthropic SDK: reasoning from an OpenAI-format upstream arrives as a thinking block before the text", async () => {
  const fm = await an.messages
    .stream({ model: "gpt-reasoner", max_tokens: 64, messages: [{ role: "user", content: "think" }] })
    .finalMessage();
  assert.deepEqual(fm.content, [
    { type: "thinking", thinking: "Thinking it over.", signature: "" },
    { type: "text", text: "Mock reply to: think" },
  ]);
  const c = await oa.chat.completions.create({
    model: "gpt-pass",
    reasoning_effort: "low",
    messages: [{ role: "user", content: "think" }],
  });
  assert.equal(
    (c.choices[0]!.message as unknown as { reasoning_content: string }).reasoning_content,
    "Thinking it over.",
    "reasoning_effort reaches an OpenAI-format upstream",
  );
});

test("azure-openai: deployment and api-version in the path, api-key header", async () => {
  const m = await an.messages.create({ model: "az-model", max_tokens: 16, messages: [{ role: "user", content: "az" }] });
  assert.deepEqual(m.content, [{ type: "text", text: "Mock reply to: az" }]);
  const up = await lastRecorded();
  assert.equal(up.url, "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21");
  assert.equal(up.headers["api-key"], AZ_KEY);
  assert.equal(up.headers.authorization, undefined);
});

test('chat completions are counted under route="chat_completions" with the provider that served them', async () => {
  const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
  assert.match(text, /route="chat_completions"[^\n]*provider="anth"/);
  assert.match(text, /route="chat_completions"[^\n]*provider="oa"/);
});

test("a failing OpenAI-format primary falls back to an Anthropic-format target, translated, for both clients", async () => {
  await fault("status:500");
  const res = await oa.chat.completions.create({ model: "gpt-fb", messages: [{ role: "user", content: "fb" }] }).withResponse();
  assert.equal(res.data.choices[0]!.message.content, "Mock reply to: fb");
  assert.equal(res.response.headers.get("x-portcullis-provider"), "anth");
  const up = await lastRecorded();
  assert.equal(up.url, "/v1/messages");
  assert.equal(JSON.parse(up.body).model, "claude-fallback");
  await fault("status:500");
  const m = await an.messages.create({ model: "gpt-fb", max_tokens: 8, messages: [{ role: "user", content: "fb2" }] });
  assert.deepEqual(m.content, [{ type: "text", text: "Mock reply to: fb2" }]);
});

test("usage from either side reaches the request log (ledger and budgets read the same fields); count_tokens to an OpenAI-format provider is estimated", async () => {
  const before = gw.lines.length;
  await oa.chat.completions
    .create({ model: "claude-up", stream: true, messages: [{ role: "user", content: "count me" }] })
    .then(async (s) => {
      for await (const _ of s) {
        /* drain */
      }
    });
  await oa.chat.completions
    .create({
      model: "gpt-pass",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "count me too" }],
    })
    .then(async (s) => {
      for await (const _ of s) {
        /* drain */
      }
    });
  await an.messages.create({ model: "gpt-pass", max_tokens: 8, messages: [{ role: "user", content: "and me" }] });
  const deadline = Date.now() + 5000;
  let rows: Record<string, unknown>[] = [];
  while (rows.length < 3 && Date.now() < deadline) {
    rows = gw.lines
      .slice(before)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => r.msg === "request" && (r.model === "claude-up" || r.model === "gpt-pass"));
    if (rows.length < 3) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(rows.length, 3, "three request log lines within 5 s");
  assert.deepEqual(
    rows.map((r) => [r.route, r.provider]),
    [
      ["chat_completions", "anth"],
      ["chat_completions", "oa"],
      ["messages", "oa"],
    ],
  );
  for (const r of rows) assert.ok((r.input_tokens as number) > 0 && (r.output_tokens as number) > 0, JSON.stringify(r));
  const n = await an.messages.countTokens({ model: "gpt-pass", messages: [{ role: "user", content: "how many?" }] });
  assert.ok(n.input_tokens > 0);
});

async function waitFor(cond: () => Promise<boolean>, what: string, limitMs = 10_000): Promise<void> {
  const end = Date.now() + limitMs;
  while (Date.now() < end) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out after ${limitMs} ms waiting for ${what}`);
}

for (const [route, model] of [
  ["/v1/chat/completions", "claude-up"],
  ["/v1/messages", "gpt-pass"],
] as const) {
  test(`a client abort mid-stream on a translated call (${route} → ${model}) cancels the upstream stream`, async () => {
    const active = async () => ((await (await fetch(`${mock.url}/__mock/stats`)).json()) as { active: number }).active;
    const before = await active();
    await fault("slow-stream:5000"); // ~10 frames: the stream would run ~50 s if not cancelled
    const ac = new AbortController();
    const res = await fetch(`${gw.url}${route}`, {
      method: "POST",
      signal: ac.signal,
      headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
      body: JSON.stringify({ model, max_tokens: 10, stream: true, messages: [{ role: "user", content: "slow" }] }),
    });
    assert.equal(res.status, 200);
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.ok(!first.done && first.value.length > 0, "the stream started");
    assert.equal(await active(), before + 1, "the upstream stream is open");
    ac.abort();
    await reader.read().catch(() => undefined);
    await waitFor(async () => (await active()) === before, "the upstream stream to be cancelled");
  });
}

test("a real Claude Code request (the 100 KB bench fixture: thinking, cache_control, tools, tool results) streams through to an OpenAI-format upstream with nothing Anthropic-only leaked", async () => {
  const req = { ...claudeCodeRequest(), model: "gpt-pass" } as unknown as Anthropic.MessageCreateParamsStreaming;
  const fm = await an.messages.stream(req).finalMessage();
  assert.equal(fm.role, "assistant");
  assert.ok(fm.content.length > 0);
  const up = await lastRecorded();
  assert.equal(up.url, "/v1/chat/completions");
  for (const key of ['"cache_control"', '"signature"', '"thinking"', '"input_schema"', '"tool_use_id"', '"context_management"']) {
    assert.ok(!up.body.includes(key + ":"), `${key} is not sent to an OpenAI-format upstream`);
  }
  const body = JSON.parse(up.body) as {
    messages: { role: string; tool_call_id?: string; tool_calls?: { id: string }[] }[];
    tools: unknown[];
  };
  assert.equal(body.tools.length, (req.tools ?? []).length);
  // Every tool message answers a tool call of the assistant turn before it, as OpenAI requires.
  const open = new Set<string>();
  for (const m of body.messages) {
    if (m.role === "assistant") for (const c of m.tool_calls ?? []) open.add(c.id);
    if (m.role === "tool") assert.ok(open.delete(m.tool_call_id!), `tool message ${m.tool_call_id} answers a call`);
  }
});

test("openai SDK models.list() sees every routed model in OpenAI's shape (object, created, owned_by)", async () => {
  const ids: string[] = [];
  for await (const m of oa.models.list()) {
    assert.equal(m.object, "model");
    assert.equal(typeof m.created, "number");
    assert.equal(typeof m.owned_by, "string");
    ids.push(m.id);
  }
  for (const id of ["gpt-pass", "gpt-reasoner", "claude-up", "az-model", "local-mock", "gpt-fb"])
    assert.ok(ids.includes(id), `${id} listed: ${ids.join(", ")}`);
});
