/**
 * The balancing strategies end to end, counted at three mock upstreams (separate processes):
 * `latency` keeps most requests off a slow deployment; `least_inflight` keeps new requests
 * off a deployment holding long requests; and the in-flight counts (`upstream_inflight`)
 * never go negative and come back to 0 after a burst of failures, timeouts and aborts.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { runExpectingFailure, startGateway, type Gateway } from "../support/gateway.js";
import { until } from "../support/wait.js";
import { makePool, orderForSession, sessionHash } from "../../core/balance.js";
import { DeploymentState } from "../../core/deployments.js";
import type { Target } from "../../core/routing.js";

const CLIENT_KEY = "sk-client-key-0123456789";
/** a is slow: every answer waits 1 s (unless a queued fault says otherwise). */
let a: MockHandle, b: MockHandle, c: MockHandle;
const dir = mkdtempSync(join(tmpdir(), "portcullis-strategies-"));

function configFile(strategy: string): string {
  const file = join(dir, `${strategy}.json`);
  writeFileSync(
    file,
    JSON.stringify({
      providers: {
        a: { type: "anthropic", base_url: a.url, api_key: "k-aaaa-123" },
        b: { type: "anthropic", base_url: b.url, api_key: "k-bbbb-123" },
        c: { type: "anthropic", base_url: c.url, api_key: "k-cccc-123" },
      },
      routes: [{ match: "claude-*", provider: "a", deployments: [{ provider: "b" }, { provider: "c" }], strategy }],
      api_keys: [CLIENT_KEY],
    }),
  );
  return file;
}

before(async () => {
  [a, b, c] = await Promise.all([startMock(["--record", "--fault", "delay:1000"]), startMock(["--record"]), startMock(["--record"])]);
});
after(async () => {
  await Promise.all([a?.stop(), b?.stop(), c?.stop()]);
});

/** Messages requests that reached `m` since the last `forget` (not the gateway's model-list fetches). */
async function messages(m: MockHandle): Promise<number> {
  const rec = (await (await fetch(`${m.url}/__mock/requests`)).json()) as { method: string; url: string }[];
  return rec.filter((r) => r.method === "POST" && r.url.endsWith("/v1/messages")).length;
}
async function counts(): Promise<number[]> {
  return Promise.all([a, b, c].map(messages));
}
async function forget(): Promise<void> {
  await Promise.all([a, b, c].map((m) => fetch(`${m.url}/__mock/requests`, { method: "DELETE" })));
}
async function queueFaults(m: MockHandle, faults: string[]): Promise<void> {
  const r = await fetch(`${m.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults }) });
  assert.equal(r.status, 200);
}

function send(gw: Gateway, opts: { session?: string; stream?: boolean; signal?: AbortSignal } = {}): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", "x-api-key": CLIENT_KEY };
  if (opts.session !== undefined) headers["x-claude-code-session-id"] = opts.session;
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers,
    signal: opts.signal,
    body: JSON.stringify({
      model: "claude-sonnet-4-5",
      max_tokens: 8,
      stream: opts.stream === true,
      messages: [{ role: "user", content: "x" }],
    }),
  });
}

function sendChat(gw: Gateway, stream: boolean): Promise<Response> {
  return fetch(`${gw.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
    body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, stream, messages: [{ role: "user", content: "x" }] }),
  });
}

/** upstream_inflight by provider, from the gateway's Prometheus page. */
async function inflight(gw: Gateway): Promise<Record<string, number>> {
  const text = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^upstream_inflight\{provider="([^"]+)",deployment="[^"]*"\} (-?\d+)$/gm)) out[m[1]!] = Number(m[2]);
  assert.deepEqual(Object.keys(out).sort(), ["a", "b", "c"], text);
  return out;
}

test("latency: with one deployment slow, most requests go to the two fast ones", async () => {
  const gw = await startGateway({ CONFIG_FILE: configFile("latency") });
  try {
    await forget();
    for (let i = 0; i < 40; i++) {
      const r = await send(gw);
      assert.equal(r.status, 200, await r.text());
    }
    const d = await counts();
    assert.equal(d[0]! + d[1]! + d[2]!, 40, `every request reached one mock: ${d}`);
    // Weighted would send about a third (13) to a; power of two choices sends it only what it
    // takes to measure it (and, with a decay of 10 s, nothing more within this test).
    assert.ok(d[0]! <= 5, `the slow deployment got ${d[0]} of 40 (a, b, c: ${d})`);
    assert.ok(d[1]! > 0 && d[2]! > 0, `both fast deployments serve: ${d}`);
  } finally {
    await gw.stop();
  }
});

