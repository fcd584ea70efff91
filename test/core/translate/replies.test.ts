import { test } from "node:test";
import assert from "node:assert/strict";
import { SseReader } from "../../../core/translate/sse.js";
import { OpenAIToAnthropicStream, openAIToAnthropicJson, type Usage } from "../../../core/translate/openai-to-anthropic-reply.js";
import { AnthropicToOpenAIStream, anthropicToOpenAIJson, type AnthropicUsage } from "../../../core/translate/anthropic-to-openai-reply.js";
import { toOpenAIErrorBody } from "../../../core/translate/openai-errors.js";

test("OpenAI chat.completion → Anthropic message: reasoning, text, tool calls, stop reason and usage without cached tokens", () => {
  const u: Usage = { inputTokens: -1, outputTokens: -1, cacheReadTokens: -1 };
  const out = JSON.parse(
    openAIToAnthropicJson(
      {
        id: "chatcmpl-1",
        object: "chat.completion",
        choices: [
          {
            index: 0,
            finish_reason: "tool_calls",
            message: {
              role: "assistant",
              content: "Sure.",
              reasoning_content: "think",
              tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } }],
            },
          },
        ],
        usage: { prompt_tokens: 50, completion_tokens: 7, prompt_tokens_details: { cached_tokens: 30 } },
      },
      "claude-x",
      "gw",
      u,
    ),
  );
  assert.deepEqual(out, {
    id: "msg_1",
    type: "message",
    role: "assistant",
    model: "claude-x",
    content: [
      { type: "thinking", thinking: "think", signature: "" },
      { type: "text", text: "Sure." },
      { type: "tool_use", id: "call_1", name: "f", input: { a: 1 } },
    ],
    stop_reason: "tool_use",
    stop_sequence: null,
    usage: { input_tokens: 20, cache_creation_input_tokens: 0, cache_read_input_tokens: 30, output_tokens: 7 },
  });
  assert.deepEqual(u, { inputTokens: 20, outputTokens: 7, cacheReadTokens: 30 });
});

test("OpenAI finish reasons map to Anthropic stop reasons (length → max_tokens, content_filter → refusal)", () => {
  for (const [f, s] of [
    ["stop", "end_turn"],
    ["length", "max_tokens"],
    ["content_filter", "refusal"],
    ["tool_calls", "tool_use"],
  ]) {
    const out = JSON.parse(
      openAIToAnthropicJson({ choices: [{ finish_reason: f, message: { content: "x" } }] }, "m", "gw", {
        inputTokens: -1,
        outputTokens: -1,
        cacheReadTokens: -1,
      }),
    );
    assert.equal(out.stop_reason, s, f);
  }
});

test("Anthropic message → chat.completion: finish_reason, tool_calls with JSON arguments, usage with cached tokens", () => {
  const u: AnthropicUsage = { inputTokens: -1, outputTokens: -1, cacheReadTokens: -1, cacheCreationTokens: -1 };
  const out = JSON.parse(
    anthropicToOpenAIJson(
      {
        id: "msg_9",
        content: [
          { type: "thinking", thinking: "t", signature: "s" },
          { type: "text", text: "Hi" },
          { type: "tool_use", id: "toolu_1", name: "f", input: { a: [1] } },
        ],
        stop_reason: "tool_use",
        usage: { input_tokens: 10, output_tokens: 4, cache_read_input_tokens: 6, cache_creation_input_tokens: 2 },
      },
      "gpt-x",
      "gw",
      123,
      u,
    ),
  );
  assert.deepEqual(out, {
    id: "chatcmpl-msg_9",
    object: "chat.completion",
    created: 123,
    model: "gpt-x",
    choices: [
      {
        index: 0,
        message: {
          role: "assistant",
          content: "Hi",
          reasoning_content: "t",
          tool_calls: [{ id: "toolu_1", type: "function", function: { name: "f", arguments: '{"a":[1]}' } }],
        },
        logprobs: null,
        finish_reason: "tool_calls",
      },
    ],
    usage: { prompt_tokens: 18, completion_tokens: 4, total_tokens: 22, prompt_tokens_details: { cached_tokens: 6 } },
  });
  for (const [s, f] of [
    ["end_turn", "stop"],
    ["max_tokens", "length"],
    ["stop_sequence", "stop"],
    ["refusal", "content_filter"],
  ]) {
    assert.equal(JSON.parse(anthropicToOpenAIJson({ content: [], stop_reason: s }, "m", "gw", 1, { ...u })).choices[0].finish_reason, f, s);
  }
});

function runOpenAI(text: string): { out: string; tail: string | null; tx: OpenAIToAnthropicStream } {
  const tx = new OpenAIToAnthropicStream("m", "gw");
  let out = "";
  new SseReader().push(Buffer.from(text), (_e, d) => (out += tx.event(d)));
  return { out, tail: tx.finishStream(), tx };
}

