/**
 * `npm run demo` as a newcomer meets it with Claude Code: the printed command names the real
 * address and key, and Claude Code's own requests (POST /v1/messages?beta=true with its
 * headers, tools, cached system blocks and reminder-laden user turns) get a sensible session:
 * an answer to the prompt, a schema-valid tool call when asked, an answer to the tool result.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { startGateway, type Gateway } from "../support/gateway.js";
import { freePort } from "../support/free-port.js";
import { assemble, parseFrames, splitStream } from "../support/sse.js";
import { violations } from "../support/json-schema.js";
import { MOCK_TOOL_HINT } from "../../core/mock-reply.js";

const DEMO = fileURLToPath(new URL("../../server/demo.js", import.meta.url));
const DEMO_KEY = "sk-portcullis-demo-key";
let gw: Gateway;

function fixture(name: string): Record<string, unknown> {
  return JSON.parse(readFileSync(new URL(`../../../test/core/fixtures/claude-code/${name}.json`, import.meta.url), "utf8")) as Record<
    string,
    unknown
  >;
}

/** One turn the way Claude Code sends it; the streamed reply rebuilt into a message. */
async function claudeCodeTurn(body: Record<string, unknown>): Promise<{ msg: any; events: string[] }> {
  const r = await fetch(`${gw.url}/v1/messages?beta=true`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/json",
      "x-api-key": DEMO_KEY,
      "anthropic-version": "2023-06-01",
      "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14",
      "anthropic-dangerous-direct-browser-access": "true",
      "user-agent": "claude-cli/2.0.14 (external, cli)",
      "x-app": "cli",
      "x-stainless-lang": "js",
    },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  assert.match(r.headers.get("content-type") ?? "", /^text\/event-stream/);
  const events = parseFrames(splitStream(text));
  return { msg: assemble(events), events: events.map((e) => e.event) };
}

before(async () => {
  // An explicit free port, so the printed command can be checked against it.
  gw = await startGateway({ PORT: String(await freePort()) }, DEMO);
});
after(async () => {
  await gw?.stop();
});

describe("the demo with Claude Code", () => {
  test("prints the command that points Claude Code at it, with its real address and key", async () => {
    const m = await gw.waitForStderr(/ANTHROPIC_BASE_URL=(\S+) ANTHROPIC_API_KEY=(\S+) claude/);
    assert.equal(m[1], gw.url);
    assert.equal(m[2], DEMO_KEY);
  });

  test("a first turn is answered with the prompt's words and streamed like the API (ping, usage)", async () => {
    const { msg, events } = await claudeCodeTurn(fixture("first-turn"));
    assert.equal(msg.stop_reason, "end_turn");
    assert.deepEqual(msg.content, [{ type: "text", text: `Mock reply to: hello, what can you do?${MOCK_TOOL_HINT}` }]);
    assert.deepEqual(events.slice(0, 3), ["message_start", "content_block_start", "ping"]);
    assert.ok(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, JSON.stringify(msg.usage));
  });

  test('"use the Read tool on README.md" gets a Read call Claude Code can run, then its result an answer', async () => {
    const req = fixture("read-tool-turn");
    const { msg } = await claudeCodeTurn(req);
    assert.equal(msg.stop_reason, "tool_use");
    const use = msg.content.find((b: { type: string }) => b.type === "tool_use");
    assert.equal(use.name, "Read");
    const schema = (req.tools as { name: string; input_schema: unknown }[]).find((t) => t.name === "Read")!.input_schema;
    assert.deepEqual(violations(use.input, schema), []);
    assert.deepEqual(use.input, { file_path: "README.md" });

    const { msg: answer } = await claudeCodeTurn(fixture("tool-result-turn"));
    assert.equal(answer.stop_reason, "end_turn");
    assert.match(answer.content[0].text, /^Mock reply to tool result: \(Read\) .*# Portcullis/s);
  });
});
