/**
 * Client key check. Keys are indexed by their SHA-256 digest, so a lookup is O(1) and a
 * presented key is never compared with a stored key byte by byte: the only comparison is
 * of digests, so timing is independent of the key's bytes (an attacker cannot steer a
 * digest toward a stored one). That is the constant-time property the check needs.
 */
import { createHash, hash } from "node:crypto";
import type { BudgetLimits } from "./budget.js";
import type { Limits } from "./ratelimit.js";

export function digestKey(key: string): Buffer {
  return createHash("sha256").update(key, "utf8").digest();
}

/** Hex SHA-256 in one call (crypto.hash: ~5x cheaper than createHash per request). */
function digestHex(key: string): string {
  return hash("sha256", key, "hex");
}

export interface KeyEntry {
  readonly id: string;
  /** Dense index (rate-limit buckets and budget counters are slots by this index). */
  readonly index: number;
  readonly digest: Buffer;
  /** Virtual keys (core/keys.ts): their name, models, limits; null for static keys. */
  readonly virtual: VirtualKeyPolicy | null;
}

/** What a virtual key may do (core/keys.ts builds it from the admin API's record). */
export interface VirtualKeyPolicy {
  readonly name: string;
  /** Allowed model names (exact, or a prefix ending in `*`); null = any. */
  readonly models: readonly string[] | null;
  readonly budget: BudgetLimits;
  /** true when any budget limit is set. */
  readonly budgeted: boolean;
  /** Per-key rate limits; null = the global RATE_LIMIT_* settings. */
  readonly rate: Limits | null;
  /** MCP tools it may call (names or "*"), and run_command names (null = all). */
  readonly tools: readonly string[];
  readonly commands: readonly string[] | null;
  /** The response cache for this key; null = CACHE_ENABLED decides (docs/cache.md). */
  readonly cache?: "on" | "off" | null;
}

export class KeyIndex {
  private readonly byDigest = new Map<string, KeyEntry>();
  private readonly byId = new Map<string, string>();
  /** Require a key even with no static keys (the admin API manages keys). */
  private readonly required: boolean;

  constructor(keys: readonly string[], required = false) {
    this.required = required;
    keys.forEach((k, i) => {
      const digest = digestKey(k);
      this.byDigest.set(digest.toString("hex"), Object.freeze({ id: `static-${i}`, index: i, digest, virtual: null }));
    });
  }

  get enabled(): boolean {
    return this.required || this.byDigest.size > 0;
  }

  /** Add or replace a virtual key (by its hex SHA-256 digest). */
  put(digestHex: string, entry: KeyEntry): void {
    const prev = this.byId.get(entry.id);
    if (prev !== undefined && prev !== digestHex) this.byDigest.delete(prev);
    this.byId.set(entry.id, digestHex);
    this.byDigest.set(digestHex, entry);
  }

  /** Remove a virtual key by id: the next request with it fails. */
  remove(id: string): void {
    const d = this.byId.get(id);
    if (d === undefined) return;
    this.byId.delete(id);
    this.byDigest.delete(d);
  }

  /**
   * The matching key entry, or null. The decision is a lookup of the presented key's
   * SHA-256 digest: whatever timing the lookup shows depends on digests, which an
   * attacker cannot steer toward a stored key's bytes.
   */
  check(presented: string): KeyEntry | null {
    return this.byDigest.get(digestHex(presented)) ?? null;
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
