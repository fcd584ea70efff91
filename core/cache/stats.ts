/**
 * The cache's counters, in a section of the shared metrics buffer (core/metrics.ts reserves
 * CACHE_SLOTS): `cache_requests_total{result}`, Redis errors, and the memory tier's bytes and
 * entries (gauges written by the owner thread only). Rendered for /metrics/prometheus and the
 * JSON snapshot by the metrics worker.
 */
import { add64, read64 } from "../atomic64.js";

/** hit / miss / bypass are counted per request; store / evict per entry. */
export const CACHE_RESULTS = ["hit", "miss", "bypass", "store", "evict"] as const;
export const CR_HIT = 0,
  CR_MISS = 1,
  CR_BYPASS = 2,
  CR_STORE = 3,
  CR_EVICT = 4;
const REDIS_ERRORS = CACHE_RESULTS.length * 2;
const BYTES = REDIS_ERRORS + 2;
const ENTRIES = BYTES + 2;
const REDIS_UP = ENTRIES + 2;
/** Uint32 slots the cache needs in the metrics buffer. */
export const CACHE_SLOTS = REDIS_UP + 2;

export class CacheStats {
  private readonly u32: Uint32Array;
  private readonly off: number;
  constructor(u32: Uint32Array, off: number) {
    this.u32 = u32;
    this.off = off;
  }
  count(result: number, n = 1): void {
    add64(this.u32, this.off + result * 2, n);
  }
  redisError(): void {
    add64(this.u32, this.off + REDIS_ERRORS, 1);
  }
  /** Gauges: set by the owner thread only. */
  memory(bytes: number, entries: number): void {
    this.set(BYTES, bytes);
    this.set(ENTRIES, entries);
  }
  redisUp(up: boolean): void {
    Atomics.store(this.u32, this.off + REDIS_UP, up ? 1 : 0);
  }
  private set(at: number, v: number): void {
    Atomics.store(this.u32, this.off + at, v % 4294967296);
    Atomics.store(this.u32, this.off + at + 1, Math.floor(v / 4294967296));
  }
}

export interface CacheSnapshot {
  requests: Record<(typeof CACHE_RESULTS)[number], number>;
  redis_errors: number;
  bytes: number;
  entries: number;
  redis_up: boolean;
}

export function cacheSnapshot(u32: Uint32Array, off: number): CacheSnapshot {
  const requests = {} as CacheSnapshot["requests"];
  CACHE_RESULTS.forEach((r, i) => (requests[r] = read64(u32, off + i * 2)));
  return {
    requests,
    redis_errors: read64(u32, off + REDIS_ERRORS),
    bytes: read64(u32, off + BYTES),
    entries: read64(u32, off + ENTRIES),
    redis_up: Atomics.load(u32, off + REDIS_UP) === 1,
  };
}

/** `redis` = REDIS_URL is set (else the Redis series are left out). */
export function renderCachePrometheus(s: CacheSnapshot, redis: boolean): string {
  const out = [
    "# HELP cache_requests_total Response cache outcomes: hit, miss, bypass per request; store and evict per entry (docs/cache.md).",
    "# TYPE cache_requests_total counter",
    ...CACHE_RESULTS.map((r) => `cache_requests_total{result="${r}"} ${s.requests[r]}`),
    "# HELP cache_bytes Bytes held by the response cache's memory tier.",
    "# TYPE cache_bytes gauge",
    `cache_bytes ${s.bytes}`,
    "# HELP cache_entries Entries held by the response cache's memory tier.",
    "# TYPE cache_entries gauge",
    `cache_entries ${s.entries}`,
  ];
  if (redis) {
    out.push(
      "# HELP cache_redis_errors_total Redis cache reads and writes that failed or timed out (served from memory, or as a miss).",
      "# TYPE cache_redis_errors_total counter",
      `cache_redis_errors_total ${s.redis_errors}`,
      "# HELP cache_redis_up 1 while the cache's Redis connection is ready, 0 during an outage (memory only).",
      "# TYPE cache_redis_up gauge",
      `cache_redis_up ${s.redis_up ? 1 : 0}`,
    );
  }
  return out.join("\n") + "\n";
}