test("least_inflight: while one deployment holds long requests, new requests go to the others; an abort gives its count back", async () => {
  const gw = await startGateway({ CONFIG_FILE: configFile("least_inflight") });
  try {
    // A session whose affinity is a (same providers and weights as the route): affinity wins over the strategy.
    const t = (name: string, slot: number): Target => ({
      provider: { name, index: slot + 1 } as Target["provider"],
      upstreamModel: null,
      slot,
    });
    const pool = makePool(
      [t("a", 0), t("b", 1), t("c", 2)],
      [1, 1, 1],
      [],
      "least_inflight",
      new DeploymentState(DeploymentState.bufferFor(3)),
      null,
    );
    let onA = "";
    for (let i = 0; onA === ""; i++) if (orderForSession(pool, sessionHash(`held-${i}`))[0]!.provider.name === "a") onA = `held-${i}`;

    await queueFaults(a, ["hang", "hang"]);
    const held = [new AbortController(), new AbortController()];
    const pending = held.map((h) => send(gw, { session: onA, stream: true, signal: h.signal }).catch((e: Error) => e));
    await until("a holds two requests", async () => ((await inflight(gw)).a === 2 ? true : undefined));

    await forget();
    for (let i = 0; i < 30; i++) {
      const r = await send(gw);
      assert.equal(r.status, 200, await r.text());
    }
    const d = await counts();
    assert.deepEqual([d[0], d[1]! + d[2]!], [0, 30], `a, b, c: ${d}`);

    for (const h of held) h.abort();
    await Promise.all(pending);
    await until("a's in-flight count back to 0 after the client aborts", async () => ((await inflight(gw)).a === 0 ? true : undefined));
  } finally {
    await gw.stop();
  }
});

test("in flight: never negative during a burst of errors, resets, timeouts and cut streams (Anthropic and OpenAI front doors), and 0 once it is over", async () => {
  const gw = await startGateway({
    CONFIG_FILE: configFile("least_inflight"),
    UPSTREAM_REQUEST_TIMEOUT_MS: "1500",
    CIRCUIT_BREAKER_FAILURE_THRESHOLD: "1000",
  });
  try {
    const faults = ["status:500", "reset", "hang", "stream-error:1", "status:529", "cut-stream:2", "status:400", "delay:100"];
    await Promise.all([a, b, c].map((m) => queueFaults(m, faults)));
    let settled = 0;
    // Two in three on the Anthropic path, one in three through the OpenAI translation (its own relay).
    const burst = Array.from({ length: 30 }, (_, i) =>
      (i % 3 === 2 ? sendChat(gw, i % 2 === 0) : send(gw, { stream: i % 2 === 0 }))
        .then((r) => r.arrayBuffer())
        .catch(() => undefined)
        .finally(() => settled++),
    );
    const seen: number[] = [];
    await until(
      "the burst to settle",
      async () => {
        seen.push(...Object.values(await inflight(gw)));
        return settled === burst.length ? true : undefined;
      },
      20_000,
    );
    assert.ok(
      seen.every((n) => n >= 0),
      `counts seen: ${seen.join(",")}`,
    );
    assert.ok(
      seen.some((n) => n > 0),
      "the burst was seen in flight",
    );
    await until("every in-flight count back to 0", async () => {
      const now = await inflight(gw);
      return Object.values(now).every((n) => n === 0) ? true : undefined;
    });
  } finally {
    await Promise.all([a, b, c].map((m) => fetch(`${m.url}/__mock/faults`, { method: "DELETE" })));
    await gw.stop();
  }
});

test("OpenAI front door: a JSON answer gives its deployment's in-flight count back", async () => {
  const gw = await startGateway({ CONFIG_FILE: configFile("least_inflight") });
  try {
    for (let i = 0; i < 3; i++) {
      const r = await sendChat(gw, false);
      assert.equal(r.status, 200, await r.text());
    }
    assert.deepEqual(await inflight(gw), { a: 0, b: 0, c: 0 });
  } finally {
    await gw.stop();
  }
});

test("an unknown strategy stops the start, naming the route's setting", async () => {
  const r = await runExpectingFailure({ CONFIG_FILE: configFile("round_robin") });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /routes\.0\.strategy/);
});
