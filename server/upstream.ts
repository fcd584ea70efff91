/**
 * Forwarding to an upstream provider over undici: one keep-alive Pool per origin, and a
 * dispatch handler (Relay) per attempt that relays the response. SSE is relayed whole
 * event by whole event as it arrives (core/sse-frames.ts), with backpressure both ways:
 * when uWS reports backpressure we pause the upstream body and resume on `onWritable`.
 * A compressed reply is decoded first (server/upstream-decode.ts). A reply in another wire
 * format (the OpenAI translations, server/openai/codecs.ts) goes through the same Relay with
 * a ReplyCodec that turns whole events and bodies into the client's bytes, so framing,
 * decoding, backpressure, deadlines and errors are one code path. An attempt that fails
 * before any byte reached the client is handed back to its UpstreamCall (server/call.ts),
 * which retries or falls back; the Relay says whose fault it was: the provider's
 * (`connectionError`, `upstreamError`) or not (`localError`: undici refused the request
 * before sending it, or the pool is closed because the gateway is shutting down).
 */
import { Pool, type Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import type { HttpResponse } from "uWebSockets.js";
import type { Transform } from "node:stream";
import { errorTypeIndex, sseErrorFrame, type ErrorCode } from "../core/errors.js";
import type { GatewayConfig } from "../core/config.js";
import { R_MESSAGES } from "../core/metrics.js";
import { SseFramer } from "../core/sse-frames.js";
import { jsonish } from "../core/upstream-guard.js";
import { readUsage } from "../core/usage.js";
import type { RequestCtx } from "./context.js";
import { decoderFor } from "./upstream-decode.js";
import { upstreamPool } from "./upstream-h2.js";
import { hasTerminalEvent, isLocalError, mapError } from "./upstream-errors.js";
import { firstToken, upstreamData, type DataMsg } from "./tracing/channels.js";

/** What a Relay reports back to the call that owns it. */
export interface AttemptOwner {
  /** The upstream answered an error status before anything was sent to the client. */
  upstreamError(status: number, headers: IncomingHttpHeaders, body: Buffer, extra: string[] | null): void;
  /** No usable response (connect failure, reset, timeout before headers, a reply that is not JSON or SSE): the provider's fault. */
  connectionError(code: ErrorCode, err: Error): void;
  /** The request never became the provider's business (refused by undici before sending, pool closed): not its fault. */
  localError(err: Error): void;
  /** Success (2xx JSON finished, or an SSE stream started): the breaker may count it. */
  succeeded(): void;
  /** A stream failed after it started (counts against the provider; never retried). */
  streamFailed(): void;
  /** The response is complete (after success or a stream error): release timers. */
  ended(): void;
  /** Extra response headers every answer carries (e.g. which provider served). */
  readonly responseHeaders: readonly string[];
}

/**
 * The codec hook: how a reply in another wire format becomes the client's (one per attempt,
 * server/openai/codecs.ts). It sees decoded bytes only, whole SSE events only, and writes
 * the usage it reads into the request; the Relay does everything else.
 */
export interface ReplyCodec {
  /** A run of whole upstream SSE events → the client's bytes ("" while nothing is ready). */
  events(run: Buffer, ctx: RequestCtx): string | Buffer;
  /** The stream ended with `tail` (an unterminated last event) held: closing bytes, or null when the reply was cut short. */
  end(tail: Buffer | null, ctx: RequestCtx): string | Buffer | null;
  /** A whole 2xx body → the client's JSON; throws when it cannot be read. */
  json(body: Buffer, ctx: RequestCtx): string | Uint8Array;
  /** What is still pending for the client, then an error frame in its streaming format. */
  errorFrame(type: string, message: string, code: ErrorCode, requestId: string): string;
}

export class Pools {
  private readonly pools = new Map<string, Pool>();
  constructor(cfg: GatewayConfig) {
    for (const p of cfg.providers) {
      if (p.origin === "" || this.pools.has(p.origin)) continue;
      this.pools.set(
        p.origin,
        upstreamPool(cfg, p.origin, {
          connections: cfg.upstream_connections,
          connectTimeout: cfg.upstream_connect_timeout_ms,
          headersTimeout: cfg.upstream_headers_timeout_ms,
          bodyTimeout: cfg.upstream_body_timeout_ms,
          keepAliveTimeout: 30_000,
          pipelining: 1,
        }),
      );
    }
  }
  get(origin: string): Pool {
    return this.pools.get(origin)!;
  }
  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close().catch(() => p.destroy())));
  }
}

