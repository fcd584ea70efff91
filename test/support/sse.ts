/**
 * Strict readers for Anthropic SSE in tests: split a stream into frames, check each frame's
 * shape, and rebuild the message from the events while checking the event grammar (block
 * indexes in order, one open block at a time, deltas to the open block), so a test can
 * compare a streamed reply with the JSON one.
 */
import assert from "node:assert/strict";

export interface Sse {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
  raw: string;
}

/** Parses frames strictly: each must be exactly `event: X\ndata: JSON\n\n`. */
export function parseFrames(frames: string[]): Sse[] {
  return frames.map((f) => {
    const m = /^event: ([a-z_]+)\ndata: (.*)\n\n$/s.exec(f);
    assert.ok(m, `malformed frame: ${JSON.stringify(f)}`);
    assert.ok(!m[2]!.includes("\n"), "data must be a single line");
    const data = JSON.parse(m[2]!);
    assert.equal(data.type, m[1], "event name matches data.type");
    return { event: m[1]!, data, raw: m[2]! };
  });
}

/** A whole SSE body cut into its frames. */
export function splitStream(text: string): string[] {
  assert.ok(text.endsWith("\n\n"), "the stream ends with a complete frame");
  return text
    .slice(0, -2)
    .split("\n\n")
    .map((f) => `${f}\n\n`);
}

/** Rebuilds a message from stream events, checking the event grammar along the way. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function assemble(events: Sse[]): any {
  assert.equal(events[0]!.event, "message_start");
  assert.equal(events.at(-1)!.event, "message_stop");
  assert.equal(events.at(-2)!.event, "message_delta");
  const msg = structuredClone(events[0]!.data.message);
  let open: number | undefined;
  const partial: Record<number, string> = {};
  for (const e of events.slice(1, -2)) {
    switch (e.event) {
      case "ping":
        break;
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

/** The event names with every run of content_block_delta collapsed to one "delta*". */
export function shape(events: Sse[]): string[] {
  const out: string[] = [];
  for (const e of events) {
    const name = e.event === "content_block_delta" ? "delta*" : e.event;
    if (name === "delta*" && out.at(-1) === "delta*") continue;
    out.push(name);
  }
  return out;
}
