/**
 * OpenTelemetry traces (docs/tracing.md), built and exported on the main thread when an
 * OTLP endpoint is configured. The acceptor threads only record (server/tracing/recorder.ts)
 * and send batches of finished requests here; each becomes one SERVER span with a CLIENT
 * child per upstream attempt (retries and fallbacks are separate children), GenAI
 * semantic-convention attributes, the key and session ids, breaker refusals and time to
 * first token as events, with the ids, times and sampling decision the acceptor took (its
 * traceparent went upstream with them). No prompt or completion text is ever recorded.
 * Spans are batched and exported over OTLP/HTTP; spans a failed export or a full queue loses
 * are counted.
 */
import { createTraceState, diag, DiagLogLevel, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Span } from "@opentelemetry/api";
import { ExportResultCode, type ExportResult } from "@opentelemetry/core";
import { OTLPTraceExporter } from "@opentelemetry/exporter-trace-otlp-http";
import { resourceFromAttributes } from "@opentelemetry/resources";
import { AlwaysOnSampler, BatchSpanProcessor, TracerProvider, type ReadableSpan, type SpanExporter } from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "../../core/tracing-config.js";
import { R_CHAT_COMPLETIONS, R_COUNT_TOKENS } from "../../core/metrics.js";
import {
  A_END,
  A_ERROR,
  A_FIRST_TOKEN,
  A_MODEL,
  A_PROBE,
  A_PROVIDER,
  A_PROVIDER_TYPE,
  A_RETRY,
  A_SPAN,
  A_START,
  A_STATUS,
  readRequest,
  type RequestRead,
} from "./record.js";

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

/** Requests built per turn of the main thread's event loop (~40 µs each). */
const SLICE_REQUESTS = 32;

export interface Tracing {
  /** Build and queue the spans of one batch from an acceptor (server/tracing/recorder.ts). */
  accept(batch: readonly unknown[]): void;
  /** Export what is queued and stop (on shutdown). */
  shutdown(): Promise<void>;
}

/**
 * Start the span builder; `dropped(n)` counts lost spans (otel_spans_dropped_total).
 * `exporter` replaces the OTLP/HTTP exporter (tests).
 */
