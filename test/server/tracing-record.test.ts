/**
 * Tracing split in two (server/tracing/recorder.ts in the acceptors, server/tracing/otel.ts
 * on the main thread): what the acceptor records from the real publish points, sent as a
 * batch and built into spans by the OpenTelemetry SDK, is the span tree the acceptor
 * promised upstream (the same ids in each traceparent), with its times and attributes; the
 * sampling decision and traceparent parsing taken in the acceptor agree with the SDK's own.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import {
  AlwaysOffSampler,
  AlwaysOnSampler,
  ParentBasedSampler,
  SamplingDecision,
  TraceIdRatioBasedSampler,
  type ReadableSpan,
  type Sampler,
  type SpanExporter,
} from "@opentelemetry/sdk-trace";
import type { SamplerName, TracingConfig } from "../../core/tracing-config.js";
import { R_MESSAGES } from "../../core/metrics.js";
import {
  attemptEnd,
  attemptStart,
  breakerRefused,
  firstToken,
  requestEnd,
  requestStart,
  upstreamData,
} from "../../server/tracing/channels.js";
import { newTraceId, parseTraceparent, type RequestEnd, shouldSample } from "../../server/tracing/record.js";
import { scanStopReasons, startRecorder } from "../../server/tracing/recorder.js";
import { startTracing } from "../../server/tracing/otel.js";

const SAMPLERS: SamplerName[] = [
  "always_on",
  "always_off",
  "traceidratio",
  "parentbased_always_on",
  "parentbased_always_off",
  "parentbased_traceidratio",
];

function sdkSampler(name: SamplerName, ratio: number): Sampler {
  const r = new TraceIdRatioBasedSampler(ratio);
  switch (name) {
    case "always_on":
      return new AlwaysOnSampler();
    case "always_off":
      return new AlwaysOffSampler();
    case "traceidratio":
      return r;
    case "parentbased_always_off":
      return new ParentBasedSampler({ root: new AlwaysOffSampler() });
    case "parentbased_traceidratio":
      return new ParentBasedSampler({ root: r });
    default:
      return new ParentBasedSampler({ root: new AlwaysOnSampler() });
  }
}

function cfg(over: Partial<TracingConfig> = {}): TracingConfig {
  return {
    url: "http://127.0.0.1:9/v1/traces",
    headers: {},
    serviceName: "svc-under-test",
    sampler: "parentbased_always_on",
    ratio: 1,
    scheduleDelayMs: 50,
    maxQueueSize: 2048,
    maxExportBatchSize: 512,
    exportTimeoutMs: 1000,
    ...over,
  };
}

test("the acceptor's sampling decision is the SDK sampler's, for every OTEL_TRACES_SAMPLER and parent", () => {
  let sampled = 0,
    total = 0;
  for (const name of SAMPLERS) {
    for (const ratio of [0, 0.25, 0.5, 1]) {
      const sdk = sdkSampler(name, ratio);
      for (const parent of [null, true, false]) {
        for (let i = 0; i < 300; i++) {
          const traceId = newTraceId();
          const ctx =
            parent === null
              ? ROOT_CONTEXT
              : trace.setSpanContext(ROOT_CONTEXT, { traceId, spanId: "00f067aa0ba902b7", traceFlags: parent ? 1 : 0, isRemote: true });
          const want = sdk.shouldSample(ctx, traceId, "x", SpanKind.SERVER, {}, []).decision === SamplingDecision.RECORD_AND_SAMPLED;
          const got = shouldSample(name, ratio, traceId, parent);
          assert.equal(got, want, `${name} ratio ${ratio} parent ${parent} trace ${traceId}`);
          total++;
          if (got) sampled++;
        }
      }
    }
  }
  assert.ok(sampled > 0 && sampled < total, "both decisions occur");
});

test("a client's traceparent is read as the W3C propagator reads it", () => {
  const prop = new W3CTraceContextPropagator();
  const cases = [
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03-future",
    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
    "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
    "garbage",
  ];
  for (const tp of cases) {
    const sc = trace.getSpanContext(
      prop.extract(ROOT_CONTEXT, { traceparent: tp }, { get: (c, k) => c[k as "traceparent"], keys: () => ["traceparent"] }),
    );
    const want = sc === undefined ? null : [sc.traceId, sc.spanId, (sc.traceFlags & 1) === 1];
    assert.deepEqual(parseTraceparent(tp), want, tp);
  }
});

test("stop reasons are read from the bytes, each once, null and content ignored", () => {
  const into: string[] = [];
  scanStopReasons(Buffer.from('{"stop_reason":"end_turn","text":"say \\"stop_reason\\":\\"x\\""} {"finish_reason" : "stop"}'), into);
  scanStopReasons(Buffer.from('{"stop_reason":null}{"stop_reason":"end_turn"}{"finish_reason":"tool_calls"}'), into);
  assert.deepEqual(into, ["end_turn", "stop", "tool_calls"]);
});

/** What the recorder reads of a RequestCtx: the request's end, its route and id. */
interface FakeCtx extends RequestEnd {
  route: number;
  id: string;
}

