/**
 * Client key check. Keys are indexed by their SHA-256 digest, so a lookup is O(1) and the
 * comparison that decides is a constant-time compare of two 32-byte digests: timing can
 * tell an attacker nothing about a key's bytes, only about digests they cannot steer.
 */
import { createHash, timingSafeEqual } from "node:crypto";

export function digestKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

export interface KeyEntry {
  readonly id: string;
  readonly digest: Buffer;
}

export class KeyIndex {
  private readonly byDigest = new Map<string, KeyEntry>();

  constructor(keys: readonly string[]) {
    keys.forEach((k, i) => {
      const digest = digestKey(k);
      this.byDigest.set(digest.toString("hex"), Object.freeze({ id: `static-${i}`, digest }));
    });
  }

  get enabled(): boolean {
    return this.byDigest.size > 0;
  }

  /** The matching key entry, or null. */
  check(presented: string): KeyEntry | null {
    const d = digestKey(presented);
    const e = this.byDigest.get(d.toString("hex"));
    if (e === undefined || !timingSafeEqual(d, e.digest)) return null;
    return e;
  }
}

/**
 * The key a client presented: `x-api-key`, else `Authorization: Bearer <key>`.
 * Returns "" when neither is present.
 */
export function presentedKey(xApiKey: string, authorization: string): string {
  if (xApiKey !== "") return xApiKey;
  if (authorization.length > 7 && authorization.slice(0, 7).toLowerCase() === "bearer ") return authorization.slice(7).trim();
  return "";
}
