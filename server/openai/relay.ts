/**
 * The upstream response handler for calls that involve the OpenAI format: pass-through
 * from an OpenAI-format provider to an OpenAI client (whole SSE events relayed byte for
 * byte, `data: [DONE]` kept), and both translated directions (a Codec turns each whole
 * upstream event into client bytes). Same contract as server/upstream.ts' Relay toward
 * its AttemptOwner (server/call.ts): an error status before anything was sent goes back
 * for retry or fallback; after the stream started a failure ends it with an error frame
 * in the client's format. Backpressure toward the client pauses the upstream.
 */
import type { Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { errorTypeIndex, type ErrorCode } from "../../core/errors.js";
import { SseReader } from "../../core/translate/sse.js";
import { lastNumberField } from "../../core/usage.js";
import type { RequestCtx } from "../context.js";
import type { AttemptOwner } from "../upstream.js";
import { isLocalError, mapError } from "../upstream-errors.js";

/** How one attempt's reply becomes the client's. */
export interface Codec {
  /** Whole events are relayed as received (pass-through); `event` is then unused. */
  readonly raw: boolean;
  /** One whole upstream event (its data) → bytes for the client. */
  event(data: string): string;
  /** The upstream body ended: closing bytes, or null when the reply was torn. */
  end(): string | null;
  /** A whole JSON reply → the client's JSON (throws on a body that is not JSON). */
  json(body: Buffer): string | Uint8Array;
  /** An error frame in the client's streaming format. */
  errorFrame(type: string, message: string, code: ErrorCode, requestId: string): string;
  /** Copy the usage seen so far into the request (ledger, budgets, rate limits). */
  tokens(ctx: RequestCtx): void;
}

function passHeader(name: string): boolean {
  return (
    name === "retry-after" ||
    name === "retry-after-ms" ||
    name === "x-should-retry" ||
    name.startsWith("anthropic-ratelimit-") ||
    name.startsWith("x-ratelimit-")
  );
}

const LFLF = Buffer.from("\n\n");
const CRLFCRLF = Buffer.from("\r\n\r\n");
const DONE = Buffer.from("data: [DONE]");
const ERROR_CHUNK = Buffer.from('data: {"error"');

/** OpenAI usage read from raw bytes (pass-through): input excludes cached tokens, as Anthropic counts. */
export function rawOpenAITokens(ctx: RequestCtx, b: Buffer): void {
  const prompt = lastNumberField(b, "prompt_tokens");
  if (prompt < 0) return;
  const cached = lastNumberField(b, "cached_tokens");
  ctx.cacheReadTokens = cached < 0 ? 0 : cached;
  ctx.inputTokens = Math.max(0, prompt - (cached < 0 ? 0 : cached));
  const out = lastNumberField(b, "completion_tokens");
  if (out >= 0) ctx.outputTokens = out;
}

export class OpenAIRelay implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestCtx;
  private readonly owner: AttemptOwner;
  private readonly codec: Codec;
  private readonly providerIndex: number;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private sse = false;
  private contentType = "application/json";
  private headers: IncomingHttpHeaders | null = null;
  private extra: string[] | null = null;
  private chunks: Buffer[] = [];
  private paused = false;
  /** Pass-through: a trailing partial event, and whether `[DONE]` (or an error chunk) went by. */
  private pending: Buffer | null = null;
  private terminal = false;
  private readonly reader: SseReader | null;
  private out = "";
  private readonly each: (event: string, data: string) => void;

  constructor(ctx: RequestCtx, owner: AttemptOwner, codec: Codec) {
    this.ctx = ctx;
    this.owner = owner;
    this.codec = codec;
    this.providerIndex = ctx.provider;
    this.reader = codec.raw ? null : new SseReader();
    this.each = (_event, data) => {
      this.out += this.codec.event(data);
    };
  }

  /** True once undici started sending: the provider is working on it (a deadline then is its failure). */
  sent = false;
  private cancelled: Error | null = null;

  /** Stop this attempt; one still waiting for a pool connection is never sent. */
  abort(err: Error): void {
    if (this.controller !== null) this.controller.abort(err);
    else this.cancelled = err;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelled !== null) return controller.abort(this.cancelled);
    if (this.ctx.aborted) return controller.abort(new Error("client aborted"));
    this.sent = true;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const ctx = this.ctx;
    if (ctx.aborted) return;
    this.status = statusCode;
    this.headers = headers;
    const ct = headers["content-type"];
    if (typeof ct === "string") this.contentType = ct;
    let extra: string[] | null = null;
    for (const name in headers) {
      if (!passHeader(name)) continue;
      const v = headers[name];
      if (v !== undefined) (extra ??= []).push(name, Array.isArray(v) ? v.join(", ") : v);
    }
    const upstreamId = headers["x-request-id"] ?? headers["request-id"];
    if (typeof upstreamId === "string") (extra ??= []).push("upstream-request-id", upstreamId);
    const rh = this.owner.responseHeaders;
    for (let i = 0; i < rh.length; i++) (extra ??= []).push(rh[i]!);
    this.extra = extra;
    this.sse = statusCode === 200 && this.contentType.startsWith("text/event-stream");
    if (!this.sse) return;
    ctx.started = true;
    ctx.status = 200;
    this.owner.succeeded();
    const res = ctx.res;
    res.cork(() => {
      res.writeStatus("200 OK");
      res.writeHeader("content-type", "text/event-stream; charset=utf-8");
      res.writeHeader("cache-control", "no-cache");
      res.writeHeader("request-id", ctx.id);
      if (extra !== null) for (let i = 0; i < extra.length; i += 2) res.writeHeader(extra[i]!, extra[i + 1]!);
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const ctx = this.ctx;
    if (ctx.aborted || ctx.done) return;
    if (!this.sse) {
      this.chunks.push(chunk);
      return;
    }
    let out: string | Buffer;
    if (this.reader !== null) {
      this.reader.push(chunk, this.each);
      out = this.out;
      this.out = "";
      this.codec.tokens(ctx);
      if (out === "") return;
    } else {
      const whole = this.wholeEvents(chunk);
      if (whole === null) return;
      out = whole;
    }
    if (ctx.cacheTap !== null) ctx.cacheTap.chunk(out);
    const res = ctx.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(out);
    });
    if (!ok && !this.paused) {
      this.paused = true;
      controller.pause();
      res.onWritable(() => {
        this.paused = false;
        if (!ctx.aborted) controller.resume();
        return true;
      });
    }
  }

  /** Pass-through: the whole events in hand (a partial one is held back), usage and [DONE] noted. */
  private wholeEvents(chunk: Buffer): Buffer | null {
    const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let cut = data.lastIndexOf(LFLF);
    if (cut >= 0) cut += 2;
    else {
      cut = data.lastIndexOf(CRLFCRLF);
      if (cut >= 0) cut += 4;
    }
    if (cut < 0) {
      this.pending = Buffer.from(data);
      return null;
    }
    this.pending = cut < data.length ? Buffer.from(data.subarray(cut)) : null;
    const out = cut === data.length ? data : data.subarray(0, cut);
    if (!this.terminal && (out.includes(DONE) || out.includes(ERROR_CHUNK))) this.terminal = true;
    rawOpenAITokens(this.ctx, out);
    return out;
  }

  onResponseEnd(): void {
    const ctx = this.ctx;
    if (ctx.aborted || ctx.done) return;
    if (this.sse) return this.endStream();
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (this.status >= 400) return this.owner.upstreamError(this.status, this.headers ?? {}, body, this.extra);
    let out: string | Uint8Array;
    try {
      out = this.codec.json(body);
    } catch {
      this.owner.ended();
      return ctx.fail("GW_ERR_UPSTREAM_PROTOCOL", "the upstream provider's reply is not valid JSON");
    }
    this.owner.succeeded();
    this.codec.tokens(ctx);
    if (ctx.cacheTap !== null) ctx.cacheTap.json(ctx, this.status, typeof out === "string" ? Buffer.from(out) : out);
    ctx.send(this.status, "application/json", out, this.extra);
    this.owner.ended(); // as server/upstream.ts does: the call's deadline timer and its deployment's in-flight count go
  }

  private endStream(): void {
    const ctx = this.ctx;
    let tail: string | Buffer | null;
    if (this.reader !== null) {
      this.reader.flush(this.each);
      const end = this.codec.end();
      this.codec.tokens(ctx);
      tail = end === null ? null : this.out + end;
    } else {
      const p = this.pending;
      if (p !== null && (p.includes(DONE) || p.includes(ERROR_CHUNK))) this.terminal = true;
      // Terminal with nothing pending (the last event arrived whole): a clean end, not a cut.
      tail = this.terminal ? (p ?? "") : null;
      if (p !== null) rawOpenAITokens(ctx, p);
    }
    if (tail === null)
      return this.endStreamWithError("api_error", "upstream stream ended before the reply was complete", "GW_ERR_UPSTREAM_STREAM_CUT");
    if (ctx.cacheTap !== null) ctx.cacheTap.sseEnded(ctx, tail);
    const res = ctx.res;
    // Never end(…, closeConnection) after chunked writes (see server/upstream.ts).
    res.cork(() => res.end(tail === "" ? undefined : (tail ?? undefined)));
    this.owner.ended();
    ctx.finish(200);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const ctx = this.ctx;
    if (ctx.aborted || ctx.done) return;
    if (isLocalError(err)) {
      // Refused before it reached the upstream socket: never the provider's failure.
      ctx.shared.log.warn(
        { req_id: ctx.id, provider: ctx.providerName, err: (err as { code?: string }).code ?? err.message },
        "upstream request not sent",
      );
      if (ctx.started) return this.endStreamWithError("api_error", "the gateway stopped this stream", "GW_ERR_SERVER_INTERNAL");
      return this.owner.localError(err);
    }
    const m = mapError(err);
    if (ctx.started) {
      this.owner.streamFailed();
      return this.endStreamWithError(
        m.type,
        m.code === "GW_ERR_UPSTREAM_TIMEOUT" ? "upstream stream timed out" : "upstream connection lost mid-stream",
        m.code,
      );
    }
    const code = m.code === "GW_ERR_UPSTREAM_STREAM_CUT" ? "GW_ERR_UPSTREAM_CONNECT" : m.code;
    ctx.shared.log.warn(
      { req_id: ctx.id, provider: ctx.providerName, err: (err as { code?: string }).code ?? err.message },
      "upstream error",
    );
    this.owner.connectionError(code, err);
  }

  /** The stream has started: an error frame in the client's format, then end. */
  endStreamWithError(type: string, message: string, code: ErrorCode): void {
    const ctx = this.ctx;
    const res = ctx.res;
    ctx.errorCode = code;
    ctx.shared.metrics.error(ctx.route, this.providerIndex, errorTypeIndex(type));
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, code }, "stream failed after start");
    this.pending = null;
    const frames = this.out + this.codec.errorFrame(type, message, code, ctx.id);
    this.out = "";
    this.owner.ended();
    res.cork(() => res.end(frames));
    ctx.finish(200);
  }
}
