/**
 * Draining and shutdown keep their promises: a request arriving on an old keep-alive
 * connection while draining is refused (503 + connection: close) and never sent upstream;
 * idle keep-alive connections do not hold the process; the whole shutdown, ledger flush
 * included, ends within GRACEFUL_SHUTDOWN_TIMEOUT + SHUTDOWN_MARGIN_MS; finished requests'
 * ledger rows survive it. The built gateway and mock upstream each run in their own process.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";
import Database from "better-sqlite3";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { MAIN, startGateway, type Gateway } from "../support/gateway.js";
import { spawn } from "node:child_process";
import { SHUTDOWN_MARGIN_MS } from "../../core/config.js";
import { LedgerRing } from "../../core/ledger-ring.js";

const BODY = JSON.stringify({ model: "claude-shutdown", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });

let mock: MockHandle;
before(async () => {
  mock = await startMock(["--record"]);
});
after(async () => {
  await mock?.stop();
});

async function upstreamCount(): Promise<number> {
  return ((await (await fetch(`${mock.url}/__mock/requests`)).json()) as unknown[]).length;
}

/** Resolves when a log line matches, fails after `ms` (a hang guard, not a timing claim). */
async function logLine(gw: Gateway, re: RegExp, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!gw.lines.some((l) => re.test(l))) {
    if (Date.now() > end) assert.fail(`no log line matching ${re} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Resolves with the exit code, or fails once `ms` have passed since `since`. */
function exitWithin(gw: Gateway, since: number, ms: number): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(
      () => reject(new Error(`the gateway did not exit within ${ms} ms of SIGTERM`)),
      Math.max(0, since + ms - Date.now()),
    );
    void gw.exited.then((code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** An open keep-alive connection: one request/response at a time, and whether the server closed it. */
class Conn {
  readonly s: Socket;
  buf = "";
  closed: Promise<void>;
  constructor(port: number) {
    this.s = connect(port, "127.0.0.1");
    this.s.setEncoding("utf8");
    this.s.on("data", (d: string) => (this.buf += d));
    this.s.on("error", () => undefined);
    this.closed = new Promise((r) => this.s.once("close", () => r()));
  }
  ready(): Promise<void> {
    return new Promise((r) => this.s.once("connect", () => r()));
  }
  /** Send a request; resolve with the whole response (head + Content-Length body), bounded. */
  exchange(req: string, ms = 10_000): Promise<string> {
    this.buf = "";
    this.s.write(req);
    return new Promise((resolve, reject) => {
      const end = Date.now() + ms;
      const check = () => {
        const head = this.buf.indexOf("\r\n\r\n");
        if (head >= 0) {
          const m = /content-length: (\d+)/i.exec(this.buf.slice(0, head));
          if (m !== null && this.buf.length >= head + 4 + Number(m[1])) return resolve(this.buf);
        }
        if (Date.now() > end) return reject(new Error(`no complete response within ${ms} ms: ${JSON.stringify(this.buf)}`));
        setTimeout(check, 10);
      };
      check();
    });
  }
}

describe("draining", () => {
  test("a request on an old keep-alive connection gets 503 overloaded_error + connection: close and never goes upstream; the stream in flight and its ledger row survive", async () => {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-shutdown-"));
    const db = join(dir, "ledger.db");
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-shutdown",
      MODEL_PROVIDER: "anthropic",
      GRACEFUL_SHUTDOWN_TIMEOUT: "20000",
      DATABASE_PATH: db,
      LEDGER_BATCH_MS: "5000",
    });
    const old = new Conn(gw.port);
    await old.ready();
    const first = await old.exchange(`GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n`);
    assert.match(first, /^HTTP\/1\.1 200 /);
    // A stream that keeps the gateway draining while we probe.
    await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: ["slow-stream:150"] }) });
    const res = await fetch(`${gw.url}/v1/messages`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-request-id": "trace-shutdown-1" },
      body: JSON.stringify({ ...JSON.parse(BODY), stream: true }),
    });
    assert.equal(res.status, 200);
    const gatewayId = res.headers.get("request-id")!;
    const reader = res.body!.getReader();
    await reader.read();
    const before = await upstreamCount();
    gw.proc.kill("SIGTERM");
    await logLine(gw, /"msg":"draining"/);

    const refused = await old.exchange(
      `POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`,
    );
    assert.match(refused, /^HTTP\/1\.1 503 /);
    assert.match(refused, /\r\nconnection: close\r\n/i);
    assert.match(refused, /"type":"overloaded_error"/);
    await old.closed; // the server closes it
    assert.equal(await upstreamCount(), before, "a request refused while draining must not reach the upstream");

    let text = "";
    const dec = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      text += dec.decode(value);
    }
    assert.match(text, /event: message_stop\n/, "the stream in flight completes");
    assert.equal(await gw.exited, 0);
    // LEDGER_BATCH_MS=5000: the row was still batched when the drain began; it must be written.
    const rows = new Database(db, { readonly: true }).prepare("SELECT request_id, client_request_id, status FROM usage").all() as {
      request_id: string;
      client_request_id: string | null;
      status: number;
    }[];
    const row = rows.find((r) => r.request_id === gatewayId);
    assert.ok(row !== undefined, `the streamed request's ledger row is written (rows: ${JSON.stringify(rows)})`);
    assert.equal(row.client_request_id, "trace-shutdown-1");
    assert.equal(row.status, 200);
  });
});

