/**
 * Upstream key pools end to end, against the mock upstream in its own process: its key-fault
 * table makes one key answer 429 (retry-after: 2), another 401, and its request log (with
 * arrival times) shows which key each upstream request carried. RETRY_MAX_ATTEMPTS=1 and a
 * breaker that opens on one failure: a request succeeds only through the next key, never a retry.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

const CLIENT_KEY = "sk-client-key-0123456789";
const KEYS = {
  K_A: "k-a-0123456789",
  K_BUSY: "k-busy",
  K_C: "k-c-0123456789",
  K_GONE: "k-gone-0123456789",
  K_OK: "k-ok-0123456789",
  K_O1: "k-openai-busy-0123",
  K_O2: "k-openai-ok-01234",
  K_BR_WRONG: "k-bedrock-wrong-0123",
  K_BR_OK: "k-bedrock-ok-01234",
  K_S1: "k-sticky-1-0123",
  K_S2: "k-sticky-2-0123",
  K_S3: "k-sticky-3-0123",
};
let mock: MockHandle, gw: Gateway;

interface Rec {
  at: number;
  url: string;
  headers: Record<string, string>;
}

before(async () => {
  mock = await startMock(["--record", "--bedrock-api-key", KEYS.K_BR_OK]);
  const faults = await fetch(`${mock.url}/__mock/key-faults`, {
    method: "POST",
    body: JSON.stringify({
      keys: {
        [KEYS.K_BUSY]: "status:429;retry-after:2",
        [KEYS.K_GONE]: "status:401",
        [KEYS.K_O1]: "status:429;retry-after:30",
        "k-all-1": "status:429;retry-after:2",
        "k-all-2": "status:429;retry-after:7",
      },
    }),
  });
  assert.equal(faults.status, 200);
  await faults.text();
  const dir = mkdtempSync(join(tmpdir(), "portcullis-keypool-"));
  writeFileSync(
    join(dir, "c.json"),
    JSON.stringify({
      providers: {
        pool: { type: "anthropic", base_url: `${mock.url}/pool`, api_key_envs: ["K_A", "K_BUSY", "K_C"] },
        authpool: { type: "anthropic", base_url: `${mock.url}/auth`, api_key_envs: ["K_GONE", "K_OK"] },
        allbusy: { type: "anthropic", base_url: `${mock.url}/all`, api_keys: ["k-all-1", { key: "k-all-2", weight: 2 }] },
        oai: { type: "openai", base_url: `${mock.url}/v1`, api_key_envs: ["K_O1", "K_O2"] },
        sticky: { type: "anthropic", base_url: `${mock.url}/sticky`, api_key_envs: ["K_S1", "K_S2", "K_S3"] },
        aws: { type: "bedrock", region: "us-east-1", base_url: mock.url, api_key_envs: ["K_BR_WRONG", "K_BR_OK"] },
      },
      routes: [
        { match: "claude-pool*", provider: "pool" },
        { match: "claude-auth*", provider: "authpool" },
        { match: "claude-all*", provider: "allbusy" },
        { match: "gpt-*", provider: "oai" },
        { match: "claude-sticky*", provider: "sticky" },
        { match: "claude-aws*", provider: "aws", model: "us.anthropic.claude-sonnet-4-5-20250929-v1:0" },
      ],
      api_keys: [CLIENT_KEY],
    }),
  );
  gw = await startGateway({
    CONFIG_FILE: join(dir, "c.json"),
    CIRCUIT_BREAKER_FAILURE_THRESHOLD: "1",
    RETRY_MAX_ATTEMPTS: "1",
    ...KEYS,
  });
});
after(async () => {
  await gw?.stop();
  await mock?.stop();
});

async function ask(model: string, session = ""): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", "x-api-key": CLIENT_KEY };
  if (session !== "") headers["x-claude-code-session-id"] = session;
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model, max_tokens: 8, messages: [{ role: "user", content: "hello" }] }),
  });
}

async function okFrom(model: string, session = ""): Promise<void> {
  const res = await ask(model, session);
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
}

async function log(): Promise<Rec[]> {
  return (await (await fetch(`${mock.url}/__mock/requests`)).json()) as Rec[];
}

/** Every upstream request of the tests so far (the mock keeps its last 200: each test starts with an empty log). */
const all: Rec[] = [];
async function fresh(): Promise<void> {
  all.push(...(await log()));
  await (await fetch(`${mock.url}/__mock/requests`, { method: "DELETE" })).arrayBuffer();
}

