/**
 * The Bedrock event-stream decoder against AWS's own codec (@smithy/eventstream-codec):
 * frames it encodes decode to the same Anthropic events however the bytes are split, the
 * byte-scanning fast path agrees with a JSON.parse reference, and bad frames stop decoding.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventStreamCodec } from "@smithy/eventstream-codec";
import { fromUtf8, toUtf8 } from "@smithy/util-utf8";
import { EventStreamDecoder } from "../../../core/providers/bedrock/eventstream.js";
import { mockStreamFrames } from "../../../core/mock-reply.js";
import { chunkFrame, exceptionFrame } from "../../../loadtest/mock-bedrock.js";
import { prng } from "../../../core/prng.js";

const codec = new EventStreamCodec(toUtf8, fromUtf8);
const SSE = mockStreamFrames(
  { model: "m", messages: [{ role: "user", content: "hello" }], thinking: { type: "enabled", budget_tokens: 100 } },
  "msg_1",
  5,
);
const FRAMES = SSE.map(chunkFrame);
const WIRE = Buffer.concat(FRAMES);

/** The reference: AWS's decoder, then JSON.parse of the payload and of the event. */
function reference(wire: Buffer): string {
  let out = "";
  let off = 0;
  while (off < wire.length) {
    const len = wire.readUInt32BE(off);
    const m = codec.decode(wire.subarray(off, off + len));
    off += len;
    const json = Buffer.from((JSON.parse(toUtf8(m.body)) as { bytes: string }).bytes, "base64").toString("utf8");
    out += `event: ${(JSON.parse(json) as { type: string }).type}\ndata: ${json}\n\n`;
  }
  return out;
}

function decodeSplit(wire: Buffer, cuts: number[]): { text: string; d: EventStreamDecoder } {
  const d = new EventStreamDecoder();
  let text = "";
  let prev = 0;
  for (const c of [...cuts, wire.length]) {
    text += d.push(wire.subarray(prev, c)).toString("utf8");
    prev = c;
  }
  return { text, d };
}

test("frames encoded by AWS's codec decode to exactly the Anthropic SSE the mock would send", () => {
  const { text, d } = decodeSplit(WIRE, []);
  assert.equal(text, SSE.join(""));
  assert.equal(text, reference(WIRE));
  assert.equal(d.events, SSE.length);
  assert.equal(d.pending, 0);
});

test("byte-by-byte and random splits give the same events, each as soon as its frame is complete", () => {
  const one = new EventStreamDecoder();
  let text = "";
  const emittedAt: number[] = [];
  for (let i = 0; i < WIRE.length; i++) {
    const out = one.push(WIRE.subarray(i, i + 1));
    if (out.length > 0) emittedAt.push(i + 1);
    text += out.toString("utf8");
  }
  assert.equal(text, SSE.join(""));
  let end = 0;
  const frameEnds = FRAMES.map((f) => (end += f.length));
  assert.deepEqual(emittedAt, frameEnds, "an event comes out on the byte that completes its frame");
  const rnd = prng(42);
  for (let round = 0; round < 200; round++) {
    const cuts = Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => Math.floor(rnd() * WIRE.length)).sort((a, b) => a - b);
    assert.equal(decodeSplit(WIRE, cuts).text, SSE.join(""), `cuts ${cuts.join(",")}`);
  }
});

test("the fallback (escaped base64, type not the first key) matches the fast path's output", () => {
  const json = '{"index":0,"type":"content_block_stop"}';
  const b64 = Buffer.from(json).toString("base64").replace(/\//g, "\\/");
  const frame = Buffer.from(
    codec.encode({
      headers: { ":event-type": { type: "string", value: "chunk" }, ":message-type": { type: "string", value: "event" } },
      body: fromUtf8(`{"p":"x","bytes":"${b64}"}`),
    }),
  );
  const d = new EventStreamDecoder();
  assert.equal(d.push(frame).toString(), `event: content_block_stop\ndata: ${json}\n\n`);
});

test("an event pretty-printed over several lines is re-serialised onto one data line", () => {
  const json = '{\n  "type": "ping"\n}';
  const frame = Buffer.from(
    codec.encode({
      headers: { ":event-type": { type: "string", value: "chunk" }, ":message-type": { type: "string", value: "event" } },
      body: fromUtf8(JSON.stringify({ bytes: Buffer.from(json).toString("base64") })),
    }),
  );
  assert.equal(new EventStreamDecoder().push(frame).toString(), 'event: ping\ndata: {"type":"ping"}\n\n');
});

test("an exception frame stops decoding and reports the mapped status and Anthropic type", () => {
  const d = new EventStreamDecoder();
  const out = d.push(Buffer.concat([FRAMES[0]!, exceptionFrame("throttlingException", "slow down"), FRAMES[1]!]));
  assert.equal(out.toString(), SSE[0]);
  assert.deepEqual(d.fault, { exception: "throttlingException", status: 429, type: "rate_limit_error", message: "slow down" });
  assert.equal(d.push(FRAMES[2]!).length, 0, "nothing after the exception");
  const e = new EventStreamDecoder();
  e.push(exceptionFrame("modelStreamErrorException", "boom"));
  assert.equal(e.fault?.type, "api_error");
  const u = new EventStreamDecoder();
  u.push(exceptionFrame("somethingNewException", "?"));
  assert.equal(u.fault?.status, 502, "an unknown exception is a provider error");
});

test("a flipped bit fails the message CRC; a bad length fails the prelude; neither emits the frame", () => {
  const bad = Buffer.from(FRAMES[1]!);
  bad[bad.length - 10]! ^= 0x01;
  const d = new EventStreamDecoder();
  const out = d.push(Buffer.concat([FRAMES[0]!, bad, FRAMES[2]!]));
  assert.equal(out.toString(), SSE[0]);
  assert.match(d.corrupt!, /message checksum/);
  const p = Buffer.from(FRAMES[0]!);
  p[2]! ^= 0x40;
  const e = new EventStreamDecoder();
  assert.equal(e.push(p).length, 0);
  assert.match(e.corrupt!, /prelude checksum/);
});

test("an event type that is not a plain name is refused (no SSE line injection)", () => {
  const json = '{"type":"ping\\nevent: message_stop"}';
  const frame = Buffer.from(
    codec.encode({
      headers: { ":event-type": { type: "string", value: "chunk" }, ":message-type": { type: "string", value: "event" } },
      body: fromUtf8(JSON.stringify({ bytes: Buffer.from(json).toString("base64") })),
    }),
  );
  const d = new EventStreamDecoder();
  assert.equal(d.push(frame).length, 0);
  assert.ok(d.corrupt !== null);
});
