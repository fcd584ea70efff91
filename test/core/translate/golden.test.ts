/**
 * Golden transcripts: recorded upstream streams in, expected client streams out,
 * byte-compared. Each transcript is fed whole, cut at every byte offset into two reads,
 * one byte per read, and with CRLF line ends, and must always give the same bytes.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { SseReader } from "../../../core/translate/sse.js";
import { OpenAIToAnthropicStream } from "../../../core/translate/openai-to-anthropic-reply.js";
import { AnthropicToOpenAIStream } from "../../../core/translate/anthropic-to-openai-reply.js";

// Fixtures live in the source tree (dist/test/core/translate → test/fixtures/openai).
const DIR = fileURLToPath(new URL("../../../../test/fixtures/openai/", import.meta.url));
const read = (name: string): Buffer => readFileSync(DIR + name);

interface Tx {
  event(data: string): string;
}

function translate(reads: Buffer[], make: () => Tx, end: (t: Tx) => string | null): string {
  const tx = make();
  const r = new SseReader();
  let out = "";
  for (const b of reads) r.push(b, (_e, data) => (out += tx.event(data)));
  assert.equal(r.held, 0, "no partial event is left over");
  const tail = end(tx);
  assert.notEqual(tail, null, "the stream counts as complete");
  return out + tail;
}

function splits(input: Buffer): { name: string; reads: Buffer[] }[] {
  const out = [{ name: "one read", reads: [input] }];
  for (let i = 1; i < input.length; i++) out.push({ name: `cut at ${i}`, reads: [input.subarray(0, i), input.subarray(i)] });
  const bytes: Buffer[] = [];
  for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
  out.push({ name: "one byte per read", reads: bytes });
  out.push({ name: "CRLF line ends", reads: [Buffer.from(input.toString("utf8").replace(/\n/g, "\r\n"))] });
  return out;
}

const CASES = [
  {
    name: "OpenAI stream with reasoning, text and two streamed tool calls → Anthropic SSE",
    upstream: "openai-tools-reasoning.upstream.sse",
    expected: "openai-tools-reasoning.anthropic.sse",
    make: () => new OpenAIToAnthropicStream("claude-via-gpt", "gw1"),
    end: (t: Tx) => (t as OpenAIToAnthropicStream).finishStream(),
  },
  {
    name: "Anthropic stream with thinking, text and a streamed tool_use → OpenAI chunks with usage and [DONE]",
    upstream: "anthropic-tools-thinking.upstream.sse",
    expected: "anthropic-tools-thinking.openai.sse",
    make: () => new AnthropicToOpenAIStream("gpt-via-claude", "gw2", 1700000000, true),
    end: (t: Tx) => ((t as AnthropicToOpenAIStream).done ? "" : null),
  },
];

for (const c of CASES) {
  test(`golden: ${c.name}, under every read split`, () => {
    const input = read(c.upstream);
    const expected = read(c.expected).toString("utf8");
    for (const s of splits(input)) {
      assert.equal(translate(s.reads, c.make, c.end), expected, `${c.upstream}: ${s.name}`);
    }
  });
}

test("golden: the expected Anthropic transcript is what the Anthropic SDK's event model accepts (indexes in order, every block stopped)", () => {
  const text = read("openai-tools-reasoning.anthropic.sse").toString("utf8");
  const events = text
    .trim()
    .split("\n\n")
    .map((e) => JSON.parse(e.split("\n")[1]!.slice(6)) as { type: string; index?: number });
  const open = new Set<number>();
  let next = 0;
  for (const e of events) {
    if (e.type === "content_block_start") {
      assert.equal(e.index, next++, "blocks start at consecutive indexes");
      assert.equal(open.size, 0, "one block open at a time");
      open.add(e.index!);
    } else if (e.type === "content_block_delta") assert.ok(open.has(e.index!), `delta for open block ${e.index}`);
    else if (e.type === "content_block_stop") assert.ok(open.delete(e.index!));
  }
  assert.equal(open.size, 0);
  assert.deepEqual(
    [events[0]!.type, events[1]!.type, events.at(-2)!.type, events.at(-1)!.type],
    ["message_start", "ping", "message_delta", "message_stop"],
  );
});
