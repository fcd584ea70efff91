/**
 * JSON logs: pino for the occasional line (start-up, warnings, errors), and the
 * per-request line written directly, because it is on every request's path: a prefix
 * built once, epoch time, and only fields of the request state, so nothing secret can be
 * in it (redaction by construction: request headers and keys are never fields). pino's
 * redact list stays as a second guard on the other lines.
 *
 * Both go through one `LineWriter` per thread, so a slow stdout or disk never stalls the
 * event loop and the lines keep their order: each line is encoded straight into a buffer
 * (64 KiB for a file, PIPE_BUF for a pipe), and a full buffer (or one LOG_BATCH_MS old)
 * goes to the kernel in one asynchronous `write(2)` of whole lines. pino's SonicBoom
 * destination, fed batched strings, spent ~12 µs per request line under load (string
 * ropes flattened and encoded again on every write); the whole line now costs ~5–9 µs,
 * building included (docs/performance.md, "Fourth pass"). What is held is bounded
 * (LOG_BUFFER_BYTES): past it, lines are dropped and counted (`dropped()`, exported as
 * gateway_log_lines_dropped_total) instead of growing the heap without limit.
 */
import { fstatSync, fsyncSync, mkdirSync, openSync, write as fsWrite, writeSync } from "node:fs";
import { dirname } from "node:path";
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

/** The cap on what a thread's log holds unwritten: about 40,000 request lines, a few seconds of a stalled disk at full load. */
export const LOG_BUFFER_BYTES = 8 * 1024 * 1024;
/** How long a line may wait in a buffer that is not full yet. */
const LOG_BATCH_MS = 10;
/** One buffer to a file: what one `write(2)` hands over at most (a longer line gets a buffer of its own). */
const FILE_CHUNK_BYTES = 64 * 1024;
/**
 * One buffer to a pipe (stdout under a container runtime): PIPE_BUF, the most Linux writes
 * to a pipe in one piece. A longer write can be split when the reader is behind, and the
 * other threads' lines (each thread writes to the same stdout) would land inside a line.
 */
const PIPE_CHUNK_BYTES = 4096;
/** A destination that answers EAGAIN (a full non-blocking pipe) is tried again after this long. */
const RETRY_MS = 10;

export interface LogOptions {
  level: string;
  file: string | null;
}

export interface GatewayLogger {
  log: Logger;
  /**
   * Write what is held, synchronously. A buffer already being written finishes on its own and
   * may land after the rest: for an orderly end use `settle`.
   */
  flush(): void;
  /** Resolves once every line given so far is written, in order; after `ms` the rest is written synchronously (`flush`). */
  settle(ms: number): Promise<void>;
  /** Write one finished JSON line (ending in "\n") to the same destination; dropped when full. */
  line(text: string): void;
  /** Lines dropped because the buffer was full (this thread). */
  dropped(): number;
}

interface Chunk {
  buf: Buffer;
  /** Written up to here (a partial write leaves the rest). */
  start: number;
  end: number;
}

/**
 * Lines into buffers, buffers to a file descriptor in order, one asynchronous write at a
 * time. A failed destination (EPIPE, a full disk, a file that cannot be opened) is
 * reported once on stderr and every line it held or is given later is dropped and counted:
 * log lines are lost, requests are not, and nothing throws into request handling or shutdown.
 */
export class LineWriter {
  private cur: Buffer;
  private off = 0;
  /** Filled buffers in order; the first may be being written. */
  private readonly queue: Chunk[] = [];
  private queued = 0;
  private writing = false;
  /** Waiting to try the first buffer again after EAGAIN (nothing in flight). */
  private retry: NodeJS.Timeout | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** One empty buffer kept for the next fill, not a new one per 64 KiB. */
  private spare: Buffer | null = null;
  private failed = false;
  /** `settle`'s resolver, called when nothing is held or in flight. */
  private idle: (() => void) | null = null;
  dropped = 0;

  constructor(
    private readonly fd: number,
    private readonly maxBytes: number,
    private readonly onDrop: (() => void) | null,
    /** Whole lines per `write(2)` up to this many bytes: FILE_CHUNK_BYTES, or PIPE_CHUNK_BYTES for a pipe or terminal. */
    private readonly chunk: number,
  ) {
    if (fd < 0) this.failed = true;
    this.cur = Buffer.allocUnsafeSlow(chunk);
  }

  /** A writer for `fd`, its buffer size chosen by what the descriptor is. */
  static forFd(fd: number, maxBytes: number, onDrop: (() => void) | null): LineWriter {
    let file = false;
    try {
      file = fstatSync(fd).isFile();
    } catch {
      // not open: the first write fails and says so
    }
    return new LineWriter(fd, maxBytes, onDrop, file ? FILE_CHUNK_BYTES : PIPE_CHUNK_BYTES);
  }

  write(text: string): void {
    if (this.failed) return this.drop();
    // 3 bytes per UTF-16 unit is the most UTF-8 can take (a surrogate pair: 4 for 2).
    if (text.length * 3 > this.chunk - this.off) {
      this.submit();
      if (text.length * 3 > this.chunk) {
        const b = Buffer.from(text, "utf8");
        if (this.queued + b.length > this.maxBytes) return this.drop();
        if (b.length <= this.chunk) {
          // It fits the (now empty) buffer after all: more lines may join it.
          b.copy(this.cur, 0);
          this.off = b.length;
          this.timer = setTimeout(this.submitFn, LOG_BATCH_MS);
          return;
        }
        this.queue.push({ buf: b, start: 0, end: b.length });
        this.queued += b.length;
        this.kick();
        return;
      }
    }
    const n = this.cur.write(text, this.off);
    // Over the cap: the bytes just encoded are not counted in (`off` stays), i.e. dropped.
    if (this.queued + this.off + n > this.maxBytes) return this.drop();
    if (this.off === 0 && this.timer === null) this.timer = setTimeout(this.submitFn, LOG_BATCH_MS);
    this.off += n;
  }

