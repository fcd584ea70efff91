/**
 * The SSE relay (server/upstream.ts, Relay) end to end: the built gateway in its own process,
 * an upstream whose every socket write the test dictates (test/support/scripted-upstream.ts)
 * in another, and a client reading raw bytes (node:http) or the official SDK. The relay
 * writes what one upstream read produced in one corked write, a microtask after the read;
 * whatever the reads, a client must get the same bytes in the same order, each event as
 * soon as it is whole, only whole events before an error, a provider held back while it
 * reads nothing, and an abort that reaches the provider.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { request, type ClientRequest, type IncomingMessage } from "node:http";
import Anthropic from "@anthropic-ai/sdk";
import { startGateway, type Gateway } from "../support/gateway.js";
import { BULK_DELTA, httpChunks, startScripted, type Scripted, type Step } from "../support/scripted.js";
import { until } from "../support/wait.js";

const KEY = "sk-client-sse-relay-0001";
const UPSTREAM_KEY = "sk-upstream-sse-relay-0001";
const HEAD: Step = { head: { "content-type": "text/event-stream; charset=utf-8", "request-id": "req_upstream_sse_1" } };

/** One Anthropic SSE event, its lines ended by LF (or CRLF). */
function ev(type: string, data: Record<string, unknown>, crlf = false): string {
  const nl = crlf ? "\r\n" : "\n";
  return `event: ${type}${nl}data: ${JSON.stringify({ type, ...data })}${nl}${nl}`;
}
const START = ev("message_start", {
  message: {
    id: "msg_sse_relay",
    type: "message",
    role: "assistant",
    model: "claude-sse",
    content: [],
    stop_reason: null,
    stop_sequence: null,
    usage: { input_tokens: 12, output_tokens: 1 },
  },
});
const BLOCK = ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
const delta = (text: string, crlf = false): string => ev("content_block_delta", { index: 0, delta: { type: "text_delta", text } }, crlf);
const STOP_BLOCK = ev("content_block_stop", { index: 0 });
const MSG_DELTA = ev("message_delta", { delta: { stop_reason: "end_turn", stop_sequence: null }, usage: { output_tokens: 40 } });
const MSG_STOP = ev("message_stop", {});
/** An `event: error` frame as the gateway writes it, of this type. */
const errorFrame = (type: string): RegExp =>
  new RegExp(`^event: error\\ndata: \\{"type":"error","error":\\{"type":"${type}","message":"[^"]+"\\},"request_id":"req_[^"]+"\\}\\n\\n$`);

/**
 * A fat stream for backpressure: 64 MiB the client does not read at first. Measured, the
 * sockets and the relay in between hold about 9 MiB of it (docs/performance.md, slow readers).
 */
const BULK = 64 * 1024 * 1024;
const bulkCount = Math.ceil(BULK / BULK_DELTA.length);
const FAT: Step[] = [HEAD, { chunks: [START, BLOCK] }, { bulk: BULK }, { chunks: [STOP_BLOCK, MSG_DELTA, MSG_STOP], end: true }];

/** A client's streamed reply as it arrives. */
interface Reading {
  req: ClientRequest;
  res: IncomingMessage;
  /** Resolves with the text once at least `n` bytes have arrived; fails after `ms` naming `what`. */
  atLeast(n: number, what: string, ms?: number): Promise<string>;
  /** The whole body once the response has ended. */
  ended: Promise<string>;
}

