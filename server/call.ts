/**
 * One client request's journey through the providers: the route's targets in order
 * (primary, then fallbacks), each guarded by its circuit breaker, each tried up to
 * RETRY_MAX_ATTEMPTS times with exponential backoff and full jitter, only while nothing
 * has reached the client and no retry wait would end past RETRY_BUDGET_MS after the
 * request arrived. One deadline per request, UPSTREAM_REQUEST_TIMEOUT_MS from arrival,
 * bounds everything: waiting for a pool connection, retries and streams (mid-stream it
 * ends the stream with `event: error` of type timeout_error).
 *
 * A half-open probe is settled exactly once however the attempt ends: a verdict (success,
 * upstream status, connection error, timeout, deadline after the request was sent) or a
 * plain release when the provider never saw it (client abort, a request refused before
 * it was sent, a deadline that passed while it waited for a connection, shutdown).
 * What the client sends is checked before dispatch, so its bytes never count against a
 * provider.
 *
 * A provider with a key pool (core/keypool.ts) gets a key per attempt. A key's own refusal
 * (429: rested for its retry-after; 401/403: set aside) sends the request to the next key
 * at once, without counting an attempt; a target whose keys all rest is skipped, and when
 * nothing else answers, the client gets 429 with the soonest retry-after.
 * The same holds for the deployment's in-flight count (core/deployments.ts): taken when an
 * attempt is sent, given back exactly once when it ends, however it ends. Its time to first
 * byte feeds the `latency` strategy: at the response start of a stream (at the full answer
 * of a JSON call, whose first byte comes with it), or, for an attempt that timed out, the
 * time it waited, a lower bound that lifts the peak-EWMA of a deployment that hangs.
 */
import type { IncomingHttpHeaders } from "node:http";
import { NOT_PROBE, REJECT, type Breakers } from "../core/breaker.js";
import { errorBody, errorTypeForStatus, errorTypeIndex, type ErrorCode } from "../core/errors.js";
import { RJ_CIRCUIT_OPEN } from "../core/metrics.js";
import { authHeadersFor } from "../core/providers.js";
import type { Target } from "../core/routing.js";
import { spliceModel } from "../core/json-splice.js";
import { retryAfterMs, retryDelayMs, shouldRetryStatus } from "../core/retry.js";
import { keySession, R_RANGE, type KeyPool, type KeyPools } from "../core/keypool.js";
import { badHeader, badHeaderValue, badQuery, isJsonBody } from "../core/upstream-guard.js";
import type { GatewayConfig } from "../core/config.js";
import type { RequestCtx } from "./context.js";
import { dispatchAttempt, type AttemptOwner, type Pools } from "./upstream.js";
import { Deadline, deadlines } from "./deadlines.js";
import { replacedErrorBody } from "./upstream-reply.js";
import { attemptEnd, attemptStart, breakerRefused, type AttemptEndMsg, type AttemptStartMsg, type BreakerMsg } from "./tracing/channels.js";
import type { AttemptRelay, Translation } from "./openai/translation.js";
import type { Prepared, Shaper } from "./providers/shapers.js";
import type { DeploymentState } from "../core/deployments.js";

export interface CallDeps {
  cfg: GatewayConfig;
  pools: Pools;
  breakers: Breakers;
  /** Answers from the built-in mock provider (it cannot fail). */
  answerMock(ctx: RequestCtx, parsed: Record<string, unknown>, count: boolean): void;
  /** Request shapers by provider index for Bedrock and Vertex (server/providers/shapers.ts). */
  shapers?: readonly (Shaper | null)[];
  /** The providers' key pools (core/keypool.ts); absent = every provider has one key. */
  keys?: KeyPools | null;
  /** In-flight counts and time to first byte per deployment, shared by the acceptor threads. */
  deployments: DeploymentState;
}

export interface CallInput {
  body: Buffer;
  parsed: Record<string, unknown>;
  model: string;
  fwd: readonly string[];
  query: string;
  clientKey: string;
  /** The caller's own provider key (x-upstream-api-key), for pass_through_key providers. */
  upstreamKey: string;
  /** The gateway authenticated the caller with `clientKey`: never send that key upstream. */
  gatewayAuth: boolean;
  count: boolean;
  /** Set when the OpenAI format is involved (server/openai/); null = the Anthropic path. */
  tx: Translation | null;
}

