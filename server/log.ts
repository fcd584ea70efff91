/**
 * pino JSON logs, one line per request. Writes go through an asynchronous SonicBoom
 * destination so a slow stdout or disk never stalls the event loop. Keys never reach a
 * log: request headers are not logged at all, and the redact list is a second guard.
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

export interface LogOptions {
  level: string;
  file: string | null;
}

let dropping = false;

export function createLogger(opts: LogOptions): { log: Logger; flush(): void } {
  const dest = pino.destination({ dest: opts.file ?? 1, sync: false, mkdir: opts.file !== null });
  // A closed stdout (EPIPE) or a full disk must not crash the gateway or stall its
  // shutdown: log lines are lost, requests are not.
  dest.on("error", (e: NodeJS.ErrnoException) => {
    if (!dropping) process.stderr.write(`portcullis: log destination failed (${e.code ?? e.message}); dropping log lines\n`);
    dropping = true;
  });
  // pino writes through this guard: once the destination failed (SonicBoom then throws on
  // every write), lines are dropped instead of throwing into request handling or shutdown.
  const guarded = {
    write(line: string): void {
      if (dropping) return;
      try {
        dest.write(line);
      } catch (e) {
        dropping = true;
        process.stderr.write(`portcullis: log destination failed (${(e as Error).message}); dropping log lines\n`);
      }
    },
  };
  const log = pino(
    {
      level: opts.level,
      base: { pid: process.pid, thread: threadId },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    guarded,
  );
  return {
    log,
    flush() {
      try {
        if (!dropping) dest.flushSync();
      } catch {
        // flushSync throws while the destination is still opening; nothing was buffered then.
      }
    },
  };
}

/**
 * The per-request log line as a pipeline tap (core/pipeline/), or null when info is off
 * (decided at start-up). Only fields of the request state: no header, no key.
 */
export function requestLogTap(log: Logger): Tap | null {
  if (!log.isLevelEnabled("info")) return null;
  return (s, status, durationUs) => {
    log.info(
      {
        req_id: s.id,
        client_req_id: s.clientRequestId ?? undefined,
        route: ROUTES[s.route],
        provider: s.providerName,
        model: s.model,
        status,
        latency_ms: Math.round(durationUs) / 1000,
        input_tokens: s.inputTokens < 0 ? undefined : s.inputTokens,
        output_tokens: s.outputTokens < 0 ? undefined : s.outputTokens,
        key_id: s.keyId ?? undefined,
        error: s.errorCode ?? undefined,
        aborted: s.aborted || undefined,
      },
      "request",
    );
  };
}