function keyOf(r: Rec): string {
  return r.headers["x-api-key"] ?? r.headers["authorization"]?.replace(/^Bearer /, "") ?? "";
}

async function breaker(provider: string): Promise<string | undefined> {
  const cb = (await (await fetch(`${gw.url}/metrics/circuit-breakers`)).json()) as { breakers: Record<string, { state: string }> };
  return cb.breakers[provider]?.state;
}

async function prometheus(): Promise<string> {
  return (await fetch(`${gw.url}/metrics/prometheus`)).text();
}

test("three keys, one answers 429: every request succeeds, the busy key rests for its retry-after, the breaker stays closed", async () => {
  await fresh();
  for (let i = 0; i < 30; i++) await okFrom("claude-pool-1");
  // Until the busy key has served twice (its second turn comes only after its 2 s rest), bounded.
  await until(
    "the busy key to be tried again after its rest",
    async () => {
      await okFrom("claude-pool-1");
      const busy = (await log()).filter((r) => r.url.startsWith("/pool/") && keyOf(r) === KEYS.K_BUSY);
      return busy.length >= 2 ? busy : undefined;
    },
    20_000,
    50,
  );
  const mine = (await log()).filter((r) => r.url.startsWith("/pool/"));
  const busy = mine.filter((r) => keyOf(r) === KEYS.K_BUSY);
  for (let i = 1; i < busy.length; i++)
    assert.ok(busy[i]!.at - busy[i - 1]!.at >= 2000, `the busy key was used ${busy[i]!.at - busy[i - 1]!.at} ms after its 429`);
  // Each 429 was followed at once by the same request on another key.
  for (const b of busy) {
    const next = mine[mine.indexOf(b) + 1];
    if (next !== undefined) assert.notEqual(keyOf(next), KEYS.K_BUSY);
  }
  assert.deepEqual([...new Set(mine.map(keyOf))].sort(), [KEYS.K_A, KEYS.K_BUSY, KEYS.K_C].sort());
  assert.equal(await breaker("pool"), "closed");
  const prom = await prometheus();
  const rested = /^upstream_key_rested_total\{provider="pool",key="K_BUSY"\} (\d+)$/m.exec(prom);
  assert.ok(rested !== null && Number(rested[1]) === busy.length, `one rest per 429 (${busy.length}): ${rested?.[0]}`);
  assert.match(prom, /^upstream_key_rested_total\{provider="pool",key="K_A"\} 0$/m);
  assert.match(prom, /^upstream_keys_resting\{provider="pool"\} [01]$/m);
});

test("every key answers 429: the client gets 429 with the soonest key's retry-after; meanwhile no request reaches them", async () => {
  await fresh();
  const res = await ask("claude-all-1");
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "2");
  const body = (await res.json()) as { error: { type: string; message: string } };
  assert.equal(body.error.type, "rate_limit_error");
  const before = (await log()).filter((r) => r.url.startsWith("/all/"));
  assert.deepEqual(before.map(keyOf).sort(), ["k-all-1", "k-all-2"], "each key tried once");
  const again = await ask("claude-all-1");
  assert.equal(again.status, 429);
  assert.ok(Number(again.headers.get("retry-after")) <= 2);
  await again.arrayBuffer();
  assert.equal((await log()).filter((r) => r.url.startsWith("/all/")).length, 2, "resting keys were not asked");
  assert.equal(await breaker("allbusy"), "closed");
});

test("a key that answers 401 is set aside (logged once by name, never its value) and the next key serves", async () => {
  await fresh();
  for (let i = 0; i < 30; i++) await okFrom("claude-auth-1");
  const mine = (await log()).filter((r) => r.url.startsWith("/auth/"));
  assert.equal(mine.filter((r) => keyOf(r) === KEYS.K_GONE).length, 1, "the revoked key was tried once");
  const line = await gw.waitForLine(
    "the key's refusal logged",
    (l) => l.msg === "upstream key refused: set aside until it works again (logged once)",
  );
  assert.equal(line.key_name, "K_GONE");
  assert.equal(line.provider, "authpool");
  assert.equal(gw.lines.filter((l) => l.includes("upstream key refused")).length, 1);
  const prom = await prometheus();
  assert.match(prom, /^upstream_key_bad_total\{provider="authpool",key="K_GONE"\} 1$/m);
  assert.match(prom, /^upstream_keys_bad\{provider="authpool"\} 1$/m);
});

