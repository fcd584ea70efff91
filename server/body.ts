/**
 * Reads a request body from uWS with a size cap enforced while reading, and a deadline
 * for a stalled body. Chunks are copied (uWS neuters them after the callback). When the
 * length is announced, one buffer of that size is filled in place.
 */
import type { RequestCtx } from "./context.js";

export function readBody(
  ctx: RequestCtx,
  contentLength: number,
  cap: number,
  timeoutMs: number,
  onBody: (body: Buffer) => void,
): void {
  const res = ctx.res;
  let buf: Buffer | null = contentLength > 0 ? Buffer.allocUnsafe(contentLength) : null;
  let parts: Buffer[] | null = null;
  let size = 0;
  let finished = false;
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
    if (finished) return;
    try {
      const n = ab.byteLength;
      if (size + n > cap || (buf !== null && size + n > buf.length && contentLength > 0)) {
        finished = true;
        clearTimeout(timer);
        ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `request body exceeds ${cap} bytes`, true);
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
      const body = buf !== null ? (size === buf.length ? buf : buf.subarray(0, size)) : parts === null ? Buffer.alloc(0) : Buffer.concat(parts);
      onBody(body);
    } catch (e) {
      finished = true;
      clearTimeout(timer);
      ctx.shared.log.error({ req_id: ctx.id, err: String(e) }, "body handler failed");
      ctx.fail("GW_ERR_SERVER_INTERNAL");
    }
  });
}
