/**
 * The Relay (server/upstream.ts) on a real undici Pool against the real mock upstream:
 * an attempt cancelled while it waits for a pool connection (the request deadline) is
 * never sent, and errors raised on our side (a value undici refuses, a pool closed by
 * shutdown) are reported as local, never as the provider's failure.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { Pool } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { dispatchAttempt, type AttemptOwner } from "../../server/upstream.js";
import type { RequestCtx } from "../../server/context.js";
import type { ErrorCode } from "../../core/errors.js";
import { startMock, type MockHandle } from "../support/spawn-mock.js";

let mock: MockHandle;
before(async () => {
  mock = await startMock(["--record"]);
});
after(async () => {
  await mock?.stop();
});

const BODY = Buffer.from(JSON.stringify({ model: "m", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }));

/** The fields a Relay reads before any response reaches the client. */
function fakeCtx(id: string): RequestCtx {
  return {
    id,
    aborted: false,
    done: false,
    started: false,
    provider: 1,
    providerName: "p",
    route: 0,
    shared: { log: { warn() {} }, metrics: { poolWait() {} } },
  } as unknown as RequestCtx;
}

class Owner implements AttemptOwner {
  readonly calls: string[] = [];
  readonly responseHeaders: readonly string[] = [];
  upstreamError(status: number, _h: IncomingHttpHeaders, _b: Buffer): void {
    this.calls.push(`upstreamError ${status}`);
  }
  connectionError(code: ErrorCode): void {
    this.calls.push(`connectionError ${code}`);
  }
  localError(err: Error): void {
    this.calls.push(`localError ${(err as { code?: string }).code}`);
  }
  succeeded(): void {
    this.calls.push("succeeded");
  }
  streamFailed(): void {
    this.calls.push("streamFailed");
  }
  ended(): void {
    this.calls.push("ended");
  }
}

async function recordedIds(): Promise<string[]> {
  const all = (await (await fetch(`${mock.url}/__mock/requests`)).json()) as { headers: Record<string, string> }[];
  return all.map((r) => r.headers["x-request-id"] ?? "");
}

test("an attempt aborted while it waits for a pool connection is never sent", async () => {
  const pool = new Pool(mock.url, { connections: 1 });
  const holder = pool.request({
    path: "/v1/messages",
    method: "POST",
    headers: { "content-type": "application/json", "x-request-id": "relay-holder", "x-mock-fault": "delay:400" },
    body: BODY,
  });
  const owner = new Owner();
  const relay = dispatchAttempt(
    pool,
    "/v1/messages",
    ["content-type", "application/json", "x-request-id", "relay-waiter"],
    BODY,
    fakeCtx("relay-waiter"),
    owner,
    65536,
  );
  // The holder has the only connection; the waiter is queued behind it.
  for (let i = 0; !(await recordedIds()).includes("relay-holder"); i++) {
    assert.ok(i < 400, "the holder never reached the mock");
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(relay.sent, false, "still waiting for the connection");
  relay.abort(new Error("request deadline exceeded"));
  const h = await holder;
  assert.equal(h.statusCode, 200);
  await h.body.arrayBuffer();
  await pool.close(); // resolves once the queue is empty: the waiter was taken off it
  assert.equal(relay.sent, false);
  assert.ok(!(await recordedIds()).includes("relay-waiter"), "the cancelled request reached the provider");
  assert.deepEqual(owner.calls, [], "a cancelled attempt reports nothing");
});

test("a header value undici refuses is a local error, not a provider failure", async () => {
  const pool = new Pool(mock.url, { connections: 1 });
  const owner = new Owner();
  dispatchAttempt(
    pool,
    "/v1/messages",
    ["content-type", "application/json", "user-agent", "a\x7fb"],
    BODY,
    fakeCtx("relay-bad"),
    owner,
    65536,
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(owner.calls, ["localError UND_ERR_INVALID_ARG"]);
  await pool.destroy();
});

test("a pool closed by shutdown is a local error, not a provider failure", async () => {
  const pool = new Pool(mock.url, { connections: 1 });
  await pool.close();
  const owner = new Owner();
  dispatchAttempt(pool, "/v1/messages", ["content-type", "application/json"], BODY, fakeCtx("relay-closed"), owner, 65536);
  await new Promise((r) => setImmediate(r));
  assert.equal(owner.calls.length, 1);
  assert.match(owner.calls[0]!, /^localError UND_ERR_(CLOSED|DESTROYED)$/);
});