test("a retried, fallen-back request recorded in the acceptor is built on the other side as the span tree its traceparents promised", async () => {
  const batches: unknown[][] = [];
  const rec = startRecorder(cfg(), (b) => batches.push(b));
  const ctx: FakeCtx = {
    route: R_MESSAGES,
    id: "req_t_0_1",
    status: 200,
    model: "traced-model",
    providerName: "backup",
    inputTokens: 11,
    outputTokens: 7,
    cacheCreationTokens: -1,
    cacheReadTokens: 3,
    keyId: "static-0",
    sessionId: "sess-1",
    aborted: false,
    errorCode: null,
  };
  const clientTrace = "4bf92f3577b34da6a3ce929d0e0e4736",
    clientSpan = "00f067aa0ba902b7";
  requestStart.publish({ ctx, traceparent: `00-${clientTrace}-${clientSpan}-01`, tracestate: "vendor=abc" });
  const h1: string[] = [],
    h2: string[] = [];
  attemptStart.publish({
    ctx,
    provider: "primary",
    providerType: "anthropic",
    model: "traced-model",
    attempt: 1,
    probe: false,
    headers: h1,
  });
  attemptEnd.publish({ ctx, status: 529, error: "http 529" });
  breakerRefused.publish({ ctx, provider: "other" });
  attemptStart.publish({ ctx, provider: "backup", providerType: "openai", model: "backup-model", attempt: 1, probe: true, headers: h2 });
  firstToken.publish(ctx);
  upstreamData.publish({ ctx, data: Buffer.from('data: {"choices":[{"finish_reason":"stop"}]}\n\n') });
  requestEnd.publish(ctx);
  await rec.shutdown();
  assert.equal(batches.length, 1, "one batch left the acceptor");
  for (const h of [h1, h2]) {
    assert.equal(h[0], "traceparent");
    assert.match(h[1]!, new RegExp(`^00-${clientTrace}-[0-9a-f]{16}-01$`));
    assert.deepEqual(h.slice(2), ["tracestate", "vendor=abc"]);
  }

  const spans: ReadableSpan[] = [];
  const exporter: SpanExporter = {
    export: (s, done) => {
      spans.push(...s);
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  const dropped: number[] = [];
  const tracing = startTracing(
    cfg(),
    (n) => dropped.push(n),
    () => {},
    exporter,
  );
  tracing.accept(batches[0]!);
  await tracing.shutdown();
  assert.equal(spans.length, 3);
  const server = spans.find((s) => s.kind === SpanKind.SERVER)!;
  const kids = spans.filter((s) => s.kind === SpanKind.CLIENT);
  assert.equal(server.spanContext().traceId, clientTrace);
  assert.equal(server.parentSpanContext?.spanId, clientSpan, "the client's span is the parent");
  assert.equal(server.spanContext().traceState?.serialize(), "vendor=abc");
  assert.equal(server.name, "POST /v1/messages");
  assert.equal(server.resource.attributes["service.name"], "svc-under-test");
  assert.equal(server.resource.attributes["service.instance.id"], String(process.pid), "one exporter for the process");
  assert.deepEqual(
    kids.map((k) => `00-${clientTrace}-${k.spanContext().spanId}-01`),
    [h1[1], h2[1]],
    "each attempt span has the id its traceparent sent upstream",
  );
  for (const k of kids) assert.equal(k.parentSpanContext?.spanId, server.spanContext().spanId);
  const a = server.attributes;
  assert.equal(a["portcullis.request_id"], "req_t_0_1");
  assert.equal(a["portcullis.attempts"], 2);
  assert.equal(a["gen_ai.request.model"], "traced-model");
  assert.equal(a["gen_ai.response.model"], "backup-model");
  assert.equal(a["gen_ai.provider.name"], "openai");
  assert.equal(a["portcullis.provider"], "backup");
  assert.equal(a["gen_ai.usage.input_tokens"], 11);
  assert.equal(a["gen_ai.usage.output_tokens"], 7);
  assert.equal(a["gen_ai.usage.cache_read.input_tokens"], 3);
  assert.equal(a["gen_ai.usage.cache_creation.input_tokens"], undefined);
  assert.deepEqual(a["gen_ai.response.finish_reasons"], ["stop"]);
  assert.equal(a["portcullis.key_id"], "static-0");
  assert.equal(a["session.id"], "sess-1");
  assert.deepEqual(
    server.events.map((e) => [e.name, e.attributes?.["portcullis.provider"]]),
    [
      ["breaker_refused", "other"],
      ["gen_ai.first_token", undefined],
    ],
  );
  const [first, second] = kids;
  assert.deepEqual(
    [
      first!.attributes["http.response.status_code"],
      first!.attributes["error.type"],
      first!.status.code,
      first!.attributes["portcullis.breaker.decision"],
    ],
    [529, "http 529", 2, "admitted"],
  );
  assert.deepEqual(
    [
      second!.attributes["http.response.status_code"],
      second!.attributes["gen_ai.usage.output_tokens"],
      second!.status.code,
      second!.attributes["portcullis.breaker.decision"],
    ],
    [200, 7, 0, "half_open_probe"],
  );
  assert.deepEqual(
    second!.events.map((e) => e.name),
    ["gen_ai.first_token"],
  );
  // Times as the acceptor took them: the tree nests and the attempts follow each other.
  const ns = (t: [number, number]) => t[0] * 1e9 + t[1];
  assert.ok(ns(server.startTime) <= ns(first!.startTime));
  assert.ok(ns(first!.endTime) <= ns(second!.startTime));
  assert.ok(ns(second!.endTime) <= ns(server.endTime));
  assert.ok(Math.abs(ns(server.startTime) / 1e6 - Date.now()) < 60_000, "epoch times, not thread-relative ones");
  assert.deepEqual(dropped, []);
});

test("an unsampled request still propagates (flags 00) and never leaves the acceptor", async () => {
  const batches: unknown[][] = [];
  const rec = startRecorder(cfg({ sampler: "always_off" }), (b) => batches.push(b));
  const ctx = { route: R_MESSAGES, id: "req_t_0_2" };
  requestStart.publish({ ctx, traceparent: "", tracestate: "" });
  const h: string[] = [];
  attemptStart.publish({ ctx, provider: "p", providerType: "anthropic", model: "m", attempt: 1, probe: false, headers: h });
  requestEnd.publish(ctx);
  await rec.shutdown();
  assert.equal(h[0], "traceparent");
  assert.match(h[1]!, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/);
  assert.deepEqual(batches, []);
});

test("batches past OTEL_BSP_MAX_QUEUE_SIZE waiting on the main thread are dropped and counted, not queued", async () => {
  const batches: unknown[][] = [];
  const rec = startRecorder(cfg(), (b) => batches.push(b));
  for (let i = 0; i < 2; i++) {
    const ctx = { route: R_MESSAGES, id: `req_t_0_q${i}`, status: 200, model: "m", providerName: "p", inputTokens: 1, outputTokens: 1 };
    requestStart.publish({ ctx, traceparent: "", tracestate: "" });
    attemptStart.publish({ ctx, provider: "p", providerType: "anthropic", model: "m", attempt: 1, probe: false, headers: null });
    requestEnd.publish(ctx);
  }
  await rec.shutdown();
  assert.equal(batches.length, 1);
  assert.equal(batches[0]![0], 4, "the batch says it makes 4 spans");
  const spans: ReadableSpan[] = [];
  const dropped: number[] = [];
  const tracing = startTracing(
    cfg({ maxQueueSize: 3, maxExportBatchSize: 3 }),
    (n) => dropped.push(n),
    () => {},
    { export: (s, done) => (spans.push(...s), done({ code: 0 })), shutdown: () => Promise.resolve() },
  );
  tracing.accept(batches[0]!);
  await tracing.shutdown();
  assert.deepEqual(dropped, [4]);
  assert.equal(spans.length, 0);
});
