/**
 * pino JSON logs, one line per request. Writes go through an asynchronous SonicBoom
 * destination so a slow stdout or disk never stalls the event loop. Keys never reach a
 * log: request headers are not logged at all, and the redact list is a second guard.
 */
import pino, { type Logger } from "pino";
import { threadId } from "node:worker_threads";

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

export function createLogger(opts: LogOptions): { log: Logger; flush(): void } {
  const dest = pino.destination({ dest: opts.file ?? 1, sync: false, mkdir: opts.file !== null });
  const log = pino(
    {
      level: opts.level,
      base: { pid: process.pid, thread: threadId },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  return {
    log,
    flush() {
      try {
        dest.flushSync();
      } catch {
        // flushSync throws while the destination is still opening; nothing was buffered then.
      }
    },
  };
}
