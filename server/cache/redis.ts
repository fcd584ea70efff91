/**
 * The Redis tier of the response cache (REDIS_URL): entries shared by every replica, under
 * `portcullis:cache:<key>` with Redis' own expiry (PX) set to what is left of the TTL. It runs
 * on the owner thread behind the memory tier, so a hit that this replica already holds never
 * leaves the process.
 *
 * An outage never fails a request: commands are not queued while disconnected (they fail at
 * once) and each read waits at most CACHE_REDIS_TIMEOUT_MS, then counts as a miss; writes are
 * fire-and-forget. Errors are counted (cache_redis_errors_total) and the connection state is a
 * gauge (cache_redis_up); ioredis reconnects in the background with a capped backoff.
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { lazyRequire } from "../lazy.js";
import type { CacheStats } from "../../core/cache/stats.js";

const PREFIX = "portcullis:cache:";

export class RedisTier {
  private readonly client: Redis;
  private readonly stats: CacheStats;
  private readonly log: Logger;
  private down = false;

  constructor(url: string, timeoutMs: number, stats: CacheStats, log: Logger) {
    this.stats = stats;
    this.log = log;
    const { Redis } = lazyRequire("ioredis") as typeof import("ioredis");
    this.client = new Redis(url, {
      lazyConnect: false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      commandTimeout: timeoutMs,
      connectTimeout: Math.max(1000, timeoutMs),
      retryStrategy: (times) => Math.min(100 * times, 2000),
    });
    stats.redisUp(false);
    this.client.on("ready", () => {
      stats.redisUp(true);
      if (this.down) log.warn({}, "cache: Redis is back; entries are shared again");
      this.down = false;
    });
    this.client.on("error", (e: Error) => this.outage(e));
    this.client.on("close", () => stats.redisUp(false));
  }

  private outage(e: Error): void {
    this.stats.redisUp(false);
    if (this.down) return;
    this.down = true;
    // The URL may carry a password: log the error's code only, never the URL.
    this.log.warn({ err: (e as { code?: string }).code ?? e.name }, "cache: Redis unavailable; serving from memory only");
  }

  /** The stored bytes, or null on a miss, an error or a timeout. */
  async get(key: string): Promise<Buffer | null> {
    try {
      return await this.client.getBuffer(PREFIX + key);
    } catch {
      this.stats.redisError();
      return null;
    }
  }

  set(key: string, value: Uint8Array, ttlMs: number): void {
    if (ttlMs <= 0) return;
    this.client
      .set(PREFIX + key, Buffer.from(value.buffer, value.byteOffset, value.byteLength), "PX", Math.ceil(ttlMs))
      .catch(() => this.stats.redisError());
  }

  async close(): Promise<void> {
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}
