/**
 * The admin dashboard (docs/dashboard.md): a static page built into dist/ at `npm run build`
 * (dashboard/ plus uPlot, scripts/build-dashboard.mjs) and one live JSON route the render
 * worker fills (workers/metrics-task.ts). Off without ADMIN_API_KEY, like the admin API.
 *
 * The page itself carries no secret: it asks for the admin key, keeps it in sessionStorage
 * and sends it as a bearer header to /dashboard/data and /admin/*; it never goes in a URL.
 * Assets are read once at start-up and served from memory with a strict CSP (no inline
 * script or style, nothing from another origin).
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import { readFileSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { R_OTHER } from "../../core/metrics.js";
import type { RequestCtx } from "../context.js";
import { adminCheck } from "../admin.js";
import type { RenderKind } from "../../workers/metrics-task.js";

export interface DashboardDeps {
  adminKey: string | null;
  guard(route: number, handler: (ctx: RequestCtx, req: HttpRequest) => void): (res: HttpResponse, req: HttpRequest) => void;
  render(kind: RenderKind): Promise<string>;
  log: { error(o: object, msg: string): void };
}

export const STATIC_DIR = fileURLToPath(new URL("./static/", import.meta.url));

const TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
};

const SECURITY = [
  "content-security-policy",
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options",
  "nosniff",
  "referrer-policy",
  "no-referrer",
  "cache-control",
  "no-store",
  "x-frame-options",
  "DENY",
];

/** The built assets, by file name; empty when the build did not make them (then /dashboard says so). */
function loadAssets(): Map<string, { type: string; body: Buffer }> {
  const out = new Map<string, { type: string; body: Buffer }>();
  let names: string[];
  try {
    names = readdirSync(STATIC_DIR);
  } catch {
    return out;
  }
  for (const n of names) {
    const type = TYPES[n.slice(n.lastIndexOf(".") + 1)];
    if (type !== undefined) out.set(n, { type, body: readFileSync(join(STATIC_DIR, n)) });
  }
  return out;
}

export function registerDashboard(app: TemplatedApp, deps: DashboardDeps): void {
  if (deps.adminKey === null) return;
  const authorised = adminCheck(deps.adminKey);
  const assets = loadAssets();
  const { guard } = deps;

  const page = guard(R_OTHER, (ctx) => {
    const a = assets.get("index.html");
    if (a === undefined) return ctx.fail("GW_ERR_SERVER_INTERNAL", "the dashboard was not built (npm run build)");
    ctx.send(200, a.type, a.body, SECURITY);
  });
  app.get("/dashboard", page);
  app.get("/dashboard/", page);
  app.get(
    "/dashboard/static/:file",
    guard(R_OTHER, (ctx, req) => {
      const a = assets.get(req.getParameter(0) ?? "");
      if (a === undefined) return ctx.fail("GW_ERR_ROUTE_NOT_FOUND");
      ctx.send(200, a.type, a.body, SECURITY);
    }),
  );
  app.get(
    "/dashboard/data",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      deps.render("dashboard").then(
        (text) => ctx.send(200, "application/json", text, SECURITY),
        (e) => {
          deps.log.error({ req_id: ctx.id, err: String(e) }, "dashboard render failed");
          ctx.fail("GW_ERR_SERVER_INTERNAL", "dashboard rendering failed");
        },
      );
    }),
  );
}
