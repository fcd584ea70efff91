/**
 * Fleet rate limits (docs/fleet.md): with fleet mode and REDIS_URL, a key's requests and tokens
 * per minute hold across every replica, while a request's admission stays an Atomics operation
 * on the shared buffer (core/ratelimit.ts, lease mode). This main-thread loop, every
 * RATE_LEASE_RENEW_MS:
 *
 * - requests: leases units from the key's fleet GCRA bucket (server/fleet/rate-lease-lua.ts)
 *   when the local count is below its low-water mark or the hot path raised NEED, charging
 *   any overdraft first; a lease is sized from this replica's recent rate (about four renewal
 *   periods' worth) and capped at `leaseCap` (1/30 of the limit); units unused for
 *   RATE_LEASE_IDLE_MS, and all units at shutdown, go back to the fleet;
 * - tokens: reports the tokens charged here and raises the local bucket to the fleet's debt.
 *
 * Redis down (a failed call, a lost connection): every key returns to the local GCRA, which
 * carries on from the fleet state last mirrored — per-replica limits, each replica with the
 * full limit — and `ratelimit_lease_redis_up` and readiness say so. When Redis is back, leases
 * resume from empty. Nothing waits on Redis for longer than its command timeout.
 */
import type { Redis } from "ioredis";
import { lazyRequire } from "../lazy.js";
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { GatewayConfig } from "../../core/config.js";
import { policyOf, type KeyRecord } from "../../core/keys.js";
import { leaseCap, RateLeaseSlots } from "../../core/ratelimit.js";
import type { KeyChange } from "../ledger.js";
import { MINUTE_US, RateScripts } from "./rate-lease-lua.js";

/** A lease holds about this many renewal periods of the replica's recent rate. */
const HOLD_PERIODS = 4;
/** After its last local use, a key's token bucket keeps being read from the fleet this long (ms). */
const TOKENS_WATCH_MS = 10_000;
/** While a key is watched but idle here, its token bucket is read every this many ticks. */
const TOKENS_READ_EVERY = 4;

interface Managed {
  readonly slot: number;
  readonly id: string;
  rpm: number;
  tpm: number;
  /** The LEASE value this loop last saw or produced: what the hot path spent is the difference. */
  last: number;
  /** Requests per second spent here (moving average). */
  rate: number;
  lastUseAt: number;
  tokensUntil: number;
  /** The fleet bucket had no room to fill the last lease: no new lease is asked for before this (ms). */
  nextAt: number;
}

export class RateLeases {
  private readonly redis: Redis;
  private readonly scripts: RateScripts;
  private readonly slots: RateLeaseSlots;
  private readonly cfg: GatewayConfig;
  private readonly log: Logger;
  private readonly keys = new Map<number, Managed>();
  private readonly slotOf = new Map<string, number>();
  private readonly timer: NodeJS.Timeout;
  private up = false;
  /** Bumped on every up/down switch: a reply from before it is stale. */
  private gen = 0;
  private ticking = false;
  private ticks = 0;
  private warned = false;
  private closed = false;