test("OpenAI stream cut before finish_reason is reported as torn (no message_stop is invented)", () => {
  const r = runOpenAI('data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n');
  assert.match(r.out, /text_delta/);
  assert.equal(r.tail, null);
});

test("OpenAI stream that ends after finish_reason without [DONE] still ends with message_delta and message_stop", () => {
  const r = runOpenAI('data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"length"}]}\n\n');
  assert.match(r.tail ?? "", /"stop_reason":"max_tokens"[\s\S]*message_stop/);
});

test("OpenAI stream error chunk becomes an Anthropic error event and ends the translation", () => {
  const r = runOpenAI(
    'data: {"id":"x","choices":[{"index":0,"delta":{"content":"Hi"}}]}\n\ndata: {"error":{"message":"overloaded","type":"server_error"}}\n\ndata: {"id":"x","choices":[{"index":0,"delta":{"content":"late"}}]}\n\n',
  );
  assert.match(r.out, /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"overloaded"\}\}\n\n$/);
  assert.ok(r.tx.done);
  assert.equal(r.tail, "");
});

test("Anthropic stream without include_usage has no usage chunk; an error event becomes an OpenAI error chunk", () => {
  const tx = new AnthropicToOpenAIStream("g", "gw", 1, false);
  let out = "";
  const events = [
    '{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":3,"output_tokens":1}}}',
    '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"ok"}}',
    '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}',
    '{"type":"message_stop"}',
  ];
  for (const e of events) out += tx.event(e);
  assert.ok(!out.includes('"usage"'));
  assert.match(out, /"finish_reason":"stop"\}\]\}\n\ndata: \[DONE\]\n\n$/);
  assert.deepEqual([tx.usage.inputTokens, tx.usage.outputTokens], [3, 2]);
  const t2 = new AnthropicToOpenAIStream("g", "gw", 1, true);
  t2.event(events[0]!);
  const err = t2.event('{"type":"error","error":{"type":"overloaded_error","message":"busy"}}');
  assert.equal(err, 'data: {"error":{"message":"busy","type":"overloaded_error","param":null,"code":null}}\n\n');
  assert.ok(t2.done);
});

test("SSE reader: comments and event names are handled, a split multi-byte character survives, flush yields an unterminated event", () => {
  const r = new SseReader();
  const got: [string, string][] = [];
  const full = Buffer.from(": keep-alive\n\nevent: a\ndata: é1\ndata: 2\n\ndata: tail");
  const cut = full.indexOf(Buffer.from("é")) + 1; // inside the two-byte é
  r.push(full.subarray(0, cut), (e, d) => got.push([e, d]));
  r.push(full.subarray(cut), (e, d) => got.push([e, d]));
  assert.deepEqual(got, [["a", "é1\n2"]]);
  assert.ok(r.held > 0);
  r.flush((e, d) => got.push([e, d]));
  assert.deepEqual(got[1], ["", "tail"]);
});

test("gateway errors in Anthropic shape are re-shaped for OpenAI clients; other bodies pass untouched", () => {
  const body = '{"type":"error","error":{"type":"invalid_request_error","message":"bad"},"request_id":"r1"}';
  assert.deepEqual(JSON.parse(String(toOpenAIErrorBody(body, "GW_ERR_REQ_VALIDATION", "messages"))), {
    error: { message: "bad", type: "invalid_request_error", param: "messages", code: "GW_ERR_REQ_VALIDATION" },
  });
  const oa = '{"error":{"message":"x","type":"invalid_request_error","param":null,"code":null}}';
  assert.equal(toOpenAIErrorBody(oa, null), oa);
});

test("OpenAI stream: `reasoning` (OpenRouter, Ollama) is thinking too; a tool call without id or index still gets a block with a generated id", () => {
  const r = runOpenAI(
    [
      'data: {"id":"x","choices":[{"index":0,"delta":{"reasoning":"hmm"}}]}',
      'data: {"id":"x","choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":"f","arguments":"{}"}}]}}]}',
      'data: {"id":"x","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}',
      "data: [DONE]",
      "",
    ].join("\n\n"),
  );
  assert.match(r.out, /"content_block":\{"type":"thinking","thinking":"","signature":""\}[\s\S]*"thinking_delta","thinking":"hmm"/);
  assert.match(r.out, /"index":1,"content_block":\{"type":"tool_use","id":"toolu_gw_0","name":"f","input":\{\}\}/);
  assert.match(r.out, /"partial_json":"\{\}"/);
  assert.match(r.out, /"stop_reason":"tool_use"[\s\S]*message_stop/);
});
