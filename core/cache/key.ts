/**
 * The cache key: SHA-256 over everything that decides the upstream's answer. The route and its
 * query string (forwarded upstream: `?beta=true`), the resolved provider and upstream model, the
 * anthropic-version and anthropic-beta values, the scope (the client key, unless
 * CACHE_SCOPE=shared) and the client's body bytes as received.
 * What goes upstream is a pure function of those (model splice, provider shaping, beta
 * policy), so hashing the client bytes names the same thing as hashing the sent bytes, and
 * costs no re-serialisation. Every text part is length-prefixed, so no two different
 * tuples hash the same input. SHA-256 because entries can be shared between tenants with
 * CACHE_SCOPE=shared: a collision must not be something a client can construct.
 */
import { createHash } from "node:crypto";

export interface KeyParts {
  route: number;
  query: string;
  provider: string;
  upstreamModel: string;
  version: string;
  beta: string;
  /** Client key material (hashed, never stored); "" when shared. */
  scope: string;
}

function part(h: ReturnType<typeof createHash>, s: string): void {
  h.update(String(s.length));
  h.update(":");
  h.update(s);
}

/** base64url SHA-256, 43 characters. */
export function cacheKey(p: KeyParts, body: Uint8Array): string {
  const h = createHash("sha256");
  h.update(String(p.route));
  h.update("|");
  part(h, p.query);
  part(h, p.provider);
  part(h, p.upstreamModel);
  part(h, p.version);
  part(h, p.beta);
  part(h, p.scope);
  h.update(body);
  return h.digest("base64url");
}