const DEADLINE = Object.assign(new Error("request deadline exceeded"), { code: "GW_DEADLINE" });
const CLIENT_GONE = new Error("client aborted");
const NO_BODY = Buffer.alloc(0);
const NO_PARSED: Record<string, unknown> = Object.freeze({});

/** The request's deadline is this thread's sweep's (server/deadlines.ts), not a timer of its own. */
export class UpstreamCall extends Deadline implements AttemptOwner {
  private readonly ctx: RequestCtx;
  private readonly deps: CallDeps;
  private readonly input: CallInput;
  private readonly targets: readonly Target[];
  private ti = -1;
  private attempt = 0;
  /** The breaker's probe ticket for the current attempt (NOT_PROBE unless half-open). */
  private probe = NOT_PROBE;
  private relay: AttemptRelay | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  /** performance.now() at which the request's deadline passes. */
  private readonly deadlineAt: number;
  private readonly retryUntil: number;
  /** A shaper is still signing or waiting for credentials (no attempt is in flight yet). */
  private preparing = false;
  /** The last upstream error answer, passed through if nothing better comes. */
  private last: { status: number; body: Buffer | string; extra: string[] | null; contentType: string } | null = null;
  private lastCode: ErrorCode | null = null;
  private openRetryAfterMs = 0;
  /** The current target's key pool (null: one key), this attempt's key, the keys that refused this request. */
  private pool: KeyPool | null = null;
  private key = -1;
  private refused = 0;
  /** The request's session hash for key affinity: -2 not computed yet, -1 none. */
  private session = -2;
  /** A target was skipped because its keys all rest: ms until the first comes back. */
  private keysWaitMs = 0;
  /** The deployment slot whose in-flight count this attempt holds (-1: none), and when it was sent. */
  private held = -1;
  private sentAt = 0;
  responseHeaders: readonly string[] = [];

  constructor(ctx: RequestCtx, deps: CallDeps, targets: readonly Target[], input: CallInput) {
    super();
    this.ctx = ctx;
    this.deps = deps;
    this.targets = targets;
    this.input = input;
    // Both measured from the request's arrival, not from here.
    this.retryUntil = ctx.t0 + deps.cfg.retry_budget_ms;
    this.deadlineAt = ctx.t0 + deps.cfg.upstream_request_timeout_ms;
    deadlines.add(this, this.deadlineAt);
    ctx.onAbort = () => this.cleanup();
  }

  start(): void {
    const inp = this.input;
    const h = badHeader(inp.fwd);
    if (h !== null)
      return this.refuse(
        "GW_ERR_REQ_INVALID_HEADER",
        `header ${h} has a character that cannot be forwarded (a control byte other than tab, or one above U+00FF)`,
      );
    if (badHeaderValue(this.passKey())) {
      return this.refuse(
        "GW_ERR_REQ_INVALID_HEADER",
        `header ${inp.upstreamKey !== "" ? "x-upstream-api-key" : "x-api-key (or authorization)"} has a character that cannot be forwarded`,
      );
    }
    if (badQuery(inp.query))
      return this.refuse("GW_ERR_REQ_INVALID_QUERY", "the query string has a byte outside printable ASCII; percent-encode it");
    this.nextTarget();
  }

  private refuse(code: ErrorCode, message: string): void {
    this.done();
    this.ctx.fail(code, message);
  }

