/**
 * The uWS front door of one acceptor thread: routes, auth, body reading, validation,
 * routing and hand-off to a provider. No exception crosses a uWS callback: each handler
 * body runs inside try/catch and answers 500 in Anthropic's shape on a bug.
 */
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from "uWebSockets.js";
import { getHeapStatistics } from "node:v8";
import type { GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey, type KeyEntry } from "../core/auth.js";
import { estimateInputTokens, LIMIT_NAMES, OK as BUDGET_OK, type Budgets } from "../core/budget.js";
import { modelAllowed } from "../core/keys.js";
import { lastNumberField } from "../core/usage.js";
import type { PriceTable } from "../core/pricing.js";
import { BLOCK_UNAVAILABLE, type UsageMetrics } from "../core/usage-metrics.js";
import { registerAdmin } from "./admin.js";
import type { AdminOp, AdminResult } from "./ledger.js";
import { G_DRAINING, G_WORKERS_OK, R_COUNT_TOKENS, R_HEALTH, R_MESSAGES, R_METRICS, R_MODELS, R_OTHER, RJ_RATE_REQUESTS, RJ_RATE_TOKENS } from "../core/metrics.js";
import { SHED_NONE, type Shedder } from "../core/shedder.js";
import type { Breakers } from "../core/breaker.js";
import type { Limits, RateLimiter } from "../core/ratelimit.js";
import { RequestIds } from "../core/request-id.js";
import { Router, targetsFor } from "../core/routing.js";
import { buildProviders } from "../core/providers.js";
import { validateCountTokensRequest, validateMessagesRequest } from "../core/validate.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { RequestCtx, type Shared } from "./context.js";
import { readBody } from "./body.js";
import { registerMcp } from "./mcp/transport.js";
import type { Pools } from "./upstream.js";
import { UpstreamCall } from "./call.js";
import { buildShapers } from "./providers/shapers.js";

export interface AppDeps {
  cfg: GatewayConfig;
  shared: Shared;
  pools: Pools;
  idPrefix: string;
  breakers: Breakers;
  shedder: Shedder;
  limiter: RateLimiter;
  /** Renders a metrics page in the worker pool (via the main thread). */
  render(kind: "prometheus" | "observability"): Promise<string>;
  /** Budgets, prices and virtual keys (docs/budgets.md); null = not wired (tests, bench). */
  billing: Billing | null;
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
  contentLength: number;
  fwd: string[];
  keyIndex: number;
  key: KeyEntry | null;
}

