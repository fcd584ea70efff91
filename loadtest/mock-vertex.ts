/**
 * The mock upstream's Vertex AI mode (imported by loadtest/mock-upstream.ts):
 *  - `POST /token`: the OAuth2 JWT-bearer grant. The assertion must be an RS256 JWT signed
 *    by the service account whose public key the mock was given (`--vertex-public-key`);
 *    it answers a short-lived access token (`--vertex-token-ttl` seconds), so a gateway
 *    that does not refresh starts failing;
 *  - `GET /computeMetadata/v1/...`: enough of the metadata server for google-auth-library's
 *    Compute client (workload identity), issuing the same kind of token;
 *  - `POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict` and
 *    `:streamRawPredict` (and `count-tokens:rawPredict`): the bearer must be a live token;
 *    the body must carry `anthropic_version: "vertex-2023-10-16"` and no `model`; each
 *    `anthropic-beta` must be one Vertex knows.
 */
import { createPublicKey, createVerify, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { defaultPolicy } from "../core/beta-policy.js";
import { mockCountTokens, mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import type { MockIO } from "./mock-bedrock.js";

export interface VertexMockOptions {
  publicKey: KeyObject | null;
  tokenTtlS: number;
}

const KNOWN_BETAS = new Set(defaultPolicy("vertex").pass_betas);
const tokens = new Map<string, number>();
let tokenSeq = 0;

export function loadPublicKey(path: string): KeyObject {
  return createPublicKey(readFileSync(path, "utf8"));
}

function issue(o: VertexMockOptions): string {
  const t = `ya29.mock-${++tokenSeq}-${Math.random().toString(36).slice(2)}`;
  tokens.set(t, Date.now() + o.tokenTtlS * 1000);
  return JSON.stringify({ access_token: t, expires_in: o.tokenTtlS, token_type: "Bearer" });
}

function googleError(io: MockIO, status: number, gstatus: string, message: string): void {
  io.json(status, JSON.stringify({ error: { code: status, message, status: gstatus } }));
}

/** `POST /token` with a form body; verifies the JWT-bearer assertion. */
export function handleToken(o: VertexMockOptions, io: MockIO, body: Buffer): void {
  const form = new URLSearchParams(body.toString("utf8"));
  if (form.get("grant_type") !== "urn:ietf:params:oauth:grant-type:jwt-bearer") return io.json(400, '{"error":"unsupported_grant_type"}');
  const parts = (form.get("assertion") ?? "").split(".");
  if (parts.length !== 3 || o.publicKey === null)
    return io.json(400, '{"error":"invalid_grant","error_description":"malformed assertion"}');
  const v = createVerify("RSA-SHA256");
  v.update(`${parts[0]}.${parts[1]}`);
  if (!v.verify(o.publicKey, Buffer.from(parts[2]!, "base64url")))
    return io.json(400, '{"error":"invalid_grant","error_description":"Invalid JWT Signature."}');
  const claims = JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as { scope?: string; exp?: number; iss?: string };
  if (typeof claims.iss !== "string" || !(claims.scope ?? "").includes("cloud-platform")) return io.json(400, '{"error":"invalid_scope"}');
  if (typeof claims.exp !== "number" || claims.exp * 1000 < Date.now())
    return io.json(400, '{"error":"invalid_grant","error_description":"expired assertion"}');
  io.json(200, issue(o));
}

/** The metadata server's routes (`/computeMetadata/v1/…`). */
export function handleMetadata(o: VertexMockOptions, io: MockIO, path: string, flavor: string): void {
  if (flavor !== "Google") return io.json(403, '{"error":"missing Metadata-Flavor: Google"}');
  const extra: Array<[string, string]> = [["metadata-flavor", "Google"]];
  if (path === "/computeMetadata/v1/instance/service-accounts/default/token") io.json(200, issue(o), extra);
  else if (path === "/computeMetadata/v1/project/project-id") io.json(200, "mock-project", extra);
  else io.json(200, "{}", extra);
}

const PATH_RE = /^\/v1\/projects\/([^/]+)\/locations\/([^/]+)\/publishers\/anthropic\/models\/([^/:]+):(rawPredict|streamRawPredict)$/;

export function isVertexPath(path: string): boolean {
  return PATH_RE.test(path);
}

export function handleVertex(
  o: VertexMockOptions,
  io: MockIO,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  faultStatus: number | undefined,
  events: number,
  id: string,
): void {
  const pm = PATH_RE.exec(path)!;
  const model = decodeURIComponent(pm[3]!);
  const auth = headers["authorization"] ?? "";
  const exp = auth.startsWith("Bearer ") ? tokens.get(auth.slice(7)) : undefined;
  if (exp === undefined) return googleError(io, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
  if (exp < Date.now())
    return googleError(io, 401, "UNAUTHENTICATED", "Request had invalid authentication credentials: the access token expired.");
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
  } catch {
    return googleError(io, 400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
  }
  const count = model === "count-tokens";
  if (json.anthropic_version !== "vertex-2023-10-16")
    return googleError(io, 400, "INVALID_ARGUMENT", "anthropic_version: vertex-2023-10-16 is required");
  if (!count && "model" in json)
    return io.json(400, '{"type":"error","error":{"type":"invalid_request_error","message":"model: Extra inputs are not permitted"}}');
  for (const b of (headers["anthropic-beta"] ?? "").split(",")) {
    const t = b.trim();
    if (t !== "" && !KNOWN_BETAS.has(t))
      return io.json(
        400,
        `{"type":"error","error":{"type":"invalid_request_error","message":${JSON.stringify(`invalid beta flag: ${t}`)}}}`,
      );
  }
  if (faultStatus !== undefined && faultStatus !== 200) {
    return googleError(io, faultStatus, faultStatus === 429 ? "RESOURCE_EXHAUSTED" : "UNAVAILABLE", "mock fault");
  }
  const req = { ...json, model: count ? String(json.model) : model } as unknown as MockRequest;
  if (count) return io.json(200, `{"input_tokens":${mockCountTokens(req)}}`);
  if (pm[4] === "rawPredict") return io.json(200, mockMessageJson(req, id));
  io.stream(mockStreamFrames(req, id, events), "text/event-stream; charset=utf-8");
}
