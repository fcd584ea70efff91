/**
 * The uWS front door of one acceptor thread: wires uWS to the admission pipeline
 * (core/pipeline/: the ordered stages, decided here once), reads the body between its
 * header and body stages, and hands an admitted request to a provider. No exception
 * crosses a uWS callback: each handler body runs inside try/catch and answers 500 in
 * Anthropic's shape on a bug.
 */
import type { RenderKind } from "../workers/metrics-task.js";
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from "uWebSockets.js";
import { getHeapStatistics } from "node:v8";
import type { GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey } from "../core/auth.js";
import { MODE_LEASE, type Budgets } from "../core/budget.js";
import { readUsage } from "../core/usage.js";
import type { PriceTable } from "../core/pricing.js";
import type { UsageMetrics } from "../core/usage-metrics.js";
import { registerAdmin } from "./admin.js";
import { registerDashboard } from "./dashboard/routes.js";
import { requestStart, traceEndTap, type RequestStartMsg } from "./tracing/channels.js";
import type { AdminOp, AdminResult } from "./ledger.js";
import { G_DRAINING, G_WORKERS_OK, R_CHAT_COMPLETIONS, R_COUNT_TOKENS, R_HEALTH, R_MESSAGES, R_METRICS, R_OTHER } from "../core/metrics.js";
import type { Shedder } from "../core/shedder.js";
import type { Breakers } from "../core/breaker.js";
import type { DeploymentState } from "../core/deployments.js";
import type { RateLimiter } from "../core/ratelimit.js";
import { clientRequestId, RequestIds } from "../core/request-id.js";
import { Router } from "../core/routing.js";
import { buildProviders } from "../core/providers.js";
import type { ProviderModels } from "../core/models.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { RequestCtx, type Shared } from "./context.js";
import { readBody, refuseBody } from "./body.js";
import { registerMcp, sandboxReadiness } from "./mcp/transport.js";
import { registerModels } from "./models-routes.js";
import type { Pools } from "./upstream.js";
import { UpstreamCall } from "./call.js";
import { prepareTranslation, toOpenAIError } from "./openai/translation.js";
import { buildPipelines } from "../core/pipeline/build.js";
import type { Pipeline, Tap } from "../core/pipeline/pipeline.js";
import { codeOf, CONTINUE, WAIT } from "../core/pipeline/codes.js";
import { LeasePark } from "./fleet/budget-park.js";
import { E_BODY_TOO_LARGE } from "../core/pipeline/stages/gate.js";
import { buildShapers } from "./providers/shapers.js";
import type { ResponseCache } from "./cache/gate.js";
import type { KeyPools } from "../core/keypool.js";

export interface AppDeps {
  cfg: GatewayConfig;
  shared: Shared;
  pools: Pools;
  /** Process part of request ids (letters and digits) and this acceptor thread's index. */
  idPrefix: string;
  threadIndex: number;
  breakers: Breakers;
  /** In flight and time to first byte per deployment, shared by the acceptor threads (core/deployments.ts). */
  deployments: DeploymentState;
  shedder: Shedder;
  limiter: RateLimiter;
  /** Renders a metrics page in the worker pool (via the main thread). */
  render(kind: RenderKind): Promise<string>;
  /** Budgets, prices and virtual keys (docs/budgets.md); null = not wired (tests, bench). */
  billing: Billing | null;
  /** The METRICS_PORT app: /health/* and /metrics/* go there instead of the client app. */
  ops?: TemplatedApp;
  /** The per-request log line (server/log.ts requestLogTap); null = info logging off. */
  requestLog: Tap | null;
  /** The providers' model lists; the acceptor replaces `lists` when the main thread refreshes them. */
  models: { lists: readonly ProviderModels[] };
  /** The response cache (server/cache/gate.ts); null = not wired (tests, bench). */
  cache?: ResponseCache | null;
  /** Upstream key pools (core/keypool.ts); absent = every provider uses its one key. */
  keyPools?: KeyPools | null;
}

export interface Billing {
  keys: KeyIndex;
  budgets: Budgets;
  prices: PriceTable;
  usage: UsageMetrics;
  /** Runs an admin operation on the main thread. */
  admin(op: AdminOp): Promise<AdminResult>;
}

/** Client headers forwarded upstream as received. */
const FORWARD = [
  "anthropic-version",
  "anthropic-beta",
  "user-agent",
  "x-claude-code-session-id",
  "anthropic-dangerous-direct-browser-access",
];

