/**
 * The OpenAI routes go through the one upstream Relay (server/upstream.ts with a codec from
 * server/openai/codecs.ts), so what it does for the Anthropic path holds here too: a
 * gzip/br/deflate reply is decoded before it is translated and its usage counted, a reply
 * that is not JSON is the provider's failure (retried, on its breaker), and one SSE event is
 * bounded by SSE_MAX_EVENT_BYTES. Real mock upstream in its own process, real gateway.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

const KEY = "sk-client-openai-relay-0001";
const ADMIN = "admin-key-openai-relay-0001";
let mock: MockHandle;
let gw: Gateway;
let seq = 0;

async function faults(...f: string[]): Promise<void> {
  await fetch(`${mock.url}/__mock/faults`, { method: "DELETE" });
  if (f.length > 0) {
    const r = await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: f }) });
    assert.equal(r.status, 200);
  }
}
async function recorded(id: string): Promise<{ url: string; headers: Record<string, string> }[]> {
  const all = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as { url: string; headers: Record<string, string> }[];
  return all.filter((r) => r.headers["x-request-id"] === id);
}
/** The request's log line (written once the request finished). */
function logLine(id: string): Promise<Record<string, any>> {
  return until(
    `the log line of ${id}`,
    () => gw.lines.map((l) => JSON.parse(l) as Record<string, any>).find((l) => l.msg === "request" && l.client_req_id === id),
    10_000,
  );
}
/** The last value of each usage field in `text` (a JSON body, or every event of a stream). */
function lastField(text: string, name: string): number {
  const all = [...text.matchAll(new RegExp(`"${name}":(\\d+)`, "g"))];
  return all.length === 0 ? 0 : Number(all[all.length - 1]![1]);
}

/** The reply's text: every `content` / `text` string in it joined (whole, or streamed in deltas). */
function replyText(text: string): string {
  return [...text.matchAll(/"(?:content|text)":"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string).join("");
}

before(async () => {
  mock = await startMock(["--record"]);
  const dir = mkdtempSync(join(tmpdir(), "portcullis-openai-relay-"));
  const cfg = join(dir, "config.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      providers: {
        oa: { type: "openai", base_url: `${mock.url}/v1`, api_key: "sk-up-openai-relay-1" },
        anth: { type: "anthropic", base_url: mock.url, api_key: "sk-up-anth-relay-1" },
      },
      routes: [
        { match: "gpt-*", provider: "oa" },
        { match: "claude-*", provider: "anth" },
      ],
      api_keys: [KEY],
    }),
  );
  gw = await startGateway({
    CONFIG_FILE: cfg,
    ADMIN_API_KEY: ADMIN,
    RETRY_MAX_ATTEMPTS: "2",
    RETRY_BASE_DELAY_MS: "10",
    RETRY_MAX_DELAY_MS: "20",
    SSE_MAX_EVENT_BYTES: "65536",
  });
});
after(async () => {
  await gw?.stop();
  await mock?.stop();
});

type Route = "chat→anthropic" | "messages→openai" | "chat→openai (pass-through)";
const ROUTES: Route[] = ["chat→anthropic", "messages→openai", "chat→openai (pass-through)"];