export function startTracing(
  cfg: TracingConfig,
  dropped: (n: number) => void,
  warn: (msg: string) => void,
  exporter: SpanExporter | null = null,
): Tracing {
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
  const out = new CountingExporter(
    exporter ?? new OTLPTraceExporter({ url: cfg.url, headers: { ...cfg.headers }, timeoutMillis: cfg.exportTimeoutMs }),
    dropped,
  );
  // The acceptor chose every id: the SDK takes them from here, span by span.
  const ids = { traceId: "", spanId: "" };
  const provider = new TracerProvider({
    resource: resourceFromAttributes({ "service.name": cfg.serviceName, "service.instance.id": String(process.pid) }),
    // Only sampled requests are recorded (the acceptor applied OTEL_TRACES_SAMPLER).
    sampler: new AlwaysOnSampler(),
    idGenerator: { generateTraceId: () => ids.traceId, generateSpanId: () => ids.spanId },
    spanProcessors: [
      new BatchSpanProcessor({
        exporter: out,
        scheduledDelayMillis: cfg.scheduleDelayMs,
        maxQueueSize: cfg.maxQueueSize,
        maxExportBatchSize: cfg.maxExportBatchSize,
        exportTimeoutMillis: cfg.exportTimeoutMs,
      }),
    ],
  });
  const tracer = provider.getTracer("portcullis");

  function build(q: RequestRead): void {
    const c = q.result;
    const path =
      q.route === R_COUNT_TOKENS ? "/v1/messages/count_tokens" : q.route === R_CHAT_COMPLETIONS ? "/v1/chat/completions" : "/v1/messages";
    const parent =
      q.parentSpanId === ""
        ? ROOT_CONTEXT
        : trace.setSpanContext(ROOT_CONTEXT, {
            traceId: q.traceId,
            spanId: q.parentSpanId,
            traceFlags: 1,
            isRemote: true,
            traceState: q.traceState === "" ? undefined : createTraceState(q.traceState),
          });
    ids.traceId = q.traceId;
    ids.spanId = q.spanId;
    const s = tracer.startSpan(
      `POST ${path}`,
      {
        kind: SpanKind.SERVER,
        startTime: q.start,
        attributes: {
          "http.request.method": "POST",
          "url.path": path,
          "gen_ai.operation.name": q.route === R_COUNT_TOKENS ? "count_tokens" : "chat",
          "portcullis.request_id": q.requestId,
        },
      },
      parent,
    );
    const failed = c.status >= 500 || c.errorCode !== null;
    const under = trace.setSpan(ROOT_CONTEXT, s);
    let last: (string | number)[] | null = null;
    for (let i = 0; i < q.attempts.length; i++) {
      const a = q.attempts[i]!;
      last = a;
      const genai = GENAI_PROVIDER[a[A_PROVIDER_TYPE] as string] ?? (a[A_PROVIDER_TYPE] as string);
      ids.spanId = a[A_SPAN] as string;
      const span = tracer.startSpan(
        `chat ${a[A_MODEL]}`,
        {
          kind: SpanKind.CLIENT,
          startTime: a[A_START] as number,
          attributes: {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": genai,
            "gen_ai.request.model": a[A_MODEL] as string,
            "portcullis.provider": a[A_PROVIDER] as string,
            "portcullis.attempt": i + 1,
            "portcullis.retry": a[A_RETRY] === 1,
            "portcullis.breaker.decision": a[A_PROBE] === 1 ? "half_open_probe" : "admitted",
          },
        },
        under,
      );
      if ((a[A_FIRST_TOKEN] as number) > 0) span.addEvent("gen_ai.first_token", undefined, a[A_FIRST_TOKEN] as number);
      if (i === q.openAttempt) {
        // The answering attempt (or the one cut short by the client or the deadline).
        span.setAttribute("http.response.status_code", c.status);
        if (c.inputTokens >= 0) span.setAttribute("gen_ai.usage.input_tokens", c.inputTokens);
        if (c.outputTokens >= 0) span.setAttribute("gen_ai.usage.output_tokens", c.outputTokens);
        if (failed) span.setStatus({ code: SpanStatusCode.ERROR, message: c.errorCode ?? `status ${c.status}` });
        span.end(q.end);
        continue;
      }
      endAttempt(span, a);
    }
    for (const [p, at] of q.breakers) s.addEvent("breaker_refused", { "portcullis.provider": p }, at);
    if (q.firstToken > 0)
      s.addEvent("gen_ai.first_token", { "gen_ai.server.time_to_first_token": (q.firstToken - q.start) / 1000 }, q.firstToken);
    s.setAttribute("http.response.status_code", c.status);
    s.setAttribute("portcullis.attempts", q.attempts.length);
    if (c.model !== null) s.setAttribute("gen_ai.request.model", c.model);
    if (last !== null) {
      if (!failed) s.setAttribute("gen_ai.response.model", last[A_MODEL] as string);
      s.setAttribute("gen_ai.provider.name", GENAI_PROVIDER[last[A_PROVIDER_TYPE] as string] ?? (last[A_PROVIDER_TYPE] as string));
    }
    s.setAttribute("portcullis.provider", c.providerName);
    if (c.inputTokens >= 0) s.setAttribute("gen_ai.usage.input_tokens", c.inputTokens);
    if (c.outputTokens >= 0) s.setAttribute("gen_ai.usage.output_tokens", c.outputTokens);
    if (q.reasons.length > 0) s.setAttribute("gen_ai.response.finish_reasons", q.reasons);
    if (c.cacheCreationTokens >= 0) s.setAttribute("gen_ai.usage.cache_creation.input_tokens", c.cacheCreationTokens);
    if (c.cacheReadTokens >= 0) s.setAttribute("gen_ai.usage.cache_read.input_tokens", c.cacheReadTokens);
    if (c.keyId !== null) s.setAttribute("portcullis.key_id", c.keyId);
    if (c.sessionId !== null) s.setAttribute("session.id", c.sessionId);
    if (c.aborted) s.setAttribute("portcullis.client_aborted", true);
    if (c.errorCode !== null) s.setAttribute("error.type", c.errorCode);
    if (failed) s.setStatus({ code: SpanStatusCode.ERROR, message: c.errorCode ?? `status ${c.status}` });
    s.end(q.end);
  }

  // Batches wait here and are built a slice at a time: the main thread also answers the
  // acceptors' cache lookups and admin calls, which must not wait behind a whole batch.
  const queue: (readonly unknown[])[] = [];
  let pos = 1,
    queuedSpans = 0,
    scheduled = false;
  const buildSlice = (max: number) => {
    for (let n = 0; n < max && queue.length > 0; n++) {
      const b = queue[0]!;
      const [q, next] = readRequest(b, pos);
      pos = next;
      queuedSpans -= 1 + q.attempts.length;
      if (pos >= b.length) {
        queue.shift();
        pos = 1;
      }
      try {
        build(q);
      } catch (e) {
        // Never let one odd record stop the others.
        dropped(1 + q.attempts.length);
        warn(`span not built: ${(e as Error).message}`);
      }
    }
  };
  const work = () => {
    scheduled = false;
    buildSlice(SLICE_REQUESTS);
    if (queue.length > 0) schedule();
  };
  const schedule = () => {
    if (scheduled) return;
    scheduled = true;
    setImmediate(work);
  };

  return {
    accept(batch) {
      const spans = batch[0] as number;
      if (batch.length <= 1) return;
      // Past the export queue's bound these spans could not be queued anyway: dropped here, counted.
      if (queuedSpans + spans > cfg.maxQueueSize) return dropped(spans);
      queuedSpans += spans;
      queue.push(batch);
      schedule();
    },
    shutdown: () => {
      buildSlice(Number.POSITIVE_INFINITY);
      return provider.shutdown();
    },
  };
}

/** An attempt that ended before the request did: its status or error, if it reported one. */
function endAttempt(span: Span, a: (string | number)[]): void {
  const status = a[A_STATUS] as number,
    error = a[A_ERROR] as string;
  if (status > 0) span.setAttribute("http.response.status_code", status);
  if (error !== "") {
    span.setAttribute("error.type", error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error });
  }
  span.end(a[A_END] as number);
}
