/**
 * Response-cache settings (docs/cache.md): read and validated once at start-up, like every
 * other setting; a bad value stops the start naming the variable. Always returned (not null):
 * the admin API can switch the cache on for one key while CACHE_ENABLED is off.
 */
import { ConfigError, envBool, envInt, envStr, type Env } from "../env.js";

/** Which requests may be cached without `x-portcullis-cache: use` (the candidate rule). */
export type CacheCandidates = "zero" | "zero-or-absent" | "any";

export interface CacheConfig {
  /** On for every key (a key's own `cache` setting overrides it). */
  readonly enabled: boolean;
  /** "key": entries are private to the client key that stored them; "shared": one cache for all. */
  readonly scope: "key" | "shared";
  readonly candidates: CacheCandidates;
  readonly ttlMs: number;
  readonly maxEntryBytes: number;
  readonly maxBytes: number;
  /** Redis for entries shared across replicas; null = memory only. */
  readonly redisUrl: string | null;
  /** Longest wait for a Redis read on a request's path before it counts as a miss. */
  readonly redisTimeoutMs: number;
}

const MIB = 1024 * 1024;

function oneOf<T extends string>(env: Env, name: string, allowed: readonly T[], dflt: T): T {
  const v = envStr(env, name);
  if (v === null) return dflt;
  if (!(allowed as readonly string[]).includes(v))
    throw new ConfigError(name, `expected one of ${allowed.join(", ")}, got ${JSON.stringify(v.slice(0, 60))}`);
  return v as T;
}

export function loadCacheConfig(env: Env): CacheConfig {
  // PROMPT_CACHE_ENABLED is the name the performance report's Kubernetes example sets.
  const direct = envBool(env, "CACHE_ENABLED", false);
  const enabled = envBool(env, "PROMPT_CACHE_ENABLED", false) || direct; // both read: a bad value in either stops the start
  const scope = oneOf(env, "CACHE_SCOPE", ["key", "shared"] as const, "key");
  const candidates = oneOf(env, "CACHE_CANDIDATES", ["zero", "zero-or-absent", "any"] as const, "zero");
  const ttl = envInt(env, "CACHE_TTL_SECONDS", 3600, 1, 30 * 86400);
  const maxBytes = envInt(env, "CACHE_MAX_BYTES", 64 * MIB, 1024, 64 * 1024 * MIB);
  const maxEntryBytes = envInt(env, "CACHE_MAX_ENTRY_BYTES", MIB, 256, 512 * MIB);
  if (maxEntryBytes > maxBytes) throw new ConfigError("CACHE_MAX_ENTRY_BYTES", `must not exceed CACHE_MAX_BYTES (${maxBytes})`);
  const redisUrl = envStr(env, "REDIS_URL");
  if (redisUrl !== null && !/^rediss?:\/\/[^\s]+$/.test(redisUrl)) {
    // Never echo the value: it may carry a password.
    throw new ConfigError("REDIS_URL", "expected a redis:// or rediss:// URL");
  }
  const redisTimeoutMs = envInt(env, "CACHE_REDIS_TIMEOUT_MS", 100, 1, 60_000);
  return Object.freeze({ enabled, scope, candidates, ttlMs: ttl * 1000, maxEntryBytes, maxBytes, redisUrl, redisTimeoutMs });
}
