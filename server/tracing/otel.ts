/**
 * OpenTelemetry traces (docs/tracing.md), started in each acceptor thread when an OTLP
 * endpoint is configured. It subscribes to the request's publish points
 * (server/tracing/channels.ts); with tracing off nothing subscribes and the request path
 * pays one `hasSubscribers` check per point.
 *
 * One SERVER span per request with a CLIENT child per upstream attempt (retries and
 * fallbacks are separate children), GenAI semantic-convention attributes, the key and
 * session ids, breaker decisions and time to first token as an event. A client's W3C
 * traceparent is the parent; each attempt sends its own traceparent upstream. No prompt or
 * completion text is ever recorded. Spans are batched and exported over OTLP/HTTP from a
 * timer, off the request path; spans a failed export or a full queue loses are counted.
 */
import { subscribe } from "node:diagnostics_channel";
import {
  context as otelContext,
  diag,
  DiagLogLevel,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
} from "@opentelemetry/api";
import { ExportResultCode, W3CTraceContextPropagator, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  BatchSpanProcessor,
  ParentBasedSampler,
  TraceIdRatioBasedSampler,
  TracerProvider,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "../../core/tracing-config.js";
import { R_CHAT_COMPLETIONS, R_COUNT_TOKENS } from "../../core/metrics.js";
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

/** gen_ai.provider.name for each provider type (the semantic conventions' well-known values). */
const GENAI_PROVIDER: Record<string, string> = {
  anthropic: "anthropic",
  "azure-anthropic": "anthropic",
  databricks: "anthropic",
  openai: "openai",
  "azure-openai": "azure.ai.openai",
  bedrock: "aws.bedrock",
  vertex: "gcp.vertex_ai",
  mock: "portcullis.mock",
};

interface Trace {
  span: Span;
  ctx: Context;
  attempt: Span | null;
  attempts: number;
  responseModel: string | null;
  /** gen_ai.provider.name of the last attempt. */
  genaiProvider: string | null;
  /** stop_reason values seen in the answer (Anthropic's, or OpenAI's finish_reason). */
  finishReasons: string[];
  started: number;
}

function samplerOf(cfg: TracingConfig): Sampler {
  const ratio = new TraceIdRatioBasedSampler(cfg.ratio);
  switch (cfg.sampler) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return ratio;
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: ratio });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

/** Counts the spans an export failed to deliver (collector down, refused, timed out). */
class CountingExporter implements SpanExporter {
  constructor(
    private readonly inner: SpanExporter,
    private readonly dropped: (n: number) => void,
  ) {}
  export(spans: ReadableSpan[], done: (r: ExportResult) => void): void {
    this.inner.export(spans, (r) => {
      if (r.code !== ExportResultCode.SUCCESS) this.dropped(spans.length);
      done(r);
    });
  }
  shutdown(): Promise<void> {
    return this.inner.shutdown();
  }
  forceFlush(): Promise<void> {
    return this.inner.forceFlush?.() ?? Promise.resolve();
  }
}

const getter: TextMapGetter<RequestStartMsg> = {
  keys: () => ["traceparent", "tracestate"],
  get: (m, k) => (k === "traceparent" ? m.traceparent || undefined : k === "tracestate" ? m.tracestate || undefined : undefined),
};
const setter: TextMapSetter<string[]> = { set: (h, k, v) => void h.push(k, v) };

export interface Tracing {
  /** Export what is queued and stop (on shutdown). */
  shutdown(): Promise<void>;
}

