/**
 * The per-request log line is written without pino (server/log.ts): it must carry what
 * pino's line carried, escape what the client controls, never hold a key, and the log
 * buffer must stay bounded, dropping and counting lines rather than growing.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { Writable } from "node:stream";
import { threadId } from "node:worker_threads";
import pino from "pino";
import { R_MESSAGES, ROUTES } from "../../core/metrics.js";
import { RequestState } from "../../core/pipeline/state.js";
import { createLogger, LOG_BUFFER_BYTES, requestLogTap } from "../../server/log.js";
import { until } from "../support/wait.js";

function finished(): RequestState {
  const s = new RequestState(R_MESSAGES, 0);
  Object.assign(s, {
    id: "req_abc_0_1",
    clientRequestId: "client-7",
    model: 'claude "quoted"\n\u2028model',
    provider: 1,
    providerName: "anthropic",
    inputTokens: 12,
    outputTokens: 30,
    keyId: "static-0",
    errorCode: "GW_ERR_UPSTREAM_TIMEOUT",
    aborted: true,
    clientKey: "sk-client-secret-000000000000",
    upstreamKey: "sk-upstream-secret-00000000",
  });
  return s;
}

/** The non-empty lines of a log file. */
function fileLines(file: string): string[] {
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((x) => x !== "");
}

function withLogDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-log-"));
  return fn(dir).finally(() => rmSync(dir, { recursive: true, force: true }));
}

test("the request line has the fields and values pino's line had, escapes the model, and holds no key", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    const l = createLogger({ level: "info", file });
    const tap = requestLogTap(l)!;
    const s = finished();
    tap(s, 504, 1234.4);
    l.flush();
    await until("the line is written", () => readFileSync(file, "utf8").includes("\n") || undefined, 10_000);
    const text = readFileSync(file, "utf8");
    assert.ok(!text.includes(s.clientKey) && !text.includes(s.upstreamKey), "no key in the line");
    const ours = JSON.parse(text.trim()) as Record<string, unknown>;

    // The reference: pino itself, with the logger's settings, given the fields the line used to pass.
    let ref = "";
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((ref += c.toString()), cb()) });
    const p = pino(
      {
        base: { pid: process.pid, thread: threadId },
        timestamp: pino.stdTimeFunctions.epochTime,
        formatters: { level: (label) => ({ level: label }) },
      },
      sink,
    );
    p.info(
      {
        req_id: s.id,
        client_req_id: s.clientRequestId,
        route: ROUTES[s.route],
        provider: s.providerName,
        model: s.model,
        status: 504,
        latency_ms: Math.round(1234.4) / 1000,
        input_tokens: 12,
        output_tokens: 30,
        key_id: "static-0",
        error: s.errorCode,
        aborted: true,
      },
      "request",
    );
    await until("pino wrote its line", () => ref.includes("\n") || undefined, 10_000);
    const theirs = JSON.parse(ref.trim()) as Record<string, unknown>;
    assert.equal(typeof ours.time, "number");
    assert.ok(Math.abs((ours.time as number) - Date.now()) < 60_000, "time is epoch milliseconds");
    delete ours.time;
    delete theirs.time;
    assert.deepEqual(Object.keys(ours), Object.keys(theirs), "same fields in the same order");
    assert.deepEqual(ours, theirs);
  });
});

test("absent values are left out, as pino leaves out undefined", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    const l = createLogger({ level: "info", file });
    const s = new RequestState(R_MESSAGES, 0);
    s.id = "req_abc_0_2";
    requestLogTap(l)!(s, 401, 10);
    l.flush();
    await until("the line is written", () => readFileSync(file, "utf8").includes("\n") || undefined, 10_000);
    const line = JSON.parse(readFileSync(file, "utf8").trim()) as Record<string, unknown>;
    assert.deepEqual(Object.keys(line), [
      "level",
      "time",
      "pid",
      "thread",
      "req_id",
      "route",
      "provider",
      "model",
      "status",
      "latency_ms",
      "msg",
    ]);
    assert.equal(line.model, null);
  });
});

test("request lines and pino's lines reach the file without a flush, in the order they were written", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    const l = createLogger({ level: "info", file });
    const tap = requestLogTap(l)!;
    for (let i = 0; i < 3; i++) tap(finished(), 200, 1000);
    l.log.warn({ n: 1 }, "after the requests");
    const lines = await until("4 lines in the file", () => {
      const x = fileLines(file);
      return x.length === 4 ? x : undefined;
    });
    assert.deepEqual(
      lines.map((x) => (JSON.parse(x) as { msg: string }).msg),
      ["request", "request", "request", "after the requests"],
      "pino's lines keep their place among the request lines",
    );
    l.flush();
  });
});

test("with info off there is no request line at all", () => {
  assert.equal(requestLogTap(createLogger({ level: "warn", file: "/dev/null" })), null);
});

test("a log buffer that cannot drain fast enough drops whole lines and counts them instead of growing", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    let counted = 0;
    const l = createLogger({ level: "info", file }, () => counted++);
    const tap = requestLogTap(l)!;
    const s = finished();
    // Written without yielding: nothing reaches the file meanwhile, so the buffer fills.
    const n = Math.ceil((LOG_BUFFER_BYTES * 2) / 300);
    for (let i = 0; i < n; i++) tap(s, 200, 1000);
    assert.ok(l.dropped() > 0, "lines past the cap were dropped");
    assert.equal(counted, l.dropped(), "every drop is counted once");
    const kept = () => fileLines(file);
    // Every line is either on disk (once the buffer drained) or counted as dropped.
    await until(`kept + dropped = ${n} written`, () => kept().length + l.dropped() === n || undefined, 20_000);
    const lines = kept();
    assert.ok(lines.length * 300 <= LOG_BUFFER_BYTES * 1.1, "no more than the cap was kept");
    for (const x of lines) JSON.parse(x); // whole lines only
  });
});

