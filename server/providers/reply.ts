/**
 * The reply side of a cloud provider, as an undici DispatchHandler that decorates the
 * gateway's Relay (server/upstream.ts), so the Relay keeps its one job: relaying Anthropic
 * JSON and SSE with backpressure. This wrapper
 *  - decodes Bedrock's AWS event stream into Anthropic SSE, event by event, and only tells
 *    the Relay a stream started once the first event is decoded: an exception before that
 *    (throttlingException, …) becomes an ordinary error answer with the mapped status, which
 *    the retry policy understands (throttling → 429, retried); an exception after that
 *    becomes an Anthropic `event: error` and the stream ends;
 *  - turns provider-shaped error bodies (AWS `{"message"}`, Google `{"error":{"status"}}`)
 *    into Anthropic's error shape, keeping Anthropic-shaped ones byte for byte;
 *  - rewrites a successful JSON body when the provider's differs (Bedrock CountTokens).
 * The controller passes through untouched, so the Relay's pause/resume still reaches the socket.
 */
import type { Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { errorTypeForStatus, sseErrorFrame } from "../../core/errors.js";
import { EventStreamDecoder } from "../../core/providers/bedrock/eventstream.js";

/** How one provider's answers are turned into Anthropic's. */
export interface ReplyShape {
  /** Decode `application/vnd.amazon.eventstream` 200 replies into SSE. */
  readonly eventStream: boolean;
  /** A 2xx JSON body rewritten (null result: unusable, answered as a protocol error); null = unchanged. */
  readonly rewriteOk: ((body: Buffer) => Buffer | null) | null;
  /** Status and Anthropic-shaped body for an error answer. */
  errorBody(status: number, headers: IncomingHttpHeaders, body: Buffer, requestId: string): { status: number; body: Buffer };
}

const PASS = 0,
  BUFFER_ERROR = 1,
  BUFFER_OK = 2,
  DECODING = 3,
  FINISHED = 4;
const JSON_HEADERS: IncomingHttpHeaders = Object.freeze({ "content-type": "application/json" });
const SSE_CT = "text/event-stream; charset=utf-8";
const EVENTSTREAM_CT = "application/vnd.amazon.eventstream";

/** An Anthropic error body. */
export function anthropicError(type: string, message: string, requestId: string): Buffer {
  return Buffer.from(
    `{"type":"error","error":{"type":${JSON.stringify(type)},"message":${JSON.stringify(message)}},"request_id":${JSON.stringify(requestId)}}`,
  );
}

/** True when a body already is an Anthropic error (passed through byte for byte). */
export function isAnthropicError(body: Buffer): boolean {
  const i = body.indexOf('"type"');
  return i >= 0 && i < 16 && body.indexOf('"error"') > i;
}

export class ProviderReply implements Dispatcher.DispatchHandler {
  private readonly inner: Dispatcher.DispatchHandler;
  private readonly shape: ReplyShape;
  private readonly requestId: string;
  private state = PASS;
  private status = 0;
  private headers: IncomingHttpHeaders = JSON_HEADERS;
  private chunks: Buffer[] = [];
  private decoder: EventStreamDecoder | null = null;
  private started = false;

  constructor(inner: Dispatcher.DispatchHandler, shape: ReplyShape, requestId: string) {
    this.inner = inner;
    this.shape = shape;
    this.requestId = requestId;
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.inner.onRequestStart?.(controller, context);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    this.status = statusCode;
    this.headers = headers;
    const ct = headers["content-type"];
    if (statusCode >= 400) this.state = BUFFER_ERROR;
    else if (this.shape.eventStream && statusCode === 200 && typeof ct === "string" && ct.startsWith(EVENTSTREAM_CT)) {
      this.state = DECODING;
      this.decoder = new EventStreamDecoder();
    } else if (this.shape.rewriteOk !== null && statusCode >= 200 && statusCode < 300) this.state = BUFFER_OK;
    else {
      this.state = PASS;
      this.inner.onResponseStart?.(controller, statusCode, headers, statusMessage);
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const s = this.state;
    if (s === PASS) return this.inner.onResponseData?.(controller, chunk);
    if (s === BUFFER_ERROR || s === BUFFER_OK) {
      this.chunks.push(chunk);
      return;
    }
    if (s !== DECODING) return;
    const d = this.decoder!;
    const out = d.push(chunk);
    if (out.length > 0) {
      if (!this.started) {
        this.started = true;
        this.inner.onResponseStart?.(controller, 200, { ...this.headers, "content-type": SSE_CT }, "OK");
      }
      this.inner.onResponseData?.(controller, out);
    }
    if (this.state !== DECODING) return; // the client went away while we relayed
    if (d.fault !== null) {
      const f = d.fault;
      const msg = `${f.exception}: ${f.message}`;
      if (this.started) this.finishStream(controller, f.type, msg);
      else this.finishError(controller, f.status, anthropicError(f.type, msg, this.requestId));
    } else if (d.corrupt !== null) {
      const msg = `the provider sent a malformed event stream (${d.corrupt})`;
      if (this.started) this.finishStream(controller, "api_error", msg);
      else this.finishError(controller, 502, anthropicError("api_error", msg, this.requestId));
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: IncomingHttpHeaders): void {
    const s = this.state;
    if (s === PASS) return this.inner.onResponseEnd?.(controller, trailers);
    if (s === FINISHED) return;
    this.state = FINISHED;
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (s === BUFFER_ERROR) {
      const e = this.shape.errorBody(this.status, this.headers, body, this.requestId);
      return this.answer(controller, e.status, { ...this.headers, "content-type": "application/json" }, e.body, trailers);
    }
    if (s === BUFFER_OK) {
      const b = this.shape.rewriteOk!(body);
      if (b !== null) return this.answer(controller, this.status, { ...this.headers, "content-type": "application/json" }, b, trailers);
      return this.answer(
        controller,
        502,
        JSON_HEADERS,
        anthropicError("api_error", "the provider sent a response the gateway cannot read", this.requestId),
        trailers,
      );
    }
    // DECODING: the Relay reports a stream that ends without message_stop as cut.
    if (this.started) return this.inner.onResponseEnd?.(controller, trailers);
    this.answer(
      controller,
      502,
      JSON_HEADERS,
      anthropicError("api_error", "the provider's event stream ended before any event", this.requestId),
      trailers,
    );
  }

  onResponseError(controller: Dispatcher.DispatchController, err: Error): void {
    if (this.state === FINISHED) return;
    this.state = FINISHED;
    this.inner.onResponseError?.(controller, err);
  }

  /** A complete answer to the Relay (it retries, falls back or passes it through). */
  private answer(
    c: Dispatcher.DispatchController,
    status: number,
    headers: IncomingHttpHeaders,
    body: Buffer,
    trailers: IncomingHttpHeaders,
  ): void {
    this.inner.onResponseStart?.(c, status, headers, "");
    this.inner.onResponseData?.(c, body);
    this.inner.onResponseEnd?.(c, trailers);
  }

  /** An exception before the first event: an error answer, and the upstream is dropped. */
  private finishError(c: Dispatcher.DispatchController, status: number, body: Buffer): void {
    this.state = FINISHED;
    this.answer(c, status, JSON_HEADERS, body, {});
    c.abort(new Error("provider stream ended by an exception"));
  }

  /** An exception after the stream started: Anthropic's `event: error`, then the end. */
  private finishStream(c: Dispatcher.DispatchController, type: string, message: string): void {
    this.state = FINISHED;
    this.inner.onResponseData?.(c, Buffer.from(sseErrorFrame(type, message, this.requestId)));
    this.inner.onResponseEnd?.(c, {});
    c.abort(new Error("provider stream ended by an exception"));
  }
}

/** Anthropic status/type for a provider's own error status (no body mapping known). */
export function genericError(status: number, message: string, requestId: string): { status: number; body: Buffer } {
  return { status, body: anthropicError(errorTypeForStatus(status), message, requestId) };
}
