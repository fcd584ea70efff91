/**
 * One client request's journey through the providers: the route's targets in order
 * (primary, then fallbacks), each guarded by its circuit breaker, each tried up to
 * RETRY_MAX_ATTEMPTS times with exponential backoff and full jitter, within
 * RETRY_BUDGET_MS, and only while nothing has reached the client. A whole-request
 * deadline (UPSTREAM_REQUEST_TIMEOUT_MS) bounds everything, streams included.
 */
import type { IncomingHttpHeaders } from "node:http";
import { NOT_PROBE, REJECT, type Breakers } from "../core/breaker.js";
import { errorTypeForStatus, errorTypeIndex, type ErrorCode } from "../core/errors.js";
import { RJ_CIRCUIT_OPEN } from "../core/metrics.js";
import { authHeadersFor } from "../core/providers.js";
import type { Target } from "../core/routing.js";
import { spliceModel } from "../core/json-splice.js";
import { retryDelayMs, shouldRetryStatus } from "../core/retry.js";
import type { GatewayConfig } from "../core/config.js";
import type { RequestCtx } from "./context.js";
import { dispatchAttempt, type AttemptOwner, type Pools, type Relay } from "./upstream.js";

export interface CallDeps {
  cfg: GatewayConfig;
  pools: Pools;
  breakers: Breakers;
  /** Answers from the built-in mock provider (it cannot fail). */
  answerMock(ctx: RequestCtx, parsed: Record<string, unknown>, count: boolean): void;
}

export interface CallInput {
  body: Buffer;
  parsed: Record<string, unknown>;
  model: string;
  fwd: readonly string[];
  query: string;
  clientKey: string;
  count: boolean;
}

const DEADLINE = Object.assign(new Error("request deadline exceeded"), { code: "GW_DEADLINE" });
const CLIENT_GONE = new Error("client aborted");

export class UpstreamCall implements AttemptOwner {
  private readonly ctx: RequestCtx;
  private readonly deps: CallDeps;
  private readonly input: CallInput;
  private readonly targets: readonly Target[];
  private ti = -1;
  private attempt = 0;
  /** The breaker's probe ticket for the current attempt (NOT_PROBE unless half-open). */
  private probe = NOT_PROBE;
  private relay: Relay | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private readonly deadline: NodeJS.Timeout;
  private readonly retryUntil: number;
  private timedOut = false;
  /** The last upstream error answer, passed through if nothing better comes. */
  private last: { status: number; body: Buffer; extra: string[] | null; contentType: string } | null = null;
  private lastCode: ErrorCode | null = null;
  private openRetryAfterMs = 0;
  responseHeaders: readonly string[] = [];

  constructor(ctx: RequestCtx, deps: CallDeps, targets: readonly Target[], input: CallInput) {
    this.ctx = ctx;
    this.deps = deps;
    this.targets = targets;
    this.input = input;
    this.retryUntil = performance.now() + deps.cfg.retry_budget_ms;
    this.deadline = setTimeout(() => this.onDeadline(), deps.cfg.upstream_request_timeout_ms);
    this.deadline.unref(); // the client's socket keeps the thread alive, not this timer
    ctx.onAbort = () => this.cleanup(CLIENT_GONE);
  }

  start(): void {
    this.nextTarget();
  }

  /** Move to the next target whose breaker admits us; answer when none is left. */
  private nextTarget(): void {
    const b = this.deps.breakers;
    while (++this.ti < this.targets.length) {
      const t = this.targets[this.ti]!;
      const v = b.admit(t.provider.index - 1);
      if (v === REJECT) {
        this.ctx.shared.metrics.rejected(RJ_CIRCUIT_OPEN);
        if (this.ctx.provider === 0) {
          // Label a fail-fast answer with the provider whose breaker refused, not "none".
          this.ctx.provider = t.provider.index;
          this.ctx.providerName = t.provider.name;
        }
        const ra = b.retryAfterMs(t.provider.index - 1);
        if (this.openRetryAfterMs === 0 || ra < this.openRetryAfterMs) this.openRetryAfterMs = ra;
        continue;
      }
      this.probe = v;
      this.attempt = 0;
      this.send(t);
      return;
    }
    this.finishFailed();
  }

  private send(t: Target): void {
    const ctx = this.ctx, p = t.provider, inp = this.input;
    this.attempt++;
    ctx.provider = p.index;
    ctx.providerName = p.name;
    this.responseHeaders = this.targets.length > 1 ? ["x-portcullis-provider", p.name] : [];
    if (p.type === "mock") {
      this.done();
      this.deps.breakers.recordSuccess(this.breakerIndex(), this.probe);
      return this.deps.answerMock(ctx, inp.parsed, inp.count);
    }
    const body = t.upstreamModel !== null && t.upstreamModel !== inp.model ? spliceModel(inp.body, inp.parsed, t.upstreamModel) : inp.body;
    const headers = ["content-type", "application/json", "x-request-id", ctx.id];
    for (let i = 0; i < inp.fwd.length; i++) headers.push(inp.fwd[i]!);
    const auth = authHeadersFor(p, inp.clientKey === "" ? null : inp.clientKey);
    for (let i = 0; i < auth.length; i++) headers.push(auth[i]!);
    const path = (inp.count ? p.countTokensPath : p.messagesPath) + (inp.query === "" ? "" : "?" + inp.query);
    this.relay = dispatchAttempt(this.deps.pools.get(p.origin), path, headers, body, ctx, this);
  }

  private breakerIndex(): number {
    return this.targets[this.ti]!.provider.index - 1;
  }

