/**
 * Lock-free metrics in one SharedArrayBuffer, laid out at start-up and shared by every
 * acceptor thread and the render worker. Writers use Atomics only: no allocation, no
 * label strings per call. Every counter is 64 bits as two Uint32 slots (lo, hi) with a
 * carry, so it neither wraps at 2^32 nor needs BigInt.
 */
import { ERROR_TYPES } from "./errors.js";
import { TOOL_NAMES } from "./policy/tool-names.js";
import { add64, read64 } from "./atomic64.js";
import { CACHE_SLOTS } from "./cache/stats.js";
import { RingLayout, ringRecord, ringSecond, S_OVERHEAD, S_TOTAL, S_TTFB } from "./latency-ring.js";
import { UserLayout } from "./user-metrics.js";
export { read64 };

/** Route label values, bounded; a raw path never becomes a label. */
export const ROUTES = ["messages", "count_tokens", "models", "health", "metrics", "other", "chat_completions"] as const;
export const R_MESSAGES = 0,
  R_COUNT_TOKENS = 1,
  R_MODELS = 2,
  R_HEALTH = 3,
  R_METRICS = 4,
  R_OTHER = 5,
  R_CHAT_COMPLETIONS = 6;
/** Routes whose recent latency is kept in the ring (the ones that reach providers). */
export const RING_ROUTES = [R_MESSAGES, R_COUNT_TOKENS, R_CHAT_COMPLETIONS] as const;

export const STATUS_CLASSES = ["1xx", "2xx", "3xx", "4xx", "5xx"] as const;

/** Why a request was refused before reaching a provider (http_requests_rejected_total{reason}). */
export const REJECT_REASONS = [
  "heap",
  "memory",
  "active_requests",
  "event_loop_delay",
  "circuit_open",
  "rate_limit_requests",
  "rate_limit_tokens",
] as const;
export const RJ_CIRCUIT_OPEN = 4,
  RJ_RATE_REQUESTS = 5,
  RJ_RATE_TOKENS = 6;
/** Shedder verdict v (1..4) maps to reason index v - 1. */

/**
 * MCP tool calls (tool_calls_total{tool,decision}): the tool names, then "other" for a
 * name outside the table (never a raw client string as a label), by decision.
 */
export const TOOL_LABELS = [...TOOL_NAMES, "other"] as const;
export const TOOL_OTHER = TOOL_NAMES.length;
/** allow: the policy let the call run; deny: policy refusal or invalid arguments; error: it failed (missing file, sandbox did not start, internal). */
export const TOOL_DECISIONS = ["allow", "deny", "error"] as const;
export type ToolDecision = (typeof TOOL_DECISIONS)[number];

/** What a provider's beta/field policy dropped (provider_policy_dropped_total{provider,kind}). */
export const POLICY_KINDS = ["beta", "field"] as const;
export const PK_BETA = 0,
  PK_FIELD = 1;

/** Histogram bucket upper bounds in microseconds (the exposition shows seconds); the sub-ms ones show the gateway's own time. */
export const BUCKETS_US = [
  10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
  10_000_000, 30_000_000, 60_000_000, 120_000_000, 300_000_000,
] as const;

/** Single-slot gauges and flags (Int32), at fixed indexes. */
export const G_ACTIVE = 0; // requests in flight, all threads
export const G_DRAINING = 1; // 1 once shutdown started
export const G_WORKERS_OK = 2; // 1 while the render/ledger worker pool is up
export const G_SPANS_DROPPED = 3; // trace spans lost (export failed, queue full), all threads (server/tracing/otel.ts)
export const G_LOG_DROPPED = 4; // log lines dropped because the log buffer was full, all threads (a counter)
const N_GAUGES = 8;

export class MetricsLayout {
  readonly providers: readonly string[];
  readonly nP: number;
  readonly nR = ROUTES.length;
  readonly nS = STATUS_CLASSES.length;
  readonly nE = ERROR_TYPES.length;
  readonly nB = BUCKETS_US.length + 1; // + the +Inf bucket
  /** Slot offsets, in Uint32 units. */
  readonly gaugesOff = 0;
  readonly requestsOff: number;
  readonly errorsOff: number;
  readonly histOff: number;
  readonly rejectedOff: number;
  /** tool_calls_total: TOOL_LABELS x TOOL_DECISIONS 64-bit counters. */
  readonly toolsOff: number;
  /** Per provider: waits for an upstream pool connection (count, then the sum in µs), 64-bit each. */
  readonly poolWaitOff: number;
  /** provider_policy_dropped_total: nP x POLICY_KINDS 64-bit counters. */
  readonly policyOff: number;
  /** The response cache's counters and gauges (core/cache/stats.ts). */
  readonly cacheOff: number;
  /** Per (route, provider): nB bucket counters + the sum in microseconds, all 64-bit. */
  readonly histStride: number;
  /** Recent latency (core/latency-ring.ts) for the routes that reach providers, after every counter. */
  readonly ring: RingLayout;
  /** Per-developer usage slots (core/user-metrics.ts); none unless USAGE_METRICS_USER_LABEL_MAX is set. */
  readonly user: UserLayout;
  readonly totalU32: number;

