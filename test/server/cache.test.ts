/**
 * The response cache end to end (docs/cache.md): real gateway processes in front of the real
 * mock upstream, which counts the calls it serves. A repeated request is a hit the upstream
 * never sees; an SSE hit replays the first stream's bytes; entries are private to a key;
 * bypass, refresh and no-store do what they say; an errored, cut or error-ended reply is never
 * stored; a hit is a 0-token ledger row with cache_hit; two acceptor threads share one cache;
 * a key's own setting switches it on or off.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { request } from "node:http";
import { spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

let mock: MockHandle;
before(async () => {
  mock = await startMock(["--record"]);
});
after(async () => {
  await mock?.stop();
});

const KEY_A = "sk-cache-test-key-a";
const KEY_B = "sk-cache-test-key-b";
let n = 0;
/** A fresh prompt per test, so tests never see each other's entries. */
const prompt = (what: string) => `cache ${what} ${++n} ${process.pid}`;
const body = (text: string, extra: Record<string, unknown> = {}) =>
  JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 64, temperature: 0, messages: [{ role: "user", content: text }], ...extra });

/** How many API calls carrying `text` the upstream has served. */
async function calls(text: string): Promise<number> {
  const all = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as { url: string; body: string }[];
  return all.filter((r) => !r.url.startsWith("/__mock") && r.body.includes(text)).length;
}

/** The next upstream /v1/messages call gets this fault (the mock's queue). */
async function fault(spec: string): Promise<void> {
  const r = await fetch(`${mock.url}/__mock/faults`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ faults: [spec] }),
  });
  assert.equal(r.status, 200);
}

interface Reply {
  status: number;
  headers: Headers;
  text: string;
}
async function post(gw: Gateway, b: string, headers: Record<string, string> = {}, key = KEY_A): Promise<Reply> {
  const r = await fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": key, "anthropic-version": "2023-06-01", ...headers },
    body: b,
  });
  return { status: r.status, headers: r.headers, text: await r.text() };
}

function gatewayEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-cache",
    MODEL_PROVIDER: "anthropic",
    GATEWAY_API_KEYS: `${KEY_A},${KEY_B}`,
    RETRY_MAX_ATTEMPTS: "1",
    CACHE_ENABLED: "true",
    ...extra,
  };
}