/** Upstream response headers a client should see (rate limits, retry hints, type). */
function passHeader(name: string): boolean {
  return (
    name === "retry-after" ||
    name === "retry-after-ms" ||
    name === "x-should-retry" ||
    name.startsWith("anthropic-ratelimit-") ||
    name.startsWith("x-ratelimit-") ||
    name === "anthropic-organization-id"
  );
}

/**
 * Relays one upstream call to the client. Implements undici's DispatchHandler
 * (controller API), so there is no intermediate stream object.
 */
export class Relay implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestCtx;
  private controller: Dispatcher.DispatchController | null = null;
  /** Set by abort(): every later callback is ignored (the owner has moved on). */
  private detached = false;
  /** abort() before undici handed us a controller: applied when it does, so nothing is sent. */
  private cancelled: Error | null = null;
  /** The request got a connection and is being written (undici calls onRequestStart then). */
  sent = false;
  private status = 0;
  private sse = false;
  private contentType = "application/json";
  private extra: string[] | null = null;
  private chunks: Buffer[] = [];
  private sawStop = false;
  /** Made when the reply turns out to be SSE (a JSON reply needs none). */
  private framer: SseFramer | null = null;
  private readonly maxEventBytes: number;
  private decoder: Transform | null = null;
  private paused = false;
  /**
   * SSE bytes (and, first, the status line and headers) waiting for this read's end. Undici
   * hands over a chunked reply one HTTP chunk (one event) at a time, all within one socket
   * read; writing each at once cost a `send(2)` per event. They are written together in a
   * microtask, i.e. as soon as this read has been handled, before the event loop goes on.
   */
  private pending: (Buffer | string)[] | null = null;
  private headPending = false;
  private flushQueued = false;
  /** `flush` bound once per stream, not a closure per read. */
  private flushFn: (() => void) | null = null;
  /** Some of the stream reached the client (time to first token, for tracing). */
  private relayed = false;
  private readonly providerIndex: number;
  private readonly owner: AttemptOwner;
  private headers: IncomingHttpHeaders | null = null;
  /** When the attempt was handed to the pool (for the connection-wait metric). */
  private readonly dispatchedAt: number;
  /** null: Anthropic bytes relayed as they are; else the reply is translated (ReplyCodec). */
  private readonly codec: ReplyCodec | null;

  constructor(ctx: RequestCtx, owner: AttemptOwner, maxEventBytes: number, codec: ReplyCodec | null = null) {
    this.dispatchedAt = performance.now();
    if (ctx.upstreamStart === 0) ctx.upstreamStart = this.dispatchedAt;
    this.ctx = ctx;
    this.owner = owner;
    this.providerIndex = ctx.provider;
    this.maxEventBytes = maxEventBytes;
    this.codec = codec;
  }

  private gone(): boolean {
    return this.detached || this.ctx.aborted;
  }

  /**
   * Stop this attempt (client gone, deadline, unusable reply). Nothing it does afterwards
   * reaches the owner. A request still waiting for a pool connection is never sent.
   */
  abort(err: Error): void {
    if (this.detached) return;
    this.detached = true;
    this.ctx.upstreamEnd = performance.now();
    this.decoder?.destroy();
    this.decoder = null;
    if (this.controller !== null) this.controller.abort(err);
    else this.cancelled = err;
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.cancelled !== null) return controller.abort(this.cancelled);
    if (this.ctx.aborted) return controller.abort(new Error("client aborted"));
    this.sent = true;
    this.ctx.shared.metrics.poolWait(this.providerIndex, (performance.now() - this.dispatchedAt) * 1000);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    const ctx = this.ctx;
    if (this.gone()) return;
    ctx.upstreamTtfbUs = (performance.now() - this.dispatchedAt) * 1000;
    this.status = statusCode;
    this.headers = headers;
    const ct = headers["content-type"];
    if (typeof ct === "string") this.contentType = ct;
    const dec = decoderFor(headers["content-encoding"]);
    if (dec === "unsupported") {
      return this.unusable(new Error(`upstream content-encoding ${JSON.stringify(headers["content-encoding"])} is not supported`));
    }
    if (dec !== null) {
      this.decoder = dec;
      dec.on("data", (d: Buffer) => this.take(d));
      dec.on("end", () => this.complete());
      dec.on("error", (e: Error) => this.unusable(e));
    }
    let extra: string[] | null = null;
    for (const name in headers) {
      if (!passHeader(name)) continue;
      const v = headers[name];
      if (v === undefined) continue;
      (extra ??= []).push(name, Array.isArray(v) ? v.join(", ") : v);
    }
    const upstreamId = this.codec === null ? headers["request-id"] : (headers["x-request-id"] ?? headers["request-id"]);
    if (typeof upstreamId === "string") (extra ??= []).push("upstream-request-id", upstreamId);
    const rh = this.owner.responseHeaders;
    for (let i = 0; i < rh.length; i++) (extra ??= []).push(rh[i]!);
    this.extra = extra;
    this.sse = statusCode === 200 && this.contentType.startsWith("text/event-stream");
    if (this.sse) {
      this.framer = new SseFramer(this.maxEventBytes);
      ctx.started = true;
      ctx.status = 200;
      this.owner.succeeded();
      // Written with the first events (writeOut): uWS holds a response head until its first body byte anyway.
      this.headPending = true;
      this.queueFlush();
    }
  }

  private queueFlush(): void {
    if (this.flushQueued) return;
    this.flushQueued = true;
    queueMicrotask((this.flushFn ??= () => this.flush()));
  }

  /** The microtask: what this read produced, in one corked write; then backpressure. */
  private flush(): void {
    this.flushQueued = false;
    const ctx = this.ctx;
    if (this.gone() || ctx.done) {
      this.pending = null;
      return;
    }
    const res = ctx.res;
    let ok = true;
    res.cork(() => {
      ok = this.writeOut(res);
    });
    const controller = this.controller;
    if (!ok && !this.paused && controller !== null) {
      // Backpressure toward the client: stop reading the upstream until uWS drains.
      this.paused = true;
      controller.pause();
      res.onWritable(() => {
        this.paused = false;
        if (!ctx.aborted && !this.detached) controller.resume();
        return true;
      });
    }
  }

  /** Write the headers (once) and the waiting SSE bytes; call inside a cork. False: the client is behind. */
  private writeOut(res: HttpResponse): boolean {
    if (this.headPending) {
      this.headPending = false;
      const extra = this.extra;
      res.writeStatus("200 OK");
      res.writeHeader("content-type", "text/event-stream; charset=utf-8");
      res.writeHeader("cache-control", "no-cache");
      res.writeHeader("request-id", this.ctx.id);
      if (extra !== null) for (let i = 0; i < extra.length; i += 2) res.writeHeader(extra[i]!, extra[i + 1]!);
    }
    const p = this.pending;
    if (p === null) return true;
    this.pending = null;
    let ok = true;
    for (let i = 0; i < p.length; i++) if (!res.write(p[i]!)) ok = false;
    return ok;
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.gone()) return;
    if (this.decoder !== null) this.decoder.write(chunk);
    else this.take(chunk);
  }

  /** Decoded body bytes: kept whole (JSON), or relayed event by event (SSE). */
  private take(chunk: Buffer): void {
    if (this.gone()) return;
    if (!this.sse) {
      this.chunks.push(chunk);
      return;
    }
    const framer = this.framer!;
    const run = framer.push(chunk);
    if (framer.overflow) return this.overflowed();
    if (run === null) return;
    const ctx = this.ctx;
    let out: Buffer | string = run;
    if (this.codec !== null) {
      try {
        out = this.codec.events(run, ctx);
      } catch (e) {
        return this.unusable(new Error(`upstream stream could not be translated: ${(e as Error).message}`));
      }
    } else {
      if (!this.sawStop && hasTerminalEvent(run)) this.sawStop = true;
      // Usage as it passes: input from message_start, the running output from message_delta.
      readUsage(run, ctx);
    }
    if (upstreamData.hasSubscribers) upstreamData.publish({ ctx, data: run } satisfies DataMsg);
    if (out.length === 0) return;
    if (ctx.cacheTap !== null) ctx.cacheTap.chunk(out);
    if (!this.relayed) {
      this.relayed = true;
      if (firstToken.hasSubscribers) firstToken.publish(ctx);
    }
    (this.pending ??= []).push(out);
    this.queueFlush();
  }

  onResponseEnd(): void {
    if (this.gone()) return;
    if (this.decoder !== null)
      this.decoder.end(); // complete() runs on the decoder's "end"
    else this.complete();
  }

  /** The whole (decoded) body is in. */
  private complete(): void {
    const ctx = this.ctx;
    if (this.gone() || ctx.done) return;
    ctx.upstreamEnd = performance.now();
    // A translated reply's usage is read by its codec, in its own format.
    const usageRead = ctx.route === R_MESSAGES && this.codec === null;
    if (this.sse) {
      let tail: Buffer | string | null = this.framer!.rest();
      if (this.codec !== null) {
        const raw = tail;
        try {
          tail = this.codec.end(raw, ctx);
        } catch (e) {
          return this.unusable(new Error(`upstream stream could not be translated: ${(e as Error).message}`));
        }
        if (raw !== null && upstreamData.hasSubscribers) upstreamData.publish({ ctx, data: raw } satisfies DataMsg);
        if (tail === null) return this.cut("upstream stream ended before the reply was complete");
        if (tail.length === 0) tail = null;
      } else if (!this.sawStop && !(tail !== null && hasTerminalEvent(tail))) return this.cut("upstream stream ended before message_stop");
      else if (tail !== null) readUsage(tail, ctx);
      if (usageRead && (ctx.inputTokens < 0 || ctx.outputTokens < 0)) ctx.usageUnreadable = true;
      if (ctx.cacheTap !== null) ctx.cacheTap.sseEnded(ctx, tail);
      const res = ctx.res;
      // Never end(…, closeConnection) after chunked writes: this uWS build then emits a
      // malformed chunked body. An idle keep-alive is closed by uWS' idle timeout.
      res.cork(() => {
        this.writeOut(res);
        res.end(tail ?? undefined);
      });
      this.owner.ended();
      ctx.finish(200);
      this.release();
      return;
    }
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (this.status >= 400) {
      // The owner retries, falls back, or passes this answer through.
      this.owner.upstreamError(this.status, this.headers ?? {}, body, this.extra);
      return;
    }
    if (!jsonish(this.contentType, body)) {
      return this.unusable(new Error(`upstream answered ${this.status} with ${JSON.stringify(this.contentType)}, not JSON or SSE`));
    }
    let out: string | Uint8Array = body;
    if (this.codec !== null) {
      try {
        out = this.codec.json(body, ctx);
      } catch (e) {
        return this.unusable(new Error(`upstream JSON reply could not be translated: ${(e as Error).message}`));
      }
    }
    this.owner.succeeded();
    if (upstreamData.hasSubscribers) upstreamData.publish({ ctx, data: body } satisfies DataMsg);
    if (usageRead) {
      readUsage(body, ctx);
      if (ctx.inputTokens < 0 || ctx.outputTokens < 0) ctx.usageUnreadable = true;
    }
    if (ctx.cacheTap !== null) ctx.cacheTap.json(ctx, this.status, typeof out === "string" ? Buffer.from(out) : out);
    ctx.send(this.status, "application/json", out, this.extra);
    this.owner.ended();
    this.release();
  }

  /** The reply is out: undici may hold this handler a little longer, so it lets go of the reply's parts. */
  private release(): void {
    this.headers = null;
    this.extra = null;
    this.controller = null;
  }

  /** The stream ended without its terminal event: the provider's failure. */
  private cut(message: string): void {
    this.owner.streamFailed();
    this.endStreamWithError("api_error", message, "GW_ERR_UPSTREAM_STREAM_CUT");
  }

  /** A reply the gateway cannot use (undecodable, unsupported encoding, not JSON): the provider's fault. */
  private unusable(err: Error): void {
    const ctx = this.ctx;
    if (this.gone() || ctx.done) return;
    this.abort(err);
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, err: err.message }, "unusable upstream reply");
    if (ctx.started) {
      this.owner.streamFailed();
      return this.endStreamWithError("api_error", "the upstream stream could not be read", "GW_ERR_UPSTREAM_PROTOCOL");
    }
    this.owner.connectionError("GW_ERR_UPSTREAM_PROTOCOL", err);
  }

  /** An SSE event grew past SSE_MAX_EVENT_BYTES without ending. */
  private overflowed(): void {
    this.abort(new Error("upstream SSE event too large"));
    this.owner.streamFailed();
    this.endStreamWithError("api_error", "an upstream SSE event exceeded SSE_MAX_EVENT_BYTES", "GW_ERR_UPSTREAM_PROTOCOL");
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const ctx = this.ctx;
    if (this.gone() || ctx.done) return;
    this.detached = true;
    ctx.upstreamEnd = performance.now();
    const errCode = (err as { code?: string }).code ?? err.message;
    if (isLocalError(err)) {
      ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, err: errCode }, "upstream request not sent");
      if (ctx.started) return this.endStreamWithError("api_error", "the gateway stopped this stream", "GW_ERR_SERVER_INTERNAL");
      return this.owner.localError(err);
    }
    const m = mapError(err);
    if (ctx.started) {
      this.owner.streamFailed();
      this.endStreamWithError(
        m.type,
        m.code === "GW_ERR_UPSTREAM_TIMEOUT" ? "upstream stream timed out" : "upstream connection lost mid-stream",
        m.code,
      );
      return;
    }
    // A connection-level failure before any response counts as a connect failure.
    const code = m.code === "GW_ERR_UPSTREAM_STREAM_CUT" ? "GW_ERR_UPSTREAM_CONNECT" : m.code;
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, err: errCode }, "upstream error");
    this.owner.connectionError(code, err);
  }

  /** The stream has started: tell the client in Anthropic's SSE error shape, then end. */
  endStreamWithError(type: string, message: string, code: ErrorCode): void {
    const ctx = this.ctx;
    if (ctx.done || ctx.aborted) return;
    const res = ctx.res;
    ctx.errorCode = code;
    ctx.shared.metrics.error(ctx.route, this.providerIndex, errorTypeIndex(type));
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, code }, "stream failed after start");
    this.framer?.rest(); // a torn partial event never reaches the client
    this.owner.ended();
    const frame = this.codec === null ? sseErrorFrame(type, message, ctx.id) : this.codec.errorFrame(type, message, code, ctx.id);
    res.cork(() => {
      this.writeOut(res);
      res.end(frame);
    });
    ctx.finish(200);
  }
}

/**
 * Start one upstream POST attempt; the Relay answers the client or reports to `owner`.
 * `wrap` decorates the Relay for a provider whose replies need translating (Bedrock, Vertex);
 * `codec` translates a reply in another wire format (the OpenAI routes).
 */
export function dispatchAttempt(
  pool: Pool,
  path: string,
  headers: string[],
  body: Buffer,
  ctx: RequestCtx,
  owner: AttemptOwner,
  maxEventBytes: number,
  wrap: ((h: Dispatcher.DispatchHandler) => Dispatcher.DispatchHandler) | null = null,
  codec: ReplyCodec | null = null,
): Relay {
  const relay = new Relay(ctx, owner, maxEventBytes, codec);
  pool.dispatch({ path, method: "POST", headers, body }, wrap === null ? relay : wrap(relay));
  return relay;
}
