/**
 * The real core objects a request meets, built once from a real config the way
 * server/app.ts and server/acceptor.ts build them, and the combined middleware stack: one
 * `POST /v1/messages` through the same admission pipeline the server runs
 * (core/pipeline/build.ts), on a real body, then what the server does around it (request
 * id, active gauge, breaker, upstream auth headers) and the settlement with its real taps:
 * a log line to /dev/null and a ledger row into the acceptor's ring (core/ledger-ring.ts),
 * drained here instead of on the main thread. Nothing here is a copy of core logic.
 */
import { loadConfig, type GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey } from "../core/auth.js";
import { Breakers, REJECT } from "../core/breaker.js";
import { Budgets } from "../core/budget.js";
import { Clock32, MicroClock } from "../core/clock.js";
import { Metrics, MetricsLayout, createMetricsBuffer, G_ACTIVE, R_MESSAGES, R_COUNT_TOKENS, R_HEALTH } from "../core/metrics.js";
import { PriceTable } from "../core/pricing.js";
import { RateLimiter } from "../core/ratelimit.js";
import { RequestIds } from "../core/request-id.js";
import { Router } from "../core/routing.js";
import { authHeadersFor, buildProviders, type ProviderRuntime } from "../core/providers.js";
import { Shedder } from "../core/shedder.js";
import { createUsageBuffer, UsageLayout, UsageMetrics } from "../core/usage-metrics.js";
import { buildPipelines, type Pipelines } from "../core/pipeline/build.js";
import { CONTINUE } from "../core/pipeline/codes.js";
import type { Pipeline, Tap } from "../core/pipeline/pipeline.js";
import { RequestState } from "../core/pipeline/state.js";
import { createLogger, requestLogTap } from "../server/log.js";
import { UsageSink } from "../server/usage-sink.js";
import { LedgerRing } from "../core/ledger-ring.js";

export const CLIENT_KEY = "sk-bench-client-key-0001";

export class Core {
  readonly cfg: GatewayConfig;
  readonly providers: ProviderRuntime[];
  readonly router: Router;
  readonly keys: KeyIndex;
  readonly ids: RequestIds;
  readonly layout: MetricsLayout;
  readonly sab: SharedArrayBuffer;
  readonly metrics: Metrics;
  readonly usageLayout: UsageLayout;
  readonly usageSab: SharedArrayBuffer;
  readonly breakerSab: SharedArrayBuffer;
  readonly shedder: Shedder;
  readonly limiter: RateLimiter;
  readonly breakers: Breakers;
  readonly sink: UsageSink;
  readonly logTap: Tap;
  readonly pipes: Pipelines;
  /** The messages pipeline without its validate stage. */
  readonly noValidation: Pipeline;
  /** The ledger ring the sink writes (the server's main thread drains it). */
  readonly ring: LedgerRing;
  /** Ledger rows drained from the ring. */
  rowsPosted = 0;
  private readonly flushLog: () => void;