describe("one gateway with CACHE_ENABLED", () => {
  let gw: Gateway;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), "portcullis-cache-"));
    // gpt-* goes to an OpenAI-format provider (the mock's /v1/chat/completions), the rest to Anthropic's format.
    const cfg = join(dir, "gateway.json");
    writeFileSync(
      cfg,
      JSON.stringify({
        providers: { oa: { type: "openai", base_url: `${mock.url}/v1`, api_key: "sk-upstream-openai" } },
        routes: [{ match: "gpt-*", provider: "oa" }],
      }),
    );
    gw = await startGateway(gatewayEnv({ DATABASE_PATH: join(dir, "ledger.db"), LEDGER_BATCH_MS: "5", CONFIG_FILE: cfg }));
  });
  after(async () => {
    await gw?.stop();
  });

  test("a second identical JSON request is a hit: the upstream sees one call and the body is the same", async () => {
    const p = prompt("json");
    const b = body(p);
    const first = await post(gw, b);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.headers.get("x-portcullis-cache"), "miss");
    const second = await post(gw, b);
    assert.equal(second.status, 200);
    assert.equal(second.headers.get("x-portcullis-cache"), "hit");
    assert.match(second.headers.get("age") ?? "", /^\d+$/);
    assert.equal(second.headers.get("content-type"), "application/json");
    assert.equal(second.text, first.text, "the stored body, byte for byte");
    assert.equal(await calls(p), 1, "the upstream served only the first");
  });

  test("an SSE hit replays the first stream's events byte for byte, as a stream", async () => {
    const p = prompt("sse");
    const b = body(p, { stream: true });
    const first = await post(gw, b);
    assert.equal(first.status, 200);
    assert.equal(first.headers.get("x-portcullis-cache"), "miss");
    assert.ok(first.text.includes("event: message_stop"));
    const second = await post(gw, b);
    assert.equal(second.headers.get("x-portcullis-cache"), "hit");
    assert.match(second.headers.get("content-type") ?? "", /^text\/event-stream/);
    assert.equal(second.text, first.text);
    assert.equal(await calls(p), 1);
    // The same prompt without stream is another entry: a JSON request never gets a stream.
    const json = await post(gw, b.replace('"stream":true', '"stream":false'));
    assert.equal(json.headers.get("x-portcullis-cache"), "miss");
    assert.ok(json.text.startsWith("{"));
  });

  test("/v1/chat/completions is cached too: JSON and SSE, translated to an Anthropic provider or passed to an OpenAI one", async () => {
    for (const model of ["claude-sonnet-4-5", "gpt-4o-mini"]) {
      for (const stream of [false, true]) {
        const p = prompt(`chat ${model} ${stream}`);
        const b = JSON.stringify({ model, max_tokens: 64, temperature: 0, stream, messages: [{ role: "user", content: p }] });
        const ask = async () => {
          const r = await fetch(`${gw.url}/v1/chat/completions`, {
            method: "POST",
            headers: { "content-type": "application/json", authorization: `Bearer ${KEY_A}` },
            body: b,
          });
          return {
            status: r.status,
            cache: r.headers.get("x-portcullis-cache"),
            type: r.headers.get("content-type"),
            text: await r.text(),
          };
        };
        const first = await ask();
        assert.equal(first.status, 200, first.text);
        assert.equal(first.cache, "miss", `${model} stream=${stream}`);
        const second = await ask();
        assert.equal(second.cache, "hit", `${model} stream=${stream}`);
        assert.equal(second.text, first.text);
        if (stream) {
          assert.match(second.type ?? "", /^text\/event-stream/);
          assert.ok(second.text.trimEnd().endsWith("data: [DONE]"));
        }
        assert.equal(await calls(p), 1, `${model} stream=${stream}: one upstream call`);
      }
    }
  });

  test("a passed-through OpenAI stream whose last event arrives whole ends at [DONE], with no error chunk after it", async () => {
    const r = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${KEY_A}`, "x-portcullis-cache": "bypass" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: prompt("clean end") }] }),
    });
    const text = await r.text();
    assert.equal(r.status, 200);
    assert.ok(text.endsWith("data: [DONE]\n\n"), JSON.stringify(text.slice(-200)));
    assert.ok(!text.includes('{"error"'), "no error chunk");
  });

  test("entries are private to the key that stored them", async () => {
    const b = body(prompt("scope"));
    await post(gw, b, {}, KEY_A);
    const other = await post(gw, b, {}, KEY_B);
    assert.equal(other.headers.get("x-portcullis-cache"), "miss", "key B does not see key A's entry");
    assert.equal((await post(gw, b, {}, KEY_B)).headers.get("x-portcullis-cache"), "hit", "but its own");
  });

  test("bypass and cache-control no-store skip the cache; refresh calls the upstream and replaces the entry", async () => {
    const p = prompt("headers");
    const b = body(p);
    assert.equal((await post(gw, b)).headers.get("x-portcullis-cache"), "miss");
    const bypass = await post(gw, b, { "x-portcullis-cache": "bypass" });
    assert.equal(bypass.headers.get("x-portcullis-cache"), "bypass");
    const noStore = await post(gw, b, { "cache-control": "no-store" });
    assert.equal(noStore.headers.get("x-portcullis-cache"), "bypass");
    const noCache = await post(gw, b, { "cache-control": "no-cache" });
    assert.equal(noCache.headers.get("x-portcullis-cache"), "bypass");
    const refresh = await post(gw, b, { "x-portcullis-cache": "refresh" });
    assert.equal(refresh.headers.get("x-portcullis-cache"), "miss");
    assert.equal(await calls(p), 5, "every one of those reached the upstream");
    const hit = await post(gw, b);
    assert.equal(hit.headers.get("x-portcullis-cache"), "hit");
    assert.equal(hit.text, refresh.text, "the refreshed answer is the one served");
    assert.equal(await calls(p), 5);

    // A no-store request's answer is not stored either.
    const fresh = body(prompt("no-store"));
    await post(gw, fresh, { "cache-control": "no-store" });
    assert.equal((await post(gw, fresh)).headers.get("x-portcullis-cache"), "miss");
  });

  test("a request that is not a candidate is passed through; x-portcullis-cache: use caches it anyway", async () => {
    const b = body(prompt("warm"), { temperature: 1 });
    assert.equal((await post(gw, b)).headers.get("x-portcullis-cache"), "bypass");
    assert.equal((await post(gw, b)).headers.get("x-portcullis-cache"), "bypass");
    assert.equal((await post(gw, b, { "x-portcullis-cache": "use" })).headers.get("x-portcullis-cache"), "miss");
    assert.equal((await post(gw, b, { "x-portcullis-cache": "use" })).headers.get("x-portcullis-cache"), "hit");
  });

  test("an unknown x-portcullis-cache value is a 400 in Anthropic's shape, and nothing goes upstream", async () => {
    const p = prompt("bad");
    const r = await post(gw, body(p), { "x-portcullis-cache": "sometimes" });
    assert.equal(r.status, 400);
    const e = JSON.parse(r.text);
    assert.equal(e.type, "error");
    assert.equal(e.error.type, "invalid_request_error");
    assert.match(e.error.message, /x-portcullis-cache must be use, refresh or bypass/);
    assert.equal(await calls(p), 0);
  });

  test("an error, a cut stream and a stream ending in an error event are never stored", async () => {
    const json = body(prompt("err"));
    await fault("status:500");
    assert.equal((await post(gw, json)).status, 500);
    const ok = await post(gw, json);
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("x-portcullis-cache"), "miss", "the 500 was not stored");

    for (const spec of ["cut-stream:3", "stream-error:3"]) {
      const sse = body(prompt(spec), { stream: true });
      await fault(spec);
      const bad = await post(gw, sse);
      assert.equal(bad.status, 200);
      assert.ok(bad.text.includes("event: error"), `${spec}: the client saw the failure`);
      const again = await post(gw, sse);
      assert.equal(again.headers.get("x-portcullis-cache"), "miss", `${spec} was not stored`);
      assert.ok(!again.text.includes("event: error"));
      assert.equal((await post(gw, sse)).headers.get("x-portcullis-cache"), "hit", "the complete stream after it was");
    }
  });

  test("a hit charges no tokens: its ledger row has cache_hit and the tokens it saved", async () => {
    const b = body(prompt("ledger"));
    const first = await post(gw, b, { "x-request-id": "cache-ledger-miss" });
    const hit = await post(gw, b, { "x-request-id": "cache-ledger-hit" });
    assert.equal(hit.headers.get("x-portcullis-cache"), "hit");
    const usage = JSON.parse(first.text).usage as { input_tokens: number; output_tokens: number };
    const db = new Database(join(dir, "ledger.db"), { readonly: true });
    try {
      const row = await until(
        "the hit's ledger row",
        () => db.prepare("SELECT * FROM usage WHERE client_request_id = ?").get("cache-ledger-hit") as Record<string, number> | undefined,
      );
      assert.equal(row.cache_hit, 1);
      assert.equal(row.input_tokens, 0);
      assert.equal(row.output_tokens, 0);
      assert.equal(row.cost_micros, 0);
      assert.equal(row.saved_tokens, usage.input_tokens + usage.output_tokens);
      const miss = db.prepare("SELECT * FROM usage WHERE client_request_id = ?").get("cache-ledger-miss") as Record<string, number>;
      assert.equal(miss.cache_hit, 0);
      assert.equal(miss.input_tokens, usage.input_tokens);
    } finally {
      db.close();
    }
  });

  test("/metrics/prometheus counts hits, misses, bypasses and stores, and promtool accepts it", async () => {
    const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    const count = (r: string) => Number(new RegExp(`^cache_requests_total\\{result="${r}"\\} (\\d+)$`, "m").exec(text)?.[1]);
    assert.ok(
      count("hit") >= 1 && count("miss") >= 1 && count("bypass") >= 1 && count("store") >= 1,
      text
        .split("\n")
        .filter((l) => l.startsWith("cache"))
        .join("\n"),
    );
    assert.ok(Number(/^cache_bytes (\d+)$/m.exec(text)?.[1]) > 0);
    const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8" });
    assert.equal(r.status, 0, `promtool: ${r.stdout}${r.stderr}`);
  });
});

/** One request on a connection of its own (so SO_REUSEPORT spreads them over the threads). */
function postFresh(gw: Gateway, b: string): Promise<{ status: number; cache: string; id: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${gw.url}/v1/messages`,
      {
        method: "POST",
        agent: false,
        headers: { "content-type": "application/json", "x-api-key": KEY_A, "anthropic-version": "2023-06-01" },
      },
      (res) => {
        res.resume();
        res.on("end", () =>
          resolve({ status: res.statusCode!, cache: String(res.headers["x-portcullis-cache"]), id: String(res.headers["request-id"]) }),
        );
      },
    );
    req.on("error", reject);
    req.end(b);
  });
}

