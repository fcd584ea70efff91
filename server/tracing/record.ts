/**
 * What an acceptor thread records about one traced request, and how it travels to the
 * thread that builds and exports spans (server/tracing/otel.ts). The acceptor keeps a few
 * numbers and strings per request in a pooled TraceRecord and, when the request ends,
 * appends them to a flat array of primitives (one structured-clone message per batch of
 * requests, its first element the number of spans it makes); the builder reads them back
 * in the same order. Nothing here touches the
 * OpenTelemetry SDK: the acceptors never build or export a span.
 *
 * Also here: trace and span ids, the W3C traceparent, and the OTEL_TRACES_SAMPLER decision,
 * taken where the request arrives because the attempt's traceparent carries it upstream.
 */
import type { SamplerName } from "../../core/tracing-config.js";

/** Fields of one attempt, in batch order. */
export const A_SPAN = 0,
  A_PROVIDER = 1,
  A_PROVIDER_TYPE = 2,
  A_MODEL = 3,
  A_RETRY = 4,
  A_PROBE = 5,
  A_START = 6,
  A_END = 7,
  A_STATUS = 8,
  A_ERROR = 9,
  A_FIRST_TOKEN = 10,
  ATTEMPT_FIELDS = 11;

/** Epoch milliseconds with sub-millisecond precision (spans are built in another thread). */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

function hex8(): string {
  return ((Math.random() * 0x100000000) >>> 0).toString(16).padStart(8, "0");
}
/** A random, valid (non-zero) span id: 16 lowercase hex digits. */
export function newSpanId(): string {
  for (;;) {
    const id = hex8() + hex8();
    if (id !== "0000000000000000") return id;
  }
}
/** A random, valid (non-zero) trace id: 32 lowercase hex digits. */
export function newTraceId(): string {
  for (;;) {
    const id = hex8() + hex8() + hex8() + hex8();
    if (id !== "00000000000000000000000000000000") return id;
  }
}

/** W3C trace-context: version-format-tolerant, as @opentelemetry/core parses it. */
const TRACEPARENT = /^\s?(?!ff)([\da-f]{2})-((?![0]{32})[\da-f]{32})-((?![0]{16})[\da-f]{16})-([\da-f]{2})(-.*)?\s?$/;

/** [traceId, parentSpanId, sampled] from a client's traceparent, or null when it is not valid. */
export function parseTraceparent(v: string): [string, string, boolean] | null {
  if (v === "") return null;
  const m = TRACEPARENT.exec(v);
  if (m === null || (m[1] === "00" && m[5] !== undefined)) return null;
  return [m[2]!, m[3]!, (Number.parseInt(m[4]!, 16) & 1) === 1];
}

/** The SDK's TraceIdRatioBasedSampler rule: the trace id's four 32-bit words XORed, below ratio × 2^32. */
function ratioSampled(traceId: string, ratio: number): boolean {
  const r = ratio >= 1 ? 1 : ratio <= 0 ? 0 : ratio;
  const upper = r === 1 ? 0x100000000 : Math.floor(r * 0xffffffff);
  let acc = 0;
  for (let i = 0; i < 32; i += 8) acc = (acc ^ Number.parseInt(traceId.slice(i, i + 8), 16)) >>> 0;
  return acc < upper;
}

/**
 * OTEL_TRACES_SAMPLER's decision for a new server span, as the SDK's samplers take it:
 * `parent` is null without a (valid) client traceparent, else whether the client sampled.
 */
export function shouldSample(sampler: SamplerName, ratio: number, traceId: string, parent: boolean | null): boolean {
  switch (sampler) {
    case "always_on":
      return true;
    case "always_off":
      return false;
    case "traceidratio":
      return ratioSampled(traceId, ratio);
    case "parentbased_always_off":
      return parent ?? false;
    case "parentbased_traceidratio":
      return parent ?? ratioSampled(traceId, ratio);
    default:
      return parent ?? true;
  }
}

/** One request's trace, recorded in its acceptor; reused (pooled) across requests. */
export class TraceRecord {
  traceId = "";
  spanId = "";
  /** The client's span ("" without a traceparent) and its tracestate ("" when none). */
  parentSpanId = "";
  traceState = "";
  sampled = false;
  route = 0;
  requestId = "";
  start = 0;
  firstToken = 0;
  /** ATTEMPT_FIELDS values per attempt, in order. */
  readonly attempts: (string | number)[] = [];
  /** Offset in `attempts` of the attempt still open, or -1. */
  open = -1;
  /** [provider, epoch ms] per breaker refusal. */
  readonly breakers: (string | number)[] = [];
  /** Stop reasons seen in the answer (Anthropic's stop_reason or OpenAI's finish_reason). */
  readonly reasons: string[] = [];

