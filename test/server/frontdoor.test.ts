/**
 * The front door answers like the API it imitates: content type, framing, duplicate keys,
 * oversized model names and oversized bodies still being sent. The built gateway in its
 * own process, the project's mock upstream in another; every refusal is also checked not
 * to have reached the upstream.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect } from "node:net";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const SMALL = JSON.stringify({ model: "claude-frontdoor", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });

let mock: MockHandle;
let gw: Gateway;
before(async () => {
  mock = await startMock(["--record"]);
  gw = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-frontdoor",
    MODEL_PROVIDER: "anthropic",
    MAX_BODY_BYTES: "65536",
  });
});
after(async () => {
  await gw?.stop();
  await mock?.stop();
});

/** Requests the upstream saw on its messages paths (the gateway's background GET /v1/models is not one). */
async function upstreamCount(): Promise<number> {
  return ((await (await fetch(`${mock.url}/__mock/requests`)).json()) as { method: string }[]).filter((r) => r.method === "POST").length;
}

async function post(
  path: string,
  body: string,
  headers: Record<string, string>,
): Promise<{ status: number; type: string; message: string }> {
  const r = await fetch(`${gw.url}${path}`, { method: "POST", headers, body });
  const j = (await r.json()) as { error?: { type: string; message: string } };
  return { status: r.status, type: j.error?.type ?? "", message: j.error?.message ?? "" };
}

/** Raw HTTP/1.1 over one socket: write `data`, collect what comes back until the server closes (bounded). */
function raw(port: number, data: string, limitMs = 10_000): Promise<{ out: string; closedByServer: boolean }> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    let out = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => (out += d));
    const t = setTimeout(() => {
      s.destroy();
      resolve({ out, closedByServer: false });
    }, limitMs);
    s.on("end", () => {
      clearTimeout(t);
      s.destroy();
      resolve({ out, closedByServer: true });
    });
    s.on("error", () => undefined);
    s.write(data);
  });
}

describe("content type", () => {
  test("text/plain or no content-type on /v1/messages and count_tokens is a 400 that never goes upstream", async () => {
    const before = await upstreamCount();
    for (const path of ["/v1/messages", "/v1/messages/count_tokens"]) {
      const plain = await post(path, SMALL, { "content-type": "text/plain" });
      assert.equal(plain.status, 400, path);
      assert.equal(plain.type, "invalid_request_error");
      assert.match(plain.message, /application\/json.*"text\/plain"/);
      // fetch adds text/plain to a string body; a raw request can send none at all.
      const none = await raw(
        gw.port,
        `POST ${path} HTTP/1.1\r\nHost: x\r\ncontent-length: ${SMALL.length}\r\nconnection: close\r\n\r\n${SMALL}`,
      );
      assert.match(none.out, /^HTTP\/1\.1 400 /, path);
      assert.match(none.out, /"type":"invalid_request_error","message":"content-type must be application\/json, got none"/);
    }
    assert.equal(await upstreamCount(), before, "a refused request must not reach the upstream");
  });

  test("application/json in any case and with parameters is served", async () => {
    for (const ct of ["application/json", "Application/JSON; charset=utf-8", "application/json;charset=UTF-8"]) {
      const r = await fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": ct }, body: SMALL });
      assert.equal(r.status, 200, ct);
      await r.arrayBuffer();
    }
  });
});

