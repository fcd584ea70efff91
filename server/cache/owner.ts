/**
 * The response cache's owner, on the main thread: one byte-bounded LRU (CACHE_MAX_BYTES) for
 * the whole process, and the Redis tier behind it when REDIS_URL is set. Acceptor threads ask
 * it over a MessagePort each (server/cache/client.ts), so an answer stored by one thread is a
 * hit on every other. Why one owner thread rather than an arena in a SharedArrayBuffer: a
 * lookup round trip costs microseconds (bench/cache.ts measures it), against the upstream
 * call a hit saves, while a shared arena would need its own allocator, locks and compaction
 * to hold variable-sized entries under an LRU bound. The owner also stamps every entry with
 * its own clock (injectable, for the TTL tests), so one clock decides expiry.
 */
import type { MessagePort } from "node:worker_threads";
import type { Logger } from "pino";
import type { CacheConfig } from "../../core/cache/config.js";
import { entryMeta, HEADER_BYTES } from "../../core/cache/entry.js";
import { ByteLru } from "../../core/cache/lru.js";
import { CR_EVICT, CR_STORE, type CacheStats } from "../../core/cache/stats.js";
import { RedisTier } from "./redis.js";

export type ToOwner = { t: "get"; id: number; key: string } | { t: "put"; key: string; entry: Uint8Array };
export interface FromOwner {
  id: number;
  /** The stored entry (core/cache/entry.ts), or null on a miss. */
  entry: Uint8Array | null;
  /** Seconds since it was stored. */
  age: number;
}

export class CacheOwner {
  private readonly cfg: CacheConfig;
  private readonly lru: ByteLru;
  private readonly stats: CacheStats;
  private readonly now: () => number;
  private readonly redis: RedisTier | null;
  private readonly ports: MessagePort[] = [];

  constructor(cfg: CacheConfig, stats: CacheStats, log: Logger, now: () => number = Date.now) {
    this.cfg = cfg;
    this.stats = stats;
    this.now = now;
    this.lru = new ByteLru(cfg.maxBytes);
    this.redis = cfg.redisUrl === null ? null : new RedisTier(cfg.redisUrl, cfg.redisTimeoutMs, stats, log);
  }

  /** Serve one acceptor's port. */
  attach(port: MessagePort): void {
    this.ports.push(port);
    port.on("message", (m: ToOwner) => {
      if (m.t === "put") this.put(m.key, m.entry);
      else void this.get(m.key).then((r) => port.postMessage({ id: m.id, entry: r.entry, age: r.age } satisfies FromOwner));
    });
    port.unref();
  }

  async get(key: string): Promise<{ entry: Uint8Array | null; age: number }> {
    const now = this.now();
    let e = this.lru.get(key, now);
    if (e === null && this.redis !== null) {
      // A copy in a buffer of its own: the reply may be a slice of a larger socket buffer, which
      // the LRU would otherwise keep alive, and a message would clone whole.
      const got = await this.redis.get(key);
      const r = got === null ? null : new Uint8Array(got);
      const meta = r === null ? null : entryMeta(r);
      if (meta !== null && meta.storedAt + this.cfg.ttlMs > now && r!.byteLength - HEADER_BYTES <= this.cfg.maxEntryBytes) {
        // Into the memory tier for the rest of its lifetime.
        this.stats.count(CR_EVICT, this.lru.set(key, r!, meta.storedAt + this.cfg.ttlMs));
        e = r;
      }
    }
    this.gauges();
    if (e === null) return { entry: null, age: 0 };
    const meta = entryMeta(e)!;
    return { entry: e, age: Math.max(0, Math.floor((now - meta.storedAt) / 1000)) };
  }

  put(key: string, entry: Uint8Array): void {
    if (entryMeta(entry) === null || entry.byteLength - HEADER_BYTES > this.cfg.maxEntryBytes) return;
    const now = this.now();
    new DataView(entry.buffer, entry.byteOffset, entry.byteLength).setFloat64(4, now, true);
    this.stats.count(CR_EVICT, this.lru.set(key, entry, now + this.cfg.ttlMs));
    this.stats.count(CR_STORE);
    this.redis?.set(key, entry, this.cfg.ttlMs);
    this.gauges();
  }

  private gauges(): void {
    this.stats.memory(this.lru.bytes, this.lru.size);
  }

  async close(): Promise<void> {
    for (const p of this.ports) p.close();
    await this.redis?.close();
  }
}
