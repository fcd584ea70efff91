/**
 * Fleet mode's key invalidation (docs/fleet.md): with DATABASE_URL=postgres://… and REDIS_URL,
 * a replica that changed a key through its admin API publishes one message on
 * `portcullis:keys`; every replica (itself included) then reconciles its keys from PostgreSQL
 * at once instead of at the next KEY_SYNC_MS tick. The message says only "something changed":
 * PostgreSQL stays the source of truth, so a message lost while Redis is away costs at most
 * one KEY_SYNC_MS, and nothing about a key (let alone its secret) travels through Redis.
 */
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { lazyRequire } from "../lazy.js";

export const KEY_CHANNEL = "portcullis:keys";

export class KeyBus {
  private readonly pub: Redis;
  private readonly sub: Redis;

  constructor(url: string, onChange: () => void, log: Logger) {
    const opts = {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
    };
    const { Redis } = lazyRequire("ioredis") as typeof import("ioredis");
    this.pub = new Redis(url, opts);
    // The subscriber re-subscribes by itself after a reconnect (ioredis autoResubscribe).
    this.sub = new Redis(url, { ...opts, enableOfflineQueue: true });
    let down = false;
    const outage = (e: Error): void => {
      if (down) return;
      down = true;
      // The URL may carry a password: the error's code only.
      log.warn(
        { err: (e as { code?: string }).code ?? e.name },
        "fleet: Redis unavailable; keys converge through the periodic reconcile (KEY_SYNC_MS)",
      );
    };
    this.pub.on("error", outage);
    this.sub.on("error", outage);
    this.sub.on("ready", () => {
      if (down) log.info({}, "fleet: Redis is back; key changes are pushed again");
      down = false;
      onChange(); // anything missed meanwhile
    });
    this.sub.on("message", () => onChange());
    this.sub.subscribe(KEY_CHANNEL).catch(() => {});
  }

  /** Tell every replica to reconcile now (fire and forget: the timer heals a lost message). */
  announce(): void {
    this.pub.publish(KEY_CHANNEL, "1").catch(() => {});
  }

  async close(): Promise<void> {
    this.pub.disconnect();
    this.sub.disconnect();
  }
}
