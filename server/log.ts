/**
 * JSON logs: pino for the occasional line (start-up, warnings, errors), and the
 * per-request line written directly, because it is on every request's path: a prefix
 * built once, epoch time, and only fields of the request state, so nothing secret can be
 * in it (redaction by construction: request headers and keys are never fields). pino's
 * redact list stays as a second guard on the other lines.
 *
 * Writes go through one asynchronous SonicBoom destination so a slow stdout or disk never
 * stalls the event loop. Lines are gathered for up to LOG_BATCH_MS (or LOG_BATCH_CHARS) and
 * handed over as one write: one `write(2)` and one thread-pool round trip per request was
 * a tenth of an acceptor's busy time under load (issue 12's profile). Its buffer is
 * bounded (LOG_BUFFER_BYTES): past it, lines are dropped and counted (`dropped()`,
 * exported as gateway_log_lines_dropped_total) instead of growing the heap without limit.
 */
import pino, { type Logger } from "pino";
import { threadId } from "node:worker_threads";
import { ROUTES } from "../core/metrics.js";
import type { Tap } from "../core/pipeline/pipeline.js";

export const REDACT_PATHS = [
  "authorization",
  "apiKey",
  "api_key",
  "key",
  "headers.authorization",
  'headers["x-api-key"]',
  'headers["api-key"]',
  "req.headers.authorization",
  'req.headers["x-api-key"]',
];

/** The destination's buffer cap: about 40,000 request lines, a few seconds of a stalled disk at full load. */
export const LOG_BUFFER_BYTES = 8 * 1024 * 1024;
/** How long a line may wait to be batched with others, and the batch size written at once. */
const LOG_BATCH_MS = 10;
const LOG_BATCH_CHARS = 16 * 1024;

export interface LogOptions {
  level: string;
  file: string | null;
}

export interface GatewayLogger {
  log: Logger;
  flush(): void;
  /** Write one finished JSON line (ending in "\n") to the same destination; dropped when full. */
  line(text: string): void;
  /** Lines dropped because the buffer was full (this thread). */
  dropped(): number;
}

let failed = false;

/** `onDrop` is called once per dropped line (the acceptor counts it in the shared metrics). */
export function createLogger(opts: LogOptions, onDrop: (() => void) | null = null): GatewayLogger {
  const dest = pino.destination({ dest: opts.file ?? 1, sync: false, mkdir: opts.file !== null, maxLength: LOG_BUFFER_BYTES });
  let dropped = 0;
  // A dropped write is a batch of whole lines: count each line.
  dest.on("drop", (batch: string) => {
    let n = 0;
    for (let i = batch.indexOf("\n"); i !== -1; i = batch.indexOf("\n", i + 1)) n++;
    dropped += n;
    if (onDrop !== null) for (let i = 0; i < n; i++) onDrop();
  });
  // A closed stdout (EPIPE) or a full disk must not crash the gateway or stall its
  // shutdown: log lines are lost, requests are not.
  dest.on("error", (e: NodeJS.ErrnoException) => {
    if (!failed) process.stderr.write(`portcullis: log destination failed (${e.code ?? e.message}); dropping log lines\n`);
    failed = true;
  });
  // pino writes through this guard: once the destination failed (SonicBoom then throws on
  // every write), lines are dropped instead of throwing into request handling or shutdown.
  let pending = "";
  let timer: NodeJS.Timeout | null = null;
  const push = (): void => {
    if (timer !== null) {
      clearTimeout(timer);
      timer = null;
    }
    if (pending === "" || failed) return;
    const batch = pending;
    pending = "";
    try {
      dest.write(batch);
    } catch (e) {
      failed = true;
      process.stderr.write(`portcullis: log destination failed (${(e as Error).message}); dropping log lines\n`);
    }
  };
  // Not unref'd: a pending batch is written before the thread may end (at most LOG_BATCH_MS).
  const guarded = {
    write(line: string): void {
      if (failed) return;
      pending += line;
      if (pending.length >= LOG_BATCH_CHARS) push();
      else if (timer === null) timer = setTimeout(push, LOG_BATCH_MS);
    },
  };
  const log = pino(
    {
      level: opts.level,
      base: { pid: process.pid, thread: threadId },
      timestamp: pino.stdTimeFunctions.epochTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    guarded,
  );
  return {
    log,
    flush() {
      push();
      try {
        if (!failed) dest.flushSync();
      } catch {
        // flushSync throws while the destination is still opening; nothing was buffered then.
      }
    },
    line: guarded.write,
    dropped: () => dropped,
  };
}

const ROUTE_FIELDS = ROUTES.map((r) => `,"route":"${r}","provider":`);

/**
 * The per-request log line as a pipeline tap (core/pipeline/), or null when info is off
 * (decided at start-up). The same fields pino would write, in the same order, with
 * "time" in epoch milliseconds; absent values are left out.
 */
export function requestLogTap(l: GatewayLogger): Tap | null {
  if (!l.log.isLevelEnabled("info")) return null;
  const head = '{"level":"info","time":';
  const base = `,"pid":${process.pid},"thread":${threadId},"req_id":`;
  const quoted = new Map<string, string>();
  // Provider names and error codes repeat: quote each once.
  const q = (v: string): string => {
    let out = quoted.get(v);
    if (out === undefined) {
      out = JSON.stringify(v);
      if (quoted.size < 1024) quoted.set(v, out);
    }
    return out;
  };
  const write = l.line;
  return (s, status, durationUs) => {
    let t = head + Date.now() + base + JSON.stringify(s.id);
    if (s.clientRequestId !== null) t += ',"client_req_id":' + JSON.stringify(s.clientRequestId);
    t += ROUTE_FIELDS[s.route]! + q(s.providerName) + ',"model":' + (s.model === null ? "null" : JSON.stringify(s.model));
    t += ',"status":' + status + ',"latency_ms":' + Math.round(durationUs) / 1000;
    if (s.inputTokens >= 0) t += ',"input_tokens":' + s.inputTokens;
    if (s.outputTokens >= 0) t += ',"output_tokens":' + s.outputTokens;
    if (s.keyId !== null) t += ',"key_id":' + q(s.keyId);
    if (s.errorCode !== null) t += ',"error":' + q(s.errorCode);
    if (s.aborted) t += ',"aborted":true';
    if (s.cacheHit) t += ',"cache_hit":true';
    write(t + ',"msg":"request"}\n');
  };
}
