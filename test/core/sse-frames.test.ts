/**
 * SseFramer: whole events out, whatever the chunking (a blank line split across chunks
 * included); an event that never ends is an overflow instead of unbounded memory.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { SseFramer } from "../../core/sse-frames.js";
import { prng } from "../../core/prng.js";

const STREAM =
  'event: message_start\ndata: {"type":"message_start"}\n\n' +
  'event: content_block_delta\r\ndata: {"text":"a\\n\\nb"}\r\n\r\n' +
  "event: ping\ndata: {}\n\n" +
  'event: message_stop\ndata: {"type":"message_stop"}\n\n';

/** Feed `chunks`; return what came out, run by run, plus the rest. */
function feed(chunks: Buffer[], max = 1 << 20): { runs: string[]; rest: string | null; overflow: boolean } {
  const f = new SseFramer(max);
  const runs: string[] = [];
  for (const c of chunks) {
    const out = f.push(c);
    if (out !== null) runs.push(out.toString());
  }
  const rest = f.rest();
  return { runs, rest: rest === null ? null : rest.toString(), overflow: f.overflow };
}

test("every split of the stream yields the same bytes, each run ending on an event boundary", () => {
  const b = Buffer.from(STREAM);
  for (let i = 1; i < b.length; i++) {
    const { runs, rest } = feed([b.subarray(0, i), b.subarray(i)]);
    assert.equal(runs.join(""), STREAM, `split at ${i}`);
    assert.equal(rest, null);
    for (const r of runs) assert.match(r, /(\n\n|\r\n\r\n)$/, `run ends on a blank line (split at ${i})`);
  }
});

test("one byte at a time, and random chunkings, give whole events in order", () => {
  const b = Buffer.from(STREAM);
  const bytes = feed([...b].map((x) => Buffer.from([x])));
  assert.equal(bytes.runs.join(""), STREAM);
  assert.equal(bytes.runs.length, 4, "one run per event when bytes trickle in");
  const rnd = prng(7);
  for (let k = 0; k < 200; k++) {
    const chunks: Buffer[] = [];
    for (let i = 0; i < b.length; ) {
      const n = 1 + Math.floor(rnd() * 40);
      chunks.push(b.subarray(i, i + n));
      i += n;
    }
    assert.equal(feed(chunks).runs.join(""), STREAM);
  }
});

test("an unterminated tail is held and handed back by rest()", () => {
  const { runs, rest } = feed([Buffer.from("event: a\ndata: 1\n\nevent: b\ndata: 2")]);
  assert.deepEqual(runs, ["event: a\ndata: 1\n\n"]);
  assert.equal(rest, "event: b\ndata: 2");
});

test("a chunk is held as given: the caller may reuse its buffer", () => {
  const f = new SseFramer(1024);
  const c = Buffer.from("event: a\n");
  assert.equal(f.push(c), null);
  c.fill(0x78);
  assert.equal(f.push(Buffer.from("data: 1\n\n"))!.toString(), "event: a\ndata: 1\n\n");
});

test("an event past the cap is an overflow, and nothing more is taken", () => {
  const f = new SseFramer(1024);
  assert.equal(f.push(Buffer.from("event: big\ndata: ")), null);
  assert.equal(f.overflow, false);
  assert.equal(f.push(Buffer.alloc(1100, 0x61)), null);
  assert.equal(f.overflow, true);
  assert.equal(f.pendingBytes, 0, "the held bytes are dropped");
  assert.equal(f.push(Buffer.from("\n\nevent: x\ndata: 1\n\n")), null);
});

test("exactly the cap is still allowed", () => {
  const f = new SseFramer(16);
  assert.equal(f.push(Buffer.alloc(16, 0x61)), null);
  assert.equal(f.overflow, false);
  assert.equal(f.push(Buffer.from("\n\n"))!.length, 18);
});