/** One request on `route`; the client's reply text and the tokens it shows (as the budget counts them). */
async function send(
  route: Route,
  stream: boolean,
  id: string,
  key: string,
): Promise<{ status: number; text: string; tokens: number; cached: number }> {
  const chat = route !== "messages→openai";
  const model = route === "chat→anthropic" ? "claude-relay" : "gpt-relay";
  const body = chat
    ? { model, stream, ...(stream ? { stream_options: { include_usage: true } } : {}), messages: [{ role: "user", content: "hi" }] }
    : { model, stream, max_tokens: 16, messages: [{ role: "user", content: "hi" }] };
  const r = await fetch(`${gw.url}${chat ? "/v1/chat/completions" : "/v1/messages"}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, "x-request-id": id },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  // OpenAI's prompt_tokens include cached ones; Anthropic lists them apart.
  const cached = chat
    ? lastField(text, "cached_tokens")
    : lastField(text, "cache_read_input_tokens") + lastField(text, "cache_creation_input_tokens");
  const tokens = chat
    ? lastField(text, "prompt_tokens") + lastField(text, "completion_tokens")
    : lastField(text, "input_tokens") + lastField(text, "output_tokens") + cached;
  return { status: r.status, text, tokens, cached };
}

test("gzip, br and deflate replies are decoded on both translated routes and the pass-through, JSON and SSE, and the key is charged the real tokens", async () => {
  const vk = await fetch(`${gw.url}/admin/keys`, {
    method: "POST",
    headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
    body: JSON.stringify({ name: "compressed-openai", limits: { tokens_per_day: 1_000_000 } }),
  });
  assert.ok(vk.ok, `key created (${vk.status})`);
  const k = (await vk.json()) as { id: string; key: string };
  let expected = 0;
  for (const route of ROUTES) {
    for (const enc of ["gzip", "br", "deflate"]) {
      for (const stream of [false, true]) {
        const what = `${route} ${stream ? "SSE" : "JSON"} ${enc}`;
        await faults(`encoding:${enc}`);
        const id = `oa-relay-${++seq}`;
        const r = await send(route, stream, id, k.key);
        assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 300)}`);
        if (route === "messages→openai") {
          assert.match(r.text, stream ? /^event: message_start[\s\S]*event: message_stop/ : /^\{"id":"[^"]+","type":"message"/, what);
        } else {
          assert.match(r.text, stream ? /^data: \{[\s\S]*"chat\.completion\.chunk"[\s\S]*data: \[DONE\]\n\n$/ : /"chat\.completion"/, what);
        }
        assert.equal(replyText(r.text), "Mock reply to: hi", `${what}: the reply text came through`);
        assert.ok(r.tokens > 0, `${what}: the client saw usage`);
        const line = await logLine(id);
        assert.equal(line.status, 200, what);
        // The log line shows input (without cached tokens) and output.
        assert.equal(line.input_tokens + line.output_tokens + r.cached, r.tokens, `${what}: the tokens accounted are the reply's`);
        const up = await recorded(id);
        assert.equal(up.length, 1, what);
        assert.equal(up[0]!.headers["accept-encoding"], "identity", `${what}: the gateway asks for identity`);
        expected += r.tokens;
      }
    }
  }
  const keys = (await (await fetch(`${gw.url}/admin/keys`, { headers: { authorization: `Bearer ${ADMIN}` } })).json()) as {
    data: { id: string; spend: { day_tokens: number } }[];
  };
  assert.equal(keys.data.find((x) => x.id === k.id)!.spend.day_tokens, expected, "the budget is charged the real tokens");
});

test("a non-JSON 200 on a translated route is the provider's failure: retried, then 502 GW_ERR_UPSTREAM_PROTOCOL", async () => {
  await faults("body:html", "body:html");
  const id = `oa-relay-html-${++seq}`;
  const r = await send("messages→openai", false, id, KEY);
  assert.equal(r.status, 502, r.text);
  assert.equal((JSON.parse(r.text) as { error: { type: string } }).error.type, "api_error");
  assert.equal((await recorded(id)).length, 2, "retried like any provider failure");
  assert.equal((await logLine(id)).error, "GW_ERR_UPSTREAM_PROTOCOL");
  await faults();
});

test("an SSE event past SSE_MAX_EVENT_BYTES ends a translated stream with an error in the client's format", async () => {
  await faults("huge-event:200000");
  const id = `oa-relay-huge-${++seq}`;
  const r = await send("messages→openai", true, id, KEY);
  assert.equal(r.status, 200);
  assert.match(r.text, /^event: message_start/);
  assert.match(
    r.text,
    /event: error\ndata: \{"type":"error","error":\{"type":"api_error","message":"an upstream SSE event exceeded SSE_MAX_EVENT_BYTES"/,
  );
  assert.ok(!r.text.includes("xxxxxxxx"), "no part of the oversized event reached the client");
  assert.equal((await logLine(id)).error, "GW_ERR_UPSTREAM_PROTOCOL");
  await faults();
});
