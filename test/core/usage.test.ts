/** The one token-usage extractor, on JSON replies and on runs of SSE events. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { lastNumberField, readUsage, type UsageFields } from "../../core/usage.js";

const fresh = (): UsageFields => ({ inputTokens: -1, outputTokens: -1, cacheCreationTokens: -1, cacheReadTokens: -1 });

test("a JSON reply: the usage object's numbers, not a tool input's same-named field", () => {
  const u = fresh();
  readUsage(
    Buffer.from(
      '{"content":[{"type":"tool_use","input":{"output_tokens":999}}],"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":4,"output_tokens":7}}',
    ),
    u,
  );
  assert.deepEqual(u, { inputTokens: 12, outputTokens: 7, cacheCreationTokens: 3, cacheReadTokens: 4 });
});

test("SSE runs: input from message_start is kept, output follows the latest message_delta", () => {
  const u = fresh();
  readUsage(Buffer.from('event: message_start\ndata: {"message":{"usage":{"input_tokens":20,"output_tokens":1}}}\n\n'), u);
  readUsage(Buffer.from('event: content_block_delta\ndata: {"delta":{"text":"hi"}}\n\n'), u);
  assert.equal(u.inputTokens, 20);
  assert.equal(u.outputTokens, 1);
  readUsage(Buffer.from('event: message_delta\ndata: {"usage":{"output_tokens":42}}\n\n'), u);
  assert.deepEqual(u, { inputTokens: 20, outputTokens: 42, cacheCreationTokens: -1, cacheReadTokens: -1 });
});

test("no usage leaves every field unread (-1)", () => {
  const u = fresh();
  readUsage(Buffer.from('{"type":"message","content":[]}'), u);
  assert.deepEqual(u, fresh());
  assert.equal(lastNumberField(Buffer.from('{"input_tokens": x}'), "input_tokens"), -1);
});