  /** Move to the next target whose breaker admits us; answer when none is left. */
  private nextTarget(): void {
    const b = this.deps.breakers;
    while (++this.ti < this.targets.length) {
      const t = this.targets[this.ti]!;
      if (this.upstreamKeyMissing(t)) {
        if (this.last === null) this.lastCode = "GW_ERR_AUTH_MISSING_UPSTREAM_KEY";
        continue;
      }
      const v = b.admit(t.provider.index - 1);
      if (v === REJECT) {
        this.ctx.shared.metrics.rejected(RJ_CIRCUIT_OPEN);
        if (breakerRefused.hasSubscribers) breakerRefused.publish({ ctx: this.ctx, provider: t.provider.name } satisfies BreakerMsg);
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
      this.pool = this.deps.keys?.pool(t.provider.index) ?? null;
      this.key = -1;
      this.refused = 0;
      this.send(t);
      return;
    }
    this.finishFailed();
  }

  /** A pass-through provider behind gateway auth needs the caller's own key in x-upstream-api-key. */
  private upstreamKeyMissing(t: Target): boolean {
    return t.provider.config.passThroughKey && this.passKey() === "";
  }

  /** The key a pass-through provider gets: never the one that authenticated to the gateway. */
  private passKey(): string {
    const inp = this.input;
    return inp.upstreamKey !== "" ? inp.upstreamKey : inp.gatewayAuth ? "" : inp.clientKey;
  }

  private send(t: Target): void {
    const ctx = this.ctx,
      p = t.provider,
      inp = this.input;
    this.attempt++;
    ctx.provider = p.index;
    ctx.providerName = p.name;
    this.responseHeaders = this.targets.length > 1 ? ["x-portcullis-provider", p.name, ...ctx.cacheHeaders] : ctx.cacheHeaders;
    if (performance.now() >= this.deadlineAt) return this.onDeadline(); // (a slow body upload) never send it late
    if (this.pool !== null && !this.pickKey(this.pool)) {
      this.release();
      return this.nextTarget();
    }
    if (inp.tx !== null && inp.tx.handles(p)) {
      if (attemptStart.hasSubscribers) this.traceAttempt(t, null);
      if (p.type !== "mock") this.enter(t);
      this.relay = inp.tx.send(t, this, this.passKey(), this.keyAuth());
      return;
    }
    if (p.type === "mock") {
      this.done();
      this.verdict(true);
      return this.deps.answerMock(ctx, this.tree(), inp.count);
    }
    this.enter(t);
    const shaper = this.deps.shapers?.[p.index] ?? null;
    if (shaper !== null) return this.sendShaped(shaper, t);
    const body = t.upstreamModel !== null && t.upstreamModel !== inp.model ? spliceModel(inp.body, this.tree(), t.upstreamModel) : inp.body;
    // identity: a compressed reply would have to be decoded before relaying and accounting.
    const headers = ["content-type", "application/json", "accept-encoding", "identity", "x-request-id", ctx.clientRequestId ?? ctx.id];
    for (let i = 0; i < inp.fwd.length; i++) headers.push(inp.fwd[i]!);
    const key = this.passKey();
    const auth = this.keyAuth() ?? authHeadersFor(p, key === "" ? null : key);
    for (let i = 0; i < auth.length; i++) headers.push(auth[i]!);
    const path = (inp.count ? p.countTokensPath : p.messagesPath) + (inp.query === "" ? "" : "?" + inp.query);
    if (attemptStart.hasSubscribers) this.traceAttempt(t, headers);
    this.relay = dispatchAttempt(this.deps.pools.get(p.origin), path, headers, body, ctx, this, this.deps.cfg.sse_max_event_bytes);
    inp.parsed = NO_PARSED;
  }

  /**
   * The parsed body for an attempt. A dispatched attempt lets it go: a 100 KB body's tree
   * (~250 KiB) kept across the round trip survived the scavenges and was promoted, ~200 µs
   * of GC per large request at 50 in flight (docs/performance.md); a retry parses the bytes again.
   */
  private tree(): Record<string, unknown> {
    const inp = this.input;
    if (inp.parsed === NO_PARSED) inp.parsed = JSON.parse(inp.body.toString("utf8")) as Record<string, unknown>;
    return inp.parsed;
  }

  /** A provider whose request is rebuilt (and maybe signed, which is async) by its shaper. */
  private sendShaped(s: Shaper, t: Target): void {
    const inp = this.input;
    let beta = "";
    for (let i = 0; i < inp.fwd.length; i += 2) if (inp.fwd[i] === "anthropic-beta") beta = inp.fwd[i + 1]!;
    let r: Prepared | Promise<Prepared>;
    try {
      r = s.prepare({
        raw: inp.body,
        parsed: this.tree(),
        fwd: inp.fwd,
        query: inp.query,
        clientKey: inp.clientKey,
        model: t.upstreamModel ?? inp.model,
        betaHeader: beta,
        count: inp.count,
        requestId: this.ctx.id,
        auth: this.keyAuth(),
      });
    } catch (e) {
      return this.prepareFailed(e);
    }
    if (!(r instanceof Promise)) return this.dispatchPrepared(t, r);
    this.preparing = true;
    r.then(
      (x) => this.dispatchPrepared(t, x),
      (e: unknown) => this.prepareFailed(e),
    );
  }

  private dispatchPrepared(t: Target, x: Prepared): void {
    this.preparing = false;
    if (this.ctx.aborted || this.ctx.done) return;
    if (attemptStart.hasSubscribers) this.traceAttempt(t, x.headers);
    this.relay = dispatchAttempt(
      this.deps.pools.get(t.provider.origin),
      x.path,
      x.headers,
      x.body,
      this.ctx,
      this,
      this.deps.cfg.sse_max_event_bytes,
      x.wrap,
    );
    this.input.parsed = NO_PARSED;
  }

  /** No credentials (or signing failed): like a connection failure, retried and then the next target. */
  private prepareFailed(e: unknown): void {
    this.preparing = false;
    if (this.ctx.aborted || this.ctx.done) return;
    this.ctx.shared.log.warn(
      { req_id: this.ctx.id, provider: this.ctx.providerName, err: (e as Error)?.message ?? String(e) },
      "cannot authenticate to the provider",
    );
    this.connectionError("GW_ERR_UPSTREAM_AUTH", e as Error);
  }

  /** A key for this attempt from the target's pool; false when every key rests, refused or is at its limit. */
  private pickKey(pool: KeyPool): boolean {
    if (this.session === -2) {
      const s = this.ctx.sessionId ?? this.ctx.userId;
      this.session = s === null ? -1 : keySession(s);
    }
    // count_tokens has its own upstream limits: it does not use a key's rpm.
    this.key = pool.pick(this.session, (Math.random() * R_RANGE) | 0, this.refused, !this.input.count);
    if (this.key >= 0) return true;
    const w = pool.waitMs;
    if (w > 0 && (this.keysWaitMs === 0 || w < this.keysWaitMs)) this.keysWaitMs = w;
    return false;
  }

  /** The auth headers of this attempt's pool key, or null (the provider's own). */
  private keyAuth(): readonly string[] | null {
    return this.key >= 0 ? this.pool!.auth[this.key]! : null;
  }

  /**
   * The pool key refused (429: rest it for its retry-after; 401/403: set it aside, logged
   * once): the same target again at once with the next key, not counted as an attempt.
   */
  private keyRefused(status: number, headers: IncomingHttpHeaders): void {
    const pool = this.pool!,
      k = this.key,
      cfg = this.deps.cfg;
    this.refused |= 1 << k;
    if (status === 429) {
      const asked = retryAfterMs(headerOf(headers, "retry-after"), headerOf(headers, "retry-after-ms"));
      pool.rest(k, Math.min(asked >= 0 ? asked : cfg.upstream_key_rest_ms, cfg.upstream_key_rest_max_ms));
    } else if (pool.markBad(k)) {
      this.ctx.shared.log.warn(
        { provider: this.ctx.providerName, key_name: pool.labels[k], status },
        "upstream key refused: set aside until it works again (logged once)",
      );
    }
    this.attempt--;
    this.resend();
  }

  /** The current target again, if its breaker still admits us (else the next target). */
  private resend(): void {
    const v = this.deps.breakers.admit(this.breakerIndex());
    if (v === REJECT) {
      this.ctx.shared.metrics.rejected(RJ_CIRCUIT_OPEN);
      if (breakerRefused.hasSubscribers)
        breakerRefused.publish({ ctx: this.ctx, provider: this.targets[this.ti]!.provider.name } satisfies BreakerMsg);
      return this.nextTarget();
    }
    this.probe = v;
    this.send(this.targets[this.ti]!);
  }

  private breakerIndex(): number {
    return this.targets[this.ti]!.provider.index - 1;
  }

  /** The provider's verdict on this attempt (settles a half-open probe). */
  private verdict(ok: boolean): void {
    if (ok) this.deps.breakers.recordSuccess(this.breakerIndex(), this.probe);
    else this.deps.breakers.recordFailure(this.breakerIndex(), this.probe);
    this.probe = NOT_PROBE;
  }

  /** No verdict: the provider never saw this attempt; give a probe slot back. */
  private release(): void {
    if (this.probe === NOT_PROBE) return;
    this.deps.breakers.releaseProbe(this.breakerIndex(), this.probe);
    this.probe = NOT_PROBE;
  }

  succeeded(): void {
    // relay is null while tx.send answers without an upstream call (an OpenAI count estimate).
    if (this.relay !== null) this.measured(performance.now() - this.sentAt);
    this.verdict(true);
    if (this.key >= 0) this.pool!.served(this.key);
    this.ctx.errorCode = null; // an earlier attempt's error is not this answer's
    // A stream goes on under the same deadline; a JSON answer is sent right after this.
    // Once a stream has started nothing is sent again: let the body and its parsed tree go
    // now rather than hold them (a 100 KB body's tree is ~110 KiB) for the stream's minutes.
    if (this.ctx.started) {
      this.input.body = NO_BODY;
      this.input.parsed = NO_PARSED;
    }
  }

  ended(): void {
    this.done();
    if (this.key >= 0) this.pool!.chargeTokens(this.key, Math.max(0, this.ctx.inputTokens) + Math.max(0, this.ctx.outputTokens));
    // Answered: nothing is sent again. Undici may still hold the relay for a moment; neither it
    // nor this call may keep the request's body, parsed tree and reply alive meanwhile
    // (server/context.ts, Inflight: what a finished request still reaches gets promoted).
    this.relay = null;
    this.input.body = NO_BODY;
    this.input.parsed = NO_PARSED;
  }

  streamFailed(): void {
    // The breaker was credited when the stream started; a cut stream is the provider's fault.
    this.verdict(false);
  }

  /** Tell tracing an attempt starts; it may append a traceparent to `headers`. */
  private traceAttempt(t: Target, headers: string[] | null): void {
    const p = t.provider;
    attemptStart.publish({
      ctx: this.ctx,
      provider: p.name,
      providerType: p.type,
      model: t.upstreamModel ?? this.input.model,
      attempt: this.attempt,
      probe: this.probe !== NOT_PROBE,
      headers,
    } satisfies AttemptStartMsg);
  }

  upstreamError(status: number, headers: IncomingHttpHeaders, body: Buffer, extra: string[] | null): void {
    this.relay = null;
    this.leave();
    if (attemptEnd.hasSubscribers) attemptEnd.publish({ ctx: this.ctx, status, error: `http ${status}` } satisfies AttemptEndMsg);
    this.verdict(status < 500); // a 4xx proves the provider is up
    const ct = headers["content-type"];
    const contentType = typeof ct === "string" ? ct : "";
    if (isJsonBody(contentType, body)) this.last = { status, body, extra, contentType };
    else {
      const auth = this.keyAuth() ?? this.targets[this.ti]!.provider.authHeaders ?? [];
      const secrets = [this.input.clientKey, this.input.upstreamKey, ...auth.filter((_, i) => i % 2 === 1)];
      this.last = { status, body: replacedErrorBody(this.ctx, status, contentType, body, secrets), extra, contentType: "application/json" };
    }
    this.lastCode = null;
    if (this.key >= 0 && (status === 429 || status === 401 || status === 403)) return this.keyRefused(status, headers);
    const retry = shouldRetryStatus(status, headerOf(headers, "x-should-retry"));
    if (!retry) return this.finishWith();
    this.retryOrMove(
      retryDelayMs(this.deps.cfg, this.attempt, headerOf(headers, "retry-after"), headerOf(headers, "retry-after-ms"), Math.random()),
    );
  }

  connectionError(code: ErrorCode, _err: Error): void {
    this.relay = null;
    if (code === "GW_ERR_UPSTREAM_TIMEOUT") this.measured(performance.now() - this.sentAt);
    this.leave();
    if (attemptEnd.hasSubscribers) attemptEnd.publish({ ctx: this.ctx, status: 0, error: code } satisfies AttemptEndMsg);
    this.verdict(false);
    this.last = null;
    this.lastCode = code;
    this.retryOrMove(retryDelayMs(this.deps.cfg, this.attempt, "", "", Math.random()));
  }

  localError(err: Error): void {
    this.relay = null;
    this.leave();
    this.release();
    const c = (err as { code?: string }).code;
    if (c === "UND_ERR_DESTROYED" || c === "UND_ERR_CLOSED")
      return this.refuse("GW_ERR_SHED_OVERLOADED", "the gateway is shutting down; retry");
    this.refuse("GW_ERR_REQ_INVALID_HEADER", `the request could not be forwarded: ${err.message}`);
  }

  /** Retry the same target after `delay`, or move to the next target when out of attempts or budget. */
  private retryOrMove(delay: number): void {
    const cfg = this.deps.cfg;
    const fits = performance.now() + delay <= this.retryUntil;
    if (this.attempt < cfg.retry_max_attempts && delay >= 0 && fits) {
      this.retryTimer = setTimeout(() => {
        this.retryTimer = null;
        if (this.ctx.aborted || this.ctx.done) return;
        this.resend();
      }, delay);
      return;
    }
    this.nextTarget();
  }

  /** No target left: pass the last upstream answer through, or say why there was none. */
  private finishFailed(): void {
    if (this.keysWaitMs > 0 && (this.last === null || this.last.status === 429)) {
      this.done();
      const ra = String(Math.max(1, Math.ceil(this.keysWaitMs / 1000)));
      return this.ctx.fail("GW_ERR_UPSTREAM_KEYS_RESTING", undefined, false, ["retry-after", ra]);
    }
    if (this.last !== null) return this.finishWith();
    this.done();
    if (this.lastCode !== null) return this.ctx.fail(this.lastCode);
    const ra = Math.max(1, Math.ceil(this.openRetryAfterMs / 1000));
    this.ctx.errorCode = "GW_ERR_UPSTREAM_CIRCUIT_OPEN";
    this.ctx.shared.metrics.error(this.ctx.route, this.ctx.provider, errorTypeIndex("overloaded_error"));
    this.ctx.send(503, "application/json", errorBody("GW_ERR_UPSTREAM_CIRCUIT_OPEN", this.ctx.id), ["retry-after", String(ra)]);
  }

  private finishWith(): void {
    const l = this.last!;
    this.done();
    const ctx = this.ctx;
    ctx.shared.metrics.error(ctx.route, ctx.provider, errorTypeIndex(errorTypeForStatus(l.status)));
    ctx.send(l.status, l.contentType, l.body, l.extra);
  }

  /**
   * The request's deadline. An attempt the provider was working on is its failure (a
   * hanging provider must trip the breaker); one still waiting for a pool connection is
   * cancelled unsent and its probe slot given back.
   */
  expire(): void {
    this.onDeadline();
  }

  private onDeadline(): void {
    const ctx = this.ctx;
    if (ctx.done || ctx.aborted) return;
    const r = this.relay;
    this.relay = null;
    if (r !== null && r.sent && !ctx.started) this.measured(performance.now() - this.sentAt);
    this.done();
    const message = `the request exceeded UPSTREAM_REQUEST_TIMEOUT_MS (${this.deps.cfg.upstream_request_timeout_ms} ms)`;
    if (r !== null) {
      if (r.sent) this.verdict(false);
      else this.release();
      r.abort(DEADLINE);
      if (ctx.started) return r.endStreamWithError("timeout_error", message, "GW_ERR_UPSTREAM_TIMEOUT");
    } else this.release(); // admitted, not sent
    ctx.fail("GW_ERR_UPSTREAM_TIMEOUT", message);
  }

  /** An attempt goes to `t`: its deployment has one more in flight until `leave`. */
  private enter(t: Target): void {
    this.deps.deployments.enter(t.slot);
    this.held = t.slot;
    this.sentAt = performance.now();
  }

  /** The attempt in flight got its first byte (or waited this long in vain) after `ms`. */
  private measured(ms: number): void {
    const d = this.deps.deployments;
    if (this.held >= 0) d.observe(this.held, ms * 1000, d.at(performance.now()));
  }

  /** The attempt in flight ended: its deployment's in-flight count goes back, once. */
  private leave(): void {
    if (this.held < 0) return;
    this.deps.deployments.leave(this.held);
    this.held = -1;
  }

  private done(): void {
    this.leave();
    deadlines.remove(this);
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
  }

  /** Client gone: stop everything and give back a half-open probe slot. */
  private cleanup(): void {
    this.done();
    const r = this.relay;
    this.relay = null;
    r?.abort(CLIENT_GONE);
    this.release();
  }
}

function headerOf(h: IncomingHttpHeaders, name: string): string {
  const v = h[name];
  return typeof v === "string" ? v : Array.isArray(v) ? (v[0] ?? "") : "";
}