test("a session stays on one key (the prompt cache is per key); sessions spread over the keys", async () => {
  await fresh();
  const sessions = Array.from({ length: 12 }, (_, i) => `0b5e${i}-session-${i}`);
  for (let round = 0; round < 3; round++) for (const s of sessions) await okFrom("claude-sticky-1", s);
  const mine = (await log()).filter((r) => r.url.startsWith("/sticky/"));
  assert.equal(mine.length, 36);
  const keyOfSession = new Map<string, Set<string>>();
  for (const r of mine) {
    const s = r.headers["x-claude-code-session-id"]!;
    keyOfSession.set(s, (keyOfSession.get(s) ?? new Set()).add(keyOf(r)));
  }
  for (const [s, ks] of keyOfSession) assert.equal(ks.size, 1, `session ${s} used ${ks.size} keys`);
  assert.ok(new Set(mine.map(keyOf)).size >= 2, "12 sessions over 3 keys use more than one");
});

test("an OpenAI-format pool: the busy key rests and the other serves, each as a bearer", async () => {
  await fresh();
  for (let i = 0; i < 20; i++) await okFrom("gpt-4o");
  const mine = (await log()).filter((r) => r.url.startsWith("/v1/chat/completions"));
  assert.equal(mine.length, 21, "20 requests and the one refused by the busy key");
  assert.ok(mine.every((r) => r.headers.authorization === `Bearer ${KEYS.K_O1}` || r.headers.authorization === `Bearer ${KEYS.K_O2}`));
  assert.equal(mine.filter((r) => keyOf(r) === KEYS.K_O1).length, 1, "rested 30 s after its 429");
});

test("a Bedrock API-key pool: a key Bedrock refuses (403) is set aside and the other serves, as a bearer", async () => {
  await fresh();
  for (let i = 0; i < 20; i++) await okFrom("claude-aws-1");
  const mine = (await log()).filter((r) => r.url.startsWith("/model/"));
  assert.equal(mine.filter((r) => keyOf(r) === KEYS.K_BR_WRONG).length, 1, "tried once, then set aside");
  assert.equal(mine.filter((r) => keyOf(r) === KEYS.K_BR_OK).length, 20);
});

test("each key reached only its own provider, and no key value is in the log or the metrics", async () => {
  await fresh();
  const own: Record<string, string[]> = {
    "/pool/": [KEYS.K_A, KEYS.K_BUSY, KEYS.K_C],
    "/auth/": [KEYS.K_GONE, KEYS.K_OK],
    "/all/": ["k-all-1", "k-all-2"],
    "/v1/chat/": [KEYS.K_O1, KEYS.K_O2],
    "/sticky/": [KEYS.K_S1, KEYS.K_S2, KEYS.K_S3],
    "/model/": [KEYS.K_BR_WRONG, KEYS.K_BR_OK],
  };
  for (const r of all) {
    const prefix = Object.keys(own).find((p) => r.url.startsWith(p));
    assert.ok(prefix !== undefined, `unexpected upstream path ${r.url}`);
    assert.ok(own[prefix]!.includes(keyOf(r)), `${r.url} got a key of another provider`);
  }
  const text = gw.lines.join("\n") + gw.stderr() + (await prometheus());
  for (const v of [...Object.values(KEYS), "k-all-1", "k-all-2"]) assert.ok(!text.includes(v), `a key value leaked`);
});

test("a pool whose env var is missing stops the start, naming the provider and the entry, never a key", async () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-keypool-bad-"));
  writeFileSync(
    join(dir, "c.json"),
    JSON.stringify({ providers: { team: { type: "anthropic", base_url: mock.url, api_key_envs: ["K_A", "K_NOT_SET"] } } }),
  );
  await assert.rejects(startGateway({ CONFIG_FILE: join(dir, "c.json"), K_A: KEYS.K_A }), (e: Error) => {
    assert.match(e.message, /CONFIG_FILE providers\.team\.api_key_envs\.1: environment variable K_NOT_SET is not set/);
    assert.ok(!e.message.includes(KEYS.K_A));
    return true;
  });
});