/** Start tracing in this thread; `dropped(n)` counts lost spans (otel_spans_dropped_total). */
export function startTracing(cfg: TracingConfig, threadIndex: number, dropped: (n: number) => void, warn: (msg: string) => void): Tracing {
  // The SDK reports a full queue only through its diagnostic logger: count those spans too.
  diag.setLogger(
    {
      error: (m: string) => warn(m),
      warn: (m: string) => {
        const q = /^Dropped (\d+) spans/.exec(m);
        if (q !== null) dropped(Number(q[1]));
        warn(m);
      },
      info: () => {},
      debug: () => {},
      verbose: () => {},
    },
    DiagLogLevel.WARN,
  );
  const exporter = new CountingExporter(
    new OTLPTraceExporter({ url: cfg.url, headers: { ...cfg.headers }, timeoutMillis: cfg.exportTimeoutMs }),
    dropped,
  );
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": cfg.serviceName, "service.instance.id": `${process.pid}-${threadIndex}` }),
    sampler: samplerOf(cfg),
    spanProcessors: [
      new BatchSpanProcessor({
        exporter,
        scheduledDelayMillis: cfg.scheduleDelayMs,
        maxQueueSize: cfg.maxQueueSize,
        maxExportBatchSize: cfg.maxExportBatchSize,
        exportTimeoutMillis: cfg.exportTimeoutMs,
      }),
    ],
  });
  const tracer = provider.getTracer("portcullis");
  const propagator = new W3CTraceContextPropagator();
  const traces = new WeakMap<RequestCtx, Trace>();

  subscribe(requestStart.name, (m) => {
    const msg = m as RequestStartMsg;
    const c = msg.ctx;
    const parent = msg.traceparent === "" ? ROOT_CONTEXT : propagator.extract(ROOT_CONTEXT, msg, getter);
    const path =
      c.route === R_COUNT_TOKENS ? "/v1/messages/count_tokens" : c.route === R_CHAT_COMPLETIONS ? "/v1/chat/completions" : "/v1/messages";
    const span = tracer.startSpan(
      `POST ${path}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": "POST",
          "url.path": path,
          "gen_ai.operation.name": c.route === R_COUNT_TOKENS ? "count_tokens" : "chat",
          "portcullis.request_id": c.id,
        },
      },
      parent,
    );
    traces.set(c, {
      span,
      ctx: trace.setSpan(parent, span),
      attempt: null,
      attempts: 0,
      responseModel: null,
      genaiProvider: null,
      finishReasons: [],
      started: performance.now(),
    });
  });

  subscribe(attemptStart.name, (m) => {
    const msg = m as AttemptStartMsg;
    const t = traces.get(msg.ctx);
    if (t === undefined) return;
    t.attempt?.end();
    t.attempts++;
    const span = tracer.startSpan(
      `chat ${msg.model}`,
      {
        kind: SpanKind.CLIENT,
        attributes: {
          "gen_ai.operation.name": "chat",
          "gen_ai.provider.name": GENAI_PROVIDER[msg.providerType] ?? msg.providerType,
          "gen_ai.request.model": msg.model,
          "portcullis.provider": msg.provider,
          "portcullis.attempt": t.attempts,
          "portcullis.retry": msg.attempt > 1,
          "portcullis.breaker.decision": msg.probe ? "half_open_probe" : "admitted",
        },
      },
      t.ctx,
    );
    t.attempt = span;
    t.responseModel = msg.model;
    t.genaiProvider = GENAI_PROVIDER[msg.providerType] ?? msg.providerType;
    if (msg.headers !== null) propagator.inject(trace.setSpan(otelContext.active(), span), msg.headers, setter);
  });

  subscribe(attemptEnd.name, (m) => {
    const msg = m as AttemptEndMsg;
    const t = traces.get(msg.ctx);
    if (t === undefined || t.attempt === null) return;
    if (msg.status > 0) t.attempt.setAttribute("http.response.status_code", msg.status);
    if (msg.error !== null) {
      t.attempt.setAttribute("error.type", msg.error);
      t.attempt.setStatus({ code: SpanStatusCode.ERROR, message: msg.error });
    }
    t.attempt.end();
    t.attempt = null;
  });

  subscribe(breakerRefused.name, (m) => {
    const msg = m as BreakerMsg;
    traces.get(msg.ctx)?.span.addEvent("breaker_refused", { "portcullis.provider": msg.provider });
  });

  subscribe(firstToken.name, (m) => {
    const t = traces.get(m as RequestCtx);
    if (t === undefined) return;
    const ms = performance.now() - t.started;
    t.span.addEvent("gen_ai.first_token", { "gen_ai.server.time_to_first_token": ms / 1000 });
    t.attempt?.addEvent("gen_ai.first_token");
  });

  // Only the stop reason is read from the answer; no content is kept.
  subscribe(upstreamData.name, (m) => {
    const msg = m as DataMsg;
    const t = traces.get(msg.ctx);
    if (t === undefined) return;
    const text = Buffer.from(msg.data.buffer, msg.data.byteOffset, msg.data.byteLength).toString("latin1");
    for (const r of text.matchAll(/"(?:stop_reason|finish_reason)"\s*:\s*"([A-Za-z_]{1,40})"/g))
      if (!t.finishReasons.includes(r[1]!)) t.finishReasons.push(r[1]!);
  });

  subscribe(requestEnd.name, (m) => {
    const c = m as RequestCtx;
    const t = traces.get(c);
    if (t === undefined) return;
    traces.delete(c);
    const s = t.span;
    const failed = c.status >= 500 || c.errorCode !== null;
    if (t.attempt !== null) {
      // The answering attempt (or the one cut short by the client or the deadline).
      t.attempt.setAttribute("http.response.status_code", c.status);
      if (c.inputTokens >= 0) t.attempt.setAttribute("gen_ai.usage.input_tokens", c.inputTokens);
      if (c.outputTokens >= 0) t.attempt.setAttribute("gen_ai.usage.output_tokens", c.outputTokens);
      if (failed) t.attempt.setStatus({ code: SpanStatusCode.ERROR, message: c.errorCode ?? `status ${c.status}` });
      t.attempt.end();
    }
    s.setAttribute("http.response.status_code", c.status);
    s.setAttribute("portcullis.attempts", t.attempts);
    if (c.model !== null) s.setAttribute("gen_ai.request.model", c.model);
    if (t.responseModel !== null && !failed) s.setAttribute("gen_ai.response.model", t.responseModel);
    if (t.genaiProvider !== null) s.setAttribute("gen_ai.provider.name", t.genaiProvider);
    s.setAttribute("portcullis.provider", c.providerName);
    if (c.inputTokens >= 0) s.setAttribute("gen_ai.usage.input_tokens", c.inputTokens);
    if (c.outputTokens >= 0) s.setAttribute("gen_ai.usage.output_tokens", c.outputTokens);
    if (t.finishReasons.length > 0) s.setAttribute("gen_ai.response.finish_reasons", t.finishReasons);
    if (c.cacheCreationTokens >= 0) s.setAttribute("gen_ai.usage.cache_creation.input_tokens", c.cacheCreationTokens);
    if (c.cacheReadTokens >= 0) s.setAttribute("gen_ai.usage.cache_read.input_tokens", c.cacheReadTokens);
    if (c.keyId !== null) s.setAttribute("portcullis.key_id", c.keyId);
    if (c.sessionId !== null) s.setAttribute("session.id", c.sessionId);
    if (c.aborted) s.setAttribute("portcullis.client_aborted", true);
    if (c.errorCode !== null) s.setAttribute("error.type", c.errorCode);
    if (failed) s.setStatus({ code: SpanStatusCode.ERROR, message: c.errorCode ?? `status ${c.status}` });
    s.end();
  });

  return { shutdown: () => provider.shutdown() };
}
