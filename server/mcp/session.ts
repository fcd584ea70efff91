/**
 * MCP session ids without shared state: an HMAC-signed token carrying the key id, the
 * negotiated protocol version and the issue time. Any acceptor thread (and any replica
 * given the same MCP_SESSION_SECRET) can check one, so SO_REUSEPORT spreading a client's
 * requests across threads does not lose its session. A session is bound to the key that
 * opened it and expires after MCP_SESSION_TTL_SECONDS; the client then initializes again.
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";

function mac(secret: string, body: string): string {
  return createHmac("sha256", secret).update(body).digest("base64url");
}

export function issueSession(secret: string, keyId: string, version: string, nowSec: number): string {
  const body = `${Buffer.from(keyId).toString("base64url")}.${version}.${nowSec.toString(36)}.${randomBytes(9).toString("base64url")}`;
  return `${body}.${mac(secret, body)}`;
}

/** The session's protocol version, or null when the token is forged, expired or another key's. */
export function checkSession(secret: string, token: string, keyId: string, ttlSec: number, nowSec: number): { version: string } | null {
  if (token.length > 512) return null;
  const parts = token.split(".");
  if (parts.length !== 5) return null;
  const body = parts.slice(0, 4).join(".");
  const want = Buffer.from(mac(secret, body));
  const got = Buffer.from(parts[4]!);
  if (want.length !== got.length || !timingSafeEqual(want, got)) return null;
  if (Buffer.from(parts[0]!, "base64url").toString() !== keyId) return null;
  const issued = parseInt(parts[2]!, 36);
  if (!Number.isFinite(issued) || nowSec - issued > ttlSec || issued - nowSec > 300) return null;
  return { version: parts[1]! };
}
