/**
 * The MCP server at /mcp: the Streamable HTTP transport (JSON-RPC 2.0 over POST, one
 * JSON response per request, 202 for notifications and responses) on uWS. Sessions are
 * signed tokens in `Mcp-Session-Id` (session.ts). GET (a server-to-client SSE stream)
 * and DELETE (session termination) answer 405, which the spec allows. Auth uses the same
 * client keys as /v1/messages; the Origin header, when sent, must be allowed.
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from "uWebSockets.js";
import type { GatewayConfig } from "../../core/config.js";
import type { KeyIndex } from "../../core/auth.js";
import { presentedKey } from "../../core/auth.js";
import { errorBody } from "../../core/errors.js";
import { R_OTHER } from "../../core/metrics.js";
import { clientRequestId, type RequestIds } from "../../core/request-id.js";
import type { McpConfig } from "../../core/policy/config.js";
import { RequestCtx, type Shared } from "../context.js";
import { readBody } from "../body.js";
import { checkSession, issueSession } from "./session.js";
import { Tools, type KeyRights } from "./tools.js";

export const SUPPORTED_PROTOCOL_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26"] as const;
export const LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0];
const SERVER_INFO = { name: "portcullis", title: "Portcullis workspace tools", version: "0.1.0" };

export interface McpDeps {
  cfg: GatewayConfig;
  shared: Shared;
  keys: KeyIndex;
  ids: RequestIds;
}

/** What /health/ready shows about the sandbox (per acceptor thread; each runs the self-test). */
export interface SandboxReadiness {
  /** Always true when MCP is off. */
  ok: boolean;
  status: "off" | "checking" | "available" | "unavailable";
  reason?: string;
  backend?: string;
  /** "cgroup": per-command cgroup v2; "rlimits": per-process limits only. */
  limits?: "cgroup" | "rlimits";
  limits_reason?: string;
}
let readiness: SandboxReadiness = { ok: true, status: "off" };

/** The sandbox component of /health/ready. It is reported, and does not fail readiness: /v1/messages still works. */
export function sandboxReadiness(): SandboxReadiness {
  return readiness;
}

type Id = string | number;
interface Rpc {
  jsonrpc?: unknown;
  id?: unknown;
  method?: unknown;
  params?: unknown;
}

const rpcResult = (id: Id, result: unknown) => JSON.stringify({ jsonrpc: "2.0", id, result });
const rpcError = (id: Id | null, code: number, message: string) => JSON.stringify({ jsonrpc: "2.0", id, error: { code, message } });