/** POST a streaming request; resolves at the response head. `read: false` leaves the body unread (paused). */
function open(gw: Gateway, id: string, read = true): Promise<Reading> {
  const payload = JSON.stringify({ model: "claude-sse", max_tokens: 64, stream: true, messages: [{ role: "user", content: "hi" }] });
  return new Promise((resolve, reject) => {
    const req = request(`${gw.url}/v1/messages`, {
      method: "POST",
      agent: false,
      headers: { "content-type": "application/json", "x-api-key": KEY, "x-request-id": id },
    });
    req.once("error", reject);
    req.once("response", (res) => {
      const chunks: Buffer[] = [];
      let len = 0;
      const watchers = new Set<() => void>();
      const text = (): string => Buffer.concat(chunks).toString("utf8");
      const ended = new Promise<string>((ok, fail) => {
        res.once("end", () => ok(text()));
        res.once("error", fail);
      });
      ended.catch(() => {}); // a test that aborts never awaits it
      if (read)
        res.on("data", (d: Buffer) => {
          chunks.push(d);
          len += d.length;
          for (const w of [...watchers]) w();
        });
      else res.pause();
      const atLeast = (n: number, what: string, ms = 10_000): Promise<string> =>
        new Promise((ok, fail) => {
          const check = (): void => {
            if (len < n) return;
            watchers.delete(check);
            clearTimeout(timer);
            ok(text());
          };
          const timer = setTimeout(() => {
            watchers.delete(check);
            fail(
              new Error(`timed out after ${ms} ms waiting for ${what}; got ${len} of ${n} bytes: ${JSON.stringify(text().slice(-300))}`),
            );
          }, ms);
          watchers.add(check);
          check();
        });
      resolve({ req, res, atLeast, ended });
    });
    req.end(payload);
  });
}

/** The gateway's "request" log line for the client's x-request-id `id`. */
function requestLine(gw: Gateway, id: string): Promise<Record<string, unknown>> {
  return gw.waitForLine(`the request line of ${id}`, (l) => l.msg === "request" && l.client_req_id === id);
}

/** Resolves once the upstream reports that the gateway closed reply `n`'s connection before the reply's script ended. */
function upstreamSawClose(up: Scripted, n: number): Promise<unknown> {
  return up.waitFor(`reply ${n}'s connection closed by the gateway`, (m) => m.ev === "closed" && m.n === n && m.early);
}

/**
 * Reply `n`'s byte count once it stopped moving: waiting for its socket to drain and no byte
 * more over 10 polls in a row (a pause has no event to wait for). A reply that finished
 * instead, all read by the gateway while the client read nothing, comes back as finished.
 */
function heldOrFinished(up: Scripted, n: number): Promise<{ written: number; finished: boolean }> {
  let last = -1;
  let same = 0;
  return until(
    `reply ${n} to be held back or to finish`,
    async () => {
      const s = await up.stats(n);
      if (s.finished) return s;
      same = s.blocked && s.written === last ? same + 1 : 0;
      last = s.written;
      return same >= 10 ? s : undefined;
    },
    60_000,
    50,
  );
}

function gatewayEnv(up: Scripted): Record<string, string> {
  return {
    ANTHROPIC_API_BASE: up.url,
    ANTHROPIC_API_KEY: UPSTREAM_KEY,
    MODEL_PROVIDER: "anthropic",
    GATEWAY_API_KEYS: KEY,
    RETRY_MAX_ATTEMPTS: "1",
  };
}

let up: Scripted;
before(async () => {
  up = await startScripted();
});
after(async () => {
  await up?.stop();
});