export function buildApp(deps: AppDeps): TemplatedApp {
  const { cfg, shared } = deps;
  const metrics = shared.metrics;
  const providers = buildProviders(cfg.providers);
  const router = new Router(cfg.routes, providers, cfg.defaultProvider, { state: deps.deployments, health: deps.breakers });
  const billing = deps.billing;
  const cache = deps.cache ?? null;
  const keys = billing?.keys ?? new KeyIndex(cfg.apiKeys);
  const ids = new RequestIds(deps.idPrefix, deps.threadIndex);
  const usage = shared.usage;
  const taps: Tap[] = [];
  // After settlement, in this order: the ledger row, the trace span's end (server/tracing/:
  // a no-op unless tracing subscribed), the log line.
  if (usage !== null) taps.push(usage.record);
  taps.push(traceEndTap);
  if (deps.requestLog !== null) taps.push(deps.requestLog);
  // The ordered admission stages per route kind, decided here once (core/pipeline/build.ts).
  const pipes = buildPipelines({
    maxBodyBytes: cfg.max_body_bytes,
    limits: { requestsPerMinute: cfg.rate_limit_requests_per_minute, tokensPerMinute: cfg.rate_limit_tokens_per_minute },
    flags: shared,
    shedder: deps.shedder,
    metrics,
    keys,
    limiter: deps.limiter,
    router,
    billing:
      billing === null
        ? null
        : {
            budgets: billing.budgets,
            prices: billing.prices,
            usage: billing.usage,
            failClosed: cfg.budget_fail_mode === "closed",
            leaseWait: cfg.budget_lease_wait_ms > 0,
          },
    pricer: usage === null ? null : usage.price,
    taps,
  });
  shared.plain = pipes.plain;
  const callDeps = {
    cfg,
    pools: deps.pools,
    breakers: deps.breakers,
    deployments: deps.deployments,
    answerMock: (c: RequestCtx, p: Record<string, unknown>, n: boolean) => answerMock(c, p, n),
    shapers: buildShapers(providers, metrics, shared.log),
    keys: deps.keyPools ?? null,
  };
  const app = uWS.App();

  function guard(route: number, handler: (ctx: RequestCtx, req: HttpRequest) => void) {
    return (res: HttpResponse, req: HttpRequest): void => {
      let ctx: RequestCtx | null = null;
      try {
        ctx = new RequestCtx(res, shared, route);
        ctx.id = ids.next();
        ctx.clientRequestId = clientRequestId(req.getHeader("x-request-id"));
        handler(ctx, req);
      } catch (e) {
        shared.log.error({ req_id: ctx?.id, err: String((e as Error)?.stack ?? e) }, "handler failed");
        if (ctx !== null) ctx.fail("GW_ERR_SERVER_INTERNAL");
        else res.cork(() => res.writeStatus("500 Internal Server Error").end());
      }
    };
  }

  // Requests waiting for their key's fleet budget lease (server/fleet/budget-park.ts): the reserve stage answers WAIT.
  const park =
    billing === null || cfg.budget_lease_wait_ms === 0
      ? null
      : new LeasePark(cfg.budget_lease_wait_ms, billing.budgets, billing.usage, bodyDone);

  /** After the body stages (or a parked request's resumption): dispatch, park, or refuse. */
  function bodyDone(ctx: RequestCtx, r: number): void {
    if (r === CONTINUE) return dispatch(ctx);
    if (r === WAIT) return park!.add(ctx); // only with a park (the stage's leaseWait)
    refuse(ctx, r, ctx.errClose);
  }

  /**
   * A POST through `pipe`: read what the stages need from the stack-allocated request
   * (synchronously), run the header stages, read the body, run the body stages, dispatch.
   */
  function admitted(route: number, pipe: Pipeline, count: boolean) {
    // Once per route, not a closure per request.
    const onBody = (body: Buffer, ctx: RequestCtx): void => {
      ctx.body = body;
      bodyDone(ctx, pipe.runBody(ctx));
    };
    return guard(route, (ctx, req) => {
      if (route === R_CHAT_COMPLETIONS) ctx.reshapeError = toOpenAIError; // OpenAI's error shape (docs/openai.md)
      ctx.pipeline = pipe;
      ctx.count = count;
      readRequest(ctx, req);
      // Tracing's publish point (server/tracing/): the SERVER span starts before any stage runs.
      if (requestStart.hasSubscribers)
        requestStart.publish({
          ctx,
          traceparent: req.getHeader("traceparent"),
          tracestate: req.getHeader("tracestate"),
        } satisfies RequestStartMsg);
      const r = pipe.runHead(ctx);
      if (r !== CONTINUE) {
        if (r === E_BODY_TOO_LARGE) return refuseBody(ctx, ctx.errMessage!);
        // An unread body: close after answering.
        return refuse(ctx, r, ctx.errClose || ctx.contentLength !== 0);
      }
      readBody(ctx, ctx.contentLength, cfg.max_body_bytes, cfg.body_timeout_ms, onBody);
    });
  }

  function refuse(ctx: RequestCtx, r: number, close: boolean): void {
    ctx.fail(codeOf(r), ctx.errMessage ?? undefined, close, ctx.errHeaders);
  }

  function readRequest(ctx: RequestCtx, req: HttpRequest): void {
    const fwd = ctx.fwd;
    for (let i = 0; i < FORWARD.length; i++) {
      const v = req.getHeader(FORWARD[i]!);
      if (v !== "") fwd.push(FORWARD[i]!, v);
    }
    const cl = req.getHeader("content-length");
    ctx.query = req.getQuery() ?? "";
    ctx.clientKey = presentedKey(req.getHeader("x-api-key"), req.getHeader("authorization"));
    ctx.upstreamKey = req.getHeader("x-upstream-api-key");
    ctx.contentLength = cl === "" ? -1 : Number(cl);
    ctx.contentType = req.getHeader("content-type");
    ctx.cacheHeader = req.getHeader("x-portcullis-cache");
    ctx.cacheControl = req.getHeader("cache-control");
    if (ctx.contentLength >= 0) ctx.lengthConflict = conflictingLengths(req);
    if (billing !== null) {
      const sid = req.getHeader("x-claude-code-session-id");
      if (sid !== "") ctx.sessionId = sid.length > 200 ? sid.slice(0, 200) : sid;
    }
  }

  /**
   * Admitted by every stage: translation, the built-in mock, or the providers behind the
   * response cache. The cache lookup stays here, not in a stage: it asks the owner thread
   * asynchronously and stages are synchronous (core/pipeline/codes.ts); like before the
   * pipeline it runs after the budget reservation and the translation check.
   */
  function dispatch(ctx: RequestCtx): void {
    const body = ctx.body!,
      parsed = ctx.parsed!,
      model = ctx.model!,
      count = ctx.count;
    const targets = ctx.targets;
    // The request state lives as long as the reply (minutes for a stream): it keeps neither.
    ctx.body = null;
    ctx.parsed = null;
    const tx = prepareTranslation(ctx, ctx.route === R_CHAT_COMPLETIONS, ctx.resolved!, deps.pools, {
      body,
      parsed,
      model,
      fwd: ctx.fwd,
      count,
      maxEventBytes: deps.cfg.sse_max_event_bytes,
    });
    if (tx === false) return;
    if (tx === null && targets[0]!.provider.type === "mock") {
      ctx.provider = targets[0]!.provider.index;
      ctx.providerName = targets[0]!.provider.name;
      return answerMock(ctx, parsed, count);
    }
    const call = () =>
      new UpstreamCall(ctx, callDeps, targets, {
        body,
        parsed,
        model,
        fwd: ctx.fwd,
        query: ctx.query,
        clientKey: ctx.clientKey,
        upstreamKey: ctx.upstreamKey,
        gatewayAuth: keys.enabled,
        count,
        tx,
      }).start();
    // The response cache answers a hit itself, or calls `call` after a miss (server/cache/gate.ts).
    if (cache === null || count || !cache.intercept(ctx, ctx, targets[0]!, parsed, body, call)) call();
  }

  /** The built-in mock's usage, read like a provider's (budgets work with the demo too). */
  function mockUsage(ctx: RequestCtx, text: string): void {
    readUsage(Buffer.from(text), ctx);
  }

  function answerMock(ctx: RequestCtx, parsed: Record<string, unknown>, count: boolean): void {
    const mreq = parsed as unknown as MockRequest;
    if (count) return ctx.send(200, "application/json", `{"input_tokens":${mockCountTokens(mreq)}}`);
    const msgId = "msg_mock_" + ctx.id;
    if (parsed.stream !== true) {
      const text = mockMessageJson(mreq, msgId);
      if (billing !== null) mockUsage(ctx, text);
      return ctx.send(200, "application/json", text);
    }
    const frames = mockStreamFrames(mreq, msgId);
    if (billing !== null) mockUsage(ctx, frames.join(""));
    const res = ctx.res;
    ctx.started = true;
    res.cork(() => {
      res.writeStatus("200 OK");
      res.writeHeader("content-type", "text/event-stream; charset=utf-8");
      res.writeHeader("cache-control", "no-cache");
      res.writeHeader("request-id", ctx.id);
      // The whole reply exists already: one write with a Content-Length.
      res.end(frames.join(""), shared.draining);
    });
    ctx.finish(200);
  }

  app.post("/v1/messages", admitted(R_MESSAGES, pipes.messages, false));
  app.post("/v1/chat/completions", admitted(R_CHAT_COMPLETIONS, pipes.chat, false));
  app.post("/v1/messages/count_tokens", admitted(R_COUNT_TOKENS, pipes.countTokens, true));

  registerModels(app, { router, providers, keys, models: deps.models, guard });

  const ops = deps.ops ?? app;
  if (cfg.health_check_enabled) {
    ops.get(
      "/health/live",
      guard(R_HEALTH, (ctx) => ctx.send(200, "application/json", '{"status":"ok"}')),
    );
    ops.get(
      "/health/ready",
      guard(R_HEALTH, (ctx) => {
        const h = getHeapStatistics();
        const draining = shared.draining || metrics.flag(G_DRAINING) === 1;
        const workers = metrics.flag(G_WORKERS_OK) === 1;
        const heapRatio = h.used_heap_size / h.heap_size_limit;
        const components = {
          draining: { ok: !draining },
          workers: { ok: workers },
          // Compare with heap_size_limit, not heapTotal: a fresh process would look full.
          heap: {
            ok: heapRatio < 0.95,
            used_bytes: h.used_heap_size,
            limit_bytes: h.heap_size_limit,
            ratio: Math.round(heapRatio * 1000) / 1000,
          },
          providers: { ok: providers.length > 0, configured: providers.map((p) => p.name) },
        };
        // Fleet budget leases (docs/fleet.md): "fleet" while leases bound spend, else "per_replica".
        const lease = billing === null ? 0 : billing.usage.leaseState();
        const ledgerAge = billing === null ? 0 : Math.max(0, Math.floor(Date.now() / 1000) - billing.usage.ledgerCheckedAt());
        const database =
          billing === null
            ? { ok: true, enabled: false }
            : {
                ok: billing.usage.ledgerOk(),
                checked_seconds_ago: ledgerAge,
                fail_mode: cfg.budget_fail_mode,
                kind: cfg.database_url === null ? "sqlite" : "postgres",
                queued_rows: billing.usage.ledgerQueued(),
                budgets: lease !== 0 && billing.budgets.mode() === MODE_LEASE ? "fleet" : "per_replica",
                ...(lease === 0 ? {} : { budget_redis: lease === 1 ? "up" : "degraded" }),
                rate_limits: deps.limiter.fleetWide() ? "fleet" : "per_replica",
              };
        // With BUDGET_FAIL_MODE=open a failing ledger is reported but does not stop traffic.
        const dbBlocks = !database.ok && cfg.budget_fail_mode === "closed";
        const ok = components.draining.ok && components.workers.ok && components.heap.ok && components.providers.ok && !dbBlocks;
        // The MCP sandbox is reported (docs/mcp.md) but does not hold back /v1/messages.
        ctx.send(
          ok ? 200 : 503,
          "application/json",
          JSON.stringify({ status: ok ? "ready" : "not_ready", components: { ...components, database, sandbox: sandboxReadiness() } }),
        );
      }),
    );
  }

  if (cfg.metrics_enabled) {
    const page = (kind: RenderKind, type: string) =>
      guard(R_METRICS, (ctx) => {
        deps.render(kind).then(
          (text) => ctx.send(200, type, text),
          (e) => {
            shared.log.error({ req_id: ctx.id, err: String(e) }, "metrics render failed");
            ctx.fail("GW_ERR_SERVER_INTERNAL", "metrics rendering failed");
          },
        );
      });
    ops.get("/metrics/prometheus", page("prometheus", "text/plain; version=0.0.4; charset=utf-8"));
    ops.get("/metrics/observability", page("observability", "application/json"));
    ops.get(
      "/metrics/circuit-breakers",
      guard(R_METRICS, (ctx) => {
        const out: Record<string, unknown> = {};
        for (const p of providers) out[p.name] = deps.breakers.view(p.index - 1);
        ctx.send(
          200,
          "application/json",
          JSON.stringify({
            policy: {
              failure_threshold: cfg.circuit_breaker_failure_threshold,
              timeout_ms: cfg.circuit_breaker_timeout_ms,
              success_threshold: cfg.circuit_breaker_success_threshold,
              half_open_probes: cfg.circuit_breaker_half_open_probes,
            },
            breakers: out,
          }),
        );
      }),
    );
  }

  registerMcp(app, { cfg, shared, keys, ids });
  if (billing !== null) registerAdmin(app, { cfg, guard, admin: billing.admin });
  if (billing !== null) registerDashboard(app, { adminKey: cfg.admin_api_key, guard, render: deps.render, log: shared.log });
  app.any(
    "/*",
    guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")),
  );
  if (ops !== app)
    ops.any(
      "/*",
      guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")),
    );
  return app;
}

/** More than one Content-Length header, with different values (uWS keeps the first). */
function conflictingLengths(req: HttpRequest): boolean {
  lenFirst = null;
  lenConflict = false;
  req.forEach(visitLength);
  return lenConflict;
}

// conflictingLengths' state: one callback for every request instead of a closure per request (synchronous, one thread).
let lenFirst: string | null = null;
let lenConflict = false;
function visitLength(k: string, v: string): void {
  if (k !== "content-length") return;
  if (lenFirst === null) lenFirst = v.trim();
  else if (v.trim() !== lenFirst) lenConflict = true;
}
