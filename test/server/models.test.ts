/**
 * GET /v1/models lists what the gateway can serve, through the official SDK's
 * models.list() (which pages with after_id): the routed names plus the upstream's own list
 * (the project's mock upstream answers GET /v1/models like Anthropic), and for the demo's
 * built-in mock its fixed list.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { MOCK_MODELS } from "../../core/mock-reply.js";

const KEY = "sk-models-client-key-1";

async function logLine(gw: Gateway, re: RegExp, ms = 15_000): Promise<void> {
  const end = Date.now() + ms;
  while (!gw.lines.some((l) => re.test(l))) {
    if (Date.now() > end) assert.fail(`no log line matching ${re} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("GET /v1/models with an Anthropic-type upstream", () => {
  let mock: MockHandle;
  let gw: Gateway;
  let client: Anthropic;
  before(async () => {
    mock = await startMock();
    const dir = mkdtempSync(join(tmpdir(), "portcullis-models-"));
    writeFileSync(
      join(dir, "config.json"),
      JSON.stringify({
        routes: [
          { match: "team-default", provider: "anthropic", model: "claude-sonnet-4-5" },
          { match: "local-*", provider: "mock" },
        ],
      }),
    );
    gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-models-1",
      MODEL_PROVIDER: "anthropic",
      GATEWAY_API_KEYS: KEY,
      CONFIG_FILE: join(dir, "config.json"),
    });
    await logLine(
      gw,
      /"provider":"anthropic".*"msg":"provider model list loaded"|"msg":"provider model list loaded".*"provider":"anthropic"/,
    );
    client = new Anthropic({ baseURL: gw.url, apiKey: KEY, maxRetries: 0 });
  });
  after(async () => {
    await gw?.stop();
    await mock?.stop();
  });

  test("SDK models.list() pages through the routed names and the upstream's models, de-duplicated", async () => {
    const ids: string[] = [];
    for await (const m of client.models.list({ limit: 2 })) {
      ids.push(m.id);
      assert.equal(m.type, "model");
      assert.equal(typeof m.display_name, "string");
      assert.ok(!Number.isNaN(Date.parse(m.created_at)));
    }
    assert.deepEqual(ids, ["team-default", ...MOCK_MODELS.map((m) => m.id)]);
    const first = await client.models.list({ limit: 2 });
    assert.equal(first.has_more, true);
    assert.equal(first.last_id, MOCK_MODELS[0]!.id);
  });

  test("items and the page carry OpenAI's fields too; retrieve() finds one; bad paging is a 400", async () => {
    const r = await fetch(`${gw.url}/v1/models?limit=1000`, { headers: { "x-api-key": KEY } });
    const j = (await r.json()) as { object: string; data: { object: string; created: number; owned_by: string; id: string }[] };
    assert.equal(j.object, "list");
    for (const m of j.data) {
      assert.equal(m.object, "model");
      assert.equal(typeof m.created, "number");
      assert.equal(m.owned_by, "anthropic");
    }
    const one = await client.models.retrieve(MOCK_MODELS[1]!.id);
    assert.equal(one.display_name, MOCK_MODELS[1]!.display_name);
    await assert.rejects(client.models.retrieve("nowhere-model"), (e: Error & { status?: number }) => e.status === 404);
    const bad = await fetch(`${gw.url}/v1/models?limit=0`, { headers: { "x-api-key": KEY } });
    assert.equal(bad.status, 400);
    assert.match(((await bad.json()) as { error: { message: string } }).error.message, /^limit: /);
    const anon = await fetch(`${gw.url}/v1/models`);
    assert.equal(anon.status, 401);
    await anon.arrayBuffer();
  });
});

describe("GET /v1/models on the demo's built-in mock", () => {
  test("lists the mock's models", async () => {
    const gw = await startGateway({ MODEL_PROVIDER: "mock", GATEWAY_API_KEYS: KEY });
    try {
      const client = new Anthropic({ baseURL: gw.url, apiKey: KEY, maxRetries: 0 });
      const ids: string[] = [];
      for await (const m of client.models.list()) ids.push(m.id);
      assert.deepEqual(
        ids,
        MOCK_MODELS.map((m) => m.id),
      );
    } finally {
      await gw.stop();
    }
  });
});
