/**
 * The stream upstream's fat ("bulk") streams, which the slow-reader scenario uses, and what
 * they show about the gateway: a client that reads nothing holds the upstream back (the
 * gateway pauses its upstream read instead of buffering the stream), and gets the whole
 * stream once it reads.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { startPortPrinter, type Proc } from "../../loadtest/procs.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { pausedRequest } from "../support/paused-request.js";

const STREAM_UPSTREAM = fileURLToPath(new URL("../../loadtest/stream-upstream.js", import.meta.url));
const BULK = 32 * 1024 * 1024;
const KEY = "sk-client-key-bulk-0123";
const body = JSON.stringify({ model: "claude-stream-bulk", max_tokens: 16, stream: true, messages: [{ role: "user", content: "hi" }] });

let up: Proc;
let gw: Gateway;

before(async () => {
  up = await startPortPrinter("stream-upstream", STREAM_UPSTREAM, ["--port", "0", "--bulk-bytes", String(BULK)]);
  gw = await startGateway({
    MODEL_PROVIDER: "anthropic",
    ANTHROPIC_API_BASE: `http://127.0.0.1:${up.port}`,
    ANTHROPIC_API_KEY: "sk-upstream-bulk",
    GATEWAY_API_KEYS: KEY,
  });
});

after(async () => {
  await gw?.stop();
  await up?.stop();
});

async function sent(): Promise<number> {
  return ((await (await fetch(`http://127.0.0.1:${up.port}/stats`)).json()) as { bulk: { sent_bytes: number } }).bulk.sent_bytes;
}

/** The upstream's byte count once it stopped growing over five polls in a row (bounded). */
async function settled(): Promise<number> {
  let last = -1,
    same = 0;
  return until(
    "the upstream to stop writing",
    async () => {
      const now = await sent();
      same = now === last ? same + 1 : 0;
      last = now;
      return same >= 5 ? now : undefined;
    },
    20_000,
    100,
  );
}

test("a bulk stream read at once arrives whole, ending with message_stop, and is counted as sent", async () => {
  const before = await sent();
  const r = await fetch(`http://127.0.0.1:${up.port}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
  });
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.ok(text.length >= BULK, `got ${text.length} bytes`);
  assert.ok(text.trimEnd().endsWith('data: {"type":"message_stop"}'));
  assert.ok((await sent()) - before >= BULK);
});

test("through the gateway, a client that reads nothing holds the upstream back until it reads, then gets the whole stream", async () => {
  const start = await sent();
  const req = await pausedRequest(
    gw.port,
    { "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": KEY },
    body,
  );
  const held = (await settled()) - start;
  // Only what the sockets hold (a few MiB on loopback) gets written, not the 32 MiB stream.
  assert.ok(held < BULK / 2, `the upstream wrote ${held} bytes while the client read nothing`);
  const text = await req.read();
  assert.match(text, /^HTTP\/1\.1 200 /);
  assert.ok(text.length >= BULK, `the client got ${text.length} bytes`);
  assert.ok(text.includes('data: {"type":"message_stop"}'));
});