export function registerMcp(app: TemplatedApp, deps: McpDeps): void {
  const mcp: McpConfig | null = deps.cfg.mcp;
  if (mcp === null) return;
  const { shared, keys, ids } = deps;
  if (mcp.sandbox.backend === "none") {
    shared.log.warn(
      { sandbox: "none" },
      "SANDBOX_BACKEND=none: MCP run_command, git_status and git_diff run directly on the host with no namespace isolation, only a scrubbed environment and rlimits",
    );
  }
  const tools = new Tools(mcp, shared.log, { metrics: shared.metrics, audit: (row) => shared.usage?.audit?.(row) });
  const cg = tools.sandbox.cgroups.status;
  if (cg.mode === "rlimits" && mcp.sandbox.backend !== "docker" && mcp.sandbox.backend !== "podman") {
    shared.log.warn(
      { sandbox_limits: "rlimits", missing: cg.reason },
      "sandbox limits are per process (RLIMIT_AS, RLIMIT_NPROC), not per command: no usable cgroup v2 subtree",
    );
  }
  const limits = { limits: cg.mode, ...(cg.reason === null ? {} : { limits_reason: cg.reason }) };
  readiness = { ok: false, status: "checking", backend: mcp.sandbox.backend, ...limits };
  tools.sandbox.selfTest().then(
    (why) => {
      readiness =
        why === null
          ? { ok: true, status: "available", backend: mcp.sandbox.backend, ...limits }
          : { ok: false, status: "unavailable", reason: why, backend: mcp.sandbox.backend, ...limits };
      if (why !== null)
        shared.log.error(
          { sandbox: "unavailable", reason: why },
          "sandbox self-test failed: run_command, git_status and git_diff will fail until the sandbox can start",
        );
      tools.sandbox.down = why;
    },
    (e) => shared.log.error({ err: String(e) }, "sandbox self-test crashed"),
  );
  const origins = new Set(mcp.allowedOrigins);
  const bodyCap = Math.min(deps.cfg.max_body_bytes, mcp.maxWriteBytes * 6 + 65_536);

  function guard(handler: (ctx: RequestCtx, req: HttpRequest) => void) {
    return (res: HttpResponse, req: HttpRequest): void => {
      let ctx: RequestCtx | null = null;
      try {
        ctx = new RequestCtx(res, shared, R_OTHER);
        ctx.id = ids.next();
        ctx.clientRequestId = clientRequestId(req.getHeader("x-request-id"));
        ctx.providerName = "mcp";
        handler(ctx, req);
      } catch (e) {
        shared.log.error({ req_id: ctx?.id, err: String((e as Error)?.stack ?? e) }, "mcp handler failed");
        if (ctx !== null) ctx.fail("GW_ERR_SERVER_INTERNAL");
        else res.cork(() => res.writeStatus("500 Internal Server Error").end());
      }
    };
  }

  /** The caller's key id and (virtual key) tool rights, or null after answering 401/403. */
  function admit(ctx: RequestCtx, req: HttpRequest, hasBody: boolean): { id: string; rights: KeyRights | null } | null {
    const origin = req.getHeader("origin");
    if (origin !== "" && !origins.has(origin)) {
      ctx.fail(
        "GW_ERR_MCP_ORIGIN_FORBIDDEN",
        `origin ${JSON.stringify(origin.slice(0, 200))} is not allowed (MCP_ALLOWED_ORIGINS)`,
        hasBody,
      );
      return null;
    }
    if (!keys.enabled) return { id: "anonymous", rights: null };
    const k = presentedKey(req.getHeader("x-api-key"), req.getHeader("authorization"));
    if (k === "") {
      ctx.fail("GW_ERR_AUTH_MISSING_KEY", undefined, hasBody);
      return null;
    }
    const e = keys.check(k);
    if (e === null) {
      ctx.fail("GW_ERR_AUTH_INVALID_KEY", undefined, hasBody);
      return null;
    }
    return { id: e.id, rights: e.virtual };
  }

  app.post(
    "/mcp",
    guard((ctx, req) => {
      const cl = req.getHeader("content-length");
      const contentLength = cl === "" ? -1 : Number(cl);
      const caller = admit(ctx, req, contentLength !== 0);
      if (caller === null) return;
      const keyId = caller.id;
      const sessionHeader = req.getHeader("mcp-session-id");
      const versionHeader = req.getHeader("mcp-protocol-version");
      if (contentLength > bodyCap)
        return ctx.fail("GW_ERR_REQ_BODY_TOO_LARGE", `request body of ${contentLength} bytes exceeds the limit of ${bodyCap}`, true);
      readBody(ctx, contentLength, bodyCap, deps.cfg.body_timeout_ms, (body) => {
        let msg: unknown;
        try {
          msg = JSON.parse(body.toString("utf8"));
        } catch (e) {
          return ctx.send(400, "application/json", rpcError(null, -32700, `parse error: ${(e as Error).message}`));
        }
        if (Array.isArray(msg))
          return ctx.send(
            400,
            "application/json",
            rpcError(null, -32600, "JSON-RPC batches are not supported; send one message per request"),
          );
        if (msg === null || typeof msg !== "object" || (msg as Rpc).jsonrpc !== "2.0") {
          return ctx.send(400, "application/json", rpcError(null, -32600, "invalid request: expected a JSON-RPC 2.0 message"));
        }
        const m = msg as Rpc;
        const hasId = typeof m.id === "string" || (typeof m.id === "number" && Number.isInteger(m.id));
        const id = hasId ? (m.id as Id) : null;
        const method = typeof m.method === "string" ? m.method : null;

        if (method === "initialize" && hasId) {
          const p = (m.params ?? {}) as { protocolVersion?: unknown };
          const asked = typeof p.protocolVersion === "string" ? p.protocolVersion : "";
          const version = (SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(asked) ? asked : LATEST_PROTOCOL_VERSION;
          const sid = issueSession(mcp.sessionSecret, keyId, version, Math.floor(Date.now() / 1000));
          const result = {
            protocolVersion: version,
            capabilities: { tools: { listChanged: false } },
            serverInfo: SERVER_INFO,
            instructions: `Workspace tools for ${mcp.roots.join(", ")}. Paths are relative to ${mcp.roots[0]}. Commands run in a sandbox with no network.`,
          };
          return ctx.send(200, "application/json", rpcResult(id!, result), ["mcp-session-id", sid]);
        }

        // Everything after initialize belongs to a session.
        if (sessionHeader === "") return ctx.fail("GW_ERR_MCP_SESSION_MISSING");
        const session = checkSession(mcp.sessionSecret, sessionHeader, keyId, mcp.sessionTtlSeconds, Math.floor(Date.now() / 1000));
        if (session === null) return ctx.fail("GW_ERR_MCP_SESSION_UNKNOWN");
        if (versionHeader !== "" && !(SUPPORTED_PROTOCOL_VERSIONS as readonly string[]).includes(versionHeader)) {
          return ctx.send(
            400,
            "application/json",
            rpcError(
              id,
              -32600,
              `unsupported MCP-Protocol-Version ${JSON.stringify(versionHeader.slice(0, 40))}; supported: ${SUPPORTED_PROTOCOL_VERSIONS.join(", ")}`,
            ),
          );
        }
        const extra = ["mcp-session-id", sessionHeader];

        // Notifications and responses to server requests: accepted, no body.
        if (!hasId || method === null) {
          if (method === null && !("result" in m) && !("error" in m)) {
            return ctx.send(400, "application/json", rpcError(id, -32600, "invalid request: no method"));
          }
          return ctx.send(202, "application/json", "", extra);
        }

        switch (method) {
          case "ping":
            return ctx.send(200, "application/json", rpcResult(id!, {}), extra);
          case "tools/list":
            return ctx.send(200, "application/json", rpcResult(id!, { tools: tools.list(keyId, caller.rights) }), extra);
          case "tools/call": {
            const p = (m.params ?? {}) as { name?: unknown; arguments?: unknown };
            if (typeof p.name !== "string")
              return ctx.send(200, "application/json", rpcError(id, -32602, "tools/call needs params.name"), extra);
            if (!tools.has(p.name))
              return ctx.send(200, "application/json", rpcError(id, -32602, `unknown tool: ${p.name.slice(0, 64)}`), extra);
            let cancel: (() => void) | null = null;
            ctx.onAbort = () => cancel?.();
            tools.call(p.name, p.arguments, { keyId, rights: caller.rights, reqId: ctx.id, onCancel: (f) => (cancel = f) }).then(
              (r) => {
                ctx.onAbort = null;
                ctx.send(200, "application/json", rpcResult(id!, r), extra);
              },
              (e) => {
                ctx.onAbort = null;
                shared.log.error({ req_id: ctx.id, err: String((e as Error)?.stack ?? e) }, "tools/call failed");
                ctx.send(200, "application/json", rpcError(id, -32603, "internal error"), extra);
              },
            );
            return;
          }
          default:
            return ctx.send(200, "application/json", rpcError(id, -32601, `method not found: ${method.slice(0, 64)}`), extra);
        }
      });
    }),
  );

  // No server-initiated stream and no explicit session termination (sessions expire).
  const notAllowed = guard((ctx, req) => {
    if (admit(ctx, req, false) === null) return;
    ctx.errorCode = "GW_ERR_MCP_METHOD_NOT_ALLOWED";
    ctx.send(405, "application/json", errorBody("GW_ERR_MCP_METHOD_NOT_ALLOWED", ctx.id), ["allow", "POST"]);
  });
  app.get("/mcp", notAllowed);
  app.del("/mcp", notAllowed);
}
