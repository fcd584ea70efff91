/**
 * `npm run build && node dist/bench/providers.js`
 *
 * What Bedrock and Vertex add per request and per streamed event, with mitata:
 *  - SigV4 signing of a Claude Code-sized body with @smithy/signature-v4 (async: it hashes
 *    through the Hash interface), against a bare node:crypto HMAC-SHA256 of the same body;
 *  - building Bedrock's body (beta/field policy + re-serialisation) for the same request;
 *  - decoding one AWS event-stream frame into an Anthropic SSE event, against the scan
 *    the Relay already does on every SSE chunk (a `\n\n` search), and against AWS's own
 *    codec + JSON.parse (the reference decoder in the tests);
 *  - picking a deployment (core/balance.ts) for a session (hash + the rendezvous table) and by
 *    each strategy for a request without one (weighted, least_inflight, latency), over 3.
 */
import { createHmac } from "node:crypto";
import { bench, group, run } from "mitata";
import { pino } from "pino";
import { EventStreamCodec } from "@smithy/eventstream-codec";
import { fromUtf8, toUtf8 } from "@smithy/util-utf8";
import { applyPolicy, compilePolicy } from "../core/beta-policy.js";
import { bedrockBody } from "../core/providers/bedrock/request.js";
import { EventStreamDecoder } from "../core/providers/bedrock/eventstream.js";
import { mockStreamFrames } from "../core/mock-reply.js";
import { AwsCredentials, BedrockSigner } from "../server/providers/aws-auth.js";
import { chunkFrame } from "../loadtest/mock-bedrock.js";
import { makePool, orderForSession, orderWithoutSession, sessionHash, type Strategy } from "../core/balance.js";
import { DeploymentState } from "../core/deployments.js";
import { Breakers } from "../core/breaker.js";
import { Clock32 } from "../core/clock.js";
import type { Target } from "../core/routing.js";

const log = pino({ level: "silent" });
const creds = new AwsCredentials("bench", log, async () => ({ accessKeyId: "AKIABENCH", secretAccessKey: "secret-secret-secret-secret" }));
await creds.ready;
const signer = new BedrockSigner("https://bedrock-runtime.us-east-1.amazonaws.com", "us-east-1", creds);

const parsed = {
  model: "claude-sonnet-4-5",
  max_tokens: 32000,
  stream: true,
  system: [
    { type: "text", text: "You are Claude Code, Anthropic's official CLI for Claude.".repeat(20), cache_control: { type: "ephemeral" } },
  ],
  thinking: { type: "enabled", budget_tokens: 31999 },
  context_management: { edits: [{ type: "clear_tool_uses_20250919" }] },
  metadata: { user_id: "user_0123_account__session_abc" },
  messages: [
    { role: "user", content: [{ type: "text", text: "Refactor the retry module. ".repeat(30), cache_control: { type: "ephemeral" } }] },
  ],
};
const betas =
  "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27";
const policy = compilePolicy("bedrock", undefined);
const body = bedrockBody(parsed, applyPolicy(policy, betas, parsed).betas, [], false);
const path = "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream";
const headers = { "content-type": "application/json", accept: "application/vnd.amazon.eventstream" };

const sse = mockStreamFrames({ model: "m", messages: [{ role: "user", content: "x" }] }, "msg_1", 8);
const deltaSse = sse.find((f) => f.startsWith("event: content_block_delta"))!;
const frame = chunkFrame(deltaSse);
const sseBuf = Buffer.from(deltaSse);
const LFLF = Buffer.from("\n\n");
const codec = new EventStreamCodec(toUtf8, fromUtf8);
const decoder = new EventStreamDecoder();

process.stdout.write(`body ${body.length} bytes; event frame ${frame.length} bytes (SSE ${sseBuf.length} bytes)\n`);

group("per request: signing", () => {
  bench("baseline: HMAC-SHA256 of the body (node:crypto)", () => createHmac("sha256", "k").update(body).digest());
  bench("SigV4 sign (@smithy/signature-v4)", async () => signer.sign(path, headers, body));
  bench("Bedrock body: policy + re-serialise", () => {
    const r = applyPolicy(policy, betas, parsed);
    return bedrockBody(parsed, r.betas, r.droppedFields, false);
  });
});

group("per event: event stream to SSE", () => {
  bench("baseline: the Relay's SSE scan (lastIndexOf \\n\\n)", () => sseBuf.lastIndexOf(LFLF));
  bench("EventStreamDecoder.push (one frame)", () => decoder.push(frame));
  bench("reference: @smithy codec.decode + JSON.parse x2", () => {
    const m = codec.decode(frame);
    const j = Buffer.from((JSON.parse(toUtf8(m.body)) as { bytes: string }).bytes, "base64").toString();
    return (JSON.parse(j) as { type: string }).type;
  });
});

const breakers = new Breakers(
  Breakers.bufferFor(3),
  { failureThreshold: 5, timeoutMs: 30_000, successThreshold: 1, halfOpenProbes: 1 },
  new Clock32(0),
);
const dstate = new DeploymentState(DeploymentState.bufferFor(3), 0);
const dep = (name: string, slot: number): Target => ({
  provider: { name, index: slot + 1 } as Target["provider"],
  upstreamModel: null,
  slot,
});
const members = [dep("east", 0), dep("west", 1), dep("eu", 2)];
const poolOf = (strategy: Strategy) => makePool(members, [1, 1, 2], [], strategy, dstate, breakers);
const weighted = poolOf("weighted"),
  least = poolOf("least_inflight"),
  latency = poolOf("latency");
// Some load and some measurements, as under traffic.
dstate.enter(0);
dstate.enter(2);
dstate.enter(2);
for (let i = 0; i < 3; i++) dstate.observe(i, 400_000 + i * 50_000, 1000);
// Header values are flat strings (a template literal would make a cons string, slower to read).
const sessionIds = Array.from({ length: 64 }, (_, i) => Buffer.from(`4f3c2a1b-0000-4000-8000-${String(i).padStart(12, "0")}`).toString());
const t0 = performance.now();
let si = 0;
group("per request: deployment pick (3 deployments, weights 1:1:2)", () => {
  bench("baseline: read a fixed route's targets", () => sessionIds[si++ & 63]!.length);
  bench("session affinity: hash + weighted rendezvous (any strategy)", () =>
    orderForSession(weighted, sessionHash(sessionIds[si++ & 63]!)),
  );
  bench("weighted: a draw by weight", () => orderWithoutSession(weighted, dstate.at(t0)));
  bench("least_inflight: fewest in flight, ties by weight", () => orderWithoutSession(least, dstate.at(t0)));
  bench("latency: two choices by peak-EWMA x in flight", () => orderWithoutSession(latency, dstate.at(t0)));
});

await run();
creds.close();
