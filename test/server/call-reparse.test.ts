/**
 * An upstream call lets the parsed body go once an attempt is dispatched (server/call.ts,
 * docs/performance.md: kept across the round trip it cost ~200 µs of GC per large request).
 * A later attempt must still send the whole request: these bodies reach a fallback whose
 * model is rewritten through the re-serialising path, which reads the parsed body.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const KEY = "sk-reparse-key-1234";
let mock: MockHandle;
let gw: Gateway;

before(async () => {
  mock = await startMock();
  const dir = mkdtempSync(join(tmpdir(), "portcullis-reparse-"));
  const cfg = join(dir, "config.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        dead: { type: "anthropic", base_url: "http://127.0.0.1:1", api_key: "sk-up-dead-123" },
        backup: { type: "anthropic", base_url: mock.url, api_key: "sk-up-backup-123" },
      },
      routes: [{ match: "failover-*", provider: "dead", fallbacks: [{ provider: "backup", model: "backup-model" }] }],
      api_keys: [KEY],
    }),
  );
  gw = await startGateway({ CONFIG_FILE: cfg, RETRY_MAX_ATTEMPTS: "2", RETRY_BASE_DELAY_MS: "10", RETRY_MAX_DELAY_MS: "20" });
});
after(async () => {
  await gw?.stop();
  await mock?.stop();
});

async function send(raw: string): Promise<{ status: number; provider: string | null; json: Record<string, unknown> }> {
  const r = await fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": KEY },
    body: raw,
  });
  return { status: r.status, provider: r.headers.get("x-portcullis-provider"), json: (await r.json()) as Record<string, unknown> };
}

test("after failed attempts on the primary, the fallback gets the whole request re-serialised with its model", async () => {
  // The escaped key makes the splice decline, so the fallback's body is rebuilt from the parsed tree.
  const prompt = "pineapple 42 after a dead primary";
  const raw = `{"mod\\u0065l":"failover-x","max_tokens":8,"messages":[{"role":"user","content":${JSON.stringify(prompt)}}]}`;
  const r = await send(raw);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.provider, "backup");
  assert.equal(r.json.model, "backup-model", "the fallback's model was spliced in");
  const text = (r.json.content as { type: string; text?: string }[]).map((b) => b.text ?? "").join("");
  assert.ok(text.includes(prompt), `the fallback saw the client's messages: ${text}`);
});

test("a large body takes the same way and still arrives whole", async () => {
  const prompt = "the last turn of a long conversation";
  const history = Array.from({ length: 200 }, (_, i) => ({
    role: i % 2 === 0 ? "user" : "assistant",
    content: `turn ${i} ${"x".repeat(500)}`,
  }));
  const messages = [...history, { role: "user", content: prompt }];
  const raw = `{"mod\\u0065l":"failover-y","max_tokens":8,"messages":${JSON.stringify(messages)}}`;
  assert.ok(raw.length > 100_000);
  const r = await send(raw);
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.model, "backup-model");
  const text = (r.json.content as { type: string; text?: string }[]).map((b) => b.text ?? "").join("");
  assert.ok(text.includes(prompt), `the fallback saw the last turn: ${text}`);
  const usage = r.json.usage as { input_tokens: number };
  assert.ok(usage.input_tokens > 10_000, `the mock counted the whole history: ${usage.input_tokens} input tokens`);
});