  reset(): void {
    this.traceId = this.spanId = this.parentSpanId = this.traceState = this.requestId = "";
    this.sampled = false;
    this.route = this.start = this.firstToken = 0;
    this.attempts.length = 0;
    this.breakers.length = 0;
    this.reasons.length = 0;
    this.open = -1;
  }

  /** Close the open attempt (if any) at `at`. */
  closeAttempt(at: number, status: number, error: string): void {
    const o = this.open;
    if (o < 0) return;
    this.attempts[o + A_END] = at;
    this.attempts[o + A_STATUS] = status;
    this.attempts[o + A_ERROR] = error;
    this.open = -1;
  }
}

/** The request's end as the record needs it (fields of RequestCtx). */
export interface RequestEnd {
  status: number;
  model: string | null;
  providerName: string;
  inputTokens: number;
  outputTokens: number;
  cacheCreationTokens: number;
  cacheReadTokens: number;
  keyId: string | null;
  sessionId: string | null;
  aborted: boolean;
  errorCode: string | null;
}

/** Append one finished request to `out` (read back by `readRequest`). */
export function writeRequest(out: unknown[], r: TraceRecord, c: RequestEnd, end: number): void {
  out.push(
    r.traceId,
    r.spanId,
    r.parentSpanId,
    r.traceState,
    r.route,
    r.requestId,
    r.start,
    end,
    r.firstToken,
    c.status,
    c.model ?? "",
    c.providerName,
    c.inputTokens,
    c.outputTokens,
    c.cacheCreationTokens,
    c.cacheReadTokens,
    c.keyId ?? "",
    c.sessionId ?? "",
    c.aborted ? 1 : 0,
    c.errorCode ?? "",
    r.reasons.join(","),
    r.open < 0 ? -1 : r.open / ATTEMPT_FIELDS,
    r.attempts.length / ATTEMPT_FIELDS,
    r.breakers.length / 2,
  );
  for (let i = 0; i < r.attempts.length; i++) out.push(r.attempts[i]);
  for (let i = 0; i < r.breakers.length; i++) out.push(r.breakers[i]);
}

/** One request read back from a batch (strings "" and numbers -1 mean "absent", as written). */
export interface RequestRead {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  route: number;
  requestId: string;
  start: number;
  end: number;
  firstToken: number;
  /** The request's outcome. */
  result: RequestEnd;
  reasons: string[];
  /** Index of the attempt still open when the request ended, or -1. */
  openAttempt: number;
  attempts: (string | number)[][];
  breakers: [string, number][];
}

/** Read the request starting at `b[at]`; returns it and the offset of the next one. */
export function readRequest(b: readonly unknown[], at: number): [RequestRead, number] {
  let i = at;
  const s = () => b[i++] as string;
  const n = () => b[i++] as number;
  const traceId = s(),
    spanId = s(),
    parentSpanId = s(),
    traceState = s(),
    route = n(),
    requestId = s(),
    start = n(),
    end = n(),
    firstToken = n();
  const status = n(),
    model = s(),
    providerName = s(),
    inputTokens = n(),
    outputTokens = n(),
    cacheCreationTokens = n(),
    cacheReadTokens = n(),
    keyId = s(),
    sessionId = s(),
    aborted = n() === 1,
    errorCode = s(),
    reasons = s(),
    openAttempt = n(),
    nAttempts = n(),
    nBreakers = n();
  const attempts: (string | number)[][] = [];
  for (let k = 0; k < nAttempts; k++) {
    attempts.push(b.slice(i, i + ATTEMPT_FIELDS) as (string | number)[]);
    i += ATTEMPT_FIELDS;
  }
  const breakers: [string, number][] = [];
  for (let k = 0; k < nBreakers; k++) breakers.push([s(), n()]);
  return [
    {
      traceId,
      spanId,
      parentSpanId,
      traceState,
      route,
      requestId,
      start,
      end,
      firstToken,
      result: {
        status,
        model: model === "" ? null : model,
        providerName,
        inputTokens,
        outputTokens,
        cacheCreationTokens,
        cacheReadTokens,
        keyId: keyId === "" ? null : keyId,
        sessionId: sessionId === "" ? null : sessionId,
        aborted,
        errorCode: errorCode === "" ? null : errorCode,
      },
      reasons: reasons === "" ? [] : reasons.split(","),
      openAttempt,
      attempts,
      breakers,
    },
    i,
  ];
}
