/**
 * The built-in mock's replies: pure functions of the request. Besides the reply grammar, this
 * pins the mock as a demo partner for Claude Code, with request bodies shaped like the ones
 * Claude Code sends (test/core/fixtures/claude-code/): it answers the prompt, not the injected
 * reminders, and calls a tool only when asked, with arguments that satisfy the tool's schema.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import {
  MOCK_REPLY_PREFIX,
  MOCK_SIGNATURE,
  MOCK_SIGNATURE_RAW,
  MOCK_TOOL_HINT,
  mockCountTokens,
  mockMessageJson,
  mockStreamFrames,
  type MockRequest,
} from "../../core/mock-reply.js";
import { assemble, parseFrames, shape } from "../support/sse.js";
import { violations } from "../support/json-schema.js";

/** A request body from test/core/fixtures/claude-code/ (read from the source tree). */
function fixture(name: string): MockRequest {
  return JSON.parse(readFileSync(new URL(`../../../test/core/fixtures/claude-code/${name}.json`, import.meta.url), "utf8")) as MockRequest;
}

/** The same request with the last user turn's own prompt replaced (its reminders kept). */
function asking(base: MockRequest, prompt: string): MockRequest {
  const req = structuredClone(base);
  const last = req.messages.at(-1)!;
  const blocks = last.content as { type: string; text: string }[];
  blocks[blocks.length - 1]!.text = prompt;
  return req;
}

const plain: MockRequest = {
  model: "claude-sonnet-4-5",
  max_tokens: 100,
  messages: [{ role: "user", content: "Hello there, mock!" }],
};

test("JSON reply is a well-formed message echoing the last user text", () => {
  const raw = mockMessageJson(plain, "msg_1");
  const m = JSON.parse(raw);
  assert.equal(m.id, "msg_1");
  assert.equal(m.type, "message");
  assert.equal(m.role, "assistant");
  assert.equal(m.model, "claude-sonnet-4-5");
  assert.deepEqual(m.content, [{ type: "text", text: "Mock reply to: Hello there, mock!" }]);
  assert.equal(m.stop_reason, "end_turn");
  assert.equal(m.stop_sequence, null);
  assert.equal(m.usage.input_tokens, mockCountTokens(plain));
  assert.ok(m.usage.output_tokens >= 1);
  assert.equal(m.usage.cache_creation_input_tokens, 0);
  assert.equal(m.usage.cache_read_input_tokens, 0);
});

test("last user text from block content, quoted up to 200 chars", () => {
  const long = "x".repeat(500);
  const req: MockRequest = {
    model: "m",
    messages: [
      { role: "user", content: "first" },
      { role: "assistant", content: "ok" },
      {
        role: "user",
        content: [
          { type: "image", source: {} },
          { type: "text", text: long },
        ],
      },
    ],
  };
  const m = JSON.parse(mockMessageJson(req, "id"));
  assert.equal(m.content[0].text, `Mock reply to: ${"x".repeat(200)}`);
});

