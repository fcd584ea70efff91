/**
 * `GET /v1/models` and `GET /v1/models/{id}` (core/models.ts decides what is listed). The
 * providers' lists arrive from the main thread into `lists`; the catalog is rebuilt on
 * the first request after a change, so an update costs nothing until someone asks.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import { presentedKey, type KeyIndex } from "../core/auth.js";
import { R_MODELS } from "../core/metrics.js";
import { MOCK_MODELS } from "../core/mock-reply.js";
import { ModelCatalog, parseModelsQuery, type ProviderModels } from "../core/models.js";
import type { ProviderRuntime } from "../core/providers.js";
import type { Router } from "../core/routing.js";
import type { RequestCtx } from "./context.js";

export interface ModelsDeps {
  router: Router;
  providers: readonly ProviderRuntime[];
  keys: KeyIndex;
  /** Replaced (not mutated) by the acceptor when the main thread sends new lists. */
  models: { lists: readonly ProviderModels[] };
  guard(route: number, handler: (ctx: RequestCtx, req: HttpRequest) => void): (res: HttpResponse, req: HttpRequest) => void;
}

export function registerModels(app: TemplatedApp, deps: ModelsDeps): void {
  const { router, keys, guard } = deps;
  // The built-in mock serves its fixed list; the upstreams' lists come from the main thread.
  const mockLists: ProviderModels[] = deps.providers
    .filter((p) => p.type === "mock")
    .map((p) => ({ provider: p.name, models: MOCK_MODELS }));
  const catalog = new ModelCatalog(router, router.listed, [...mockLists, ...deps.models.lists]);
  let catalogFrom = deps.models.lists;
  function models(): ModelCatalog {
    if (deps.models.lists !== catalogFrom) {
      catalogFrom = deps.models.lists;
      catalog.update([...mockLists, ...catalogFrom]);
    }
    return catalog;
  }

  /** The same keys as the Messages API. */
  function authorized(ctx: RequestCtx, req: HttpRequest): boolean {
    if (!keys.enabled) return true;
    const k = presentedKey(req.getHeader("x-api-key"), req.getHeader("authorization"));
    if (k === "") ctx.fail("GW_ERR_AUTH_MISSING_KEY");
    else if (keys.check(k) === null) ctx.fail("GW_ERR_AUTH_INVALID_KEY");
    else return true;
    return false;
  }

  app.get(
    "/v1/models",
    guard(R_MODELS, (ctx, req) => {
      if (!authorized(ctx, req)) return;
      const q = parseModelsQuery(req.getQuery() ?? "");
      if (typeof q === "string") return ctx.fail("GW_ERR_REQ_VALIDATION", q);
      ctx.send(200, "application/json", models().page(q));
    }),
  );

  app.get(
    "/v1/models/:id",
    guard(R_MODELS, (ctx, req) => {
      if (!authorized(ctx, req)) return;
      const raw = req.getParameter(0) ?? "";
      let id: string;
      try {
        id = decodeURIComponent(raw);
      } catch {
        id = raw;
      }
      const m = models().get(id);
      if (m === null) return ctx.fail("GW_ERR_MODEL_NOT_FOUND", `model ${JSON.stringify(id.slice(0, 256))} is not served by this gateway`);
      ctx.send(200, "application/json", m);
    }),
  );
}