describe("the relay at default deadlines", () => {
  let gw: Gateway;
  let seq = 0;
  const id = (tag: string): string => `sse-relay-${tag}-${++seq}`;
  before(async () => {
    // 32 KiB: above the fat stream's 16 KiB events, below what one socket read holds.
    gw = await startGateway({ ...gatewayEnv(up), SSE_MAX_EVENT_BYTES: "32768" });
  });
  after(async () => {
    await gw?.stop();
  });

  // Many events cut into socket writes every which way: several events in one HTTP chunk,
  // several chunks in one write, events split across writes mid-line and inside their blank
  // line (LF|LF; CRLF blank lines after 1, 2 and 3 of their bytes), CRLF events; the last
  // write carries the final event and the end of the body together.
  const deltas = Array.from({ length: 120 }, (_, i) => `w${i} `);
  const body = [START, BLOCK, ...deltas.map((t, i) => delta(t, i % 7 === 3)), STOP_BLOCK, MSG_DELTA].join("");
  const STRIDES = [1, 37, 211, 400, 803, 90, 2, 1500];
  function cutUp(): Step[] {
    const cuts: number[] = [];
    for (let at = 0, k = 0; at < body.length; k++) cuts.push((at += STRIDES[k % STRIDES.length]!));
    cuts.push(body.indexOf("\n\n", 2000) + 1);
    for (const [from, k] of [
      [3000, 1],
      [6000, 2],
      [9000, 3],
    ] as const)
      cuts.push(body.indexOf("\r\n\r\n", from) + k);
    const ends = [...new Set(cuts.filter((c) => c < body.length)), body.length].sort((x, y) => x - y);
    const steps: Step[] = [HEAD];
    let at = 0;
    for (const [k, end] of ends.entries()) {
      const w = body.slice(at, end);
      at = end;
      // A write of one HTTP chunk, or of three cut at a third and two thirds.
      const third = Math.floor(w.length / 3);
      steps.push({ chunks: k % 3 === 0 || third === 0 ? [w] : [w.slice(0, third), w.slice(third, 2 * third), w.slice(2 * third)] });
    }
    steps.push({ chunks: [MSG_STOP], end: true });
    return steps;
  }

  test("many events in every split of writes reach the client as the same bytes in order, headers first, message_stop last", async () => {
    const n = await up.script(cutUp());
    const r = await open(gw, id("bytes"));
    assert.equal(r.res.statusCode, 200);
    assert.match(r.res.headers["content-type"] ?? "", /^text\/event-stream/);
    assert.match(String(r.res.headers["request-id"]), /^req_/);
    assert.equal(r.res.headers["upstream-request-id"], "req_upstream_sse_1");
    const got = await r.ended;
    assert.equal(got, body + MSG_STOP, "the client's bytes differ from the upstream's");
    assert.ok(got.endsWith(MSG_STOP));
    await up.waitFor(`reply ${n} done`, (m) => m.ev === "done" && m.n === n);
  });

  test("the SDK's stream helper assembles the text of a stream split across writes", async () => {
    await up.script(cutUp());
    const client = new Anthropic({ baseURL: gw.url, apiKey: KEY, maxRetries: 0 });
    const stream = client.messages.stream({ model: "claude-sse", max_tokens: 64, messages: [{ role: "user", content: "hi" }] });
    const types: string[] = [];
    stream.on("streamEvent", (e) => types.push(e.type));
    assert.equal(await stream.finalText(), deltas.join(""));
    assert.equal(types.length, deltas.length + 5);
    assert.equal(types.at(-1), "message_stop");
  });

  test("each event reaches the client before the upstream sends the next; one split mid-line or inside its blank line only once whole", async () => {
    // The upstream waits at each `wait` until the client has seen the whole events before it.
    const events = [START, BLOCK, delta("one "), delta("two ", true), delta("three "), STOP_BLOCK, MSG_DELTA, MSG_STOP];
    const half = events[2]!.length >> 1;
    const n = await up.script([
      HEAD,
      { chunks: [events[0]!] },
      { wait: "1" },
      { chunks: [events[1]! + events[2]!.slice(0, half)] }, // mid-line
      { wait: "2" },
      { chunks: [events[2]!.slice(half) + events[3]!.slice(0, -1)] }, // CRLF blank line: \r\n\r | \n
      { wait: "3" },
      { chunks: [events[3]!.slice(-1) + events[4]!.slice(0, -1)] }, // LF blank line: \n | \n
      { wait: "4" },
      { chunks: [events[4]!.slice(-1)] },
      { wait: "5" },
      { chunks: events.slice(5), end: true },
    ]);
    const r = await open(gw, id("slow"));
    assert.equal(r.res.statusCode, 200);
    for (let k = 1; k <= 5; k++) {
      const expect = events.slice(0, k).join("");
      const seen = await r.atLeast(Buffer.byteLength(expect), `the events before wait ${k}`);
      assert.equal(seen, expect, `at wait ${k} the client has exactly the whole events sent so far`);
      up.go(n);
    }
    assert.equal(await r.ended, events.join(""));
  });

  test("a stream that ends without message_stop: every whole event queued in that read, then event: error (api_error), never the torn event", async () => {
    // The whole events, a torn one and the end of the body all in one write (one read).
    const whole = [START, BLOCK, delta("kept ")];
    await up.script([HEAD, { chunks: [whole[0]!] }, { chunks: [whole[1]!, whole[2]!, delta("torn ").slice(0, 30)], end: true }]);
    const r = await open(gw, id("nostop"));
    const got = await r.ended;
    assert.ok(got.startsWith(whole.join("")), `the whole events first: ${JSON.stringify(got)}`);
    assert.match(got.slice(whole.join("").length), errorFrame("api_error"));
    assert.ok(!got.includes("torn"), "the torn event reached the client");
  });

  test("an upstream connection cut mid-event: every whole event, then event: error (api_error) and the end, never the torn event", async () => {
    const whole = [START, BLOCK, delta("kept "), delta("also kept ")];
    await up.script([
      HEAD,
      { chunks: [whole[0]!, whole[1]!] },
      { chunks: [whole[2]!, whole[3]! + delta("torn ").slice(0, 40)] },
      { cut: true },
    ]);
    const r = await open(gw, id("cut"));
    const got = await r.ended;
    assert.ok(got.startsWith(whole.join("")), `the whole events first: ${JSON.stringify(got)}`);
    assert.match(got.slice(whole.join("").length), errorFrame("api_error"));
    assert.ok(!got.includes("torn"), "the torn event reached the client");
  });

  test("a broken chunk right after whole events in the same write: those events, then event: error (api_error), never the torn event", async () => {
    // One write: whole events, a torn one, then bytes that are no HTTP chunk size.
    const whole = [START, BLOCK, delta("kept "), delta("also kept ")];
    await up.script([
      HEAD,
      { raw: `${httpChunks([whole[0]!, whole[1]!, whole[2]!, whole[3]!, delta("torn ").slice(0, 40)])}zz-not-a-size\r\n` },
      { hold: true },
    ]);
    const r = await open(gw, id("badchunk"));
    const got = await r.ended;
    assert.ok(got.startsWith(whole.join("")), `the whole events first: ${JSON.stringify(got)}`);
    assert.match(got.slice(whole.join("").length), errorFrame("api_error"));
    assert.ok(!got.includes("torn"), "the torn event reached the client");
  });

  test("an event past SSE_MAX_EVENT_BYTES right after whole events in the same read: those events, then event: error (api_error)", async () => {
    // One write well inside one socket read: whole events, then 40 KiB of an event that never ends.
    const whole = [START, BLOCK, delta("kept ")];
    await up.script([HEAD, { chunks: [...whole, `event: content_block_delta\ndata: ${"y".repeat(40 * 1024)}`] }, { hold: true }]);
    const r = await open(gw, id("overflow"));
    const got = await r.ended;
    assert.ok(got.startsWith(whole.join("")), `the whole events first: ${JSON.stringify(got.slice(0, 2000))}`);
    assert.match(got.slice(whole.join("").length), errorFrame("api_error"));
  });

  test("a client that reads nothing holds the upstream back far below the stream; read later, it gets every byte ending in message_stop", async (t) => {
    const n = await up.script(FAT);
    const r = await open(gw, id("fat"), false);
    const held = await heldOrFinished(up, n);
    t.diagnostic(`the upstream wrote ${held.written} of ${BULK} bytes while the client read nothing`);
    assert.equal(held.finished, false, "the upstream wrote the whole stream while the client read nothing");
    assert.ok(held.written < BULK / 2, `the upstream wrote ${held.written} bytes while the client read nothing`);
    // Now read it all, hashing instead of keeping 64 MiB.
    const want = createHash("sha256").update(START + BLOCK);
    for (let k = 0; k < bulkCount; k++) want.update(BULK_DELTA);
    want.update(STOP_BLOCK + MSG_DELTA + MSG_STOP);
    const got = createHash("sha256");
    let len = 0;
    let tail = "";
    await new Promise<void>((resolve, reject) => {
      r.res.on("data", (d: Buffer) => {
        got.update(d);
        len += d.length;
        tail = (tail + d.toString("latin1")).slice(-MSG_STOP.length);
      });
      r.res.once("end", resolve);
      r.res.once("error", reject);
      r.res.resume();
    });
    assert.equal(len, Buffer.byteLength(START + BLOCK + STOP_BLOCK + MSG_DELTA + MSG_STOP) + bulkCount * BULK_DELTA.length);
    assert.equal(got.digest("hex"), want.digest("hex"), "the bytes differ from the upstream's");
    assert.equal(tail, MSG_STOP);
    assert.equal((await up.stats(n)).finished, true);
  });

  test("a client gone mid-stream: the upstream connection is closed, the request is logged aborted, nothing throws", async () => {
    const cid = id("abort");
    const n = await up.script([
      HEAD,
      { chunks: [START, BLOCK, delta("before ")] },
      { wait: "never" },
      { chunks: [delta("after ")] },
      { hold: true },
    ]);
    const r = await open(gw, cid);
    await r.atLeast(Buffer.byteLength(START + BLOCK + delta("before ")), "the first events");
    r.req.destroy();
    await upstreamSawClose(up, n);
    const line = await requestLine(gw, cid);
    assert.equal(line.aborted, true);
    await stillServes(gw);
  });

  test("a client gone while the upstream is held back: the upstream connection is closed, the request is logged aborted, nothing throws", async () => {
    const cid = id("abort-held");
    const n = await up.script(FAT);
    const r = await open(gw, cid, false);
    const held = await heldOrFinished(up, n);
    assert.equal(held.finished, false, "the upstream wrote the whole stream while the client read nothing");
    r.req.destroy();
    await upstreamSawClose(up, n);
    const line = await requestLine(gw, cid);
    assert.equal(line.aborted, true);
    await stillServes(gw);
  });

  /** Nothing went wrong in the gateway: no error logged, nothing on stderr, and the next stream is whole. */
  async function stillServes(g: Gateway): Promise<void> {
    const events = [START, BLOCK, delta("next "), STOP_BLOCK, MSG_DELTA, MSG_STOP];
    await up.script([HEAD, { chunks: events, end: true }]);
    const r = await open(g, id("next"));
    assert.equal(await r.ended, events.join(""));
    const errors = g.lines.filter((l) => /"level":(50|60)/.test(l));
    assert.deepEqual(errors, [], "the gateway logged an error");
    assert.equal(g.stderr(), "", "the gateway wrote to stderr");
  }
});