  constructor() {
    // The gateway's defaults plus client keys and info logging (to /dev/null).
    this.cfg = loadConfig(
      {
        MODEL_PROVIDER: "anthropic",
        ANTHROPIC_API_BASE: "http://127.0.0.1:9",
        ANTHROPIC_API_KEY: "sk-upstream-key-123",
        GATEWAY_API_KEYS: `${CLIENT_KEY},sk-bench-client-key-0002,sk-bench-client-key-0003`,
        HTTP_THREADS: "1",
        LOG_LEVEL: "info",
      },
      undefined,
      1,
    );
    const cfg = this.cfg;
    this.providers = buildProviders(cfg.providers);
    this.router = new Router(cfg.routes, this.providers, cfg.defaultProvider);
    this.keys = new KeyIndex(cfg.apiKeys, cfg.admin_api_key !== null);
    this.ids = new RequestIds("bench", 0);
    const names = this.providers.map((p) => p.name);
    this.layout = new MetricsLayout(names);
    this.sab = createMetricsBuffer(this.layout);
    this.metrics = new Metrics(this.layout, this.sab);
    const prices = new PriceTable(cfg.prices);
    this.usageLayout = new UsageLayout(names, prices.labels);
    this.usageSab = createUsageBuffer(this.usageLayout);
    const usage = new UsageMetrics(this.usageLayout, this.usageSab);
    usage.setLedger(true, Math.floor(Date.now() / 1000));
    const shedSettings = {
      heapThreshold: cfg.load_shedding_heap_threshold,
      memoryThreshold: cfg.load_shedding_memory_threshold,
      activeThreshold: cfg.load_shedding_active_requests_threshold,
      eventLoopDelayMs: cfg.load_shedding_event_loop_delay_ms,
    };
    this.shedder = new Shedder(new SharedArrayBuffer(8), 0, shedSettings, this.metrics.i32, G_ACTIVE);
    const base = Date.now();
    this.limiter = new RateLimiter(RateLimiter.bufferFor(cfg.apiKeys.length + 1), new MicroClock(base));
    this.breakerSab = Breakers.bufferFor(this.providers.length);
    this.breakers = new Breakers(
      this.breakerSab,
      {
        failureThreshold: cfg.circuit_breaker_failure_threshold,
        timeoutMs: cfg.circuit_breaker_timeout_ms,
        successThreshold: cfg.circuit_breaker_success_threshold,
        halfOpenProbes: cfg.circuit_breaker_half_open_probes,
      },
      new Clock32(base),
    );
    const logger = createLogger({ level: "info", file: "/dev/null" });
    const log = logger.log;
    this.flushLog = logger.flush;
    const ring = new LedgerRing(LedgerRing.bufferFor());
    this.ring = ring;
    this.sink = new UsageSink(
      log,
      usage,
      prices,
      {
        // The main thread's drain runs here when the ring is half full: its decoding is
        // counted in the rows' cost (amortised), which the server's acceptor does not pay.
        ring,
        drainSoon: () => void (this.rowsPosted += ring.drain().length),
        audit: () => {},
      },
      cfg.ledger_batch_ms,
      cfg.ledger_batch_rows,
    );
    const taps: Tap[] = [this.sink.record];
    this.logTap = requestLogTap(logger)!;
    taps.push(this.logTap);
    this.pipes = buildPipelines({
      maxBodyBytes: cfg.max_body_bytes,
      limits: { requestsPerMinute: cfg.rate_limit_requests_per_minute, tokensPerMinute: cfg.rate_limit_tokens_per_minute },
      flags: { draining: false },
      shedder: this.shedder,
      metrics: this.metrics,
      keys: this.keys,
      limiter: this.limiter,
      router: this.router,
      billing: {
        budgets: new Budgets(Budgets.bufferFor(cfg.apiKeys.length + 1)),
        prices,
        usage,
        failClosed: cfg.budget_fail_mode === "closed",
      },
      pricer: this.sink.price,
      taps,
    });
    this.noValidation = this.pipes.messages.without("validate");
  }

  /** Fill the buffer like a busy gateway would, so snapshot/export rows have data. */
  populate(): void {
    const routes = [R_MESSAGES, R_COUNT_TOKENS, R_HEALTH];
    const statuses = [200, 200, 200, 400, 429, 500, 529];
    let x = 1;
    for (let i = 0; i < 20_000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const r = routes[x % routes.length]!;
      const p = r === R_HEALTH ? 0 : 1 + (x % this.providers.length);
      this.metrics.record(r, p, statuses[(x >>> 8) % statuses.length]!, (x >>> 4) % 3_000_000);
      if ((x & 7) === 0) this.metrics.error(r, p, (x >>> 3) % this.layout.nE);
    }
  }

  /**
   * One request, in the order the server runs it: request state and id, active gauge,
   * the header stages, the body (`body`, already read), the body stages, the breaker and
   * the upstream auth headers of the first target, then, as if the provider answered
   * with usage, the finish: metrics, settlement, ledger row, log line. Returns the status.
   */
  stack(body: Buffer, xApiKey: string, pipe: Pipeline = this.pipes.messages): number {
    const s = new RequestState(R_MESSAGES, performance.now());
    s.pipeline = pipe;
    s.id = this.ids.next();
    s.clientKey = presentedKey(xApiKey, "");
    s.contentType = "application/json";
    s.contentLength = body.length;
    s.fwd.push("anthropic-version", "2023-06-01");
    this.metrics.activeInc();
    let status = 200;
    let r = pipe.runHead(s);
    if (r === CONTINUE) {
      s.body = body;
      r = pipe.runBody(s);
    }
    if (r !== CONTINUE) status = 400;
    else {
      const p = s.targets[0]!.provider;
      const b = p.index - 1;
      const v = this.breakers.admit(b);
      if (v === REJECT) status = 503;
      else {
        s.provider = p.index;
        s.providerName = p.name;
        if (authHeadersFor(p, null).length !== 2) status = 500;
        this.breakers.recordSuccess(b, v); // v: the probe ticket, or NOT_PROBE (= ADMIT) when closed
        s.inputTokens = 12;
        s.outputTokens = 30;
      }
    }
    const us = (performance.now() - s.t0) * 1000;
    this.metrics.record(R_MESSAGES, s.provider, status, us);
    this.metrics.activeDec();
    pipe.finish(s, status, us);
    return status;
  }

  /** Write out what the log destination buffered (the end of a run). */
  close(): void {
    this.rowsPosted += this.ring.drain().length;
    this.sink.flush();
    this.flushLog();
  }
}