  succeeded(): void {
    this.deps.breakers.recordSuccess(this.breakerIndex(), this.probe);
    this.probe = NOT_PROBE;
    clearTimeout(this.deadline);
    this.ctx.onAbort = () => this.cleanup(CLIENT_GONE);
    // For SSE the stream continues; the deadline is re-armed for it.
    if (this.ctx.started) {
      this.streamDeadline = setTimeout(() => this.onDeadline(), this.deps.cfg.upstream_request_timeout_ms);
      this.streamDeadline.unref();
    }
  }

  ended(): void {
    this.done();
  }
  private streamDeadline: NodeJS.Timeout | null = null;

  streamFailed(): void {
    if (this.streamDeadline !== null) clearTimeout(this.streamDeadline);
    // The breaker was credited when the stream started; a cut stream is the provider's fault.
    this.deps.breakers.recordFailure(this.breakerIndex(), NOT_PROBE);
  }

  upstreamError(status: number, headers: IncomingHttpHeaders, body: Buffer, extra: string[] | null): void {
    const b = this.deps.breakers, bi = this.breakerIndex();
    const providerFault = status >= 500;
    if (providerFault) b.recordFailure(bi, this.probe);
    else b.recordSuccess(bi, this.probe); // a 4xx proves the provider is up
    this.probe = NOT_PROBE;
    const ct = headers["content-type"];
    this.last = { status, body, extra, contentType: typeof ct === "string" ? ct : "application/json" };
    this.lastCode = null;
    const retry = shouldRetryStatus(status, headerOf(headers, "x-should-retry"));
    if (!retry) return this.finishWith();
    this.retryOrMove(retryDelayMs(this.deps.cfg, this.attempt, headerOf(headers, "retry-after"), headerOf(headers, "retry-after-ms"), Math.random()));
  }

  connectionError(code: ErrorCode, _err: Error): void {
    if (this.timedOut) return this.finishTimeout();
    this.deps.breakers.recordFailure(this.breakerIndex(), this.probe);
    this.probe = NOT_PROBE;
    this.last = null;
    this.lastCode = code;
    this.retryOrMove(retryDelayMs(this.deps.cfg, this.attempt, "", "", Math.random()));
  }

  /** Retry the same target after `delay`, or move to the next target when out of attempts or budget. */
  private retryOrMove(delay: number): void {
    const cfg = this.deps.cfg;
    const fits = performance.now() + delay <= this.retryUntil;
    if (this.attempt < cfg.retry_max_attempts && delay >= 0 && fits) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (this.ctx.aborted) return;
        const bi = this.breakerIndex();
        const v = this.deps.breakers.admit(bi);
        if (v === REJECT) {
          this.ctx.shared.metrics.rejected(RJ_CIRCUIT_OPEN);
          return this.nextTarget();
        }
        this.probe = v;
        this.send(this.targets[this.ti]!);
      }, delay);
      return;
    }
    this.nextTarget();
  }

  /** No target left: pass the last upstream answer through, or say why there was none. */
  private finishFailed(): void {
    if (this.last !== null) return this.finishWith();
    this.done();
    if (this.lastCode !== null) return this.ctx.fail(this.lastCode);
    const ra = Math.max(1, Math.ceil(this.openRetryAfterMs / 1000));
    this.ctx.errorCode = "GW_ERR_UPSTREAM_CIRCUIT_OPEN";
    this.ctx.shared.metrics.error(this.ctx.route, this.ctx.provider, errorTypeIndex("overloaded_error"));
    this.ctx.send(503, "application/json", circuitOpenBody(this.ctx.id), ["retry-after", String(ra)]);
  }

  private finishWith(): void {
    const l = this.last!;
    this.done();
    const ctx = this.ctx;
    ctx.shared.metrics.error(ctx.route, ctx.provider, errorTypeIndex(errorTypeForStatus(l.status)));
    ctx.send(l.status, l.contentType, l.body, l.extra);
  }

  private finishTimeout(): void {
    this.done();
    this.ctx.fail("GW_ERR_UPSTREAM_TIMEOUT", `no answer from the provider within UPSTREAM_REQUEST_TIMEOUT_MS (${this.deps.cfg.upstream_request_timeout_ms} ms)`);
  }

  private onDeadline(): void {
    this.timedOut = true;
    const ctx = this.ctx;
    if (ctx.done || ctx.aborted) return;
    if (this.retryTimer !== null) return this.finishTimeout();
    if (ctx.started) {
      // Mid-stream: stop the upstream and tell the client with an SSE error.
      this.done();
      const r = this.relay;
      this.relay = null;
      r?.abort(DEADLINE);
      if (!ctx.done) r?.endStreamWithError("timeout_error", "the request exceeded UPSTREAM_REQUEST_TIMEOUT_MS", "GW_ERR_UPSTREAM_TIMEOUT");
      return;
    }
    this.relay?.abort(DEADLINE);
  }

  private done(): void {
    clearTimeout(this.deadline);
    if (this.streamDeadline !== null) clearTimeout(this.streamDeadline);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Client gone: stop everything and give back a half-open probe slot. */
  private cleanup(err: Error): void {
    this.done();
    this.relay?.abort(err);
    if (this.probe !== NOT_PROBE) {
      this.deps.breakers.releaseProbe(this.breakerIndex(), this.probe);
      this.probe = NOT_PROBE;
    }
  }
}

function headerOf(h: IncomingHttpHeaders, name: string): string {
  const v = h[name];
  return typeof v === "string" ? v : Array.isArray(v) ? (v[0] ?? "") : "";
}

function circuitOpenBody(id: string): string {
  return `{"type":"error","error":{"type":"overloaded_error","message":"every provider for this model is unavailable (circuit breaker open)"},"request_id":${JSON.stringify(id)}}`;
}

