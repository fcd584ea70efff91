/**
 * Reads a request body from uWS with a size cap enforced while reading, and a deadline
 * for a stalled body. Chunks are copied (uWS neuters them after the callback). When the
 * length is announced, one buffer of that size is filled in place.
 *
 * A body over the cap gets its 413 at once, then a lingering close (as nginx does): the
 * rest is read and dropped for up to LINGER_MS / LINGER_BYTES, so a client still sending
 * gets to read the answer instead of an EPIPE on its next write. A body that ends within
 * the bounds leaves the connection usable; past them it is closed.
 */
import type { RequestCtx } from "./context.js";
import { Deadline, deadlines } from "./deadlines.js";

/** How long and how much of a refused body is read and dropped before the connection is closed. */
export const LINGER_MS = 5000;
export const LINGER_BYTES = 64 * 1024 * 1024;

/**
 * Send a 413 (response left open) and return the sink for the rest of the body: it ends
 * the response when the body is complete, or closes the connection past the bounds.
 */
function refuseAndLinger(ctx: RequestCtx, message: string): (bytes: number, isLast: boolean) => void {
  const res = ctx.res;
  let open = true;
  let seen = 0;
  const stop = (close: boolean) => {
    if (!open) return;
    open = false;
    clearTimeout(timer);
    if (ctx.aborted) return;
    if (close) res.close();
    else res.cork(() => res.end());
  };
  const timer = setTimeout(() => stop(true), LINGER_MS);
  ctx.onAbort = () => {
    open = false;
    clearTimeout(timer);
  };
  ctx.failOpen("GW_ERR_REQ_BODY_TOO_LARGE", message);
  return (bytes, isLast) => {
    seen += bytes;
    if (isLast) stop(false);
    else if (seen > LINGER_BYTES) stop(true);
  };
}

/** An announced length over the cap: answer 413 now, then drop the body as it comes (bounded). */
export function refuseBody(ctx: RequestCtx, message: string): void {
  const drop = refuseAndLinger(ctx, message);
  ctx.res.onData((ab, isLast) => drop(ab.byteLength, isLast));
}

/**
 * Read the body into one buffer (or parts when the length is not announced) and call
 * `onBody(body, ctx)`; a body still incomplete after `timeoutMs` gets 408 and the
 * connection closed. The timeout is this thread's deadline sweep's (server/deadlines.ts).
 */
export function readBody(
  ctx: RequestCtx,
  contentLength: number,
  cap: number,
  timeoutMs: number,
  onBody: (body: Buffer, ctx: RequestCtx) => void,
): void {
  new BodyRead(ctx, contentLength, cap, timeoutMs, onBody);
}

class BodyRead extends Deadline {
  private readonly ctx: RequestCtx;
  private readonly contentLength: number;
  private readonly cap: number;
  private readonly timeoutMs: number;
  private readonly onBody: (body: Buffer, ctx: RequestCtx) => void;
  private readonly buf: Buffer | null;
  private parts: Buffer[] | null = null;
  private size = 0;
  private finished = false;
  private drop: ((bytes: number, isLast: boolean) => void) | null = null;

  constructor(ctx: RequestCtx, contentLength: number, cap: number, timeoutMs: number, onBody: (body: Buffer, ctx: RequestCtx) => void) {
    super();
    this.ctx = ctx;
    this.contentLength = contentLength;
    this.cap = cap;
    this.timeoutMs = timeoutMs;
    this.onBody = onBody;
    this.buf = contentLength > 0 ? Buffer.allocUnsafe(contentLength) : null;
    deadlines.add(this, performance.now() + timeoutMs);
    ctx.onAbort = this.aborted;
    ctx.res.onData(this.data);
  }

  expire(): void {
    if (this.finished) return;
    this.finished = true;
    // Close the connection: the rest of a stalled body must not be parsed as a request.
    this.ctx.fail("GW_ERR_REQ_TIMEOUT", `request body not received within ${this.timeoutMs} ms`, true);
  }

  private readonly aborted = (): void => {
    this.finish();
  };

  private finish(): void {
    this.finished = true;
    deadlines.remove(this);
  }

  private readonly data = (ab: ArrayBuffer, isLast: boolean): void => {
    if (this.drop !== null) return this.drop(ab.byteLength, isLast);
    if (this.finished) return;
    const ctx = this.ctx;
    try {
      const n = ab.byteLength;
      const buf = this.buf;
      if (this.size + n > this.cap) {
        this.finish();
        this.drop = refuseAndLinger(ctx, `request body exceeds ${this.cap} bytes`);
        this.drop(n, isLast);
        return;
      }
      if (buf !== null && this.size + n > buf.length) {
        // More bytes than the announced length: uWS frames by it, so this cannot happen.
        this.finish();
        ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `request body exceeds its content-length of ${this.contentLength} bytes`, true);
        return;
      }
      if (buf !== null) {
        buf.set(new Uint8Array(ab), this.size);
      } else if (n > 0) {
        (this.parts ??= []).push(Buffer.from(new Uint8Array(ab).slice()));
      }
      this.size += n;
      if (!isLast) return;
      this.finish();
      ctx.onAbort = null;
      const size = this.size,
        parts = this.parts;
      const body =
        buf !== null ? (size === buf.length ? buf : buf.subarray(0, size)) : parts === null ? Buffer.alloc(0) : Buffer.concat(parts);
      this.onBody(body, ctx);
    } catch (e) {
      this.finish();
      ctx.shared.log.error({ req_id: ctx.id, err: String(e) }, "body handler failed");
      ctx.fail("GW_ERR_SERVER_INTERNAL");
    }
  };
}
