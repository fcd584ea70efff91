/**
 * Forwarding to an upstream provider over undici: one keep-alive Pool per origin, and a
 * dispatch handler (Relay) per attempt that relays the response. SSE is relayed whole
 * event by whole event as it arrives, with backpressure both ways: when uWS reports
 * backpressure we pause the upstream body and resume on `onWritable`. A client abort
 * aborts the upstream call. An attempt that fails before any byte reached the client is
 * handed back to its UpstreamCall (server/call.ts), which retries or falls back.
 */
import { Pool, type Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { errorTypeIndex, sseErrorFrame, type ErrorCode } from "../core/errors.js";
import type { GatewayConfig } from "../core/config.js";
import type { RequestCtx } from "./context.js";
import { lastNumberField } from "../core/usage.js";

/** What a Relay reports back to the call that owns it. */
export interface AttemptOwner {
  /** The upstream answered an error status before anything was sent to the client. */
  upstreamError(status: number, headers: IncomingHttpHeaders, body: Buffer, extra: string[] | null): void;
  /** No response at all (connect failure, reset, timeout before headers). */
  connectionError(code: ErrorCode, err: Error): void;
  /** Success (2xx JSON finished, or an SSE stream started): the breaker may count it. */
  succeeded(): void;
  /** A stream failed after it started (counts against the provider; never retried). */
  streamFailed(): void;
  /** The response is complete (after success or a stream error): release timers. */
  ended(): void;
  /** Extra response headers every answer carries (e.g. which provider served). */
  readonly responseHeaders: readonly string[];
}

export class Pools {
  private readonly pools = new Map<string, Pool>();
  constructor(cfg: GatewayConfig) {
    for (const p of cfg.providers) {
      if (p.origin === "" || this.pools.has(p.origin)) continue;
      this.pools.set(
        p.origin,
        new Pool(p.origin, {
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
    name === "anthropic-organization-id"
  );
}

const MESSAGE_STOP = Buffer.from("event: message_stop");
const EVENT_ERROR = Buffer.from("event: error");
const NL_MESSAGE_STOP = Buffer.from("\nevent: message_stop");
const NL_EVENT_ERROR = Buffer.from("\nevent: error");

/**
 * Does this run of whole events contain a terminal event (message_stop or error)? Only an
 * `event:` at a line start counts: raw newlines cannot occur inside a JSON data line, so
 * the same words inside model text never match.
 */
function hasTerminalEvent(b: Buffer): boolean {
  return (
    b.includes(NL_MESSAGE_STOP) || b.includes(NL_EVENT_ERROR) ||
    b.subarray(0, MESSAGE_STOP.length).equals(MESSAGE_STOP) || b.subarray(0, EVENT_ERROR.length).equals(EVENT_ERROR)
  );
}
const LFLF = Buffer.from("\n\n");
const CRLFCRLF = Buffer.from("\r\n\r\n");

function mapError(err: Error): { code: ErrorCode; type: string } {
  const c = (err as { code?: string }).code ?? "";
  if (c === "UND_ERR_CONNECT_TIMEOUT" || c === "UND_ERR_HEADERS_TIMEOUT" || c === "UND_ERR_BODY_TIMEOUT") {
    return { code: "GW_ERR_UPSTREAM_TIMEOUT", type: "timeout_error" };
  }
  if (c === "UND_ERR_SOCKET" || c === "ECONNRESET" || c === "UND_ERR_CLOSED") {
    return { code: "GW_ERR_UPSTREAM_STREAM_CUT", type: "api_error" };
  }
  return { code: "GW_ERR_UPSTREAM_CONNECT", type: "api_error" };
}

/**
 * Relays one upstream call to the client. Implements undici's DispatchHandler
 * (controller API), so there is no intermediate stream object.
 */
export class Relay implements Dispatcher.DispatchHandler {
  private readonly ctx: RequestCtx;
  private controller: Dispatcher.DispatchController | null = null;
  private status = 0;
  private sse = false;
  private contentType = "application/json";
  private extra: string[] | null = null;
  private chunks: Buffer[] = [];
  private sawStop = false;
  /** A trailing partial SSE event, held until its end arrives (copied). */
  private pending: Buffer | null = null;
  private paused = false;
  private readonly providerIndex: number;
  private readonly owner: AttemptOwner;
  private headers: IncomingHttpHeaders | null = null;

  constructor(ctx: RequestCtx, owner: AttemptOwner) {
    this.ctx = ctx;
    this.owner = owner;
    this.providerIndex = ctx.provider;
  }

  /** Abort this attempt (client gone, or the whole-request deadline passed). */
  abort(err: Error): void {
    this.controller?.abort(err);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.ctx.aborted) controller.abort(new Error("client aborted"));
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
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
      if (v === undefined) continue;
      (extra ??= []).push(name, Array.isArray(v) ? v.join(", ") : v);
    }
    const upstreamId = headers["request-id"];
    if (typeof upstreamId === "string") (extra ??= []).push("upstream-request-id", upstreamId);
    const rh = this.owner.responseHeaders;
    for (let i = 0; i < rh.length; i++) (extra ??= []).push(rh[i]!);
    this.extra = extra;
    this.sse = statusCode === 200 && this.contentType.startsWith("text/event-stream");
    if (this.sse) {
      const res = ctx.res;
      ctx.started = true;
      ctx.status = 200;
      this.owner.succeeded();
      res.cork(() => {
        res.writeStatus("200 OK");
        res.writeHeader("content-type", "text/event-stream; charset=utf-8");
        res.writeHeader("cache-control", "no-cache");
        res.writeHeader("request-id", ctx.id);
        if (extra !== null) for (let i = 0; i < extra.length; i += 2) res.writeHeader(extra[i]!, extra[i + 1]!);
      });
    }
    void controller;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    const ctx = this.ctx;
    if (ctx.aborted) return;
    if (!this.sse) {
      this.chunks.push(chunk);
      return;
    }
    // Relay whole events only: hold back a trailing partial event, so a failure later
    // can be reported with a clean `event: error` instead of a torn frame.
    const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
    let cut = data.lastIndexOf(LFLF);
    if (cut >= 0) cut += 2;
    else {
      cut = data.lastIndexOf(CRLFCRLF);
      if (cut >= 0) cut += 4;
    }
    if (cut < 0) {
      this.pending = Buffer.from(data);
      return;
    }
    this.pending = cut < data.length ? Buffer.from(data.subarray(cut)) : null;
    const out = cut === data.length ? data : data.subarray(0, cut);
    if (!this.sawStop && hasTerminalEvent(out)) this.sawStop = true;
    // Usage as it passes: input from message_start, the running output from message_delta.
    if (ctx.inputTokens < 0) ctx.inputTokens = lastNumberField(out, "input_tokens");
    const ot = lastNumberField(out, "output_tokens");
    if (ot >= 0) ctx.outputTokens = ot;
    const cw = lastNumberField(out, "cache_creation_input_tokens");
    if (cw >= 0) ctx.cacheCreationTokens = cw;
    const cr = lastNumberField(out, "cache_read_input_tokens");
    if (cr >= 0) ctx.cacheReadTokens = cr;
    const res = ctx.res;
    let ok = true;
    res.cork(() => {
      ok = res.write(out);
    });
    if (!ok && !this.paused) {
      // Backpressure toward the client: stop reading the upstream until uWS drains.
      this.paused = true;
      controller.pause();
      res.onWritable(() => {
        this.paused = false;
        if (!ctx.aborted) controller.resume();
        return true;
      });
    }
  }

  onResponseEnd(): void {
    const ctx = this.ctx;
    if (ctx.aborted) return;
    if (this.sse) {
      if (!this.sawStop && !(this.pending !== null && hasTerminalEvent(this.pending))) {
        this.endStreamWithError("api_error", "upstream stream ended before message_stop", "GW_ERR_UPSTREAM_STREAM_CUT");
        return;
      }
      const res = ctx.res;
      const tail = this.pending;
      this.pending = null;
      // Never end(…, closeConnection) after chunked writes: this uWS build then emits a
      // malformed chunked body. An idle keep-alive is closed by uWS' idle timeout.
      res.cork(() => res.end(tail ?? undefined));
      this.owner.ended();
      ctx.finish(200);
      return;
    }
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    this.chunks = [];
    if (this.status >= 400) {
      // The owner retries, falls back, or passes this answer through unchanged.
      this.owner.upstreamError(this.status, this.headers ?? {}, body, this.extra);
      return;
    }
    this.owner.succeeded();
    ctx.inputTokens = lastNumberField(body, "input_tokens");
    ctx.outputTokens = lastNumberField(body, "output_tokens");
    ctx.cacheCreationTokens = lastNumberField(body, "cache_creation_input_tokens");
    ctx.cacheReadTokens = lastNumberField(body, "cache_read_input_tokens");
    ctx.send(this.status, this.contentType, body, this.extra);
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    const ctx = this.ctx;
    if (ctx.aborted || ctx.done) return;
    const m = mapError(err);
    if (ctx.started) {
      this.owner.streamFailed();
      this.endStreamWithError(m.type, m.code === "GW_ERR_UPSTREAM_TIMEOUT" ? "upstream stream timed out" : "upstream connection lost mid-stream", m.code);
      return;
    }
    // A connection-level failure before any response counts as a connect failure.
    const code = m.code === "GW_ERR_UPSTREAM_STREAM_CUT" ? "GW_ERR_UPSTREAM_CONNECT" : m.code;
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, err: (err as { code?: string }).code ?? err.message }, "upstream error");
    this.owner.connectionError(code, err);
  }

  /** The stream has started: tell the client in Anthropic's SSE error shape, then end. */
  endStreamWithError(type: string, message: string, code: ErrorCode): void {
    const ctx = this.ctx;
    const res = ctx.res;
    ctx.errorCode = code;
    ctx.shared.metrics.error(ctx.route, this.providerIndex, errorTypeIndex(type));
    ctx.shared.log.warn({ req_id: ctx.id, provider: ctx.providerName, code }, "stream failed after start");
    this.pending = null; // a torn partial event never reaches the client
    this.owner.ended();
    res.cork(() => res.end(sseErrorFrame(type, message, ctx.id)));
    ctx.finish(200);
  }
}

/**
 * Start one upstream POST attempt; the Relay answers the client or reports to `owner`.
 * `wrap` decorates the Relay for a provider whose replies need translating (Bedrock, Vertex).
 */
export function dispatchAttempt(pool: Pool, path: string, headers: string[], body: Buffer, ctx: RequestCtx, owner: AttemptOwner, wrap: ((h: Dispatcher.DispatchHandler) => Dispatcher.DispatchHandler) | null = null): Relay {
  const relay = new Relay(ctx, owner);
  pool.dispatch({ path, method: "POST", headers, body }, wrap === null ? relay : wrap(relay));
  return relay;
}
