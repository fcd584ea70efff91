/**
 * The acceptor's side of tracing (docs/tracing.md): it subscribes to the request's publish
 * points (server/tracing/channels.ts) and only records. Per request a pooled TraceRecord
 * takes ids, times, the attempts and the stop reasons; at the request's end its fields are
 * appended to a batch of primitives that goes to the main thread in one message per
 * flush (server/tracing/otel.ts builds the spans there with the OpenTelemetry SDK and
 * exports them). Building spans and serialising OTLP here cost ~0.07 ms of an acceptor's
 * CPU per request; recording costs a few microseconds.
 *
 * Ids and the sampling decision are taken here: each attempt's traceparent goes upstream
 * at dispatch. An unsampled request still propagates (flags 00) and is never sent on.
 */
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { createTraceState } from "@opentelemetry/api";
import type { TracingConfig } from "../../core/tracing-config.js";
import type { RequestCtx } from "../context.js";
import {
  attemptEnd,
  attemptStart,
  breakerRefused,
  firstToken,
  requestEnd,
  requestStart,
  upstreamData,
  type AttemptEndMsg,
  type AttemptStartMsg,
  type BreakerMsg,
  type DataMsg,
  type RequestStartMsg,
} from "./channels.js";
import {
  A_FIRST_TOKEN,
  ATTEMPT_FIELDS,
  epochMs,
  newSpanId,
  newTraceId,
  parseTraceparent,
  shouldSample,
  TraceRecord,
  writeRequest,
} from "./record.js";

/** A batch is sent at once when it holds this many requests (else on the flush timer). */
const BATCH_REQUESTS = 256;
/** Records kept for reuse. */
const POOL_MAX = 1024;
/** At most this long between a request's end and its batch leaving the thread. */
const FLUSH_MAX_MS = 200;

export interface Recorder {
  /** Send what is batched now (on drain, before the thread reports). */
  flush(): void;
  /** Stop recording, flush, stop the timer. */
  shutdown(): Promise<void>;
}

const STOP_REASON = Buffer.from('"stop_reason"'),
  FINISH_REASON = Buffer.from('"finish_reason"');

function isSpace(c: number | undefined): boolean {
  return c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d;
}
/** [A-Za-z_] */
function isReasonByte(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || c === 0x5f);
}

/**
 * Stop reasons (`"stop_reason":"end_turn"`, `"finish_reason":"stop"`) in `b`, each added to
 * `into` once: a byte search, so the answer is never decoded into a string.
 */
export function scanStopReasons(b: Buffer, into: string[]): void {
  for (const key of [STOP_REASON, FINISH_REASON]) {
    let at = b.indexOf(key);
    while (at >= 0) {
      let i = at + key.length;
      while (isSpace(b[i])) i++;
      if (b[i++] === 0x3a /* : */) {
        while (isSpace(b[i])) i++;
        if (b[i] === 0x22 /* " */) {
          const from = ++i;
          while (i - from <= 40 && isReasonByte(b[i])) i++;
          if (b[i] === 0x22 && i > from && i - from <= 40) {
            const r = b.toString("latin1", from, i);
            if (!into.includes(r)) into.push(r);
          }
        }
      }
      at = b.indexOf(key, at + key.length);
    }
  }
}

/** Start recording in this acceptor; `send(batch)` hands a batch to the span builder. */
export function startRecorder(cfg: TracingConfig, send: (batch: unknown[]) => void): Recorder {
  const records = new WeakMap<RequestCtx, TraceRecord>();
  const pool: TraceRecord[] = [];
  // batch[0] is the number of spans the batch will make (the builder's queue bound counts them).
  let batch: unknown[] = [0];
  let batched = 0;

  const flush = () => {
    if (batched === 0) return;
    const b = batch;
    batch = [0];
    batched = 0;
    send(b);
  };
  const timer = setInterval(flush, Math.min(cfg.scheduleDelayMs, FLUSH_MAX_MS));
  timer.unref();
  const subscribed: [string | symbol, (m: unknown) => void][] = [];
  const on = (name: string | symbol, fn: (m: unknown) => void) => {
    subscribed.push([name, fn]);
    subscribe(name, fn);
  };

  on(requestStart.name, (m) => {
    const msg = m as RequestStartMsg;
    const r = pool.pop() ?? new TraceRecord();
    const parent = parseTraceparent(msg.traceparent);
    if (parent !== null) {
      r.traceId = parent[0];
      r.parentSpanId = parent[1];
      if (msg.tracestate !== "") r.traceState = createTraceState(msg.tracestate).serialize();
    } else r.traceId = newTraceId();
    r.spanId = newSpanId();
    r.sampled = shouldSample(cfg.sampler, cfg.ratio, r.traceId, parent === null ? null : parent[2]);
    r.route = msg.ctx.route;
    r.requestId = msg.ctx.id;
    r.start = epochMs();
    records.set(msg.ctx, r);
  });

  on(attemptStart.name, (m) => {
    const msg = m as AttemptStartMsg;
    const r = records.get(msg.ctx);
    if (r === undefined) return;
    const span = newSpanId();
    if (msg.headers !== null) {
      msg.headers.push("traceparent", `00-${r.traceId}-${span}-${r.sampled ? "01" : "00"}`);
      if (r.traceState !== "") msg.headers.push("tracestate", r.traceState);
    }
    if (!r.sampled) return;
    const now = epochMs();
    r.closeAttempt(now, 0, "");
    r.open = r.attempts.length;
    r.attempts.push(span, msg.provider, msg.providerType, msg.model, msg.attempt > 1 ? 1 : 0, msg.probe ? 1 : 0, now, 0, 0, "", 0);
  });

  on(attemptEnd.name, (m) => {
    const msg = m as AttemptEndMsg;
    const r = records.get(msg.ctx);
    if (r === undefined || !r.sampled) return;
    r.closeAttempt(epochMs(), msg.status, msg.error ?? "");
  });

  on(breakerRefused.name, (m) => {
    const msg = m as BreakerMsg;
    const r = records.get(msg.ctx);
    if (r !== undefined && r.sampled) r.breakers.push(msg.provider, epochMs());
  });

  on(firstToken.name, (m) => {
    const r = records.get(m as RequestCtx);
    if (r === undefined || !r.sampled) return;
    const now = epochMs();
    r.firstToken = now;
    if (r.open >= 0) r.attempts[r.open + A_FIRST_TOKEN] = now;
  });

  // Only the stop reason is read from the answer; no content is kept.
  on(upstreamData.name, (m) => {
    const msg = m as DataMsg;
    const r = records.get(msg.ctx);
    if (r === undefined || !r.sampled) return;
    const d = msg.data;
    scanStopReasons(Buffer.isBuffer(d) ? d : Buffer.from(d.buffer, d.byteOffset, d.byteLength), r.reasons);
  });

  on(requestEnd.name, (m) => {
    const c = m as RequestCtx;
    const r = records.get(c);
    if (r === undefined) return;
    records.delete(c);
    if (r.sampled) {
      batch[0] = (batch[0] as number) + 1 + r.attempts.length / ATTEMPT_FIELDS;
      writeRequest(batch, r, c, epochMs());
      if (++batched >= BATCH_REQUESTS) flush();
    }
    r.reset();
    if (pool.length < POOL_MAX) pool.push(r);
  });

  return {
    flush,
    shutdown: () => {
      clearInterval(timer);
      for (const [name, fn] of subscribed) unsubscribe(name, fn);
      flush();
      return Promise.resolve();
    },
  };
}