test("with HTTP_THREADS=2 an entry stored through one thread is a hit on the other", async () => {
  const gw = await startGateway(gatewayEnv({ HTTP_THREADS: "2" }));
  try {
    const p = prompt("threads");
    const b = body(p);
    assert.equal((await postFresh(gw, b)).cache, "miss");
    // The thread that served the miss hands the entry to the owner thread on its own port; a
    // request on another thread's port can overtake it, so wait until the owner has it.
    await until("the entry stored", async () => {
      const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
      return /^cache_requests_total\{result="store"\} 1$/m.test(text) ? true : undefined;
    });
    const threads = new Set<string>();
    // Request ids are req_<process>_<thread>_<counter>: collect hits until both threads served one.
    await until(
      "hits served by both acceptor threads",
      async () => {
        const r = await postFresh(gw, b);
        assert.equal(r.status, 200);
        assert.equal(r.cache, "hit", `request ${r.id}`);
        threads.add(r.id.split("_")[2]!);
        return threads.size === 2 ? true : undefined;
      },
      20_000,
      0,
    );
    assert.equal(await calls(p), 1, "one upstream call served every thread");
  } finally {
    await gw.stop();
  }
});

test("a key's own cache setting switches the cache on while CACHE_ENABLED is off, and off again", async () => {
  const admin = "admin-key-for-cache-tests-0123456789";
  const gw = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-cache",
    MODEL_PROVIDER: "anthropic",
    ADMIN_API_KEY: admin,
  });
  try {
    const auth = { authorization: `Bearer ${admin}`, "content-type": "application/json" };
    const make = async (o: Record<string, unknown>) =>
      (await (await fetch(`${gw.url}/admin/keys`, { method: "POST", headers: auth, body: JSON.stringify(o) })).json()) as {
        id: string;
        key: string;
        cache: string | null;
      };
    const cached = await make({ name: "cached", cache: "on", limits: { tokens_per_day: 1_000_000 } });
    assert.equal(cached.cache, "on");
    const plain = await make({ name: "plain" });
    const b = body(prompt("per-key"));
    assert.equal((await post(gw, b, {}, plain.key)).headers.get("x-portcullis-cache"), null, "off by default: no cache header");
    assert.equal((await post(gw, b, {}, cached.key)).headers.get("x-portcullis-cache"), "miss");
    const spend = async () => {
      const all = (await (await fetch(`${gw.url}/admin/keys`, { headers: auth })).json()) as {
        data: { id: string; spend: { day_tokens: number; reserved_tokens: number } }[];
      };
      return all.data.find((k) => k.id === cached.id)!.spend;
    };
    const afterMiss = await until("the miss settled", async () => {
      const s = await spend();
      return s.reserved_tokens === 0 ? s : undefined;
    });
    assert.ok(afterMiss.day_tokens > 0, "the miss was charged");
    assert.equal((await post(gw, b, {}, cached.key)).headers.get("x-portcullis-cache"), "hit");
    const afterHit = await until("the hit settled", async () => {
      const s = await spend();
      return s.reserved_tokens === 0 ? s : undefined;
    });
    assert.equal(afterHit.day_tokens, afterMiss.day_tokens, "a hit charges the budget nothing");
    const patched = await fetch(`${gw.url}/admin/keys/${cached.id}`, {
      method: "PATCH",
      headers: auth,
      body: JSON.stringify({ cache: "off" }),
    });
    assert.equal(patched.status, 200);
    assert.equal(((await patched.json()) as { cache: string }).cache, "off");
    assert.equal((await post(gw, b, {}, cached.key)).headers.get("x-portcullis-cache"), null, "switched off for this key");
    const bad = await fetch(`${gw.url}/admin/keys`, {
      method: "POST",
      headers: auth,
      body: JSON.stringify({ name: "x", cache: "sometimes" }),
    });
    assert.equal(bad.status, 400);
  } finally {
    await gw.stop();
  }
});

test("an answer larger than CACHE_MAX_ENTRY_BYTES is served but not stored", async () => {
  const gw = await startGateway(gatewayEnv({ CACHE_MAX_ENTRY_BYTES: "256" }));
  try {
    for (const stream of [false, true]) {
      const p = prompt(`large ${stream}`);
      const b = body(p, { stream });
      const first = await post(gw, b);
      assert.equal(first.status, 200);
      assert.ok(first.text.length > 256, "the mock's answer is larger than the cap");
      assert.equal((await post(gw, b)).headers.get("x-portcullis-cache"), "miss", `stream=${stream}: not stored`);
      assert.equal(await calls(p), 2);
    }
  } finally {
    await gw.stop();
  }
});