export function buildApp(deps: AppDeps): TemplatedApp {
  const { cfg, shared } = deps;
  const metrics = shared.metrics;
  const providers = buildProviders(cfg.providers);
  const router = new Router(cfg.routes, providers, cfg.defaultProvider);
  const billing = deps.billing;
  const keys = billing?.keys ?? new KeyIndex(cfg.apiKeys);
  const failClosed = cfg.budget_fail_mode === "closed";
  const ids = new RequestIds(deps.idPrefix);
  const limits: Limits = { requestsPerMinute: cfg.rate_limit_requests_per_minute, tokensPerMinute: cfg.rate_limit_tokens_per_minute };
  const rateLimited = limits.requestsPerMinute > 0 || limits.tokensPerMinute > 0;
  const callDeps = { cfg, pools: deps.pools, breakers: deps.breakers, answerMock: (c: RequestCtx, p: Record<string, unknown>, n: boolean) => answerMock(c, p, n), shapers: buildShapers(providers, metrics, shared.log) };
  const SHED_RETRY_AFTER = ["retry-after", "1"];
  const app = uWS.App();

  const modelsBody = JSON.stringify({
    data: router.listed.map((id) => ({ type: "model", id, display_name: id, created_at: "2025-01-01T00:00:00Z" })),
    has_more: false,
    first_id: router.listed[0] ?? null,
    last_id: router.listed[router.listed.length - 1] ?? null,
  });

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
      contentLength: cl === "" ? -1 : Number(cl),
      fwd,
      keyIndex: -1,
      key: null,
    };
  }

  function guard(route: number, handler: (ctx: RequestCtx, req: HttpRequest) => void) {
    return (res: HttpResponse, req: HttpRequest): void => {
      let ctx: RequestCtx | null = null;
      try {
        ctx = new RequestCtx(res, shared, route);
        ctx.id = ids.fromHeader(req.getHeader("x-request-id"));
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
      if (ctx.route === R_MESSAGES) ctx.ledger = true;
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
    if (ctx.route === R_MESSAGES) ctx.ledger = true;
    if (inc.contentLength > cfg.max_body_bytes) {
      return ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `request body of ${inc.contentLength} bytes exceeds the limit of ${cfg.max_body_bytes}`, true);
    }
    readBody(ctx, inc.contentLength, cfg.max_body_bytes, cfg.body_timeout_ms, (body) => then(body, inc));
  }

  function parse(ctx: RequestCtx, body: Buffer): Record<string, unknown> | null {
    if (body.length === 0) {
      ctx.fail("GW_ERR_REQ_INVALID_JSON", "request body is empty; expected a JSON object");
      return null;
    }
    try {
      return JSON.parse(body.toString("utf8")) as Record<string, unknown>;
    } catch (e) {
      ctx.fail("GW_ERR_REQ_INVALID_JSON", `request body is not valid JSON: ${(e as Error).message}`);
      return null;
    }
  }

  function dispatch(ctx: RequestCtx, body: Buffer, parsed: Record<string, unknown>, inc: Incoming, count: boolean): void {
    const model = parsed.model as string;
    ctx.model = model;
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
        const maxTok = typeof parsed.max_tokens === "number" && parsed.max_tokens > 0 ? Math.ceil(parsed.max_tokens) : 0;
        const micros = Math.ceil(inTok * (p.input > p.cacheWrite ? p.input : p.cacheWrite) + maxTok * p.output);
        const over = billing.budgets.reserve(inc.keyIndex, vk.budget, inTok + maxTok, micros);
        if (over !== BUDGET_OK) return budgetRefusal(ctx, over, vk.budget, false);
        ctx.reservedTokens = inTok + maxTok;
        ctx.reservedMicros = micros;
      }
    }
    if (primary.provider.type === "mock") {
      ctx.provider = primary.provider.index;
      ctx.providerName = primary.provider.name;
      return answerMock(ctx, parsed, count);
    }
    new UpstreamCall(ctx, callDeps, targets, { body, parsed, model, fwd: inc.fwd, query: inc.query, clientKey: inc.clientKey, count }).start();
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
    const b = Buffer.from(text);
    ctx.inputTokens = lastNumberField(b, "input_tokens");
    ctx.outputTokens = lastNumberField(b, "output_tokens");
    ctx.cacheCreationTokens = lastNumberField(b, "cache_creation_input_tokens");
    ctx.cacheReadTokens = lastNumberField(b, "cache_read_input_tokens");
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

  app.post("/v1/messages/count_tokens", guard(R_COUNT_TOKENS, (ctx, req) => {
    admitPost(ctx, req, (body, inc) => {
      const parsed = parse(ctx, body);
      if (parsed === null) return;
      const err = validateCountTokensRequest(parsed);
      if (err !== null) return ctx.fail("GW_ERR_REQ_VALIDATION", err);
      dispatch(ctx, body, parsed, inc, true);
    });
  }));

  app.get("/v1/models", guard(R_MODELS, (ctx, req) => {
    if (keys.enabled) {
      const k = presentedKey(req.getHeader("x-api-key"), req.getHeader("authorization"));
      if (k === "") return ctx.fail("GW_ERR_AUTH_MISSING_KEY");
      if (keys.check(k) === null) return ctx.fail("GW_ERR_AUTH_INVALID_KEY");
    }
    ctx.send(200, "application/json", modelsBody);
  }));

  if (cfg.health_check_enabled) {
    app.get("/health/live", guard(R_HEALTH, (ctx) => ctx.send(200, "application/json", '{"status":"ok"}')));
    app.get("/health/ready", guard(R_HEALTH, (ctx) => {
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
      const database = billing === null ? { ok: true, enabled: false } : { ok: billing.usage.ledgerOk(), checked_seconds_ago: ledgerAge, fail_mode: cfg.budget_fail_mode };
      // With BUDGET_FAIL_MODE=open a failing ledger is reported but does not stop traffic.
      const dbBlocks = !database.ok && cfg.budget_fail_mode === "closed";
      const ok = components.draining.ok && components.workers.ok && components.heap.ok && components.providers.ok && !dbBlocks;
      ctx.send(ok ? 200 : 503, "application/json", JSON.stringify({ status: ok ? "ready" : "not_ready", components: { ...components, database } }));
    }));
  }

  if (cfg.metrics_enabled) {
    const page = (kind: "prometheus" | "observability", type: string) =>
      guard(R_METRICS, (ctx) => {
        deps.render(kind).then(
          (text) => ctx.send(200, type, text),
          (e) => {
            shared.log.error({ req_id: ctx.id, err: String(e) }, "metrics render failed");
            ctx.fail("GW_ERR_SERVER_INTERNAL", "metrics rendering failed");
          },
        );
      });
    app.get("/metrics/prometheus", page("prometheus", "text/plain; version=0.0.4; charset=utf-8"));
    app.get("/metrics/observability", page("observability", "application/json"));
    app.get("/metrics/circuit-breakers", guard(R_METRICS, (ctx) => {
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
  app.any("/*", guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")));
  return app;
}
