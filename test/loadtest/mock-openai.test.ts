import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { MOCK_OPENAI_ARG_PIECES } from "../../loadtest/mock-openai.js";

let mock: MockHandle;
before(async () => {
  mock = await startMock();
});
after(async () => {
  await mock.stop();
});

const TOOLS = [{ type: "function", function: { name: "search", parameters: { type: "object" } } }];

function post(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${mock.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
}

function chunks(text: string): Record<string, any>[] {
  const parts = text.split("\n\n").filter((p) => p !== "");
  assert.equal(parts.at(-1), "data: [DONE]");
  return parts.slice(0, -1).map((p) => JSON.parse(p.slice(6)));
}

test("mock OpenAI endpoint streams reasoning, a tool call with arguments split at awkward places, and a usage chunk only when asked", async () => {
  const res = await post({
    model: "gpt-m",
    stream: true,
    stream_options: { include_usage: true },
    reasoning_effort: "low",
    tools: TOOLS,
    messages: [{ role: "user", content: "find it" }],
  });
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const cs = chunks(await res.text());
  const reasoning = cs.map((c) => c.choices[0]?.delta?.reasoning_content ?? "").join("");
  assert.equal(reasoning, "Thinking it over.");
  const args = cs.map((c) => c.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? "");
  assert.deepEqual(
    args.filter((a) => a !== ""),
    MOCK_OPENAI_ARG_PIECES,
  );
  assert.deepEqual(JSON.parse(args.join("")), { query: "mock" });
  assert.equal(cs.find((c) => c.choices[0]?.delta?.tool_calls?.[0]?.id)?.choices[0].delta.tool_calls[0].function.name, "search");
  assert.equal(cs.at(-2)!.choices[0].finish_reason, "tool_calls");
  assert.deepEqual(cs.at(-1)!.choices, []);
  assert.ok(cs.at(-1)!.usage.prompt_tokens > 0);

  const plain = chunks(await (await post({ model: "gpt-m", stream: true, messages: [{ role: "user", content: "hi" }] })).text());
  assert.ok(
    plain.every((c) => c.usage === undefined),
    "no usage chunk without include_usage",
  );
  assert.equal(plain.map((c) => c.choices[0]?.delta?.content ?? "").join(""), "Mock reply to: hi");
});

test("mock OpenAI endpoint: JSON reply, faults answer in OpenAI's error shape, stream-error sends an error chunk", async () => {
  const j = (await (await post({ model: "gpt-m", messages: [{ role: "user", content: "hi" }] })).json()) as Record<string, any>;
  assert.equal(j.object, "chat.completion");
  assert.equal(j.choices[0].message.content, "Mock reply to: hi");
  const e = await post({ model: "gpt-m", messages: [{ role: "user", content: "hi" }] }, { "x-mock-fault": "status:429" });
  assert.equal(e.status, 429);
  assert.deepEqual(Object.keys(((await e.json()) as Record<string, any>).error), ["message", "type", "param", "code"]);
  const s = await (
    await post({ model: "gpt-m", stream: true, messages: [{ role: "user", content: "hi" }] }, { "x-mock-fault": "stream-error:2" })
  ).text();
  assert.match(s, /data: \{"error":\{"message":"mock stream fault"/);
  assert.ok(!s.includes("[DONE]"));
});