describe("the relay when the request deadline passes mid-stream", () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ ...gatewayEnv(up), UPSTREAM_REQUEST_TIMEOUT_MS: "2000" });
  });
  after(async () => {
    await gw?.stop();
  });

  test("the events delivered so far, then event: timeout_error and the end; the upstream connection is closed", async () => {
    const whole = [START, BLOCK, delta("in time ")];
    const n = await up.script([HEAD, { chunks: whole }, { chunks: [delta("late ").slice(0, 25)] }, { hold: true }]);
    const r = await open(gw, "sse-relay-deadline-1");
    const got = await r.ended;
    assert.ok(got.startsWith(whole.join("")), `the whole events first: ${JSON.stringify(got)}`);
    assert.match(got.slice(whole.join("").length), errorFrame("timeout_error"));
    await upstreamSawClose(up, n);
    assert.equal((await requestLine(gw, "sse-relay-deadline-1")).error, "GW_ERR_UPSTREAM_TIMEOUT");
  });

  test("a client that reads nothing past the deadline: the upstream is closed; read later, whole events then event: timeout_error", async () => {
    const n = await up.script(FAT);
    const r = await open(gw, "sse-relay-deadline-2", false);
    const held = await heldOrFinished(up, n);
    assert.equal(held.finished, false, "the upstream wrote the whole stream while the client read nothing");
    await upstreamSawClose(up, n);
    const chunks: Buffer[] = [];
    r.res.on("data", (d: Buffer) => chunks.push(d));
    r.res.resume();
    await new Promise((resolve, reject) => {
      r.res.once("end", resolve);
      r.res.once("error", reject);
    });
    const got = Buffer.concat(chunks).toString("utf8");
    assert.ok(got.startsWith(START + BLOCK), "the stream's first events");
    let at = START.length + BLOCK.length;
    while (got.startsWith(BULK_DELTA, at)) at += BULK_DELTA.length;
    assert.ok(at > START.length + BLOCK.length, "no event was relayed before the deadline");
    assert.match(got.slice(at), errorFrame("timeout_error"), "whole events, then the error frame");
  });
});
