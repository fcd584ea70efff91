/**
 * What the gateway checks on both sides of an upstream call, so that a client's bytes
 * never make a provider look broken and a provider's bytes never leak a secret.
 *
 * Outbound: undici refuses a header value with a control byte (other than tab) or a
 * character above U+00FF, and a path with a byte outside U+0021..U+00FF, before anything
 * leaves; that refusal is the client's mistake, so it is caught here first and answered
 * 400 naming the header (or the query). The query must be plain ASCII (RFC 3986 wants
 * anything else percent-encoded), which also covers the raw 0xff that uWS reads as U+FFFD.
 *
 * Inbound: an error body is relayed only if it is JSON; anything else is logged truncated,
 * with secrets masked, and replaced.
 */

/** undici's own test for a header value (lib/core/util.js headerCharRegex). */
const BAD_HEADER_VALUE = /[^\t\x20-\x7e\x80-\xff]/;
const BAD_QUERY = /[^\x21-\x7e]/;

/** The first forwarded header (flat name, value list) undici would refuse, or null. */
export function badHeader(flat: readonly string[]): string | null {
  for (let i = 0; i < flat.length; i += 2) if (BAD_HEADER_VALUE.test(flat[i + 1]!)) return flat[i]!;
  return null;
}

export function badHeaderValue(v: string): boolean {
  return BAD_HEADER_VALUE.test(v);
}

export function badQuery(q: string): boolean {
  return BAD_QUERY.test(q);
}

/**
 * Is this upstream body JSON? The content type must say so and the body must parse
 * (an error body is small; a 2xx body is only checked for its first byte, see jsonish).
 */
export function isJsonBody(contentType: string, body: Buffer): boolean {
  if (!jsonType(contentType)) return false;
  try {
    JSON.parse(body.toString("utf8"));
    return true;
  } catch {
    return false;
  }
}

/** A 2xx message reply the gateway can relay: a JSON content type and a JSON object. */
export function jsonish(contentType: string, body: Buffer): boolean {
  if (!jsonType(contentType)) return false;
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    return c === 0x7b; // "{"
  }
  return false;
}

function jsonType(ct: string): boolean {
  const t = ct.split(";", 1)[0]!.trim().toLowerCase();
  return t === "application/json" || (t.startsWith("application/") && t.endsWith("+json"));
}

/** Key-like tokens masked in logged upstream bodies, besides the exact secrets given. */
const KEY_LIKE = /\b(sk-[A-Za-z0-9_-]{4})[A-Za-z0-9_-]+|\b(Bearer\s+)[^\s"'<]+/g;

/** At most `max` characters of `text`, each of `secrets` and anything key-like masked. */
export function redactSnippet(text: string, secrets: readonly string[], max: number): string {
  let s = text.length > max * 2 ? text.slice(0, max * 2) : text;
  for (const k of secrets) if (k.length >= 4) s = s.split(k).join("[redacted]");
  s = s.replace(KEY_LIKE, (_m, sk: string | undefined, bearer: string | undefined) =>
    sk !== undefined ? `${sk}…[redacted]` : `${bearer}[redacted]`,
  );
  return s.length > max ? s.slice(0, max) + "…" : s;
}
