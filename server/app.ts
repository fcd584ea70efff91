/**
 * The uWS front door of one acceptor thread: routes, auth, body reading, validation,
 * routing and hand-off to a provider. No exception crosses a uWS callback: each handler
 * body runs inside try/catch and answers 500 in Anthropic's shape on a bug.
 */
import type { RenderKind } from "../workers/metrics-task.js";
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from "uWebSockets.js";
import { getHeapStatistics } from "node:v8";
import type { GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey, type KeyEntry } from "../core/auth.js";
import { estimateInputTokens, LIMIT_NAMES, OK as BUDGET_OK, type Budgets } from "../core/budget.js";
import { modelAllowed } from "../core/keys.js";
import { readUsage } from "../core/usage.js";
import type { PriceTable } from "../core/pricing.js";
import { BLOCK_UNAVAILABLE, type UsageMetrics } from "../core/usage-metrics.js";
import { registerAdmin } from "./admin.js";
import { registerDashboard } from "./dashboard/routes.js";
import { requestStart, type RequestStartMsg } from "./tracing/channels.js";
import type { AdminOp, AdminResult } from "./ledger.js";
import { G_DRAINING, G_WORKERS_OK, R_CHAT_COMPLETIONS, R_COUNT_TOKENS, R_HEALTH, R_MESSAGES, R_METRICS, R_MODELS, R_OTHER, RJ_RATE_REQUESTS, RJ_RATE_TOKENS } from "../core/metrics.js";
import { SHED_NONE, type Shedder } from "../core/shedder.js";
import type { Breakers } from "../core/breaker.js";
import type { Limits, RateLimiter } from "../core/ratelimit.js";
import { clientRequestId, RequestIds } from "../core/request-id.js";
import { Router, targetsFor } from "../core/routing.js";
import { buildProviders } from "../core/providers.js";
import type { ProviderModels } from "../core/models.js";
import { isJsonContentType, validateCountTokensRequest, validateMessagesRequest } from "../core/validate.js";
import { topLevelModelKeys } from "../core/json-splice.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { RequestCtx, type Shared } from "./context.js";
import { readBody, refuseBody } from "./body.js";
import { registerMcp, sandboxReadiness } from "./mcp/transport.js";
import { registerModels } from "./models-routes.js";
import type { Pools } from "./upstream.js";
import { UpstreamCall } from "./call.js";
import { prepareTranslation, toOpenAIError } from "./openai/translation.js";
import { validateChatRequest } from "../core/translate/validate-openai.js";
import { buildShapers } from "./providers/shapers.js";
import type { ResponseCache } from "./cache/gate.js";