  /** What is held goes out in order; resolves when all of it is written, or after `ms` with the rest written synchronously. */
  settle(ms: number): Promise<void> {
    this.submit();
    if (this.failed || (!this.writing && this.retry === null && this.queue.length === 0)) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.idle = null;
        this.flush();
        resolve();
      }, ms);
      this.idle = () => {
        clearTimeout(t);
        this.idle = null;
        resolve();
      };
    });
  }

  /** Everything held, written synchronously (a write in flight finishes on its own). */
  flush(): void {
    this.submit();
    if (this.failed) return;
    if (this.retry !== null) {
      clearTimeout(this.retry);
      this.retry = null;
    }
    const from = this.writing ? 1 : 0;
    let waited = 0;
    while (this.queue.length > from) {
      const c = this.queue[from]!;
      try {
        c.start += writeSync(this.fd, c.buf, c.start, c.end - c.start);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        // A full non-blocking pipe: wait a little, at most a second in all.
        if ((code === "EAGAIN" || code === "EBUSY") && waited < 1000) {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_MS);
          waited += RETRY_MS;
          continue;
        }
        this.fail(e as Error);
        return;
      }
      if (c.start >= c.end) {
        this.queue.splice(from, 1);
        this.queued -= c.end;
      }
    }
    try {
      if (this.fd > 2) fsyncSync(this.fd);
    } catch {
      // not a file that can be synced
    }
  }

  private countLines(buf: Buffer, from: number, to: number): void {
    for (let i = buf.indexOf(10, from); i !== -1 && i < to; i = buf.indexOf(10, i + 1)) this.drop();
  }

  private drop(): void {
    this.dropped++;
    if (this.onDrop !== null) this.onDrop();
  }

  /** The LOG_BATCH_MS timer runs this. Not unref'd: a thread ends only after its last lines were handed over. */
  private readonly submitFn = (): void => this.submit();

  /** The current buffer joins the queue. */
  private submit(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    if (this.off === 0 || this.failed) return;
    this.queue.push({ buf: this.cur, start: 0, end: this.off });
    this.queued += this.off;
    this.cur = this.spare ?? Buffer.allocUnsafeSlow(this.chunk);
    this.spare = null;
    this.off = 0;
    this.kick();
  }

  private kick(): void {
    if (this.writing || this.retry !== null || this.failed || this.queue.length === 0) return;
    const c = this.queue[0]!;
    this.writing = true;
    fsWrite(this.fd, c.buf, c.start, c.end - c.start, null, this.written);
  }

  private readonly written = (err: NodeJS.ErrnoException | null, n: number): void => {
    this.writing = false;
    if (this.failed) return;
    if (err !== null) {
      if (err.code === "EAGAIN" || err.code === "EBUSY") {
        // The reader is behind: try again shortly; what arrives meanwhile queues (bounded).
        this.retry = setTimeout(() => {
          this.retry = null;
          this.kick();
        }, RETRY_MS);
        return;
      }
      return this.fail(err);
    }
    const c = this.queue[0]!;
    c.start += n;
    if (c.start >= c.end) {
      this.queue.shift();
      this.queued -= c.end;
      if (c.buf.length === this.chunk && this.spare === null) this.spare = c.buf;
    }
    this.kick();
    if (this.idle !== null && !this.writing && this.queue.length === 0) {
      // Lines given while settling join the buffer: send them too before calling it done.
      if (this.off > 0) this.submit();
      else this.idle();
    }
  };

  private fail(e: Error): void {
    if (!this.failed)
      process.stderr.write(`portcullis: log destination failed (${(e as NodeJS.ErrnoException).code ?? e.message}); dropping log lines\n`);
    this.failed = true;
    // What was held is lost with the destination: count its lines as dropped.
    for (const c of this.queue) this.countLines(c.buf, c.start, c.end);
    this.countLines(this.cur, 0, this.off);
    this.queue.length = 0;
    this.queued = 0;
    this.off = 0;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.retry !== null) clearTimeout(this.retry);
    this.timer = null;
    this.retry = null;
    if (this.idle !== null) this.idle();
  }

  /** A destination that could not be opened. */
  static failedOpen(e: Error, onDrop: (() => void) | null): LineWriter {
    const w = new LineWriter(-1, 0, onDrop, PIPE_CHUNK_BYTES);
    process.stderr.write(`portcullis: log destination failed (${(e as NodeJS.ErrnoException).code ?? e.message}); dropping log lines\n`);
    return w;
  }
}

/** `onDrop` is called once per dropped line (the acceptor counts it in the shared metrics). */
export function createLogger(opts: LogOptions, onDrop: (() => void) | null = null): GatewayLogger {
  let out: LineWriter;
  if (opts.file === null) out = LineWriter.forFd(1, LOG_BUFFER_BYTES, onDrop);
  else {
    try {
      mkdirSync(dirname(opts.file), { recursive: true });
      out = LineWriter.forFd(openSync(opts.file, "a"), LOG_BUFFER_BYTES, onDrop);
    } catch (e) {
      out = LineWriter.failedOpen(e as Error, onDrop);
    }
  }
  const line = (text: string): void => out.write(text);
  const log = pino(
    {
      level: opts.level,
      base: { pid: process.pid, thread: threadId },
      timestamp: pino.stdTimeFunctions.epochTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      formatters: { level: (label) => ({ level: label }) },
    },
    { write: line },
  );
  return {
    log,
    flush: () => out.flush(),
    settle: (ms) => out.settle(ms),
    line,
    dropped: () => out.dropped,
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
