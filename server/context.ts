/**
 * Per-request state (core/pipeline/state.ts plus the uWS response) and the single way a
 * request finishes. Every field is set in the constructor (stable shape). `finish` runs
 * exactly once: metrics (counters and the latency ring), the active gauge, then the
 * pipeline's settlement (budgets, token charges) and taps (ledger row, trace span end, log
 * line); after a client abort nothing is written to the response again.
 */
import type { HttpResponse } from "uWebSockets.js";
import type { Logger } from "pino";
import { CATALOGUE, errorBody, errorTypeIndex, statusLine, type ErrorCode } from "../core/errors.js";
import { type Metrics, R_HEALTH, R_METRICS } from "../core/metrics.js";
import type { Pipeline, Pricer, Tap } from "../core/pipeline/pipeline.js";
import { RequestState } from "../core/pipeline/state.js";
import type { AuditRow } from "../workers/ledger-task.js";
import type { CacheTap } from "./cache/gate.js";

const NO_HEADERS: readonly string[] = [];

/** A request's links in its thread's in-flight list. */
export interface InflightNode<T> {
  inPrev: T | null;
  inNext: T | null;
}

/**
 * The requests in flight on one thread (for draining), as an intrusive list through the
 * requests themselves. Not a Set: a Set with constant add/delete churn rehashes into a new
 * table every few dozen requests, and each table it leaves behind (old space, not yet
 * collected) still points at the requests of its time and at the table that replaced it,
 * so every scavenge kept whole finished requests alive and promoted them (issue 12: a third
 * of an acceptor's allocation survived each scavenge, 5–10 ms pauses).
 */
export class Inflight<T extends InflightNode<T> = RequestCtx> {
  private head: T | null = null;
  size = 0;
  add(c: T): void {
    c.inNext = this.head;
    if (this.head !== null) this.head.inPrev = c;
    this.head = c;
    this.size++;
  }
  /** A no-op for a node that is not in the list (deleting twice is safe). */
  delete(c: T): void {
    const p = c.inPrev,
      n = c.inNext;
    if (p === null && this.head !== c) return;
    if (p !== null) p.inNext = n;
    else this.head = n;
    if (n !== null) n.inPrev = p;
    c.inPrev = null;
    c.inNext = null;
    this.size--;
  }
  /** A copy, safe to iterate while requests finish. */
  toArray(): T[] {
    const out: T[] = [];
    for (let c = this.head; c !== null; c = c.inNext) out.push(c);
    return out;
  }
}

export interface Shared {
  metrics: Metrics;
  log: Logger;
  /** Requests in flight on this thread (for draining). */
  inflight: Inflight;
  draining: boolean;
  onIdle: (() => void) | null;
  /** Requests begun on this thread, health probes and metrics scrapes aside (server/idle-reclaim.ts watches it). */
  begun: number;
  /** Usage pricing and the ledger row (pipeline pricer and tap), plus MCP audit rows (server/usage-sink.ts); null = off. */
  usage: { price: Pricer; record: Tap; audit?(row: AuditRow): void } | null;
  /** The settlement of requests that run no admission stages (server/app.ts sets it). */
  plain: Pipeline | null;
}

export class RequestCtx extends RequestState {
  readonly res: HttpResponse;
  readonly shared: Shared;
  done = false;
  /** Status line + headers are on the wire (a stream has started). */
  started = false;
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
  /** x-portcullis-cache and cache-control as sent, for the response cache (server/cache/gate.ts). */
  cacheHeader = "";
  cacheControl = "";
  /** Re-shapes error bodies for a client speaking another API (server/openai/); null = as is. */
  reshapeError: ((body: string | Uint8Array, code: string | null, status: number) => string | Uint8Array) | null = null;
  /** Neighbours in this thread's in-flight list (Inflight). */
  inPrev: RequestCtx | null = null;
  inNext: RequestCtx | null = null;

  constructor(res: HttpResponse, shared: Shared, route: number) {
    super(route, performance.now());
    this.res = res;
    this.shared = shared;
    this.pipeline = shared.plain;
    shared.inflight.add(this);
    if (route !== R_HEALTH && route !== R_METRICS) shared.begun++;
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
    // Budgets, token charges, then the taps: ledger row, trace span end, log line (core/pipeline/pipeline.ts).
    if (this.pipeline !== null) this.pipeline.finish(this, status, durationUs);
    // Settled and logged: let go of what the request no longer needs. Something a library
    // still holds (an undici handler, a uWS callback) keeps this object a little longer, and
    // must not keep the body, its parsed tree or the upstream call with it.
    this.onAbort = null;
    this.body = null;
    this.parsed = null;
    this.cacheTap = null;
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
