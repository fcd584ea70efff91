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

export function readBody(ctx: RequestCtx, contentLength: number, cap: number, timeoutMs: number, onBody: (body: Buffer) => void): void {
  const res = ctx.res;
  const buf: Buffer | null = contentLength > 0 ? Buffer.allocUnsafe(contentLength) : null;
  let parts: Buffer[] | null = null;
  let size = 0;
  let finished = false;
  let drop: ((bytes: number, isLast: boolean) => void) | null = null;
  const timer = setTimeout(() => {
    if (finished) return;
    finished = true;
    // Close the connection: the rest of a stalled body must not be parsed as a request.
    ctx.fail("GW_ERR_REQ_TIMEOUT", `request body not received within ${timeoutMs} ms`, true);
  }, timeoutMs);
  ctx.onAbort = () => {
    finished = true;
    clearTimeout(timer);
  };
  res.onData((ab, isLast) => {
    if (drop !== null) return drop(ab.byteLength, isLast);
    if (finished) return;
    try {
      const n = ab.byteLength;
      if (size + n > cap) {
        finished = true;
        clearTimeout(timer);
        drop = refuseAndLinger(ctx, `request body exceeds ${cap} bytes`);
        drop(n, isLast);
        return;
      }
      if (buf !== null && size + n > buf.length) {
        // More bytes than the announced length: uWS frames by it, so this cannot happen.
        finished = true;
        clearTimeout(timer);
        ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `request body exceeds its content-length of ${contentLength} bytes`, true);
        return;
      }
      if (buf !== null) {
        buf.set(new Uint8Array(ab), size);
      } else if (n > 0) {
        (parts ??= []).push(Buffer.from(new Uint8Array(ab).slice()));
      }
      size += n;
      if (!isLast) return;
      finished = true;
      clearTimeout(timer);
      ctx.onAbort = null;
      const body =
        buf !== null ? (size === buf.length ? buf : buf.subarray(0, size)) : parts === null ? Buffer.alloc(0) : Buffer.concat(parts);
      onBody(body);
    } catch (e) {
      finished = true;
      clearTimeout(timer);
      ctx.shared.log.error({ req_id: ctx.id, err: String(e) }, "body handler failed");
      ctx.fail("GW_ERR_SERVER_INTERNAL");
    }
  });
}
