import { test } from "node:test";
import assert from "node:assert/strict";
import { INPUT_JSON, NONE, parseFastDelta, TEXT, THINKING } from "../../../core/translate/anthropic-delta-fast.js";
import { AnthropicToOpenAIStream } from "../../../core/translate/anthropic-to-openai-reply.js";
import { prng } from "../../../core/prng.js";

const ALPHABET = ["a", "Z", " ", '"', "\\", "/", "\n", "\t", "\u0001", "é", "🦀", "\u2028", "{", "}", ",", ":"];

function randomText(next: () => number): string {
  let s = "";
  const n = Math.floor(next() * 12);
  for (let i = 0; i < n; i++) s += ALPHABET[Math.floor(next() * ALPHABET.length)];
  return s;
}

/** Frames → the list of parsed chunk objects (the bytes may differ in escapes, the meaning may not). */
function meaning(frames: string): unknown[] {
  const parts = frames.split("\n\n").filter((f) => f !== "");
  assert.equal(parts.pop(), "data: [DONE]");
  return parts.map((f) => JSON.parse(f.slice("data: ".length)));
}

function translateAll(events: string[], fast: boolean): string {
  const tx = new AnthropicToOpenAIStream("m", "gw", 1, true, fast);
  let out = "";
  for (const e of events) out += tx.event(e);
  return out;
}

test("fast delta path: the canonical Anthropic shapes are recognised, anything else falls back", () => {
  assert.equal(parseFastDelta('{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hi \\"x\\""}}'), TEXT);
  assert.equal(parseFastDelta('{"type":"content_block_delta","index":12,"delta":{"type":"thinking_delta","thinking":"t"}}'), THINKING);
  assert.equal(
    parseFastDelta('{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{\\"a\\":"}}'),
    INPUT_JSON,
  );
  for (const other of [
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a","extra":"b"}}',
    '{"type":"content_block_delta","index":0,"delta":{"text":"a","type":"text_delta"}}',
    '{"type":"content_block_delta", "index":0,"delta":{"type":"text_delta","text":"a"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"},"x":"y"}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"s"}}',
    '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"a"}} ',
  ])
    assert.equal(parseFastDelta(other), NONE, other);
});

test("fast delta path and full parser give the same chunks for random texts, tool arguments and odd shapes", () => {
  const next = prng(20261130);
  for (let round = 0; round < 300; round++) {
    const events = [
      '{"type":"message_start","message":{"id":"msg_f","usage":{"input_tokens":1,"output_tokens":1}}}',
      '{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}',
      JSON.stringify({ type: "content_block_delta", index: 0, delta: { type: "thinking_delta", thinking: randomText(next) } }),
      '{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}',
      JSON.stringify({ type: "content_block_delta", index: 1, delta: { type: "text_delta", text: randomText(next) } }),
      // Escapes written the way some servers do (\u-escaped, escaped slash): still one literal.
      `{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"\\u00e9\\/${randomText(next).replace(/[\\"\u0000-\u001f]/g, "")}"}}`,
      JSON.stringify({ type: "content_block_delta", index: 1, delta: { text: randomText(next), type: "text_delta" } }),
      '{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}',
      JSON.stringify({ type: "content_block_delta", index: 2, delta: { type: "input_json_delta", partial_json: "" } }),
      JSON.stringify({
        type: "content_block_delta",
        index: 2,
        delta: { type: "input_json_delta", partial_json: JSON.stringify({ q: randomText(next) }) },
      }),
      '{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}',
      '{"type":"message_stop"}',
    ];
    assert.equal(events.filter((e) => parseFastDelta(e) !== NONE).length, 5, "the fast path is taken for the five canonical deltas");
    const fast = translateAll(events, true),
      slow = translateAll(events, false);
    assert.deepEqual(meaning(fast), meaning(slow), events.join("\n"));
  }
});