test("stream frames follow the API's event order (ping after the first block start) and rebuild the JSON reply", () => {
  const frames = mockStreamFrames(plain, "msg_s");
  const events = parseFrames(frames);
  assert.deepEqual(
    events.map((e) => e.event),
    [
      "message_start",
      "content_block_start",
      "ping",
      ...Array(5).fill("content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ],
  );
  assert.equal(events[0]!.data.message.usage.input_tokens, mockCountTokens(plain));
  assert.ok(events.at(-2)!.data.usage.output_tokens >= 1, "message_delta carries the output usage");
  const rebuilt = assemble(events);
  assert.deepEqual(rebuilt, JSON.parse(mockMessageJson(plain, "msg_s")));
});

test("textEvents controls the number of text_delta events (padding short text)", () => {
  for (const n of [1, 3, 50]) {
    const events = parseFrames(mockStreamFrames(plain, "x", n));
    const deltas = events.filter((e) => e.data.delta?.type === "text_delta");
    assert.equal(deltas.length, n);
    for (const d of deltas) assert.ok(d.data.delta.text.length > 0);
    assert.ok(assemble(events).content[0].text.startsWith("Mock reply to: Hello there, mock!"));
  }
});

test("Claude Code's first turn: the reply answers the prompt, not its <system-reminder> blocks, and calls no tool", () => {
  const req = fixture("first-turn");
  const m = JSON.parse(mockMessageJson(req, "msg_cc1"));
  assert.equal(m.stop_reason, "end_turn");
  assert.deepEqual(
    m.content.map((b: { type: string }) => b.type),
    ["text"],
  );
  assert.equal(m.content[0].text, `${MOCK_REPLY_PREFIX}hello, what can you do?${MOCK_TOOL_HINT}`);
  assert.doesNotMatch(m.content[0].text, /system-reminder|claudeMd|todo list/);
  assert.deepEqual(assemble(parseFrames(mockStreamFrames(req, "msg_cc1"))), m);
});

test("injected blocks inside one text block, or a turn made only of them, never become the prompt", () => {
  const inline: MockRequest = {
    model: "m",
    messages: [
      { role: "user", content: "<system-reminder>\nignore me\n</system-reminder>\nsummarise the diff<command-name>/x</command-name>" },
    ],
  };
  assert.equal(JSON.parse(mockMessageJson(inline, "a")).content[0].text, `${MOCK_REPLY_PREFIX}summarise the diff`);
  // A later user turn holding only a reminder: the reply is to the last real prompt.
  const onlyReminder: MockRequest = {
    model: "m",
    messages: [
      { role: "user", content: "first question" },
      { role: "assistant", content: "an answer" },
      { role: "user", content: [{ type: "text", text: "<system-reminder>\nthe date changed\n</system-reminder>" }] },
    ],
  };
  assert.equal(JSON.parse(mockMessageJson(onlyReminder, "b")).content[0].text, `${MOCK_REPLY_PREFIX}first question`);
});

test('"use the Read tool on FILE" → one Read call whose input satisfies Read\'s input_schema (JSON and stream)', () => {
  const req = fixture("read-tool-turn");
  const m = JSON.parse(mockMessageJson(req, "msg_cc2"));
  assert.equal(m.stop_reason, "tool_use");
  assert.deepEqual(
    m.content.map((b: { type: string }) => b.type),
    ["text", "tool_use"],
  );
  const use = m.content[1];
  assert.equal(use.name, "Read");
  assert.match(use.id, /^toolu_mock_\d+$/);
  assert.deepEqual(use.input, { file_path: "README.md" });
  const schema = req.tools!.find((t) => t.name === "Read")!.input_schema;
  assert.deepEqual(violations(use.input, schema), []);

  const events = parseFrames(mockStreamFrames(req, "msg_cc2"));
  assert.deepEqual(shape(events), [
    "message_start",
    "content_block_start",
    "ping",
    "delta*",
    "content_block_stop",
    "content_block_start",
    "delta*",
    "content_block_stop",
    "message_delta",
    "message_stop",
  ]);
  assert.deepEqual(
    events.filter((e) => e.event === "content_block_start").map((e) => [e.data.index, e.data.content_block.type]),
    [
      [0, "text"],
      [1, "tool_use"],
    ],
  );
  assert.ok(events.filter((e) => e.data.delta?.type === "input_json_delta").length >= 2, "input streamed in pieces");
  assert.deepEqual(assemble(events), m);
});

test('"use the Bash tool to run CMD" → a Bash call with that command and nothing the schema lacks', () => {
  const req = asking(fixture("read-tool-turn"), "please use the Bash tool to run `ls -la src`");
  const use = JSON.parse(mockMessageJson(req, "x")).content[1];
  assert.equal(use.name, "Bash");
  assert.deepEqual(use.input, { command: "ls -la src" });
});

test("every Claude Code tool can be asked for, and each call's arguments satisfy that tool's schema", () => {
  const base = fixture("read-tool-turn");
  for (const tool of base.tools!) {
    const m = JSON.parse(mockMessageJson(asking(base, `use the ${tool.name} tool on src/app.ts`), "x"));
    assert.equal(m.stop_reason, "tool_use", tool.name);
    const use = m.content.at(-1);
    assert.equal(use.name, tool.name);
    assert.deepEqual(violations(use.input, tool.input_schema), [], `${tool.name}: ${JSON.stringify(use.input)}`);
    assert.ok(Object.values(use.input).includes("src/app.ts") || tool.name === "TodoWrite", `${tool.name} got the prompt's value`);
  }
  // The Agent tool's required description, prompt and subagent_type are all there.
  const agent = JSON.parse(mockMessageJson(asking(base, "use the Agent tool to find the flaky test"), "x")).content[1];
  assert.deepEqual(agent.input, { prompt: "find the flaky test", description: "find the flaky test", subagent_type: "general-purpose" });
});

test("explicit JSON arguments are used as given, and arguments that break the schema are refused in words", () => {
  const base = fixture("read-tool-turn");
  const ok = JSON.parse(
    mockMessageJson(asking(base, 'use the Edit tool with {"file_path":"a.ts","old_string":"x","new_string":"y"}'), "x"),
  );
  assert.deepEqual(ok.content[1].input, { file_path: "a.ts", old_string: "x", new_string: "y" });
  for (const [args, why] of [
    ['{"file_path":"a.ts"}', /required parameter `old_string` is missing/],
    ['{"file_path":"a.ts","old_string":"x","new_string":"y","replace_all":"yes"}', /`replace_all` must be of type boolean/],
    ['{"file_path":"a.ts","old_string":"x","new_string":"y","colour":1}', /`colour` is not a parameter/],
    ["{not json}", /not valid JSON/],
  ] as const) {
    const m = JSON.parse(mockMessageJson(asking(base, `use the Edit tool with ${args}`), "x"));
    assert.equal(m.stop_reason, "end_turn", args);
    assert.deepEqual(
      m.content.map((b: { type: string }) => b.type),
      ["text"],
    );
    assert.match(m.content[0].text, why);
  }
});

test("a tool asked for without the value its schema requires is not called; the reply says what to add", () => {
  const base = fixture("read-tool-turn");
  const m = JSON.parse(mockMessageJson(asking(base, "use the Bash tool."), "x"));
  assert.equal(m.stop_reason, "end_turn");
  assert.match(m.content[0].text, /say what the Bash tool should work on, e\.g\. "use the Bash tool on <value>"/);
  // A tool whose required arguments are not strings can be called bare.
  const todo = JSON.parse(mockMessageJson(asking(base, "use the TodoWrite tool"), "y"));
  assert.deepEqual(todo.content[1].input, { todos: [] });
});

test("a tool the request does not offer is not called; the reply says which tools it offers", () => {
  const m = JSON.parse(mockMessageJson(asking(fixture("read-tool-turn"), "use the Deploy tool on prod"), "x"));
  assert.equal(m.stop_reason, "end_turn");
  assert.equal(m.content.length, 1);
  assert.match(m.content[0].text, /no tool named Deploy \(it offers: Agent, Bash, Glob, Grep, Read, Edit, Write, WebFetch, TodoWrite\)/);
  const noTools: MockRequest = { model: "m", messages: [{ role: "user", content: "use the Read tool on a.txt" }] };
  assert.equal(JSON.parse(mockMessageJson(noTools, "y")).stop_reason, "end_turn");
});

test("tools offered but none asked for: text only, with the hint on how to get a tool call", () => {
  const req: MockRequest = {
    model: "m",
    messages: [{ role: "user", content: "weather in Paris?" }],
    tools: [{ name: "get_weather", input_schema: { type: "object" } }],
  };
  const m = JSON.parse(mockMessageJson(req, "msg_t"));
  assert.equal(m.stop_reason, "end_turn");
  assert.deepEqual(m.content, [{ type: "text", text: `${MOCK_REPLY_PREFIX}weather in Paris?${MOCK_TOOL_HINT}` }]);
});

test("tool_result turn (Claude Code's, with a trailing reminder) → text naming the tool and quoting the result, end_turn", () => {
  const req = fixture("tool-result-turn");
  const m = JSON.parse(mockMessageJson(req, "msg_r"));
  assert.equal(m.stop_reason, "end_turn");
  assert.equal(m.content.length, 1);
  assert.equal(m.content[0].type, "text");
  assert.match(m.content[0].text, /^Mock reply to tool result: \(Read\) +1\t# Portcullis/);
  assert.doesNotMatch(m.content[0].text, /malicious/);
  assert.deepEqual(assemble(parseFrames(mockStreamFrames(req, "msg_r"))), m);

  const blocks: MockRequest = {
    model: "m",
    messages: [
      { role: "user", content: "weather?" },
      { role: "assistant", content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: {} }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_1", content: [{ type: "text", text: "Sunny, 21C" }] }] },
    ],
  };
  assert.equal(JSON.parse(mockMessageJson(blocks, "x")).content[0].text, "Mock reply to tool result: (get_weather) Sunny, 21C");
  const failed = structuredClone(blocks);
  (failed.messages[2]!.content as Record<string, unknown>[])[0]!.is_error = true;
  assert.equal(JSON.parse(mockMessageJson(failed, "x")).content[0].text, "Mock reply to tool error: (get_weather) Sunny, 21C");
});

test("thinking block comes first; signature raw text survives only without re-serialisation", () => {
  const req: MockRequest = {
    model: "m",
    thinking: { type: "enabled", budget_tokens: 1024 },
    messages: [{ role: "user", content: "think about it" }],
  };
  // The constants themselves differ the way the brief requires.
  assert.ok(MOCK_SIGNATURE_RAW.includes("\\/"));
  assert.ok(MOCK_SIGNATURE_RAW.includes("\\u00e9"));
  assert.equal(JSON.parse(`"${MOCK_SIGNATURE_RAW}"`), MOCK_SIGNATURE);
  assert.notEqual(JSON.stringify(MOCK_SIGNATURE), `"${MOCK_SIGNATURE_RAW}"`);

  const raw = mockMessageJson(req, "msg_th");
  assert.ok(raw.includes(`"signature":"${MOCK_SIGNATURE_RAW}"`), "raw signature bytes present");
  const parsed = JSON.parse(raw);
  assert.equal(parsed.content[0].type, "thinking");
  assert.equal(parsed.content[0].signature, MOCK_SIGNATURE);
  assert.ok(parsed.content[0].thinking.length > 0);
  assert.equal(parsed.content[1].type, "text");
  const reserialised = JSON.stringify(parsed);
  assert.notEqual(reserialised, raw);
  assert.ok(!reserialised.includes(MOCK_SIGNATURE_RAW));

  const frames = mockStreamFrames(req, "msg_th");
  const events = parseFrames(frames);
  const sig = events.filter((e) => e.data.delta?.type === "signature_delta");
  assert.equal(sig.length, 1);
  assert.ok(sig[0]!.raw.includes(`"signature":"${MOCK_SIGNATURE_RAW}"`));
  const thinkingDeltas = events.filter((e) => e.data.delta?.type === "thinking_delta");
  assert.ok(thinkingDeltas.length >= 1);
  // signature_delta comes after all thinking_deltas, before the block stops
  const idxSig = events.indexOf(sig[0]!);
  assert.ok(events.indexOf(thinkingDeltas.at(-1)!) < idxSig);
  assert.equal(events[idxSig + 1]!.event, "content_block_stop");
  assert.deepEqual(assemble(events), parsed);

  // Echoing the assistant's thinking turn back works (nothing special).
  const next: MockRequest = {
    ...req,
    messages: [...req.messages, { role: "assistant", content: parsed.content }, { role: "user", content: "and now?" }],
  };
  const m2 = JSON.parse(mockMessageJson(next, "msg_th2"));
  assert.equal(m2.content[0].type, "thinking");
  assert.equal(m2.content[1].text, "Mock reply to: and now?");
});

test("deterministic: same request + id → identical bytes", () => {
  const req: MockRequest = {
    model: "m",
    system: "be brief",
    thinking: { type: "enabled", budget_tokens: 2000 },
    tools: [{ name: "search" }],
    messages: [{ role: "user", content: 'héllo 😀 "quotes" \n newline' }],
  };
  assert.equal(mockMessageJson(req, "a"), mockMessageJson(structuredClone(req), "a"));
  assert.deepEqual(mockStreamFrames(req, "a", 7), mockStreamFrames(structuredClone(req), "a", 7));
  assert.equal(mockCountTokens(req), mockCountTokens(structuredClone(req)));
  // non-ASCII user text survives the stream split (no broken surrogates)
  const text = assemble(parseFrames(mockStreamFrames(req, "a", 40))).content[1].text;
  assert.ok(text.includes("😀"));
});

test("mockCountTokens: ceil(chars/4), at least 1, grows with system/tools", () => {
  assert.equal(mockCountTokens({ messages: [] }), 1);
  const base = mockCountTokens(plain);
  assert.equal(base, Math.ceil(JSON.stringify(plain.messages).length / 4));
  assert.ok(mockCountTokens({ ...plain, system: "x".repeat(400) }) > base);
  assert.ok(mockCountTokens({ ...plain, tools: [{ name: "t", input_schema: { type: "object" } }] }) > base);
});
