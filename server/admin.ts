/**
 * The admin API (docs/budgets.md): virtual keys and usage reports, authorised by
 * `Authorization: Bearer $ADMIN_API_KEY`. Without ADMIN_API_KEY nothing is registered, so
 * the routes answer 404 like any unknown path. Input is validated here with typia; the
 * work runs on the main thread (server/ledger.ts), which owns the ledger and the keys.
 */
import { typiaPath } from "../core/typia-path.js";
import type { HttpRequest, TemplatedApp } from "uWebSockets.js";
import { hash, timingSafeEqual } from "node:crypto";
import typia, { tags } from "typia";
import type { GatewayConfig } from "../core/config.js";
import { R_OTHER } from "../core/metrics.js";
import { validateCreateKey, validatePatchKey } from "../core/keys.js";
import { presentedKey } from "../core/auth.js";
import type { RequestCtx } from "./context.js";
import { readBody } from "./body.js";
import type { AdminOp, AdminResult } from "./ledger.js";

export interface AdminDeps {
  cfg: GatewayConfig;
  guard(
    route: number,
    handler: (ctx: RequestCtx, req: HttpRequest) => void,
  ): (res: import("uWebSockets.js").HttpResponse, req: HttpRequest) => void;
  admin(op: AdminOp): Promise<AdminResult>;
}

interface UsageQuery {
  from?: string & (tags.Format<"date"> | tags.Format<"date-time">);
  to?: string & (tags.Format<"date"> | tags.Format<"date-time">);
  group_by?: "key" | "model" | "day" | "user" | "session";
  format?: "json" | "csv";
}
const validateUsageQuery = typia.createValidateEquals<UsageQuery>();

const MAX_ADMIN_BODY = 64 * 1024;
const KEY_ID = /^key_[A-Za-z0-9]{1,64}$/;

function firstError(errors: { path: string; expected: string }[]): string {
  const e = errors[0]!;
  const path = typiaPath(e.path) || "(body)";
  return `${path}: expected ${e.expected}`;
}

/** `Authorization: Bearer <adminKey>` or a 401 answered; shared with the dashboard's data route. */
export function adminCheck(adminKey: string): (ctx: RequestCtx, req: HttpRequest) => boolean {
  const want = hash("sha256", adminKey, "buffer") as unknown as Buffer;
  return (ctx, req) => {
    const k = presentedKey("", req.getHeader("authorization"));
    // Compare digests in constant time (equal lengths by construction).
    if (k !== "" && timingSafeEqual(hash("sha256", k, "buffer") as unknown as Buffer, want)) return true;
    ctx.fail("GW_ERR_ADMIN_UNAUTHORIZED", undefined, req.getHeader("content-length") !== "" && req.getHeader("content-length") !== "0");
    return false;
  };
}

export function registerAdmin(app: TemplatedApp, deps: AdminDeps): void {
  const adminKey = deps.cfg.admin_api_key;
  if (adminKey === null) return;
  const { guard } = deps;
  const authorised = adminCheck(adminKey);

  function answer(ctx: RequestCtx, op: AdminOp): void {
    deps.admin(op).then(
      (r) => {
        if (r.ok) ctx.send(r.status, r.contentType, r.body);
        else ctx.fail(r.code, r.message);
      },
      () => ctx.fail("GW_ERR_LEDGER_UNAVAILABLE"),
    );
  }

  function withJson(ctx: RequestCtx, req: HttpRequest, then: (v: unknown) => void): void {
    const cl = req.getHeader("content-length");
    const len = cl === "" ? -1 : Number(cl);
    if (len > MAX_ADMIN_BODY) return ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `admin bodies are limited to ${MAX_ADMIN_BODY} bytes`, true);
    readBody(ctx, len, MAX_ADMIN_BODY, deps.cfg.body_timeout_ms, (body) => {
      let v: unknown;
      try {
        v = JSON.parse(body.toString("utf8"));
      } catch {
        return ctx.fail("GW_ERR_ADMIN_INVALID", "the body is not valid JSON");
      }
      then(v);
    });
  }

  app.post(
    "/admin/keys",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      withJson(ctx, req, (v) => {
        const r = validateCreateKey(v);
        if (!r.success) return ctx.fail("GW_ERR_ADMIN_INVALID", firstError(r.errors));
        answer(ctx, { op: "create", input: r.data });
      });
    }),
  );

  app.get(
    "/admin/keys",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      answer(ctx, { op: "list" });
    }),
  );

  app.patch(
    "/admin/keys/:id",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      const id = req.getParameter(0) ?? "";
      withJson(ctx, req, (v) => {
        if (!KEY_ID.test(id)) return ctx.fail("GW_ERR_ADMIN_KEY_NOT_FOUND");
        const r = validatePatchKey(v);
        if (!r.success) return ctx.fail("GW_ERR_ADMIN_INVALID", firstError(r.errors));
        answer(ctx, { op: "patch", id, input: r.data });
      });
    }),
  );

  app.del(
    "/admin/keys/:id",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      const id = req.getParameter(0) ?? "";
      if (!KEY_ID.test(id)) return ctx.fail("GW_ERR_ADMIN_KEY_NOT_FOUND");
      answer(ctx, { op: "revoke", id });
    }),
  );

  app.get(
    "/admin/usage",
    guard(R_OTHER, (ctx, req) => {
      if (!authorised(ctx, req)) return;
      const q: Record<string, string> = {};
      for (const [k, val] of new URLSearchParams(req.getQuery() ?? "")) q[k] = val;
      const r = validateUsageQuery(q);
      if (!r.success) return ctx.fail("GW_ERR_ADMIN_INVALID", firstError(r.errors));
      const now = new Date();
      const from = r.data.from !== undefined ? Date.parse(r.data.from) : Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
      // A bare date as `to` includes that whole day.
      const to = r.data.to !== undefined ? Date.parse(r.data.to) + (r.data.to.length === 10 ? 86_400_000 : 0) : now.getTime() + 1;
      if (!(to > from)) return ctx.fail("GW_ERR_ADMIN_INVALID", "to must be after from");
      answer(ctx, { op: "usage", from, to, groupBy: r.data.group_by ?? "key", format: r.data.format ?? "json" });
    }),
  );
}