test("flush writes every held line before it returns", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    const l = createLogger({ level: "info", file });
    const tap = requestLogTap(l)!;
    for (let i = 0; i < 100; i++) tap(finished(), 200, 1000);
    l.log.warn("the last line");
    l.flush();
    // No waiting: flush is synchronous.
    const lines = fileLines(file);
    assert.equal(lines.length, 101);
    assert.equal((JSON.parse(lines[100]!) as { msg: string }).msg, "the last line");
  });
});

test("settle writes every line in the order given, while a write is in flight and with a line longer than one buffer", async () => {
  await withLogDir(async (dir) => {
    const file = join(dir, "gw.log");
    const l = createLogger({ level: "info", file });
    const tap = requestLogTap(l)!;
    for (let i = 0; i < 100; i++) tap(finished(), 200, 1000);
    // Longer than a buffer: the 100 lines go out at once (an asynchronous write), this one queues behind them.
    l.log.warn({ long: "x".repeat(200_000) }, "a long line");
    l.log.warn("after the long line");
    await l.settle(10_000);
    const lines = fileLines(file);
    assert.equal(lines.length, 102);
    const msgs = lines.map((x) => (JSON.parse(x) as { msg: string }).msg);
    assert.deepEqual(msgs.slice(0, 100), Array(100).fill("request"));
    assert.deepEqual(msgs.slice(100), ["a long line", "after the long line"]);
    assert.equal((JSON.parse(lines[100]!) as { long: string }).long.length, 200_000);
  });
});

test("a log file that cannot be opened is reported once on stderr and its lines are dropped and counted, without throwing", () => {
  const script = `
    const { createLogger, requestLogTap } = await import(${JSON.stringify(new URL("../../server/log.js", import.meta.url).href)});
    const l = createLogger({ level: "info", file: "/dev/null/portcullis/gw.log" });
    for (let i = 0; i < 10; i++) l.line('{"n":' + i + '}\\n');
    l.log.error("still no throw");
    l.flush();
    process.stderr.write("dropped=" + l.dropped() + " done\\n");`;
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr.match(/log destination failed/g)?.length, 1, r.stderr);
  assert.match(r.stderr, /dropped=11 done\n$/, "the 10 lines and pino's line are counted as dropped");
});

test("a stdout whose reader went away (EPIPE) is reported once, its lines are counted as dropped, and the process goes on", async () => {
  const script = `
    const { createLogger } = await import(${JSON.stringify(new URL("../../server/log.js", import.meta.url).href)});
    const l = createLogger({ level: "info", file: null });
    // The first line only once the parent has closed its end of stdout.
    await new Promise((r) => process.stdin.once("data", r));
    process.stdin.pause();
    for (let i = 0; i < 5000; i++) {
      l.line('{"n":' + i + ',"pad":"' + "p".repeat(200) + '"}\\n');
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    l.log.warn("after the lines");
    l.flush();
    process.stderr.write("dropped=" + l.dropped() + " done\\n");`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["pipe", "pipe", "pipe"] });
  child.stdout.destroy(); // the reader is gone before the first line
  child.stdin.end("go\n");
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
  const code = await new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
  assert.equal(code, 0, stderr);
  assert.equal(stderr.match(/log destination failed \(EPIPE\)/g)?.length, 1, stderr);
  assert.match(stderr, /dropped=5001 done\n$/, "nothing reached the closed pipe: every line is counted as dropped");
});

test("threads sharing a stdout pipe whose reader is behind never cut into each other's lines", async () => {
  const logUrl = JSON.stringify(new URL("../../server/log.js", import.meta.url).href);
  // Three threads, each with its own logger on fd 1 (as acceptors are), write while nobody
  // reads: the pipe fills and their writes wait. The reader starts once all are written.
  const script = `
    import { Worker, isMainThread, parentPort } from "node:worker_threads";
    if (isMainThread) {
      let done = 0;
      for (let t = 0; t < 3; t++) {
        const w = new Worker(new URL(import.meta.url));
        w.on("message", () => { if (++done === 3) process.stderr.write("written\\n"); });
      }
    } else {
      const { createLogger } = await import(${logUrl});
      const l = createLogger({ level: "info", file: null });
      for (let i = 0; i < 3000; i++) {
        l.line(JSON.stringify({ i, pad: "p".repeat(i % 100 === 0 ? 2000 : 250 + (i % 97)) }) + "\\n");
        if (i % 50 === 0) await new Promise((r) => setImmediate(r));
      }
      parentPort.postMessage("written");
    }`;
  const dir = mkdtempSync(join(tmpdir(), "portcullis-log-pipe-"));
  try {
    const file = join(dir, "writers.mjs");
    writeFileSync(file, script);
    const child = spawn(process.execPath, [file], { stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.pause();
    let stderr = "";
    const written = new Promise<void>((res) =>
      child.stderr.setEncoding("utf8").on("data", (d: string) => {
        stderr += d;
        if (stderr.includes("written\n")) res();
      }),
    );
    const exited = new Promise<number | null>((res) => child.on("exit", (c) => res(c)));
    await Promise.race([written, exited]);
    const chunks: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => chunks.push(d));
    child.stdout.resume();
    await new Promise<void>((res) => child.stdout.on("end", () => res()));
    assert.equal(await exited, 0, stderr);
    const lines = Buffer.concat(chunks)
      .toString("utf8")
      .split("\n")
      .filter((x) => x !== "");
    assert.equal(lines.length, 9000, "every line of the three threads arrived");
    for (const x of lines) assert.doesNotThrow(() => JSON.parse(x), `a whole line, not pieces of two: ${x.slice(0, 120)}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
