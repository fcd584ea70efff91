/**
 * How an upstream attempt ended, in the gateway's terms: whose fault an undici error is
 * (ours, so never counted against a provider, or the provider's, with the catalogue code
 * and API error type the client sees), and whether an SSE run carries a terminal event.
 */
import type { ErrorCode } from "../core/errors.js";

const MESSAGE_STOP = Buffer.from("event: message_stop");
const EVENT_ERROR = Buffer.from("event: error");
const NL_MESSAGE_STOP = Buffer.from("\nevent: message_stop");
const NL_EVENT_ERROR = Buffer.from("\nevent: error");

/**
 * Does this run of whole events contain a terminal event (message_stop or error)? Only an
 * `event:` at a line start counts: raw newlines cannot occur inside a JSON data line, so
 * the same words inside model text never match.
 */
export function hasTerminalEvent(b: Buffer): boolean {
  return hasMessageStop(b) || hasErrorEvent(b);
}

export function hasMessageStop(b: Buffer): boolean {
  return b.includes(NL_MESSAGE_STOP) || b.subarray(0, MESSAGE_STOP.length).equals(MESSAGE_STOP);
}

export function hasErrorEvent(b: Buffer): boolean {
  return b.includes(NL_EVENT_ERROR) || b.subarray(0, EVENT_ERROR.length).equals(EVENT_ERROR);
}

/**
 * Errors raised on our side before (or instead of) talking to the provider: an argument
 * undici refuses, or a pool closed by shutdown. Never a provider failure, never retried.
 */
const LOCAL_ERRORS = new Set([
  "UND_ERR_INVALID_ARG",
  "UND_ERR_NOT_SUPPORTED",
  "UND_ERR_DESTROYED",
  "UND_ERR_CLOSED",
  "UND_ERR_REQ_CONTENT_LENGTH_MISMATCH",
  "ERR_INVALID_ARG_TYPE",
  "ERR_INVALID_ARG_VALUE",
  "ERR_INVALID_CHAR",
  "ERR_INVALID_HTTP_TOKEN",
]);

export function isLocalError(err: Error): boolean {
  return LOCAL_ERRORS.has((err as { code?: string }).code ?? "");
}

/** An HTTP/2 stream or session the upstream reset or closed: what a dropped socket is over HTTP/1.1. */
const H2_CUT = new Set(["ERR_HTTP2_STREAM_ERROR", "ERR_HTTP2_SESSION_ERROR", "ERR_HTTP2_GOAWAY_SESSION", "ERR_HTTP2_STREAM_CANCEL"]);

export function mapError(err: Error): { code: ErrorCode; type: string } {
  const c = (err as { code?: string }).code ?? "";
  if (c === "UND_ERR_CONNECT_TIMEOUT" || c === "UND_ERR_HEADERS_TIMEOUT" || c === "UND_ERR_BODY_TIMEOUT") {
    return { code: "GW_ERR_UPSTREAM_TIMEOUT", type: "timeout_error" };
  }
  if (c === "UND_ERR_SOCKET" || c === "ECONNRESET" || H2_CUT.has(c)) {
    return { code: "GW_ERR_UPSTREAM_STREAM_CUT", type: "api_error" };
  }
  return { code: "GW_ERR_UPSTREAM_CONNECT", type: "api_error" };
}