  /** `providers` are the configured provider names; index 0 ("none") is the gateway itself. */
  constructor(providers: readonly string[], userSlots = 0) {
    this.providers = Object.freeze(["none", ...providers]);
    this.nP = this.providers.length;
    this.requestsOff = N_GAUGES;
    this.errorsOff = this.requestsOff + this.nR * this.nP * this.nS * 2;
    this.histOff = this.errorsOff + this.nR * this.nP * this.nE * 2;
    this.histStride = (this.nB + 1) * 2;
    this.rejectedOff = this.histOff + this.nR * this.nP * this.histStride;
    this.toolsOff = this.rejectedOff + REJECT_REASONS.length * 2;
    this.poolWaitOff = this.toolsOff + TOOL_LABELS.length * TOOL_DECISIONS.length * 2;
    this.policyOff = this.poolWaitOff + this.nP * 4;
    this.cacheOff = this.policyOff + this.nP * POLICY_KINDS.length * 2;
    const ringOff = this.cacheOff + CACHE_SLOTS;
    this.ring = new RingLayout(ringOff, RING_ROUTES, this.nR, this.nP);
    this.user = new UserLayout(ringOff + this.ring.totalU32, userSlots);
    this.totalU32 = this.user.off + this.user.totalU32;
  }

  requestSlot(r: number, p: number, s: number): number {
    return this.requestsOff + ((r * this.nP + p) * this.nS + s) * 2;
  }
  errorSlot(r: number, p: number, e: number): number {
    return this.errorsOff + ((r * this.nP + p) * this.nE + e) * 2;
  }
  histSlot(r: number, p: number): number {
    return this.histOff + (r * this.nP + p) * this.histStride;
  }
  toolSlot(t: number, d: number): number {
    return this.toolsOff + (t * TOOL_DECISIONS.length + d) * 2;
  }
  policySlot(p: number, kind: number): number {
    return this.policyOff + (p * POLICY_KINDS.length + kind) * 2;
  }
}

export function createMetricsBuffer(layout: MetricsLayout): SharedArrayBuffer {
  return new SharedArrayBuffer(layout.totalU32 * 4);
}

/** Bucket index for a duration: a short linear scan over 17 integers. */
export function bucketOf(us: number): number {
  const b = BUCKETS_US;
  for (let i = 0; i < b.length; i++) if (us <= b[i]!) return i;
  return b.length;
}

/** The writer side, one per thread over the shared buffer. */
export class Metrics {
  readonly layout: MetricsLayout;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;

  constructor(layout: MetricsLayout, sab: SharedArrayBuffer) {
    this.layout = layout;
    this.u32 = new Uint32Array(sab);
    this.i32 = new Int32Array(sab);
  }

  /** One finished request: the counter and the latency histogram. */
  record(route: number, provider: number, status: number, durationUs: number): void {
    const L = this.layout;
    const sc = status >= 100 && status < 600 ? ((status / 100) | 0) - 1 : 4;
    add64(this.u32, L.requestSlot(route, provider, sc), 1);
    const h = L.histSlot(route, provider);
    const us = durationUs < 0 ? 0 : durationUs > 0xfffffffe ? 0xfffffffe : Math.round(durationUs);
    add64(this.u32, h + bucketOf(us) * 2, 1);
    add64(this.u32, h + L.nB * 2, us);
  }

  /**
   * Recent latency of one finished request into the ring: total, and for a request that
   * reached a provider the answering attempt's wait for response headers and the gateway's own
   * time (total minus the time from the first dispatch to the end of the last attempt).
   * `ttfbUs` < 0: no upstream was involved. `nowMs` is wall-clock (timeOrigin + now).
   */
  latency(route: number, provider: number, status: number, totalUs: number, upstreamUs: number, ttfbUs: number, nowMs: number): void {
    const ring = this.layout.ring;
    const rr = ring.routeMap[route]!;
    if (rr < 0) return;
    const sec = ringSecond(nowMs);
    ringRecord(this.u32, ring.series(rr, provider, S_TOTAL), totalUs, sec, status >= 400 ? 1 : 0);
    if (ttfbUs >= 0) ringRecord(this.u32, ring.series(rr, provider, S_TTFB), ttfbUs, sec, 0);
    ringRecord(this.u32, ring.series(rr, provider, S_OVERHEAD), upstreamUs > 0 ? totalUs - upstreamUs : totalUs, sec, 0);
  }

  /** One error answered to a client, by Anthropic error type index. */
  error(route: number, provider: number, typeIndex: number): void {
    add64(this.u32, this.layout.errorSlot(route, provider, typeIndex), 1);
  }

  /** A request refused before reaching a provider, by REJECT_REASONS index. */
  rejected(reason: number): void {
    add64(this.u32, this.layout.rejectedOff + reason * 2, 1);
  }

  /** One MCP tool call, by TOOL_LABELS and TOOL_DECISIONS index. */
  toolCall(tool: number, decision: number): void {
    add64(this.u32, this.layout.toolSlot(tool, decision), 1);
  }

  /** One upstream attempt got its pool connection after waiting `us` microseconds. */
  poolWait(provider: number, us: number): void {
    const o = this.layout.poolWaitOff + provider * 4;
    add64(this.u32, o, 1);
    add64(this.u32, o + 2, us < 0 ? 0 : us > 0xfffffffe ? 0xfffffffe : Math.round(us));
  }

  /** A beta or body field a provider's policy removed from a request, by POLICY_KINDS index. */
  policyDropped(provider: number, kind: number): void {
    add64(this.u32, this.layout.policySlot(provider, kind), 1);
  }

  activeInc(): number {
    return Atomics.add(this.i32, G_ACTIVE, 1) + 1;
  }
  activeDec(): void {
    Atomics.sub(this.i32, G_ACTIVE, 1);
  }
  active(): number {
    return Atomics.load(this.i32, G_ACTIVE);
  }

  setFlag(g: number, v: number): void {
    Atomics.store(this.i32, g, v);
  }
  flag(g: number): number {
    return Atomics.load(this.i32, g);
  }
}
