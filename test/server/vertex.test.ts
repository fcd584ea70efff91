/**
 * The `vertex` provider end to end: the built gateway, the mock upstream in Vertex mode
 * (a JWT-bearer token endpoint issuing short-lived tokens, bearer checked on every call),
 * a service-account file with a throw-away RSA key, and the official @anthropic-ai/sdk.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { runExpectingFailure, startGateway, type Gateway } from "../support/gateway.js";

const CLIENT_KEY = "sk-client-key-0123456789";
const MODEL = "claude-sonnet-4-5@20250929";
const TOKEN_TTL_S = 3;

interface Recorded {
  url: string;
  headers: Record<string, string>;
  body: string;
}

let mock: MockHandle;
let gw: Gateway;
let client: Anthropic;
let dir: string;

async function recorded(): Promise<Recorded[]> {
  return (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Recorded[];
}
async function lastVertex(): Promise<Recorded> {
  const all = (await recorded()).filter((r) => r.url.includes("/publishers/anthropic/"));
  assert.ok(all.length > 0, "no Vertex call recorded");
  return all.at(-1)!;
}
function post(body: unknown, headers: Record<string, string> = {}, path = "/v1/messages?beta=true"): Promise<Response> {
  return fetch(`${gw.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", ...headers },
    body: JSON.stringify(body),
  });
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "portcullis-vertex-"));
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  writeFileSync(join(dir, "pub.pem"), publicKey.export({ type: "spki", format: "pem" }));
  mock = await startMock(["--record", "--vertex-public-key", join(dir, "pub.pem"), "--vertex-token-ttl", String(TOKEN_TTL_S)]);
  const sa = {
    type: "service_account",
    project_id: "proj-test",
    private_key_id: "k1",
    private_key: privateKey.export({ type: "pkcs8", format: "pem" }),
    client_email: "gateway@proj-test.iam.gserviceaccount.com",
    client_id: "1",
    token_uri: `${mock.url}/token`,
  };
  writeFileSync(join(dir, "sa.json"), JSON.stringify(sa));
  const config = {
    providers: { gcp: { type: "vertex", project_id: "proj-test", region: "us-east5", base_url: mock.url } },
    routes: [{ match: "claude-*", provider: "gcp", model: MODEL }],
    api_keys: [CLIENT_KEY],
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(config));
  gw = await startGateway({ CONFIG_FILE: join(dir, "config.json"), GOOGLE_APPLICATION_CREDENTIALS: join(dir, "sa.json") });
  client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: gw.url, maxRetries: 0 });
});

after(async () => {
  await gw?.stop();
  await mock?.stop();
});

describe("vertex provider", () => {
  test("the SDK's create reaches :rawPredict with the bearer from the service account and Vertex's body", async () => {
    const msg = await client.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 32,
      messages: [{ role: "user", content: "hello vertex" }],
    });
    assert.equal(msg.type, "message");
    const r = await lastVertex();
    assert.equal(r.url, `/v1/projects/proj-test/locations/us-east5/publishers/anthropic/models/${MODEL}:rawPredict`);
    assert.match(r.headers["authorization"]!, /^Bearer ya29\.mock-/);
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(body.anthropic_version, "vertex-2023-10-16");
    assert.equal("model" in body, false);
  });

  test("the SDK's stream + finalMessage through :streamRawPredict", async () => {
    const seen: string[] = [];
    const s = client.messages.stream({ model: "claude-sonnet-4-5", max_tokens: 32, messages: [{ role: "user", content: "stream" }] });
    s.on("streamEvent", (e) => seen.push(e.type));
    const final = await s.finalMessage();
    assert.equal(final.stop_reason, "end_turn");
    assert.equal(seen[0], "message_start");
    assert.equal(seen.at(-1), "message_stop");
    assert.match((await lastVertex()).url, /:streamRawPredict$/);
  });

  test("Claude Code's betas: known ones pass in the anthropic-beta header, first-party-only ones are dropped, fields follow their beta", async () => {
    const res = await post(
      {
        model: "claude-sonnet-4-5",
        max_tokens: 64,
        stream: true,
        thinking: { type: "enabled", budget_tokens: 1024 },
        output_config: { effort: "medium" },
        context_management: { edits: [{ type: "clear_tool_uses_20250919" }] },
        messages: [{ role: "user", content: [{ type: "text", text: "hi", cache_control: { type: "ephemeral" } }] }],
      },
      { "anthropic-beta": "claude-code-20250219,interleaved-thinking-2025-05-14,effort-2025-11-24,prompt-caching-scope-2026-01-05" },
    );
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    const r = await lastVertex();
    assert.equal(r.headers["anthropic-beta"], "interleaved-thinking-2025-05-14,effort-2025-11-24");
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(body.output_config, { effort: "medium" }, "kept: the effort beta passed");
    assert.equal("context_management" in body, false, "removed: its beta was not sent");
    assert.deepEqual(body.thinking, { type: "enabled", budget_tokens: 1024 });
  });

  test("count_tokens goes to count-tokens:rawPredict with the model in the body", async () => {
    const res = await post(
      { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "count me" }] },
      {},
      "/v1/messages/count_tokens",
    );
    assert.equal(res.status, 200);
    assert.ok(((await res.json()) as { input_tokens: number }).input_tokens > 0);
    const r = await lastVertex();
    assert.equal(r.url, "/v1/projects/proj-test/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict");
    assert.equal((JSON.parse(r.body) as { model: string }).model, MODEL);
  });

  test(`tokens living ${TOKEN_TTL_S} s are refreshed off the request path: requests keep passing with new bearers`, async () => {
    const bearers = new Set<string>();
    const deadline = Date.now() + 20_000;
    while (bearers.size < 3) {
      assert.ok(Date.now() < deadline, `only ${bearers.size} distinct tokens used within 20 s`);
      const res = await post({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] });
      assert.equal(res.status, 200, await res.clone().text());
      await res.arrayBuffer();
      bearers.add((await lastVertex()).headers["authorization"]!);
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.equal(
      gw.lines.some((l) => l.includes("ya29.")),
      false,
      "no token in the logs",
    );
  });

  test("a Google-shaped 429 (RESOURCE_EXHAUSTED) is retried and, when it persists, answered in Anthropic's shape", async () => {
    await fetch(`${mock.url}/__mock/faults`, {
      method: "POST",
      body: JSON.stringify({ faults: ["status:429", "status:429", "status:429"] }),
    });
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY },
      body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] }),
    });
    assert.equal(res.status, 429);
    const j = (await res.json()) as { type: string; error: { type: string } };
    assert.equal(j.type, "error");
    assert.equal(j.error.type, "rate_limit_error");
  });
});

describe("vertex with workload identity (the metadata server)", () => {
  test("without a service-account file the token comes from the metadata server and requests pass", async () => {
    const host = new URL(mock.url).host;
    const g = await startGateway({ CONFIG_FILE: join(dir, "config.json"), GCE_METADATA_HOST: host });
    try {
      const c = new Anthropic({ apiKey: CLIENT_KEY, baseURL: g.url, maxRetries: 0 });
      const final = await c.messages
        .stream({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] })
        .finalMessage();
      assert.equal(final.type, "message");
      const rec = (await recorded()).filter((r) => r.url.startsWith("/computeMetadata/v1/instance/service-accounts/default/token"));
      assert.ok(rec.length > 0, "the gateway asked the metadata server for a token");
      assert.equal(rec.at(-1)!.headers["metadata-flavor"], "Google");
      assert.match((await lastVertex()).headers["authorization"]!, /^Bearer ya29\.mock-/);
    } finally {
      await g.stop();
    }
  });
});

describe("vertex start-up checks", () => {
  test("an unreadable service-account file stops the start naming GOOGLE_APPLICATION_CREDENTIALS", async () => {
    const r = await runExpectingFailure({
      CONFIG_FILE: join(dir, "config.json"),
      GOOGLE_APPLICATION_CREDENTIALS: join(dir, "missing.json"),
    });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /GOOGLE_APPLICATION_CREDENTIALS: cannot read .*missing\.json.*ENOENT/);
  });
});