  constructor(cfg: GatewayConfig, sab: SharedArrayBuffer, clock: Clock, log: Logger) {
    this.cfg = cfg;
    this.log = log;
    this.slots = new RateLeaseSlots(sab, clock);
    this.slots.configure();
    this.redis = new (lazyRequire("ioredis") as typeof import("ioredis")).Redis(cfg.cache.redisUrl!, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      commandTimeout: 1000,
      retryStrategy: (n: number) => Math.min(100 * n, 2000),
    });
    this.scripts = new RateScripts(this.redis);
    this.redis.on("ready", () => this.setUp(true));
    this.redis.on("error", (e: Error) => this.down(e));
    this.redis.on("close", () => this.down(new Error("connection closed")));
    cfg.apiKeys.forEach((_, i) => this.put(i, `static-${i}`, cfg.rate_limit_requests_per_minute, cfg.rate_limit_tokens_per_minute));
    this.timer = setInterval(() => void this.tick(), cfg.rate_lease_renew_ms);
    this.timer.unref();
  }

  /** The live virtual keys at start-up, and every key change after (the same shapes as the acceptors get). */
  apply(change: KeyChange): void {
    for (const id of change.remove) {
      const slot = this.slotOf.get(id);
      if (slot !== undefined) this.drop(slot);
    }
    for (const { record, slot } of change.put) {
      const rate = rateOf(record, this.cfg);
      this.put(slot, record.id, rate.requestsPerMinute, rate.tokensPerMinute);
    }
  }

  private put(slot: number, id: string, rpm: number, tpm: number): void {
    if (rpm === 0 && tpm === 0) return this.drop(slot);
    const m = this.keys.get(slot);
    if (m !== undefined) {
      m.rpm = rpm;
      m.tpm = tpm;
      return;
    }
    this.keys.set(slot, { slot, id, rpm, tpm, last: 0, rate: 0, lastUseAt: 0, tokensUntil: 0, nextAt: 0 });
    this.slotOf.set(id, slot);
    this.slots.setMode(slot, this.up);
  }

  /** A revoked key (or one without limits now): its units go back, its slot to the local GCRA. */
  private drop(slot: number): void {
    const m = this.keys.get(slot);
    if (m === undefined) return;
    this.keys.delete(slot);
    this.slotOf.delete(m.id);
    const n = this.slots.reclaim(slot);
    this.slots.setMode(slot, false);
    if (n > 0 && m.rpm > 0 && this.up) this.scripts.returnUnused(m.id, m.rpm, n).catch(() => {});
  }

  private setUp(up: boolean): void {
    if (up === this.up) return;
    this.up = up;
    this.gen++;
    for (const m of this.keys.values()) {
      m.last = 0;
      this.slots.setMode(m.slot, up);
    }
    this.slots.setUp(up);
    if (up) {
      this.log.info(
        { keys: this.keys.size },
        this.warned ? "fleet rate limits: Redis is back; request leases resume" : "fleet rate limits: leasing from Redis",
      );
      this.warned = false;
    }
  }

  /** A lease operation failed: counted, and the replica falls back to its local limits. */
  private failed(gen: number, e: Error): void {
    this.slots.counted(0, 1);
    if (gen === this.gen) this.down(e);
  }

  private down(e: Error): void {
    if (this.closed) return;
    this.setUp(false);
    if (this.warned) return;
    this.warned = true;
    // The URL may carry a password: the error's code only.
    this.log.warn(
      { err: (e as { code?: string }).code ?? e.message },
      "fleet rate limits: Redis unavailable; each replica enforces the full limits on its own until it returns",
    );
  }

  private async tick(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      this.ticks++;
      if (!this.up) {
        // A command timed out on a live connection: no "ready" event will come, so ask.
        if (this.redis.status === "ready" && this.ticks % Math.ceil(1000 / this.cfg.rate_lease_renew_ms) === 0)
          await this.redis.ping().then(
            () => this.setUp(true),
            () => {},
          );
        return;
      }
      const now = Date.now();
      const calls: Promise<void>[] = [];
      for (const m of this.keys.values()) {
        if (m.rpm > 0) this.requests(m, now, calls);
        if (m.tpm > 0) this.tokens(m, now, calls);
      }
      if (calls.length > 0) await Promise.all(calls);
    } finally {
      this.ticking = false;
    }
  }

  private requests(m: Managed, now: number, calls: Promise<void>[]): void {
    const lease = this.slots.lease(m.slot);
    const spent = m.last - lease;
    m.last = lease;
    if (spent > 0) m.lastUseAt = now;
    m.rate = m.rate * 0.7 + ((spent * 1000) / this.cfg.rate_lease_renew_ms) * 0.3;
    const target = Math.min(leaseCap(m.rpm), Math.max(1, Math.ceil((m.rate * HOLD_PERIODS * this.cfg.rate_lease_renew_ms) / 1000)));
    const idle = now - m.lastUseAt >= this.cfg.rate_lease_idle_ms;
    // A saturated key: the next unit frees up at nextAt, asking before then only costs Redis (an overdraft is still charged).
    if (lease >= 0 && now < m.nextAt) return;
    if (this.slots.needed(m.slot) || (!idle && lease < Math.ceil(target / 2))) {
      const want = Math.max(0, target - Math.max(0, lease)),
        force = Math.max(0, -lease);
      if (want > 0 || force > 0) calls.push(this.take(m, want, force));
    } else if (idle && lease > 0) {
      const n = this.slots.reclaim(m.slot);
      m.last -= n;
      if (n > 0) calls.push(this.giveBack(m, n));
    }
  }

  private async take(m: Managed, want: number, force: number): Promise<void> {
    const gen = this.gen;
    try {
      const [k, ahead] = await this.scripts.takeLease(m.id, m.rpm, want, force);
      if (gen !== this.gen || this.keys.get(m.slot) !== m) return;
      this.slots.grant(m.slot, k + force);
      m.last += k + force;
      m.nextAt = k < want ? Date.now() + Math.max(0, ahead + MINUTE_US / m.rpm - MINUTE_US) / 1000 : 0;
      this.slots.mirrorRequests(m.slot, ahead);
      this.slots.counted(1, 0);
    } catch (e) {
      this.failed(gen, e as Error);
    }
  }

  private async giveBack(m: Managed, n: number): Promise<void> {
    const gen = this.gen;
    try {
      const ahead = await this.scripts.returnUnused(m.id, m.rpm, n);
      if (gen === this.gen && this.keys.get(m.slot) === m) this.slots.mirrorRequests(m.slot, ahead);
    } catch (e) {
      this.failed(gen, e as Error);
    }
  }

  private tokens(m: Managed, now: number, calls: Promise<void>[]): void {
    const n = this.slots.drainTokens(m.slot);
    if (n > 0 || now - m.lastUseAt < this.cfg.rate_lease_idle_ms) m.tokensUntil = now + TOKENS_WATCH_MS;
    if (n === 0 && (now >= m.tokensUntil || this.ticks % TOKENS_READ_EVERY !== 0)) return;
    const gen = this.gen;
    calls.push(
      this.scripts.reportSpend(m.id, m.tpm, n).then(
        (ahead) => {
          if (gen === this.gen && this.keys.get(m.slot) === m) this.slots.mirrorTokens(m.slot, ahead);
        },
        (e: Error) => this.failed(gen, e),
      ),
    );
  }

  /** Shutdown (after the acceptors drained): give every unused unit back, within `ms`; never waits longer. */
  async close(ms: number): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    if (this.up) {
      const back: Promise<unknown>[] = [];
      for (const m of this.keys.values()) {
        const n = m.rpm > 0 ? this.slots.reclaim(m.slot) : 0;
        if (n > 0) back.push(this.scripts.returnUnused(m.id, m.rpm, n).catch(() => {}));
      }
      let t: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(back), new Promise((r) => (t = setTimeout(r, ms)))]);
      clearTimeout(t);
    }
    this.redis.disconnect();
  }
}

/** A virtual key's own limits, else the global ones (as the rate-limit stage reads them). */
function rateOf(r: KeyRecord, cfg: GatewayConfig): { requestsPerMinute: number; tokensPerMinute: number } {
  const g = { requestsPerMinute: cfg.rate_limit_requests_per_minute, tokensPerMinute: cfg.rate_limit_tokens_per_minute };
  return policyOf(r, g.requestsPerMinute, g.tokensPerMinute).rate ?? g;
}
