/**
 * The uWS front door of one acceptor thread: routes, auth, body reading, validation,
 * routing and hand-off to a provider. No exception crosses a uWS callback: each handler
 * body runs inside try/catch and answers 500 in Anthropic's shape on a bug.
 */
import uWS, { type HttpRequest, type HttpResponse, type TemplatedApp } from "uWebSockets.js";
import { getHeapStatistics } from "node:v8";
import type { GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey } from "../core/auth.js";
import { G_DRAINING, G_WORKERS_OK, R_COUNT_TOKENS, R_HEALTH, R_MESSAGES, R_METRICS, R_MODELS, R_OTHER } from "../core/metrics.js";
import { RequestIds } from "../core/request-id.js";
import { Router } from "../core/routing.js";
import { authHeadersFor, buildProviders, type ProviderRuntime } from "../core/providers.js";
import { spliceModel } from "../core/json-splice.js";
import { validateCountTokensRequest, validateMessagesRequest } from "../core/validate.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { RequestCtx, type Shared } from "./context.js";
import { readBody } from "./body.js";
import { registerMcp } from "./mcp/transport.js";
import { forward, type Pools } from "./upstream.js";

export interface AppDeps {
  cfg: GatewayConfig;
  shared: Shared;
  pools: Pools;
  idPrefix: string;
  /** Renders a metrics page in the worker pool (via the main thread). */
  render(kind: "prometheus" | "observability"): Promise<string>;
}

/** Client headers forwarded upstream as received. */
const FORWARD = ["anthropic-version", "anthropic-beta", "user-agent", "x-claude-code-session-id", "anthropic-dangerous-direct-browser-access"];

interface Incoming {
  query: string;
  clientKey: string;
  contentLength: number;
  fwd: string[];
  stream: boolean;
}

export function buildApp(deps: AppDeps): TemplatedApp {
  const { cfg, shared } = deps;
  const metrics = shared.metrics;
  const providers = buildProviders(cfg.providers);
  const router = new Router(cfg.routes, providers, cfg.defaultProvider);
  const keys = new KeyIndex(cfg.apiKeys);
  const ids = new RequestIds(deps.idPrefix);
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
      stream: false,
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
    if (keys.enabled) {
      if (inc.clientKey === "") return ctx.fail("GW_ERR_AUTH_MISSING_KEY", undefined, inc.contentLength !== 0);
      if (keys.check(inc.clientKey) === null) return ctx.fail("GW_ERR_AUTH_INVALID_KEY", undefined, inc.contentLength !== 0);
    }
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
    const p: ProviderRuntime = route.provider;
    ctx.provider = p.index;
    ctx.providerName = p.name;
    let out = body;
    if (route.upstreamModel !== null && route.upstreamModel !== model) out = spliceModel(body, parsed, route.upstreamModel);
    if (p.type === "mock") return answerMock(ctx, parsed, count, inc);
    const headers = ["content-type", "application/json", "x-request-id", ctx.id];
    for (let i = 0; i < inc.fwd.length; i++) headers.push(inc.fwd[i]!);
    const auth = authHeadersFor(p, inc.clientKey === "" ? null : inc.clientKey);
    for (let i = 0; i < auth.length; i++) headers.push(auth[i]!);
    const path = (count ? p.countTokensPath : p.messagesPath) + (inc.query === "" ? "" : "?" + inc.query);
    forward(deps.pools.get(p.origin), path, headers, out, ctx);
  }

  function answerMock(ctx: RequestCtx, parsed: Record<string, unknown>, count: boolean, inc: Incoming): void {
    const mreq = parsed as unknown as MockRequest;
    if (count) return ctx.send(200, "application/json", `{"input_tokens":${mockCountTokens(mreq)}}`);
    const msgId = "msg_mock_" + ctx.id;
    if (parsed.stream !== true) return ctx.send(200, "application/json", mockMessageJson(mreq, msgId));
    void inc;
    const frames = mockStreamFrames(mreq, msgId);
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
      const ok = components.draining.ok && components.workers.ok && components.heap.ok && components.providers.ok;
      ctx.send(ok ? 200 : 503, "application/json", JSON.stringify({ status: ok ? "ready" : "not_ready", components }));
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
  }

  registerMcp(app, { cfg, shared, keys, ids });
  app.any("/*", guard(R_OTHER, (ctx) => ctx.fail("GW_ERR_ROUTE_NOT_FOUND")));
  return app;
}
