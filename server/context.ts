/**
 * Per-request state and the single way a request finishes. Every field is set in the
 * constructor (stable shape). `finish` runs exactly once: metrics, the active gauge and
 * the log line; after a client abort nothing is written to the response again.
 */
import type { HttpResponse } from "uWebSockets.js";
import type { Logger } from "pino";
import { CATALOGUE, errorBody, errorTypeIndex, statusLine, type ErrorCode } from "../core/errors.js";
import { ROUTES, type Metrics } from "../core/metrics.js";
import type { Limits, RateLimiter } from "../core/ratelimit.js";
import type { AuditRow } from "../workers/ledger-task.js";
import type { CacheTap } from "./cache/gate.js";

const NO_HEADERS: readonly string[] = [];
import { requestEnd } from "./tracing/channels.js";

export interface Shared {
  metrics: Metrics;
  log: Logger;
  /** Requests in flight on this thread (for draining). */
  inflight: Set<RequestCtx>;
  draining: boolean;
  onIdle: (() => void) | null;
  /** Token-per-minute charging after a response (null when no TPM limit is set). */
  tokenLimiter: { limiter: RateLimiter; limits: Limits } | null;
  /** Budget settlement, token/cost metrics and the ledger row, plus MCP audit rows (server/usage-sink.ts); null = off. */
  usage: { finished(ctx: RequestCtx, status: number, durationUs: number): void; audit?(row: AuditRow): void } | null;
}

export class RequestCtx {
  readonly res: HttpResponse;
  readonly shared: Shared;
  readonly route: number;
  readonly t0: number;
  /** The gateway's own id (unique by construction: core/request-id.ts). */
  id = "";
  /** The client's well-formed x-request-id, kept beside the id; never trusted to be unique. */
  clientRequestId: string | null = null;
  aborted = false;
  done = false;
  /** Status line + headers are on the wire (a stream has started). */
  started = false;
  provider = 0;
  providerName = "none";
  model: string | null = null;
  status = 0;
  inputTokens = -1;
  outputTokens = -1;
  errorCode: string | null = null;
  /** Client key's index when rate limits apply, else -1. */
  keyIndex = -1;
  /** Per-key rate limits when the key has its own (virtual keys), else null = global. */
  rateLimits: Limits | null = null;
  cacheCreationTokens = -1;
  cacheReadTokens = -1;
  /** The client key's id (for the ledger); null without auth. */
  keyId: string | null = null;
  /** x-claude-code-session-id, when sent. */
  sessionId: string | null = null;
  /** metadata.user_id of the body (the developer, as Claude Code sends it), when sent; capped at 200 characters. */
  userId: string | null = null;
  /** Budget slot of a virtual key (spend is counted there), else -1. */
  budgetSlot = -1;
  /** What admission reserved (given back and settled to real usage in finish). */
  reservedTokens = 0;
  reservedMicros = 0;
  /** A provider's success whose usage could not be read: settled at the reservation, not 0. */
  usageUnreadable = false;
  /** Write a ledger row for this request (a /v1/messages call past auth). */
  ledger = false;
  /** performance.now() of the first upstream dispatch and of the last attempt's end (0 = none yet): the time spent waiting on providers. */
  upstreamStart = 0;
  upstreamEnd = 0;
  /** The answering attempt's wait for response headers in µs; -1 = no upstream answered. */
  upstreamTtfbUs = -1;
  /** Called on client abort (cancels the upstream request, clears timers). */
  onAbort: (() => void) | null = null;
  /** Response cache (server/cache/gate.ts): stores this answer if it completes; null = not stored. */
  cacheTap: CacheTap | null = null;
  /** x-portcullis-cache on an upstream answer (miss or bypass); empty when the cache is off. */
  cacheHeaders: readonly string[] = NO_HEADERS;
  /** Answered from the cache: 0 provider tokens; `savedTokens` is what the stored answer cost. */
  cacheHit = false;
  savedTokens = 0;
  /** Re-shapes error bodies for a client speaking another API (server/openai/); null = as is. */
  reshapeError: ((body: string | Uint8Array, code: string | null, status: number) => string | Uint8Array) | null = null;

  constructor(res: HttpResponse, shared: Shared, route: number) {
    this.res = res;
    this.shared = shared;
    this.route = route;
    this.t0 = performance.now();
    shared.inflight.add(this);
    shared.metrics.activeInc();
    res.onAborted(() => this.abortedByClient());
  }