export interface AppDeps {
  cfg: GatewayConfig;
  shared: Shared;
  pools: Pools;
  /** Process part of request ids (letters and digits) and this acceptor thread's index. */
  idPrefix: string;
  threadIndex: number;
  breakers: Breakers;
  shedder: Shedder;
  limiter: RateLimiter;
  /** Renders a metrics page in the worker pool (via the main thread). */
  render(kind: RenderKind): Promise<string>;
  /** Budgets, prices and virtual keys (docs/budgets.md); null = not wired (tests, bench). */
  billing: Billing | null;
  /** The METRICS_PORT app: /health/* and /metrics/* go there instead of the client app. */
  ops?: TemplatedApp;
  /** The providers' model lists; the acceptor replaces `lists` when the main thread refreshes them. */
  models: { lists: readonly ProviderModels[] };
  /** The response cache (server/cache/gate.ts); null = not wired (tests, bench). */
  cache?: ResponseCache | null;
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
const FORWARD = ["anthropic-version", "anthropic-beta", "user-agent", "x-claude-code-session-id", "anthropic-dangerous-direct-browser-access"];

interface Incoming {
  query: string;
  clientKey: string;
  /** The caller's own provider key for pass_through_key providers (never the gateway key). */
  upstreamKey: string;
  contentLength: number;
  contentType: string;
  fwd: string[];
  keyIndex: number;
  key: KeyEntry | null;
  /** x-portcullis-cache and cache-control, for the response cache. */
  cacheHeader: string;
  cacheControl: string;
}

export function buildApp(deps: AppDeps): TemplatedApp {
  const { cfg, shared } = deps;
  const metrics = shared.metrics;
  const providers = buildProviders(cfg.providers);
  const router = new Router(cfg.routes, providers, cfg.defaultProvider);
  const billing = deps.billing;
  const cache = deps.cache ?? null;
  const keys = billing?.keys ?? new KeyIndex(cfg.apiKeys);
  const failClosed = cfg.budget_fail_mode === "closed";
  const ids = new RequestIds(deps.idPrefix, deps.threadIndex);
  const limits: Limits = { requestsPerMinute: cfg.rate_limit_requests_per_minute, tokensPerMinute: cfg.rate_limit_tokens_per_minute };
  const rateLimited = limits.requestsPerMinute > 0 || limits.tokensPerMinute > 0;
  const callDeps = { cfg, pools: deps.pools, breakers: deps.breakers, answerMock: (c: RequestCtx, p: Record<string, unknown>, n: boolean) => answerMock(c, p, n), shapers: buildShapers(providers, metrics, shared.log) };
  const SHED_RETRY_AFTER = ["retry-after", "1"];
  const app = uWS.App();

  /** Read what we need from the stack-allocated request, synchronously. */
  function incoming(req: HttpRequest): Incoming {
    const fwd: string[] = [];
    for (let i = 0; i < FORWARD.length; i++) {
      const v = req.getHeader(FORWARD[i]!);
      if (v !== "") fwd.push(FORWARD[i]!, v);
    }
    const cl = req.getHeader("content-length");
    return {
      query: req.getQuery() ?? "",
      clientKey: presentedKey(req.getHeader("x-api-key"), req.getHeader("authorization")),
      upstreamKey: req.getHeader("x-upstream-api-key"),
      contentLength: cl === "" ? -1 : Number(cl),
      contentType: req.getHeader("content-type"),
      fwd,
      keyIndex: -1,
      key: null,
      cacheHeader: req.getHeader("x-portcullis-cache"),
      cacheControl: req.getHeader("cache-control"),
    };
  }

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

  /** Auth, length check and body read shared by the two POST routes. */
  function admitPost(ctx: RequestCtx, req: HttpRequest, then: (body: Buffer, inc: Incoming) => void): void {
    const inc = incoming(req);
    const pending = inc.contentLength !== 0; // an unread body: close after answering
    if (requestStart.hasSubscribers) requestStart.publish({ ctx, traceparent: req.getHeader("traceparent"), tracestate: req.getHeader("tracestate") } satisfies RequestStartMsg);
    // Framing first: with two different lengths, a proxy in front may have framed the body
    // by the other one (request smuggling). Refuse and close.
    if (inc.contentLength >= 0 && conflictingLengths(req)) return ctx.fail("GW_ERR_REQ_CONTENT_LENGTH", undefined, true);
    // Draining: a request on a connection opened before the signal. The upstream pools
    // are closing, so it must not go out (nor touch a breaker); the client retries elsewhere.
    if (shared.draining) return ctx.fail("GW_ERR_SERVER_DRAINING", undefined, true, SHED_RETRY_AFTER);
    // Load shedding first: the cheapest refusal, before any other work.
    const shed = deps.shedder.check();
    if (shed !== SHED_NONE) {
      metrics.rejected(shed - 1);
      ctx.errorCode = "GW_ERR_SHED_OVERLOADED";
      return ctx.fail("GW_ERR_SHED_OVERLOADED", undefined, pending, SHED_RETRY_AFTER);
    }
    if (billing !== null) {
      const sid = req.getHeader("x-claude-code-session-id");
      if (sid !== "") ctx.sessionId = sid.length > 200 ? sid.slice(0, 200) : sid;
    }
    if (keys.enabled) {
      if (inc.clientKey === "") return ctx.fail("GW_ERR_AUTH_MISSING_KEY", undefined, pending);
      const k = keys.check(inc.clientKey);
      if (k === null) return ctx.fail("GW_ERR_AUTH_INVALID_KEY", undefined, pending);
      inc.keyIndex = k.index;
      inc.key = k;
      ctx.keyId = k.id;
      // Every /v1/messages call past auth gets a ledger row, refusals included.
      if (ctx.route === R_MESSAGES || ctx.route === R_CHAT_COMPLETIONS) ctx.ledger = true;
      const kl = k.virtual?.rate ?? limits;
      if (kl !== limits || rateLimited) {
        const v = deps.limiter.admit(k.index, kl);
        if (!v.ok) {
          metrics.rejected(v.limit === "tokens" ? RJ_RATE_TOKENS : RJ_RATE_REQUESTS);
          return ctx.fail("GW_ERR_RATE_LIMITED", `${v.limit} per minute limit exceeded for this key`, pending, rateHeaders(v.limit!, v.retryAfterMs, v.resetMs, kl));
        }
        ctx.keyIndex = k.index;
        if (kl !== limits) ctx.rateLimits = kl;
      }
      const vk = k.virtual;
      if (vk !== null && billing !== null) {
        ctx.budgetSlot = k.index;
        if (vk.budgeted) {
          if (failClosed && !billing.usage.ledgerOk()) {
            billing.usage.blocked(BLOCK_UNAVAILABLE);
            ctx.budgetSlot = -1;
            return ctx.fail("GW_ERR_BUDGET_UNAVAILABLE", undefined, pending, SHED_RETRY_AFTER);
          }
          // Already used up: refuse before reading the body.
          const over = billing.budgets.exhausted(k.index, vk.budget);
          if (over !== BUDGET_OK) return budgetRefusal(ctx, over, vk.budget, pending);
        }
      }
    }
    if (ctx.route === R_MESSAGES || ctx.route === R_CHAT_COMPLETIONS) ctx.ledger = true;
    if (!isJsonContentType(inc.contentType)) {
      const got = inc.contentType === "" ? "none" : JSON.stringify(inc.contentType.slice(0, 100));
      return ctx.fail("GW_ERR_REQ_CONTENT_TYPE", `content-type must be application/json, got ${got}`, pending);
    }
    if (inc.contentLength > cfg.max_body_bytes) {
      return refuseBody(ctx, `request body of ${inc.contentLength} bytes exceeds the limit of ${cfg.max_body_bytes}`);
    }
    readBody(ctx, inc.contentLength, cfg.max_body_bytes, cfg.body_timeout_ms, (body) => then(body, inc));
  }

  /** More than one Content-Length header, with different values (uWS keeps the first). */
  function conflictingLengths(req: HttpRequest): boolean {
    let first: string | null = null;
    let conflict = false;
    req.forEach((k, v) => {
      if (k !== "content-length") return;
      if (first === null) first = v.trim();
      else if (v.trim() !== first) conflict = true;
    });
    return conflict;
  }

  function parse(ctx: RequestCtx, body: Buffer): Record<string, unknown> | null {
    if (body.length === 0) {
      ctx.fail("GW_ERR_REQ_INVALID_JSON", "request body is empty; expected a JSON object");
      return null;
    }
    let parsed: Record<string, unknown>;
    try {
      parsed = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    } catch (e) {
      ctx.fail("GW_ERR_REQ_INVALID_JSON", `request body is not valid JSON: ${(e as Error).message}`);
      return null;
    }
    // JSON.parse keeps the last "model", an upstream may keep the first: the key allowlist,
    // pricing and routing must see the model the upstream serves, so refuse the ambiguity.
    if (topLevelModelKeys(body) > 1) {
      ctx.fail("GW_ERR_REQ_VALIDATION", "model: appears more than once in the request body");
      return null;
    }
    return parsed;
  }

  function dispatch(ctx: RequestCtx, body: Buffer, parsed: Record<string, unknown>, inc: Incoming, count: boolean): void {
    const model = parsed.model as string;
    ctx.model = model;
    const uid = (parsed.metadata as { user_id?: unknown } | undefined)?.user_id;
    if (typeof uid === "string" && uid !== "") ctx.userId = uid.length > 200 ? uid.slice(0, 200) : uid;
    const route = router.resolve(model);
    if (route === null) return ctx.fail("GW_ERR_MODEL_NOT_FOUND", `model ${JSON.stringify(model).slice(0, 200)} has no route and no default provider is set`);
    // Deployments of equal rank: ordered per session (affinity) or by weight (core/balance.ts).
    const targets = route.pool === null ? route.targets : targetsFor(route, sessionOf(inc.fwd, parsed));
    const primary = targets[0]!;
    const vk = inc.key?.virtual ?? null;
    if (vk !== null && billing !== null) {
      if (!modelAllowed(vk.models, model)) return ctx.fail("GW_ERR_AUTH_MODEL_FORBIDDEN", `this key may not use model ${JSON.stringify(model).slice(0, 200)}`);
      if (vk.budgeted && !count) {
        // Reserve the worst case: the body's tokens at the dearer of input and cache-write
        // prices, plus max_tokens of output. Settled to the real usage in ctx.finish.
        const p = billing.prices.lookup(model);
        const inTok = estimateInputTokens(body.length);
        const mt = parsed.max_tokens ?? parsed.max_completion_tokens; // the latter on /v1/chat/completions
        const maxTok = typeof mt === "number" && mt > 0 ? Math.ceil(mt) : 0;
        const micros = Math.ceil(inTok * (p.input > p.cacheWrite ? p.input : p.cacheWrite) + maxTok * p.output);
        const over = billing.budgets.reserve(inc.keyIndex, vk.budget, inTok + maxTok, micros);
        if (over !== BUDGET_OK) return budgetRefusal(ctx, over, vk.budget, false);
        ctx.reservedTokens = inTok + maxTok;
        ctx.reservedMicros = micros;
      }
    }
    const tx = prepareTranslation(ctx, ctx.route === R_CHAT_COMPLETIONS, route, deps.pools, { body, parsed, model, fwd: inc.fwd, count });
    if (tx === false) return;
    if (tx === null && primary.provider.type === "mock") {
      ctx.provider = primary.provider.index;
      ctx.providerName = primary.provider.name;
      return answerMock(ctx, parsed, count);
    }
    const call = () => new UpstreamCall(ctx, callDeps, targets, { body, parsed, model, fwd: inc.fwd, query: inc.query, clientKey: inc.clientKey, upstreamKey: inc.upstreamKey, gatewayAuth: keys.enabled, count, tx }).start();
    // The response cache answers a hit itself, or calls `call` after a miss (server/cache/gate.ts).
    if (cache === null || count || !cache.intercept(ctx, inc, primary, parsed, body, call)) call();
  }

  /** The session a request belongs to: x-claude-code-session-id, else metadata.user_id; "" if none. */
  function sessionOf(fwd: readonly string[], parsed: Record<string, unknown>): string {
    for (let i = 0; i < fwd.length; i += 2) if (fwd[i] === "x-claude-code-session-id") return fwd[i + 1]!;
    const uid = (parsed.metadata as { user_id?: unknown } | undefined)?.user_id;
    return typeof uid === "string" ? uid : "";
  }

  /** 429 headers the SDKs understand: retry-after plus anthropic-ratelimit-*. */
  function rateHeaders(limit: "requests" | "tokens", retryAfterMs: number, resetMs: number, l: Limits): string[] {
    const perMinute = limit === "requests" ? l.requestsPerMinute : l.tokensPerMinute;
    return [
      "retry-after", String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
      `anthropic-ratelimit-${limit}-limit`, String(perMinute),
      `anthropic-ratelimit-${limit}-remaining`, "0",
      `anthropic-ratelimit-${limit}-reset`, new Date(Date.now() + Math.max(0, resetMs)).toISOString().replace(/\.\d{3}Z$/, "Z"),
    ];
  }

  /** The built-in mock's usage, read like a provider's (budgets work with the demo too). */
  function mockUsage(ctx: RequestCtx, text: string): void {
    readUsage(Buffer.from(text), ctx);
  }

  /** 429 GW_ERR_BUDGET_EXCEEDED naming the limit and when its window resets. */
  function budgetRefusal(ctx: RequestCtx, which: number, b: import("../core/budget.js").BudgetLimits, close: boolean): void {
    const bl = billing!;
    bl.usage.blocked(which);
    const resets = bl.budgets.resetsAt(which);
    const name = LIMIT_NAMES[which]!;
    const cap = which === 0 ? `${b.tokensPerDay} tokens` : which === 1 ? `${b.tokensPerMonth} tokens` : which === 2 ? `$${(b.microsPerDay / 1e6).toFixed(2)}` : `$${(b.microsPerMonth / 1e6).toFixed(2)}`;
    const at = new Date(resets).toISOString().replace(/\.\d{3}Z$/, "Z");
    const secs = Math.max(1, Math.ceil((resets - Date.now()) / 1000));
    ctx.fail("GW_ERR_BUDGET_EXCEEDED", `budget exceeded: this key's ${name} limit (${cap}) is used up, counting requests in flight; it resets at ${at} (UTC)`, close, ["retry-after", String(secs), "x-should-retry", "false"]);
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

  app.post("/v1/messages", guard(R_MESSAGES, (ctx, req) => {
    admitPost(ctx, req, (body, inc) => {
      const parsed = parse(ctx, body);
      if (parsed === null) return;
      const err = validateMessagesRequest(parsed);
      if (err !== null) return ctx.fail("GW_ERR_REQ_VALIDATION", err);
      dispatch(ctx, body, parsed, inc, false);
    });
  }));

  // OpenAI Chat Completions (docs/openai.md): errors in OpenAI's shape on this route.
  app.post("/v1/chat/completions", guard(R_CHAT_COMPLETIONS, (ctx, req) => {
    ctx.reshapeError = toOpenAIError;
    admitPost(ctx, req, (body, inc) => {
      const parsed = parse(ctx, body);
      if (parsed === null) return;
      const err = validateChatRequest(parsed);
      if (err !== null) return ctx.fail("GW_ERR_REQ_VALIDATION", err);
      dispatch(ctx, body, parsed, inc, false);
    });
  }));

  app.post("/v1/messages/count_tokens", guard(R_COUNT_TOKENS, (ctx, req) => {
    admitPost(ctx, req, (body, inc) => {
      const parsed = parse(ctx, body);
      if (parsed === null) return;
      const err = validateCountTokensRequest(parsed);
      if (err !== null) return ctx.fail("GW_ERR_REQ_VALIDATION", err);
      dispatch(ctx, body, parsed, inc, true);
    });
  }));

  registerModels(app, { router, providers, keys, models: deps.models, guard });

  const ops = deps.ops ?? app;
  if (cfg.health_check_enabled) {
    ops.get("/health/live", guard(R_HEALTH, (ctx) => ctx.send(200, "application/json", '{"status":"ok"}')));
    ops.get("/health/ready", guard(R_HEALTH, (ctx) => {
      const h = getHeapStatistics();
      const draining = shared.draining || metrics.flag(G_DRAINING) === 1;
      const workers = metrics.flag(G_WORKERS_OK) === 1;
      const heapRatio = h.used_heap_size / h.heap_size_limit;
      const components = {
        draining: { ok: !draining },
        workers: { ok: workers },
        // Compare with heap_size_limit, not heapTotal: a fresh process would look full.
        heap: { ok: heapRatio < 0.95, used_bytes: h.used_heap_size, limit_bytes: h.heap_size_limit, ratio: Math.round(heapRatio * 1000) / 1000 },
        providers: { ok: providers.length > 0, configured: providers.map((p) => p.name) },
      };
      const ledgerAge = billing === null ? 0 : Math.max(0, Math.floor(Date.now() / 1000) - billing.usage.ledgerCheckedAt());
      const database = billing === null ? { ok: true, enabled: false } : { ok: billing.usage.ledgerOk(), checked_seconds_ago: ledgerAge, fail_mode: cfg.budget_fail_mode, kind: cfg.database_url === null ? "sqlite" : "postgres", queued_rows: billing.usage.ledgerQueued(), budgets: "per_replica" };
      // With BUDGET_FAIL_MODE=open a failing ledger is reported but does not stop traffic.
      const dbBlocks = !database.ok && cfg.budget_fail_mode === "closed";
      const ok = components.draining.ok && components.workers.ok && components.heap.ok && components.providers.ok && !dbBlocks;
      // The MCP sandbox is reported (docs/mcp.md) but does not hold back /v1/messages.
      ctx.send(ok ? 200 : 503, "application/json", JSON.stringify({ status: ok ? "ready" : "not_ready", components: { ...components, database, sandbox: sandboxReadiness() } }));
    }));
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
    ops.get("/metrics/circuit-breakers", guard(R_METRICS, (ctx) => {
      const out: Record<string, unknown> = {};
      for (const p of providers) out[p.name] = deps.breakers.view(p.index - 1);
      ctx.send(200, "application/json", JSON.stringify({
        policy: {
          failure_threshold: cfg.circuit_breaker_failure_threshold,
          timeout_ms: cfg.circuit_breaker_timeout_ms,
          success_threshold: cfg.circuit_breaker_success_threshold,
          half_open_probes: cfg.circuit_breaker_half_open_probes,
        },
        breakers: out,
      }));
    }));
  }

  registerMcp(app, { cfg, shared, keys, ids });
  if (billing !== null) registerAdmin(app, { cfg, guard, admin: billing.admin });
  if (billing !== null) registerDashboard(app, { adminKey: cfg.admin_api_key, guard, render: deps.render, log: shared.log });
  app.any("/*", guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")));
  if (ops !== app) ops.any("/*", guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")));
  return app;
}
