/**
 * Where a request's life is published for tracing (server/tracing/otel.ts), through
 * node:diagnostics_channel. Every publish point checks `hasSubscribers` first, so with
 * tracing off the request path pays one boolean check per point and builds no message.
 */
import { channel } from "node:diagnostics_channel";
import type { RequestCtx } from "../context.js";
import type { Tap } from "../../core/pipeline/pipeline.js";

/** A POST request passed its first checks: `{ ctx, traceparent, tracestate }` ("" when absent). */
export const requestStart = channel("portcullis:request:start");
/** The request finished (RequestCtx.finish): the ctx. */
export const requestEnd = channel("portcullis:request:end");

/**
 * The pipeline tap that publishes `requestEnd` (after the ledger row, before the log line):
 * every request state the pipeline finishes is a RequestCtx on the server.
 */
export const traceEndTap: Tap = (s) => {
  if (requestEnd.hasSubscribers) requestEnd.publish(s);
};
/** An upstream attempt is about to be dispatched; a subscriber may append headers (traceparent). */
export const attemptStart = channel("portcullis:attempt:start");
/** The attempt's outcome before the next one or the answer: `{ ctx, status, error }`. */
export const attemptEnd = channel("portcullis:attempt:end");
/** A breaker refused a target: `{ ctx, provider }`. */
export const breakerRefused = channel("portcullis:breaker:refused");
/** The first bytes of a streamed answer went to the client: the ctx. */
export const firstToken = channel("portcullis:stream:first");
/** Upstream answer bytes as relayed (SSE events, or a whole JSON body): `{ ctx, data }`, for the stop reason. */
export const upstreamData = channel("portcullis:upstream:data");

export interface RequestStartMsg {
  ctx: RequestCtx;
  traceparent: string;
  tracestate: string;
}
export interface AttemptStartMsg {
  ctx: RequestCtx;
  provider: string;
  providerType: string;
  model: string;
  attempt: number;
  probe: boolean;
  headers: string[] | null;
}
export interface AttemptEndMsg {
  ctx: RequestCtx;
  status: number;
  error: string | null;
}
export interface BreakerMsg {
  ctx: RequestCtx;
  provider: string;
}
export interface DataMsg {
  ctx: RequestCtx;
  data: Uint8Array;
}