describe("bounded shutdown", () => {
  test("an idle keep-alive connection does not hold the process: it is closed and the exit comes within GRACEFUL_SHUTDOWN_TIMEOUT + margin", async () => {
    const timeout = 1000;
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-shutdown",
      MODEL_PROVIDER: "anthropic",
      GRACEFUL_SHUTDOWN_TIMEOUT: String(timeout),
      HTTP_THREADS: "2",
    });
    const idle = new Conn(gw.port);
    await idle.ready();
    assert.match(
      await idle.exchange(
        `POST /v1/messages HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: ${BODY.length}\r\n\r\n${BODY}`,
      ),
      /^HTTP\/1\.1 200 /,
    );
    const t0 = Date.now();
    gw.proc.kill("SIGTERM");
    // Before this change uWS's idle timeout (~10 s) held the thread, and the exit took 11.8 s.
    const code = await exitWithin(gw, t0, timeout + SHUTDOWN_MARGIN_MS);
    assert.equal(code, 0);
    await idle.closed;
    assert.ok(gw.lines.some((l) => l.includes('"msg":"stopped"')));
  });

  test("a request hanging upstream is cut at the timeout and the exit still comes within the bound", async () => {
    const timeout = 1000;
    const gw = await startGateway({
      ANTHROPIC_API_BASE: mock.url,
      ANTHROPIC_API_KEY: "sk-upstream-shutdown",
      MODEL_PROVIDER: "anthropic",
      GRACEFUL_SHUTDOWN_TIMEOUT: String(timeout),
    });
    await fetch(`${mock.url}/__mock/faults`, { method: "POST", body: JSON.stringify({ faults: ["hang"] }) });
    const before = await upstreamCount();
    const hung = fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json" }, body: BODY }).then(
      (r) => r.status,
      () => "cut",
    );
    for (let i = 0; (await upstreamCount()) === before; i++) {
      assert.ok(i < 500, "the request never reached the mock");
      await new Promise((r) => setTimeout(r, 20));
    }
    const t0 = Date.now();
    gw.proc.kill("SIGTERM");
    assert.equal(await exitWithin(gw, t0, timeout + SHUTDOWN_MARGIN_MS), 0);
    assert.equal(await hung, "cut", "the hung request's connection is closed");
    assert.ok(
      gw.lines.some((l) => l.includes('"msg":"acceptor drained"') && l.includes('"forced":1')),
      "the hung request was cut by the drain deadline",
    );
  });
});

describe("a signal during start-up", () => {
  test("SIGTERM after the ledger opened but before listening is a graceful shutdown, not a kill", async () => {
    const proc = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        HTTP_THREADS: "2",
        MODEL_PROVIDER: "mock",
        DATABASE_PATH: join(mkdtempSync(join(tmpdir(), "portcullis-early-")), "l.db"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const lines: string[] = [];
    let buf = "";
    proc.stdout.setEncoding("utf8");
    proc.stdout.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        // The acceptor threads are being started now; the old code had no handler yet.
        if (line.includes('"msg":"ledger opened"')) proc.kill("SIGTERM");
      }
    });
    const exit = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
      const t = setTimeout(() => {
        proc.kill("SIGKILL");
        reject(new Error("no exit within 20 s"));
      }, 20_000);
      proc.once("exit", (code, signal) => {
        clearTimeout(t);
        resolve({ code, signal });
      });
    });
    assert.deepEqual(exit, { code: 0, signal: null }, "killed by the signal instead of shutting down");
    assert.ok(lines.some((l) => l.includes('"msg":"stopped"')));
  });
});

describe("usage sink", () => {
  test("a row recorded by a thread is in its ledger ring for the main thread when the thread has ended, without an explicit flush", async () => {
    // A thread that finishes one request and then has nothing left to do: its row must not
    // die with it (it used to wait in a batch on a timer; now it is in shared memory at once).
    const sink = new URL("../../server/usage-sink.js", import.meta.url).href;
    const ringUrl = new URL("../../core/ledger-ring.js", import.meta.url).href;
    const sab = LedgerRing.bufferFor();
    const code = `
      const { workerData } = require("node:worker_threads");
      Promise.all([import(${JSON.stringify(sink)}), import(${JSON.stringify(ringUrl)})]).then(([{ UsageSink }, { LedgerRing }]) => {
        const out = { ring: new LedgerRing(workerData), drainSoon() {}, audit() {} };
        const s = new UsageSink(null, null, null, out, 200, 500);
        s.record({ id: "req_t_0_1", clientRequestId: null, inputTokens: -1, outputTokens: -1, cacheCreationTokens: -1, cacheReadTokens: -1,
          model: "m", provider: 0, providerName: "none", chargedMicros: 0, keyId: null, sessionId: null, userId: null,
          cacheHit: false, savedTokens: 0, ledger: true }, 200, 1000);
      });`;
    const w = new Worker(code, { eval: true, workerData: sab });
    const exitCode = await new Promise<number>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error("the worker did not exit within 10 s")), 10_000);
      w.once("exit", (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    assert.equal(exitCode, 0);
    const got = new LedgerRing(sab).drain();
    assert.equal(got.length, 1, "the row reached the main thread's side");
    assert.equal(got[0]![0], "req_t_0_1");
    assert.equal(got[0]![5], 200);
  });
});
