/**
 * An upstream error whose body is not JSON (a proxy's HTML page, which may echo a key) is
 * never relayed: the original goes to the log, cut to 512 characters with every key the
 * gateway knows for this request (and anything key-like) masked, and the client gets an
 * Anthropic-shaped error with the provider's status and the type that goes with it.
 */
import { errorTypeForStatus } from "../core/errors.js";
import { redactSnippet } from "../core/upstream-guard.js";
import type { RequestCtx } from "./context.js";

const LOGGED_BODY_CHARS = 512;

/** Log the original body redacted and return the replacement (GW_ERR_UPSTREAM_ERROR_NOT_JSON). */
export function replacedErrorBody(ctx: RequestCtx, status: number, contentType: string, body: Buffer, secrets: readonly string[]): string {
  // Auth header values are "<key>" or "Bearer <key>": mask the key alone too.
  const keys = secrets.flatMap((s) => (s.startsWith("Bearer ") ? [s, s.slice(7)] : [s]));
  ctx.shared.log.warn(
    {
      req_id: ctx.id,
      provider: ctx.providerName,
      status,
      content_type: contentType,
      body: redactSnippet(body.toString("utf8"), keys, LOGGED_BODY_CHARS),
    },
    "upstream error body is not JSON; replaced",
  );
  ctx.errorCode = "GW_ERR_UPSTREAM_ERROR_NOT_JSON";
  const what = contentType === "" ? "no content type" : contentType.split(";", 1)[0]!;
  return JSON.stringify({
    type: "error",
    error: {
      type: errorTypeForStatus(status),
      message: `the upstream provider answered HTTP ${status} with a body that is not JSON (${what}); it is in the gateway log under this request_id`,
    },
    request_id: ctx.id,
  });
}