describe("ambiguous requests", () => {
  test("a body with two top-level model keys is a 400, also when one is spelled with escapes", async () => {
    const before = await upstreamCount();
    const bodies = [
      '{"model":"claude-cheap","max_tokens":8,"messages":[{"role":"user","content":"hi"}],"model":"claude-dear"}',
      '{"mod\\u0065l":"claude-cheap","max_tokens":8,"messages":[{"role":"user","content":"model"}],"model":"claude-dear"}',
    ];
    for (const body of bodies) {
      const r = await post("/v1/messages", body, { "content-type": "application/json" });
      assert.equal(r.status, 400, body);
      assert.equal(r.type, "invalid_request_error");
      assert.match(r.message, /model: appears more than once/);
    }
    assert.equal(await upstreamCount(), before);
    // A nested "model" key and the word in a text are no duplicates.
    const ok = await post(
      "/v1/messages",
      '{"model":"claude-x","max_tokens":8,"metadata":{"user_id":"model"},"messages":[{"role":"user","content":"\\"model\\": \\u0041"}]}',
      { "content-type": "application/json" },
    );
    assert.equal(ok.status, 200, `a body with one model key is served: ${ok.message}`);
  });

  test("two Content-Length headers with different values are refused with 400 and the connection closed", async () => {
    const before = await upstreamCount();
    const r = await raw(
      gw.port,
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${SMALL.length}\r\ncontent-length: 5\r\n\r\n${SMALL}`,
    );
    assert.match(r.out, /^HTTP\/1\.1 400 /);
    assert.match(r.out, /conflicting Content-Length headers/);
    assert.ok(r.closedByServer, "the connection must be closed: its framing is unknown");
    assert.equal(await upstreamCount(), before);
  });

  test("a model name over 256 bytes is a clear 400; 256 bytes is accepted", async () => {
    const long = await post(
      "/v1/messages",
      JSON.stringify({ model: "é".repeat(129), max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
      { "content-type": "application/json" },
    );
    assert.equal(long.status, 400);
    assert.equal(long.type, "invalid_request_error");
    assert.equal(long.message, "model: expected at most 256 bytes, got 258 bytes");
    const huge = await post(
      "/v1/messages/count_tokens",
      JSON.stringify({ model: "m".repeat(50_000), messages: [{ role: "user", content: "hi" }] }),
      { "content-type": "application/json" },
    );
    assert.equal(huge.status, 400);
    assert.ok(huge.message.length < 100, "the message does not echo the model");
    const edge = await post(
      "/v1/messages/count_tokens",
      JSON.stringify({ model: "m".repeat(256), messages: [{ role: "user", content: "hi" }] }),
      { "content-type": "application/json" },
    );
    assert.equal(edge.status, 200);
  });
});

describe("oversized bodies still being sent", () => {
  /** Send a 40 MB body over a raw socket, honouring backpressure; then collect the answer. */
  function upload(head: string, total: number, chunked: boolean): Promise<{ out: string; writeError: string | null; sent: number }> {
    return new Promise((resolve) => {
      const s = connect(gw.port, "127.0.0.1");
      let out = "";
      let writeError: string | null = null;
      let sent = 0;
      s.setEncoding("latin1");
      s.on("data", (d: string) => (out += d));
      s.on("error", (e: NodeJS.ErrnoException) => (writeError ??= e.code ?? e.message));
      const guard = setTimeout(() => s.destroy(), 30_000);
      s.on("close", () => {
        clearTimeout(guard);
        resolve({ out, writeError, sent });
      });
      const piece = Buffer.alloc(256 * 1024, 0x78);
      const framed = chunked ? Buffer.concat([Buffer.from(piece.length.toString(16) + "\r\n"), piece, Buffer.from("\r\n")]) : piece;
      s.write(head);
      const pump = (): void => {
        while (sent < total && !s.destroyed) {
          sent += piece.length;
          if (!s.write(framed)) return void s.once("drain", pump);
        }
        if (s.destroyed) return;
        // Everything sent: end the chunked body, then wait for the server to answer in full.
        if (chunked) s.write("0\r\n\r\n");
        const done = () => (/\r\n0\r\n\r\n$/.test(out) ? s.end() : setTimeout(done, 20));
        done();
      };
      pump();
    });
  }

  test("a 40 MB body over MAX_BODY_BYTES with a known length: the client sends it all and reads the whole 413", async () => {
    const total = 40 * 1024 * 1024;
    const r = await upload(
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${total}\r\n\r\n`,
      total,
      false,
    );
    assert.equal(r.writeError, null, "the client's writes must not fail (EPIPE / ECONNRESET) before it read the answer");
    assert.equal(r.sent, total);
    assert.match(r.out, /^HTTP\/1\.1 413 /);
    assert.match(r.out, /"type":"request_too_large","message":"request body of 41943040 bytes exceeds the limit of 65536"/);
  });

  test("a chunked body growing past MAX_BODY_BYTES: the client sends it all and reads the whole 413", async () => {
    const r = await upload(
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n`,
      8 * 1024 * 1024,
      true,
    );
    assert.equal(r.writeError, null);
    assert.match(r.out, /^HTTP\/1\.1 413 /);
    assert.match(r.out, /"type":"request_too_large","message":"request body exceeds 65536 bytes"/);
  });
});
