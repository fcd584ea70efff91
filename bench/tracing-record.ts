/**
 * `node dist/bench/tracing-record.js [--requests 200000]`
 *
 * CPU per traced request on each side of the tracing split (docs/tracing.md), measured with
 * process.cpuUsage() in this one thread: the acceptor's part (the publish points of a
 * streamed request with one attempt → server/tracing/recorder.ts → the batch → a real
 * MessageChannel postMessage, whose receiving end also runs here) and the main thread's part (server/tracing/otel.ts reading the
 * batch and building the spans with the SDK, then the SDK's own OTLP/JSON serialisation,
 * without the HTTP request). Tracing off is the baseline for the acceptor's part.
 */
import { MessageChannel } from "node:worker_threads";
import { JsonTraceSerializer } from "@opentelemetry/otlp-transformer";
import type { ReadableSpan, SpanExporter } from "@opentelemetry/sdk-trace";
import type { TracingConfig } from "../core/tracing-config.js";
import { R_MESSAGES } from "../core/metrics.js";
import { attemptStart, firstToken, requestEnd, requestStart, upstreamData } from "../server/tracing/channels.js";
import { startRecorder } from "../server/tracing/recorder.js";
import { startTracing } from "../server/tracing/otel.js";
import { parseFlags } from "./format.js";

const cfg: TracingConfig = {
  url: "http://127.0.0.1:9/v1/traces",
  headers: {},
  serviceName: "bench",
  sampler: "parentbased_always_on",
  ratio: 1,
  scheduleDelayMs: 60_000,
  maxQueueSize: 1_000_000,
  maxExportBatchSize: 512,
  exportTimeoutMs: 1000,
};
const DATA = Buffer.from(
  'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":12}}\n\n',
);

function request(i: number): void {
  const ctx = {
    route: R_MESSAGES,
    id: `req_bench_0_${i}`,
    status: 200,
    model: "claude-bench",
    providerName: "anthropic",
    inputTokens: 10,
    outputTokens: 12,
    cacheCreationTokens: 0,
    cacheReadTokens: 0,
    keyId: "static-0",
    sessionId: null,
    aborted: false,
    errorCode: null,
  };
  if (requestStart.hasSubscribers) requestStart.publish({ ctx, traceparent: "", tracestate: "" });
  const headers = ["content-type", "application/json"];
  if (attemptStart.hasSubscribers)
    attemptStart.publish({
      ctx,
      provider: "anthropic",
      providerType: "anthropic",
      model: "claude-bench",
      attempt: 1,
      probe: false,
      headers,
    });
  if (firstToken.hasSubscribers) firstToken.publish(ctx);
  if (upstreamData.hasSubscribers) upstreamData.publish({ ctx, data: DATA });
  if (requestEnd.hasSubscribers) requestEnd.publish(ctx);
}

/** µs of CPU per request for `n` requests, yielding to the event loop every 1,000 (timers, messages). */
async function cpuPerRequest(n: number): Promise<number> {
  for (let i = 0; i < 20_000; i++) request(i); // warm-up
  const c0 = process.cpuUsage();
  for (let k = 0; k < n / 1000; k++) {
    for (let i = 0; i < 1000; i++) request(i);
    await new Promise((r) => setImmediate(r));
  }
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

async function main(): Promise<void> {
  const n = Number(parseFlags(process.argv.slice(2)).get("requests") ?? 200_000);
  const off = await cpuPerRequest(n);
  const batches: unknown[][] = [];
  const line = new MessageChannel();
  line.port2.on("message", (m: unknown[]) => void batches.push(m));
  const rec = startRecorder(cfg, (b) => line.port1.postMessage(b));
  const on = await cpuPerRequest(n);
  await rec.shutdown();
  await new Promise((r) => setTimeout(r, 100)); // the last messages arrive
  line.port1.close();
  // The main thread's part: every batch received, built into spans and serialised as the OTLP/HTTP exporter would.
  let bytes = 0;
  const serialize: SpanExporter = {
    export: (spans: ReadableSpan[], done) => {
      bytes += JsonTraceSerializer.serializeRequest(spans)?.length ?? 0;
      done({ code: 0 });
    },
    shutdown: () => Promise.resolve(),
  };
  const tracing = startTracing(
    cfg,
    () => {},
    () => {},
    serialize,
  );
  let requests = 0;
  const c0 = process.cpuUsage();
  for (const b of batches) tracing.accept(b);
  await tracing.shutdown();
  const c = process.cpuUsage(c0);
  requests = batches.length === 0 ? 0 : 20_000 + n; // every recorded request, warm-up included
  process.stdout.write(
    `acceptor, tracing off: ${off.toFixed(2)} µs/request\n` +
      `acceptor, tracing on (record + batch + both ends of postMessage): ${on.toFixed(2)} µs/request\n` +
      `main thread (read batch, build 2 spans with the SDK, OTLP/JSON serialisation): ${((c.user + c.system) / requests).toFixed(2)} µs/request, ${(bytes / requests).toFixed(0)} B of OTLP/JSON per request\n`,
  );
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
  process.exit(1);
});
