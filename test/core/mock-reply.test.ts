import { test } from "node:test";
import assert from "node:assert/strict";
import {
  MOCK_SIGNATURE,
  MOCK_SIGNATURE_RAW,
  mockCountTokens,
  mockMessageJson,
  mockStreamFrames,
  type MockRequest,
} from "../../core/mock-reply.js";

interface Sse {
  event: string;
  data: any;
  raw: string;
}

/** Parses frames strictly: each must be exactly `event: X\ndata: JSON\n\n`. */
function parseFrames(frames: string[]): Sse[] {
  return frames.map((f) => {
    const m = /^event: ([a-z_]+)\ndata: (.*)\n\n$/s.exec(f);
    assert.ok(m, `malformed frame: ${JSON.stringify(f)}`);
    assert.ok(!m[2]!.includes("\n"), "data must be a single line");
    const data = JSON.parse(m[2]!);
    assert.equal(data.type, m[1], "event name matches data.type");
    return { event: m[1]!, data, raw: m[2]! };
  });
}

/** Rebuilds a message from stream events, checking the event grammar along the way. */
function assemble(events: Sse[]): any {
  assert.equal(events[0]!.event, "message_start");
  assert.equal(events.at(-1)!.event, "message_stop");
  assert.equal(events.at(-2)!.event, "message_delta");
  const msg = structuredClone(events[0]!.data.message);
  let open: number | undefined;
  const partial: Record<number, string> = {};
  for (const e of events.slice(1, -2)) {
    switch (e.event) {
      case "content_block_start":
        assert.equal(open, undefined, "previous block must be stopped first");
        assert.equal(e.data.index, msg.content.length);
        open = e.data.index;
        msg.content.push(structuredClone(e.data.content_block));
        break;
      case "content_block_delta": {
        assert.equal(e.data.index, open);
        const b = msg.content[open!];
        const d = e.data.delta;
        if (d.type === "text_delta") b.text += d.text;
        else if (d.type === "thinking_delta") b.thinking += d.thinking;
        else if (d.type === "signature_delta") b.signature = d.signature;
        else if (d.type === "input_json_delta") partial[open!] = (partial[open!] ?? "") + d.partial_json;
        else assert.fail(`unexpected delta ${d.type}`);
        break;
      }
      case "content_block_stop":
        assert.equal(e.data.index, open);
        if (partial[open!] !== undefined) msg.content[open!].input = JSON.parse(partial[open!]!);
        open = undefined;
        break;
      default:
        assert.fail(`unexpected event ${e.event}`);
    }
  }
  assert.equal(open, undefined);
  const md = events.at(-2)!.data;
  msg.stop_reason = md.delta.stop_reason;
  msg.usage.output_tokens = md.usage.output_tokens;
  return msg;
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
      { role: "user", content: [{ type: "image", source: {} }, { type: "text", text: long }] },
    ],
  };
  const m = JSON.parse(mockMessageJson(req, "id"));
  assert.equal(m.content[0].text, `Mock reply to: ${"x".repeat(200)}`);
});

test("stream frames follow Anthropic event order and rebuild the JSON reply", () => {
  const frames = mockStreamFrames(plain, "msg_s");
  const events = parseFrames(frames);
  assert.deepEqual(
    events.map((e) => e.event),
    [
      "message_start",
      "content_block_start",
      ...Array(5).fill("content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ],
  );
  assert.equal(events[0]!.data.message.usage.input_tokens, mockCountTokens(plain));
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

test("tools → text + tool_use with stop_reason tool_use (JSON and stream)", () => {
  const req: MockRequest = {
    model: "m",
    messages: [{ role: "user", content: "weather in Paris?" }],
    tools: [{ name: "get_weather", input_schema: { type: "object" } }, { name: "other" }],
  };
  const m = JSON.parse(mockMessageJson(req, "msg_t"));
  assert.equal(m.stop_reason, "tool_use");
  assert.equal(m.content.length, 2);
  assert.equal(m.content[0].type, "text");
  assert.equal(m.content[1].type, "tool_use");
  assert.equal(m.content[1].name, "get_weather");
  assert.match(m.content[1].id, /^toolu_mock_\d+$/);
  assert.deepEqual(m.content[1].input, { query: "mock" });

  const events = parseFrames(mockStreamFrames(req, "msg_t"));
  const jsonDeltas = events.filter((e) => e.data.delta?.type === "input_json_delta");
  assert.ok(jsonDeltas.length >= 2, "input streamed in pieces");
  assert.equal(events.find((e) => e.event === "content_block_start" && e.data.index === 1)!.data.content_block.type, "tool_use");
  assert.deepEqual(assemble(events), m);
});

test("tool_result turn → text quoting the result, end_turn", () => {
  const req: MockRequest = {
    model: "m",
    tools: [{ name: "get_weather" }],
    messages: [
      { role: "user", content: "weather?" },
      { role: "assistant", content: [{ type: "tool_use", id: "toolu_mock_1", name: "get_weather", input: { query: "mock" } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "toolu_mock_1", content: [{ type: "text", text: "Sunny, 21C" }] }] },
    ],
  };
  const m = JSON.parse(mockMessageJson(req, "msg_r"));
  assert.equal(m.stop_reason, "end_turn");
  assert.equal(m.content.length, 1);
  assert.equal(m.content[0].type, "text");
  assert.ok(m.content[0].text.includes("Sunny, 21C"));

  const strReq: MockRequest = {
    ...req,
    messages: [...req.messages.slice(0, 2), { role: "user", content: [{ type: "tool_result", tool_use_id: "t", content: "42 apples" }] }],
  };
  assert.ok(JSON.parse(mockMessageJson(strReq, "x")).content[0].text.includes("42 apples"));
  assert.deepEqual(assemble(parseFrames(mockStreamFrames(req, "msg_r"))), m);
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
    messages: [{ role: "user", content: "héllo 😀 \"quotes\" \n newline" }],
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