  private abortedByClient(): void {
    this.aborted = true;
    const f = this.onAbort;
    this.onAbort = null;
    if (f !== null) {
      try {
        f();
      } catch (e) {
        this.shared.log.error({ req_id: this.id, err: String(e) }, "abort handler failed");
      }
    }
    // 499: the client closed the request (nginx's convention); counted as 4xx.
    this.finish(this.status === 0 ? 499 : this.status);
  }

  /** Record and log; idempotent. */
  finish(status: number): void {
    if (this.done) return;
    this.done = true;
    this.status = status;
    const sh = this.shared;
    const now = performance.now();
    const durationUs = (now - this.t0) * 1000;
    sh.metrics.record(this.route, this.provider, status, durationUs);
    const upstreamUs = this.upstreamStart > 0 ? ((this.upstreamEnd > 0 ? this.upstreamEnd : now) - this.upstreamStart) * 1000 : 0;
    sh.metrics.latency(this.route, this.provider, status, durationUs, upstreamUs, this.upstreamTtfbUs, performance.timeOrigin + now);
    sh.metrics.activeDec();
    sh.inflight.delete(this);
    if (this.keyIndex >= 0 && sh.tokenLimiter !== null && (this.inputTokens > 0 || this.outputTokens > 0)) {
      sh.tokenLimiter.limiter.chargeTokens(this.keyIndex, this.rateLimits ?? sh.tokenLimiter.limits, Math.max(0, this.inputTokens) + Math.max(0, this.outputTokens));
    }
    if (sh.usage !== null) sh.usage.finished(this, status, durationUs);
    if (requestEnd.hasSubscribers) requestEnd.publish(this);
    if (sh.log.isLevelEnabled("info")) {
      sh.log.info(
        {
          req_id: this.id,
          client_req_id: this.clientRequestId ?? undefined,
          route: ROUTES[this.route],
          provider: this.providerName,
          model: this.model,
          status,
          latency_ms: Math.round(durationUs) / 1000,
          input_tokens: this.inputTokens < 0 ? undefined : this.inputTokens,
          output_tokens: this.outputTokens < 0 ? undefined : this.outputTokens,
          key_id: this.keyId ?? undefined,
          error: this.errorCode ?? undefined,
          aborted: this.aborted || undefined,
          cache_hit: this.cacheHit || undefined,
        },
        "request",
      );
    }
    if (sh.draining && sh.inflight.size === 0 && sh.onIdle !== null) sh.onIdle();
  }

  /** Write a complete response (status, headers, body) in one corked write. */
  send(status: number, contentType: string, body: string | Uint8Array, extra: readonly string[] | null = null, close = false): void {
    // Note: never used after chunked writes (a stream ends in Relay), so closing is safe here.
    if (this.aborted || this.done) return;
    const res = this.res;
    const closeConn = close || this.shared.draining;
    if (status >= 400 && this.reshapeError !== null) body = this.reshapeError(body, this.errorCode, status);
    res.cork(() => {
      res.writeStatus(statusLine(status));
      res.writeHeader("content-type", contentType);
      res.writeHeader("request-id", this.id);
      if (extra !== null) for (let i = 0; i < extra.length; i += 2) res.writeHeader(extra[i]!, extra[i + 1]!);
      res.end(body, closeConn);
    });
    this.finish(status);
  }

  /**
   * Answer with a catalogue error but leave the response open (a chunked body), so the
   * caller can keep reading what the client is still sending and end or close it later
   * (server/body.ts, lingering close). The request counts as finished now.
   */
  failOpen(code: ErrorCode, message?: string): void {
    if (this.aborted || this.done) return;
    const e = CATALOGUE[code];
    this.errorCode = code;
    this.shared.metrics.error(this.route, this.provider, errorTypeIndex(e.type));
    const res = this.res;
    this.started = true;
    res.cork(() => {
      res.writeStatus(statusLine(e.status));
      res.writeHeader("content-type", "application/json");
      res.writeHeader("request-id", this.id);
      res.write(errorBody(code, this.id, message));
    });
    this.finish(e.status);
  }

  /** Answer with a catalogue error in Anthropic's shape. */
  fail(code: ErrorCode, message?: string, close = false, extra: readonly string[] | null = null): void {
    const e = CATALOGUE[code];
    this.errorCode = code;
    this.shared.metrics.error(this.route, this.provider, errorTypeIndex(e.type));
    this.send(e.status, "application/json", errorBody(code, this.id, message), extra, close);
  }
}
