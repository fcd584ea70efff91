/**
 * The `bedrock` provider end to end: the built gateway, the mock upstream in Bedrock mode
 * (SigV4 re-verified on every request, replies framed as AWS event streams with CRCs), and
 * the official @anthropic-ai/sdk as the client, sending Claude Code's request shapes.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import Anthropic from "@anthropic-ai/sdk";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const CLIENT_KEY = "sk-client-key-0123456789";
const AKID = "AKIAMOCKSTATIC000001";
const SECRET = "mock/static/secret+key0123456789abcdefgh";
const MODEL_ID = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";
/** What Claude Code sends today on `POST /v1/messages?beta=true`. */
const CLAUDE_CODE_BETAS =
  "claude-code-20250219,oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27,advanced-tool-use-2025-11-20";

interface Recorded {
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

let mock: MockHandle;
let gw: Gateway;
let keyGw: Gateway;
let client: Anthropic;

function configFile(provider: Record<string, unknown>): string {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-bedrock-"));
  const path = join(dir, "config.json");
  writeFileSync(
    path,
    JSON.stringify({
      providers: { aws: provider },
      routes: [{ match: "claude-*", provider: "aws", model: MODEL_ID }],
      api_keys: [CLIENT_KEY],
    }),
  );
  return path;
}
async function recorded(): Promise<Recorded[]> {
  return (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Recorded[];
}
async function clearRecorded(): Promise<void> {
  await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" });
}
async function queueFaults(...faults: string[]): Promise<void> {
  const r = await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults }) });
  assert.ok(r.status < 300);
}
function post(g: Gateway, body: unknown, headers: Record<string, string> = {}, path = "/v1/messages?beta=true"): Promise<Response> {
  return fetch(`${g.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01", ...headers },
    body: JSON.stringify(body),
  });
}
/** SSE events of a body as [event, parsed data]. */
function events(text: string): Array<[string, Record<string, unknown>]> {
  return text
    .split("\n\n")
    .filter((b) => b.trim() !== "")
    .map((b) => {
      const ev = /^event: (.*)$/m.exec(b)?.[1] ?? "";
      const data = /^data: (.*)$/m.exec(b)?.[1] ?? "{}";
      return [ev, JSON.parse(data) as Record<string, unknown>];
    });
}

before(async () => {
  mock = await startMock(["--record", "--aws-credentials", `${AKID}:${SECRET}`, "--bedrock-api-key", "bedrock-api-key-xyz"]);
  gw = await startGateway({
    CONFIG_FILE: configFile({ type: "bedrock", region: "us-east-1", base_url: mock.url }),
    AWS_ACCESS_KEY_ID: AKID,
    AWS_SECRET_ACCESS_KEY: SECRET,
    RETRY_BASE_DELAY_MS: "10",
    RETRY_MAX_DELAY_MS: "20",
  });
  keyGw = await startGateway({
    CONFIG_FILE: configFile({ type: "bedrock", region: "eu-west-1", base_url: mock.url }),
    AWS_BEARER_TOKEN_BEDROCK: "bedrock-api-key-xyz",
  });
  client = new Anthropic({ apiKey: CLIENT_KEY, baseURL: gw.url, maxRetries: 0 });
});

after(async () => {
  await Promise.all([gw?.stop(), keyGw?.stop()]);
  await mock?.stop();
});

describe("bedrock provider", () => {
  test("the SDK's create reaches /model/{id}/invoke, SigV4-signed, with Bedrock's body, and gets the message", async () => {
    await clearRecorded();
    const msg = await client.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 64,
      messages: [{ role: "user", content: "hello bedrock" }],
    });
    assert.equal(msg.type, "message");
    assert.equal(msg.role, "assistant");
    const r = (await recorded()).at(-1)!;
    assert.equal(r.url, `/model/${encodeURIComponent(MODEL_ID)}/invoke`);
    assert.match(r.headers["authorization"]!, new RegExp(`^AWS4-HMAC-SHA256 Credential=${AKID}/\\d{8}/us-east-1/bedrock/aws4_request`));
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.equal(body.anthropic_version, "bedrock-2023-05-31");
    assert.equal("model" in body, false);
    assert.equal("stream" in body, false);
    assert.equal(r.headers["x-api-key"], undefined, "the client's gateway key never reaches AWS");
  });

  test("the SDK's stream + finalMessage decode the AWS event stream into Anthropic events in order", async () => {
    await clearRecorded();
    const seen: string[] = [];
    const stream = client.messages.stream({
      model: "claude-sonnet-4-5",
      max_tokens: 64,
      messages: [{ role: "user", content: "stream please" }],
    });
    stream.on("streamEvent", (e) => seen.push(e.type));
    const final = await stream.finalMessage();
    assert.equal(final.stop_reason, "end_turn");
    assert.ok(final.content.length > 0 && final.content[0]!.type === "text");
    assert.equal(seen[0], "message_start");
    assert.equal(seen.at(-1), "message_stop");
    assert.ok(seen.includes("content_block_delta"));
    const r = (await recorded()).at(-1)!;
    assert.equal(r.url, `/model/${encodeURIComponent(MODEL_ID)}/invoke-with-response-stream`);
    assert.equal(r.headers["accept"], "application/vnd.amazon.eventstream");
  });

  test("Claude Code's shape: betas filtered into anthropic_beta, unsupported fields removed, thinking/cache_control/system turns kept byte-equal", async () => {
    await clearRecorded();
    const signature = "EqQBCgIYAhIM1gbcDa9GJwZA2b3hGgxBdjrkzLoky3dl1pkiMOYds/+abc==";
    const req = {
      model: "claude-sonnet-4-5",
      max_tokens: 256,
      stream: true,
      system: [{ type: "text", text: "You are Claude Code.", cache_control: { type: "ephemeral" } }],
      thinking: { type: "enabled", budget_tokens: 1024 },
      context_management: { edits: [{ type: "clear_tool_uses_20250919" }] },
      output_config: { effort: "high" },
      metadata: { user_id: "user_abc_account__session_1" },
      messages: [
        { role: "user", content: [{ type: "text", text: "fix the bug", cache_control: { type: "ephemeral" } }] },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hmm", signature },
            { type: "text", text: "ok" },
          ],
        },
        { role: "system", content: "a system turn allowed by a beta" },
        { role: "user", content: "go on" },
      ],
    };
    const res = await post(gw, req, { "anthropic-beta": CLAUDE_CODE_BETAS, "x-claude-code-session-id": "sess-1" });
    assert.equal(res.status, 200, await res.clone().text());
    const evs = events(await res.text());
    assert.equal(evs.at(-1)![0], "message_stop");
    const r = (await recorded()).at(-1)!;
    const body = JSON.parse(r.body) as Record<string, unknown>;
    // Known betas pass, the first-party-only ones are dropped, advanced-tool-use is renamed.
    assert.deepEqual(body.anthropic_beta, [
      "interleaved-thinking-2025-05-14",
      "fine-grained-tool-streaming-2025-05-14",
      "context-management-2025-06-27",
      "tool-search-tool-2025-10-19",
    ]);
    assert.deepEqual(body.context_management, req.context_management, "kept: its beta passed");
    assert.equal("output_config" in body, false, "removed: the effort beta was not sent");
    assert.deepEqual(body.thinking, req.thinking);
    assert.deepEqual(body.system, req.system);
    assert.deepEqual(body.metadata, req.metadata);
    assert.deepEqual(body.messages, req.messages);
    assert.ok(r.body.includes(JSON.stringify(signature)), "the thinking signature reaches Bedrock unchanged");
    assert.equal(r.url.includes("beta=true"), false, "the ?beta=true query is not sent to Bedrock");
    assert.equal(r.headers["anthropic-beta"], undefined, "Bedrock takes betas in the body only");
  });

  test("a dropped beta is counted in provider_policy_dropped_total and logged once, not per request", async () => {
    for (let i = 0; i < 3; i++) {
      const res = await post(
        gw,
        { model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] },
        { "anthropic-beta": "brand-new-beta-2099-01-01" },
      );
      assert.equal(res.status, 200, await res.clone().text());
      await res.arrayBuffer();
    }
    const end = Date.now() + 5_000;
    while (!gw.lines.some((l) => l.includes("brand-new-beta-2099-01-01"))) {
      assert.ok(Date.now() < end, "the dropped beta is not in the log 5 s later");
      await new Promise((r) => setTimeout(r, 25));
    }
    const logged = gw.lines.filter((l) => l.includes("brand-new-beta-2099-01-01"));
    assert.equal(logged.length, 1, "logged exactly once");
    assert.match(logged[0]!, /"provider":"aws"/);
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    const m = /^provider_policy_dropped_total\{provider="aws",kind="beta"\} (\d+)$/m.exec(prom);
    assert.ok(m !== null, "the metric exists");
    assert.ok(Number(m[1]) >= 3, `counted per request (got ${m[1]})`);
    const check = spawnSync("promtool", ["check", "metrics"], { input: prom, encoding: "utf8" });
    assert.equal(check.error, undefined, `promtool could not run: ${check.error}`);
    assert.equal(check.status, 0, `promtool: ${check.stdout}${check.stderr}`);
  });

  test("a throttlingException before the first event becomes a 429 that is retried; the client sees only the successful stream", async () => {
    await clearRecorded();
    await queueFaults("aws-exception:throttlingException");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] });
    assert.equal(res.status, 200);
    const evs = events(await res.text());
    assert.equal(evs[0]![0], "message_start");
    assert.equal(evs.at(-1)![0], "message_stop");
    assert.equal(
      evs.some(([e]) => e === "error"),
      false,
    );
    assert.equal((await recorded()).length, 2, "one throttled attempt, one retry");
  });

  test("throttling on every attempt ends in a 429 rate_limit_error in Anthropic's shape", async () => {
    await queueFaults("aws-exception:throttlingException", "aws-exception:throttlingException", "aws-exception:throttlingException");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] });
    assert.equal(res.status, 429);
    const j = (await res.json()) as { type: string; error: { type: string; message: string } };
    assert.equal(j.type, "error");
    assert.equal(j.error.type, "rate_limit_error");
    assert.match(j.error.message, /throttlingException/);
  });

  test("a non-streaming ThrottlingException (HTTP 429, AWS error body) is retried and answered in Anthropic's shape when it persists", async () => {
    await queueFaults("status:429", "status:429", "status:429");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: "x" }] });
    assert.equal(res.status, 429);
    const j = (await res.json()) as { error: { type: string; message: string } };
    assert.equal(j.error.type, "rate_limit_error");
    assert.match(j.error.message, /Too many requests/);
  });

  test("an exception after the stream started becomes an Anthropic `event: error` with the matching type, then the stream ends", async () => {
    await queueFaults("stream-error:4;aws-exception:modelStreamErrorException");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] });
    assert.equal(res.status, 200);
    const evs = events(await res.text());
    assert.deepEqual(
      evs.slice(0, 4).map(([e]) => e),
      ["message_start", "content_block_start", "ping", "content_block_delta"],
    );
    assert.equal(evs.length, 5, "four relayed events and the error");
    const [ev, data] = evs[4]!;
    assert.equal(ev, "error");
    assert.equal((data.error as { type: string }).type, "api_error");
    assert.match((data.error as { message: string }).message, /modelStreamErrorException/);
  });

  test("an in-stream throttlingException after the start maps to rate_limit_error", async () => {
    await queueFaults("stream-error:2;aws-exception:throttlingException");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] });
    const evs = events(await res.text());
    assert.equal(evs.at(-1)![0], "error");
    assert.equal((evs.at(-1)![1].error as { type: string }).type, "rate_limit_error");
  });

  test("count_tokens goes through Bedrock CountTokens and answers input_tokens", async () => {
    await clearRecorded();
    const res = await post(
      gw,
      { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "count me" }] },
      {},
      "/v1/messages/count_tokens?beta=true",
    );
    assert.equal(res.status, 200);
    const j = (await res.json()) as { input_tokens: number };
    assert.ok(Number.isInteger(j.input_tokens) && j.input_tokens > 0);
    const r = (await recorded()).at(-1)!;
    assert.equal(r.url, `/model/${encodeURIComponent(MODEL_ID)}/count-tokens`);
    const inner = JSON.parse(
      Buffer.from((JSON.parse(r.body) as { input: { invokeModel: { body: string } } }).input.invokeModel.body, "base64").toString(),
    ) as Record<string, unknown>;
    assert.equal(inner.anthropic_version, "bedrock-2023-05-31");
  });

  test("count_tokens for a model Bedrock cannot count answers a local estimate, marked as such", async () => {
    await queueFaults("aws-exception:validationException");
    const req = { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "count me ".repeat(30) }] };
    const res = await post(gw, req, {}, "/v1/messages/count_tokens");
    assert.equal(res.status, 200);
    const j = (await res.json()) as { input_tokens: number; estimate?: string };
    assert.equal(j.estimate, "local");
    assert.equal(j.input_tokens, Math.ceil(JSON.stringify(req).length / 3), "the gateway's size-based upper bound (3 bytes per token)");
  });

  test("with a Bedrock API key (AWS_BEARER_TOKEN_BEDROCK) requests carry it as a bearer instead of SigV4", async () => {
    await clearRecorded();
    const c = new Anthropic({ apiKey: CLIENT_KEY, baseURL: keyGw.url, maxRetries: 0 });
    const final = await c.messages
      .stream({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: "hi" }] })
      .finalMessage();
    assert.equal(final.type, "message");
    const r = (await recorded()).at(-1)!;
    assert.equal(r.headers["authorization"], "Bearer bedrock-api-key-xyz");
    assert.equal(
      keyGw.lines.some((l) => l.includes("bedrock-api-key-xyz")),
      false,
      "the key is never logged",
    );
  });

  test("a connection cut mid-stream ends the client's stream with an Anthropic `event: error`, never silently", async () => {
    await queueFaults("cut-stream:4");
    const res = await post(gw, { model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] });
    assert.equal(res.status, 200);
    const evs = events(await res.text());
    assert.deepEqual(
      evs.slice(0, 4).map(([e]) => e),
      ["message_start", "content_block_start", "ping", "content_block_delta"],
    );
    assert.equal(evs.at(-1)![0], "error");
    assert.equal((evs.at(-1)![1].error as { type: string }).type, "api_error");
  });

  test("a client that goes away mid-stream releases the upstream Bedrock call", async () => {
    // 3 s between frames: the whole stream would take half a minute.
    await queueFaults("slow-stream:3000");
    const ac = new AbortController();
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      signal: ac.signal,
      headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY },
      body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 16, stream: true, messages: [{ role: "user", content: "x" }] }),
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    assert.match(Buffer.from(first.value!).toString(), /event: message_start/);
    ac.abort();
    const end = Date.now() + 8_000;
    for (;;) {
      const st = (await (await fetch(`${mock.url}/__mock/stats`)).json()) as { active: number };
      if (st.active === 0) break;
      assert.ok(Date.now() < end, "the upstream request was still open 8 s after the client left");
      await new Promise((r) => setTimeout(r, 50));
    }
  });

  test("a wrong secret key fails the mock's SigV4 check: the client gets 401 authentication_error, not a success", async () => {
    const bad = await startGateway({
      CONFIG_FILE: configFile({ type: "bedrock", region: "us-east-1", base_url: mock.url }),
      AWS_ACCESS_KEY_ID: AKID,
      AWS_SECRET_ACCESS_KEY: "not-the-secret-0000000000000000000000000",
      RETRY_MAX_ATTEMPTS: "1",
    });
    try {
      const res = await post(bad, { model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] });
      assert.equal(res.status, 401);
      const j = (await res.json()) as { error: { type: string; message: string } };
      assert.equal(j.error.type, "authentication_error");
      assert.match(j.error.message, /signature/);
      assert.equal(
        bad.lines.some((l) => l.includes("not-the-secret")),
        false,
        "the secret is never logged",
      );
    } finally {
      await bad.stop();
    }
  });
});

describe("bedrock without any AWS credentials", () => {
  test("requests fail fast with 502 GW_ERR_UPSTREAM_AUTH in Anthropic's shape and the reason is logged", async () => {
    const g = await startGateway({
      CONFIG_FILE: configFile({ type: "bedrock", region: "us-east-1", base_url: mock.url }),
      AWS_EC2_METADATA_DISABLED: "true",
      HOME: mkdtempSync(join(tmpdir(), "no-aws-")),
      RETRY_MAX_ATTEMPTS: "1",
    });
    try {
      const res = await post(g, { model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] });
      assert.equal(res.status, 502);
      const j = (await res.json()) as { type: string; error: { type: string; message: string } };
      assert.equal(j.error.type, "api_error");
      assert.match(j.error.message, /credentials/);
      // The log line is written before the answer but may reach our pipe after it.
      const end = Date.now() + 5_000;
      while (!g.lines.some((l) => l.includes("cannot authenticate to the provider"))) {
        assert.ok(Date.now() < end, "the reason is not in the log 5 s after the answer");
        await new Promise((r) => setTimeout(r, 25));
      }
    } finally {
      await g.stop();
    }
  });
});

describe("bedrock credentials from the container endpoint (EKS Pod Identity / ECS)", () => {
  test("short-lived credentials are refreshed before they expire: later requests sign with new keys and still pass", async () => {
    const m2 = await startMock(["--record", "--aws-credentials-ttl", "3"]);
    const g2 = await startGateway({
      CONFIG_FILE: configFile({ type: "bedrock", region: "us-west-2", base_url: m2.url }),
      AWS_CONTAINER_CREDENTIALS_FULL_URI: `${m2.url}/__aws/credentials`,
    });
    try {
      const keyIds = new Set<string>();
      const deadline = Date.now() + 20_000;
      let requests = 0;
      while (keyIds.size < 3) {
        assert.ok(Date.now() < deadline, `only ${keyIds.size} credential sets used in ${requests} requests within 20 s`);
        const res = await post(g2, { model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] });
        assert.equal(res.status, 200, await res.clone().text());
        await res.arrayBuffer();
        requests++;
        // The last invoke call: the gateway's background fetches (credentials, model lists) are recorded too.
        const rec = (await (await fetch(`${m2.url}/__mock/requests`)).json()) as Recorded[];
        const auth = rec.filter((r) => r.url.includes("/invoke")).at(-1)!.headers["authorization"]!;
        keyIds.add(/Credential=([^/]+)\//.exec(auth)![1]!);
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(
        [...keyIds].every((k) => k.startsWith("ASIAMOCK")),
        "every request used issued (temporary) credentials",
      );
    } finally {
      await g2.stop();
      await m2.stop();
    }
  });
});

describe("beta_policy on a first-wave provider (azure-anthropic)", () => {
  test("the anthropic-beta header is filtered and a removed field is taken out of the body; the rest passes as sent", async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-policy-"));
    const path = join(dir, "config.json");
    const policy = { pass_betas: ["*"], drop_betas: ["oauth-2025-04-20"], drop_fields: ["output_config"] };
    writeFileSync(
      path,
      JSON.stringify({
        providers: {
          az: { type: "azure-anthropic", base_url: `${mock.url}/anthropic`, api_key: "az-upstream-key-123", beta_policy: policy },
        },
        routes: [{ match: "claude-*", provider: "az" }],
        api_keys: [CLIENT_KEY],
      }),
    );
    const g = await startGateway({ CONFIG_FILE: path });
    try {
      await clearRecorded();
      const res = await post(
        g,
        {
          model: "claude-sonnet-4-5",
          max_tokens: 8,
          output_config: { effort: "low" },
          thinking: { type: "enabled", budget_tokens: 1024 },
          messages: [{ role: "user", content: "x" }],
        },
        { "anthropic-beta": "oauth-2025-04-20,claude-code-20250219" },
      );
      assert.equal(res.status, 200, await res.clone().text());
      await res.arrayBuffer();
      const r = (await recorded()).at(-1)!;
      assert.equal(r.url, "/anthropic/v1/messages?beta=true", "the query string is kept for an Anthropic-shaped upstream");
      assert.equal(r.headers["anthropic-beta"], "claude-code-20250219");
      assert.equal(r.headers["x-api-key"], "az-upstream-key-123");
      const body = JSON.parse(r.body) as Record<string, unknown>;
      assert.equal("output_config" in body, false);
      assert.equal(body.model, "claude-sonnet-4-5");
      assert.deepEqual(body.thinking, { type: "enabled", budget_tokens: 1024 });
    } finally {
      await g.stop();
    }
  });
});
