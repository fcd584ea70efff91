/**
 * Fleet budgets on Redis leases (docs/fleet.md "Budgets across the fleet"), on the main thread.
 * A replica spends a key's budget only out of what it holds on lease from Redis; the acceptor
 * threads take reservations out of the lease in shared memory (core/budget.ts) and raise a
 * "need more" flag when it runs low. Every BUDGET_LEASE_MS this loop renews the leases that
 * asked, returns what a key left unused for BUDGET_LEASE_IDLE_MS, and starts new windows at
 * midnight; at shutdown it returns everything (bounded). No request calls Redis: a request
 * whose lease is short is parked on its thread (server/fleet/budget-park.ts) and rings a
 * doorbell this loop waits on (Atomics.waitAsync); it then renews the keys that asked at once,
 * between ticks, at most one such pass every EARLY_GAP_MS.
 *
 * Redis unreachable: BUDGET_FAIL_MODE=closed keeps the leases (spent down, then 503);
 * open switches the replica to its local per-replica check and reports the spend made meanwhile
 * when Redis is back. Redis emptied (the boot marker changed): every replica re-registers what
 * it holds and, after REBUILD_WAIT (its rows are in PostgreSQL by then), one of them adds the
 * ledger's spend of the window: the counters are back to "spent + held", nothing lost.
 *
 * A fresh Redis (the fleet's first start, a new Redis) has no marker either, but nothing can have
 * been lost from it: no replica ever held a lease under another marker. The proof is in the ledger
 * (PostgreSQL outlives Redis): a replica records the marker it is under there before any rebuild
 * (every grant follows one), so a young marker is fresh when the ledger holds no other marker.
 * Then its counters are known at once: keys are rebuilt from the ledger and leased without the wait.
 */
import { randomBytes } from "node:crypto";
import { lazyRequire } from "../lazy.js";
import type { Logger } from "pino";
import { type BudgetLimits, type Budgets, hasBudget, LEASE_CAP, MODE_LEASE, MODE_LOCAL } from "../../core/budget.js";
import type { UsageMetrics } from "../../core/usage-metrics.js";
import { LocalSpend } from "./budget-lease-local.js";
import {
  adjust,
  boot,
  type Four,
  type LeaseRedis,
  rebuild,
  take,
  type Window,
  windowOf,
  withLeaseScripts,
} from "./budget-lease-scripts.js";

/** How often a key the fleet reported used up asks again (others may return budget, or the limit may rise). */
const EXHAUSTED_RETRY_MS = 500;
/** Renewal passes for parked requests start at least this long after the previous pass started (bounds Redis traffic). */
export const EARLY_GAP_MS = 10;

/** Atomics.waitAsync (Node 16+; not in the ES2022 typings): resolves when another thread notifies the index. */
type WaitAsync = (a: Int32Array, index: number, value: number) => { async: boolean; value: Promise<string> | string };
const waitAsync = (a: Int32Array, index: number, value: number) =>
  (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync(a, index, value);

export interface LeaseKey {
  id: string;
  slot: number;
  limits: BudgetLimits;
}

export interface LeaseOptions {
  url: string;
  periodMs: number;
  idleMs: number;
  share: number;
  failClosed: boolean;
  /** LEDGER_BATCH_MS: how long a charged request's row may wait on its acceptor thread. */
  ledgerBatchMs: number;
}

/** Spend per key from the ledger since `from` (ms): tokens and micro-dollars. */
export type LedgerSpend = (from: number) => Promise<Map<string, { tok: number; usd: number }>>;
/** Records a boot marker in the ledger; true when the ledger held another one (leases may have been granted under it). */
export type RecordBoot = (mark: string) => Promise<boolean>;

/** How long a tick waits for the ledger's answer on a young marker before it counts the marker as not fresh (yet). */
const FRESH_WAIT_MS = 1000;

interface KeyState {
  /** The key's counters in Redis these holdings belong to ("" = none yet). */
  epoch: string;
  /** The boot marker under which this replica's holdings are registered (null = must re-register). */
  boot: string | null;
  uses: number;
  usedAt: number;
  /** Reservations since the last renewal: sizes the next ask. */
  usesSinceTake: number;
  /** Requests parked for this key's lease on this replica at the last look: the next ask covers them. */
  parked: number;
  exhausted: number;
  pending: boolean;
  triedAt: number;
  /** When a pending key's counters may be rebuilt (local clock). */
  dueAt: number;
  /** What the local check admitted (open mode), to report (server/fleet/budget-lease-local.ts). */
  local: LocalSpend;
}

export class BudgetLeases {
  private readonly r: LeaseRedis;
  private readonly o: LeaseOptions;
  private readonly budgets: Budgets;
  private readonly usage: UsageMetrics;
  private readonly keys: () => Iterable<LeaseKey>;
  private readonly ledgerSpend: LedgerSpend;
  private readonly recordBoot: RecordBoot;
  private readonly log: Logger;
  private readonly state = new Map<string, KeyState>();
  /** How long emptied counters wait before the ledger's spend is added (re-registrations and row flushes land first). */
  readonly rebuildWait: number;
  /** A snapshot this long before a rebuild's ledger read is in that read (rows flushed; clocks a little apart). */
  private readonly rebaseMargin: number;
  private bootMark: string | null = null;
  /**
   * Redis kept its data for at least rebuildWait, or its marker is fresh (no lease was ever granted under another):
   * no replica has leases to re-register, so a rebuild need not wait.
   */
  private known = false;
  /** The marker this replica saw replace the one it was under (Redis lost data: never fresh). */
  private lostMark: string | null = null;
  /** The marker recorded in the ledger (or being recorded), and whether the ledger held another one. */
  private recorded: { mark: string; others: Promise<boolean> } | null = null;
  private up = false;
  /** Redis known unreachable (logged once per outage). */
  private isDown = false;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  /** The pass in flight (a tick or an early renewal): one at a time. */
  private running: Promise<void> | null = null;
  /** When the last pass started (Date.now()), an early pass's timer, and what waits for the running pass to end. */
  private passAt = 0;
  private early: NodeJS.Timeout | null = null;
  private earlyDue = false;
  private tickDue = false;
  private closed = false;
  private ledgerRead: Promise<[Map<string, { tok: number; usd: number }>, Map<string, { tok: number; usd: number }>]> | null = null;

  constructor(
    o: LeaseOptions,
    budgets: Budgets,
    usage: UsageMetrics,
    keys: () => Iterable<LeaseKey>,
    ledgerSpend: LedgerSpend,
    recordBoot: RecordBoot,
    log: Logger,
  ) {
    this.o = o;
    this.budgets = budgets;
    this.usage = usage;
    this.keys = keys;
    this.ledgerSpend = ledgerSpend;
    this.recordBoot = recordBoot;
    this.log = log;
    this.rebuildWait = o.periodMs * 2 + o.ledgerBatchMs + 1000;
    this.rebaseMargin = o.ledgerBatchMs + 250;
    this.r = withLeaseScripts(
      new (lazyRequire("ioredis") as typeof import("ioredis")).Redis(o.url, {
        enableOfflineQueue: false,
        maxRetriesPerRequest: 0,
        connectTimeout: 2000,
        commandTimeout: 1000,
        enableAutoPipelining: true,
        retryStrategy: (n: number) => Math.min(100 * n, 1000),
      }),
    );
    this.r.on("error", () => {}); // reported by the loop (the URL may hold a password: never logged)
    // Until Redis answers, both modes spend leases only (none yet: requests wait for the first one); open mode
    // switches to the local check once Redis is known unreachable (down()), not before: a fresh start never
    // admits per replica against the whole budget.
    budgets.setMode(MODE_LEASE);
    usage.setLeaseState(2);
  }

  start(): void {
    this.startedAt = Date.now();
    this.watch();
    this.loop();
  }

  private readonly loop = (): void => {
    this.timer = null;
    if (this.closed) return;
    // The first connection is still being made (commands fail at once without the offline queue): not an outage yet.
    // Once that attempt failed ("reconnecting"), it is one: the tick fails and open mode goes local.
    const first = this.r.status === "wait" || this.r.status === "connecting" || this.r.status === "connect";
    if (first && this.bootMark === null && !this.isDown && Date.now() - this.startedAt < 3000) {
      // Looked at often: requests wait for the first tick's lease (a long BUDGET_LEASE_MS must not make them 503).
      this.timer = setTimeout(this.loop, Math.min(this.o.periodMs, 20));
      return;
    }
    this.pass(true);
  };

  /**
   * Run one pass, never two at once: the tick (`full`; the next one BUDGET_LEASE_MS after it ends)
   * or an early renewal of the keys that asked. A pass asked for while another runs follows it.
   */
  private pass(full: boolean): void {
    if (this.closed) return;
    if (this.running !== null) {
      if (full) this.tickDue = true;
      else this.earlyDue = true;
      return;
    }
    this.passAt = Date.now();
    this.running = (full ? this.tick() : this.renewAsked()).finally(() => {
      this.running = null;
      if (this.closed) return;
      if (full) this.timer = setTimeout(this.loop, this.o.periodMs);
      if (this.tickDue) {
        this.tickDue = false;
        this.pass(true);
      } else if (this.earlyDue) {
        this.earlyDue = false;
        this.soon();
      }
    });
  }

  /** Wait for the doorbell (a request parked on an acceptor thread); it does not keep the process alive. */
  private watch(): void {
    if (this.closed) return;
    const w = waitAsync(this.budgets.i32, this.budgets.doorAt, this.budgets.doorbell());
    if (w.async) void (w.value as Promise<string>).then(this.rang);
    else queueMicrotask(this.rang); // rung between the read and the wait
  }

  private readonly rang = (): void => {
    if (this.closed) return;
    this.watch();
    this.soon();
  };

  /** An early renewal pass, EARLY_GAP_MS after the last pass started at the earliest (one scheduled at a time). */
  private soon(): void {
    if (this.closed || this.early !== null) return;
    if (this.running !== null) {
      this.earlyDue = true;
      return;
    }
    this.early = setTimeout(this.fireEarly, Math.max(0, this.passAt + EARLY_GAP_MS - Date.now()));
  }

  private readonly fireEarly = (): void => {
    this.early = null;
    // No tick yet (the connection was still being made at the start): the first tick now, not BUDGET_LEASE_MS later.
    if (this.bootMark === null && this.r.status === "ready" && this.running === null) {
      if (this.timer !== null) clearTimeout(this.timer);
      this.timer = null;
      return this.pass(true);
    }
    this.pass(false);
  };

  /**
   * Between ticks, for parked requests: renew the keys whose "need more" flag is up. Only while
   * leases are in force and Redis answered (the tick handles windows, outages and the mode), and
   * not keys whose lost counters wait for their rebuild (the tick's; a new key is rebuilt at once).
   */
  private async renewAsked(): Promise<void> {
    if (!this.up || this.bootMark === null || this.budgets.mode() !== MODE_LEASE) return;
    this.ledgerRead = null; // a new key's rebuild reads the ledger afresh (its time is the snapshot's)
    const now = Date.now();
    const jobs: Promise<void>[] = [];
    for (const k of this.keys())
      if (hasBudget(k.limits) && this.budgets.needRaised(k.slot) && this.state.get(k.id)?.pending !== true)
        jobs.push(this.key(k, now, false));
    await Promise.all(jobs);
  }

  private st(id: string): KeyState {
    let s = this.state.get(id);
    if (s === undefined)
      this.state.set(
        id,
        (s = {
          epoch: "",
          boot: null,
          uses: 0,
          usedAt: 0,
          usesSinceTake: 0,
          parked: 0,
          exhausted: 0,
          pending: false,
          triedAt: 0,
          dueAt: 0,
          local: new LocalSpend(),
        }),
      );
    return s;
  }

  private async tick(): Promise<void> {
    let b: { boot: string; now: number };
    try {
      b = await boot(this.r);
    } catch (e) {
      this.down(e);
      return;
    }
    const wiped = this.bootMark !== null && b.boot !== this.bootMark;
    if (wiped) {
      this.log.warn({}, "fleet budgets: Redis lost the lease counters; re-registering leases and rebuilding from the ledger");
      for (const s of this.state.values()) s.local.lost = s.local.open;
      this.lostMark = b.boot;
    }
    this.bootMark = b.boot;
    this.known = b.now - Number(b.boot) >= this.rebuildWait || (await this.fresh(b.boot));
    if (!this.up) this.log.info({}, "fleet budgets: Redis reachable; budgets hold across the fleet");
    this.up = true;
    this.isDown = false;
    this.budgets.setRedisDown(false);
    this.ledgerRead = null;
    const now = Date.now();
    const local = this.budgets.mode() === MODE_LOCAL;
    const keys: LeaseKey[] = [];
    for (const k of this.keys()) if (hasBudget(k.limits)) keys.push(k);
    if (this.state.size > keys.length) this.forget(keys);
    await Promise.all(keys.map((k) => this.key(k, now, local)));
    let pending = false;
    for (const k of keys) pending ||= this.st(k.id).pending;
    if (!this.up) return; // a round trip failed during this turn: down() chose the mode
    this.usage.setLeaseState(pending ? 2 : 1);
    if (this.o.failClosed) return this.budgets.setMode(MODE_LEASE);
    // Open mode checks locally while a key's counters wait for their rebuild; what it admits is reported afterwards.
    if (pending) {
      if (!local) {
        this.budgets.setMode(MODE_LOCAL);
        for (const k of keys) this.st(k.id).local.start(this.budgets.spend(k.slot), now);
      } else for (const k of keys) this.st(k.id).local.mark(this.budgets.spend(k.slot), now);
      return;
    }
    this.budgets.setMode(MODE_LEASE);
    // Back from the local check: what it admitted since the last report (and all in flight) joins the counters.
    // A key whose counters were lost and are not rebuilt yet needs no report: its rebuild reads it from the ledger.
    if (local)
      await Promise.all(
        keys.map((k) => {
          const s = this.st(k.id);
          const report = !s.local.open || s.local.lost ? undefined : this.report(k, s, windowOf(k.id, now), limitsOf(k), true);
          s.local.clear();
          return report?.catch((e) => this.failed(e));
        }),
      );
  }

  /**
   * A young marker is fresh when this replica did not see it replace another and the ledger holds no other
   * marker: no lease was ever granted outside this Redis's current data, so nothing was lost. Any doubt (the
   * ledger slow or down) counts as not fresh: the rebuild waits, as after a loss.
   */
  private async fresh(mark: string): Promise<boolean> {
    if (this.lostMark === mark) return false;
    let t: NodeJS.Timeout | undefined;
    const others = await Promise.race([
      this.record(mark).catch(() => true),
      new Promise<boolean>((r) => (t = setTimeout(r, FRESH_WAIT_MS, true))),
    ]);
    clearTimeout(t);
    return !others;
  }

  /**
   * Record `mark` in the ledger, once per marker (again after a failure). Before a rebuild, so every marker
   * under which a lease was granted is in the ledger before the grant: the proof `fresh` relies on.
   */
  private record(mark: string): Promise<boolean> {
    if (this.recorded?.mark !== mark) {
      const rec = { mark, others: this.recordBoot(mark) };
      rec.others.catch(() => {
        if (this.recorded === rec) this.recorded = null;
      });
      this.recorded = rec;
    }
    return this.recorded.others;
  }

  /** Drop the state of keys revoked or no longer budgeted (what they held lapses with the window). */
  private forget(keys: LeaseKey[]): void {
    const live = new Set(keys.map((k) => k.id));
    for (const id of this.state.keys()) if (!live.has(id)) this.state.delete(id);
  }

  /** A round trip failed: counted; Redis unreachable switches the mode (open) at once rather than at the next tick. */
  private failed(e: unknown): void {
    if ((e as Error)?.name === "ReplyError") this.usage.leaseRenewed(0, 1);
    else this.down(e);
  }

  private down(e: unknown): void {
    this.usage.leaseRenewed(0, 1);
    this.usage.setLeaseState(2);
    this.up = false;
    this.budgets.setRedisDown(true); // closed mode: requests no longer park for a lease (503 once it is spent)
    if (this.isDown) return;
    this.isDown = true;
    this.log.warn(
      { err: (e as { code?: string })?.code ?? (e as Error)?.name, fail_mode: this.o.failClosed ? "closed" : "open" },
      this.o.failClosed
        ? "fleet budgets: Redis unreachable; spending the leases held, then budgeted keys get 503"
        : "fleet budgets: Redis unreachable; budgets are checked per replica until it is back",
    );
    this.applyDown();
  }

  /** Open mode without Redis: the local check, with a baseline of what it admits (reported when Redis is back). */
  private applyDown(): void {
    if (this.o.failClosed) return;
    // Already on the local check (a rebuild was pending): its baselines still hold what is unreported.
    const fresh = this.budgets.mode() === MODE_LEASE;
    this.budgets.setMode(MODE_LOCAL);
    const now = Date.now();
    for (const k of this.keys()) {
      const s = this.st(k.id);
      if (fresh || !s.local.open) s.local.start(this.budgets.spend(k.slot), now);
    }
  }

  /**
   * One key's turn: start a new window, re-register after a loss, rebuild emptied counters when
   * due, report what the local check admitted (open mode, coming back), then renew a lease that
   * asked (or, coming back from the local check, one the key is using) or return an idle one.
   */
  private async key(k: LeaseKey, now: number, local: boolean): Promise<void> {
    const s = this.st(k.id);
    const w = windowOf(k.id, now);
    this.budgets.openWindow(k.slot, w.day, w.month); // a new window also clears its limits' "used up"
    s.exhausted = this.budgets.exhaustedBits(k.slot);
    const lim = limitsOf(k);
    const n = this.budgets.takeNeed(k.slot);
    s.parked = n.parked;
    const recent = (n.uses - s.uses) >>> 0;
    if (recent > 0) {
      s.usesSinceTake += recent;
      s.uses = n.uses;
      s.usedAt = now;
    }
    try {
      if (s.boot !== this.bootMark) await this.register(k, s, w, lim);
      if (s.pending && now >= s.dueAt) await this.rebuildIfDue(k, s, w);
      if (s.pending && !n.need) return;
      if (local && s.local.open && !s.pending && !s.local.lost) await this.report(k, s, w, lim, false);
      // Renew what asked; ahead of need, a lease that will not last two more periods at this rate; coming back
      // from the local check, a lease in use.
      const short = recent > 0 && n.tok > 0 && this.runsShort(k.slot, lim, recent * 2, n.tok, n.mic);
      const active = local && now - s.usedAt < this.o.idleMs && n.tok > 0;
      // A key the fleet reported used up asks again at most every EXHAUSTED_RETRY_MS.
      const ask = (n.need || s.pending || short || active) && (s.exhausted === 0 || now - s.triedAt >= EXHAUSTED_RETRY_MS);
      if (ask) {
        s.triedAt = now;
        await this.renew(k, s, w, lim, n.tok, n.mic);
      } else {
        if (n.need) this.budgets.raiseNeed(k.slot); // still waiting: asked again next time
        if (now - s.usedAt >= this.o.idleMs)
          await this.giveBack(k, s, w, lim, s.exhausted !== 0 ? 0 : n.tok, s.exhausted !== 0 ? 0 : n.mic);
      }
    } catch (e) {
      this.failed(e);
    }
  }

  /** True when a limited dimension holds less than `times` requests of this size. */
  private runsShort(slot: number, lim: Four, times: number, tok: number, mic: number): boolean {
    const a = this.budgets.held(slot).avail;
    for (let i = 0; i < 4; i++) if (lim[i]! > 0 && a[i]! < times * (i < 2 ? tok : mic)) return true;
    return false;
  }

  /** After Redis was emptied (or on first sight): add what this replica holds, in flight included. */
  private async register(k: LeaseKey, s: KeyState, w: Window, lim: Four): Promise<void> {
    const h = this.budgets.held(k.slot);
    const sp = this.budgets.spend(k.slot);
    const amounts = lim.map((l, i) =>
      l > 0 ? Math.max(0, h.avail[i]!) + Math.max(0, i < 2 ? sp.reservedTokens : sp.reservedMicros) : 0,
    ) as Four;
    if (amounts.some((a) => a > 0)) {
      const [, epoch] = await adjust(this.r, w, this.candidate(), "", true, amounts);
      s.epoch = String(epoch);
      this.usage.leaseRenewed(1, 0);
    }
    s.boot = this.bootMark;
  }

  /**
   * What the local check admitted (open mode) joins the counters (server/fleet/budget-lease-local.ts);
   * the final report (`inflight`) adds every reservation then in flight too.
   */
  private async report(k: LeaseKey, s: KeyState, w: Window, lim: Four, inflight: boolean): Promise<void> {
    const amounts = s.local.take(this.budgets.spend(k.slot), w.day, lim, inflight, Date.now());
    if (amounts.some((x) => x > 0)) {
      await adjust(this.r, w, this.candidate(), "", true, amounts);
      this.usage.leaseRenewed(1, 0);
    }
  }

  private async renew(k: LeaseKey, s: KeyState, w: Window, lim: Four, tok: number, mic: number, again = true): Promise<void> {
    const need: Four = [lim[0] > 0 ? tok : 0, lim[1] > 0 ? tok : 0, lim[2] > 0 ? mic : 0, lim[3] > 0 ? mic : 0];
    // Enough for twice the reservations since the last renewal, at least four of the request that asked,
    // and every request parked waiting for this lease.
    const times = Math.max(4, 2 * s.usesSinceTake, s.parked);
    const held = this.budgets.held(k.slot).avail; // a slot holds at most LEASE_CAP (Int32 with room to settle)
    const ask = need.map((x, i) => Math.max(0, Math.min(LEASE_CAP - held[i]!, x * times))) as Four;
    const r = await take(this.r, w, this.candidate(), this.o.share, lim, need, ask, LEASE_CAP);
    this.usage.leaseRenewed(1, 0);
    const epoch = String(r[1]);
    const moved = s.epoch !== "" && epoch !== s.epoch;
    if (moved) s.boot = null; // this key's counters were lost (alone, or in a wipe the tick has not seen yet): re-register
    s.epoch = epoch;
    if (r[0] !== 2 && s.local.lost) s.local.rebase(Number((await this.r.hget(w.dayKey, "at")) ?? 0), this.rebaseMargin);
    if (r[0] === 0) {
      s.pending = false;
      s.usesSinceTake = 0;
      for (let i = 0; i < 4; i++) this.budgets.grant(k.slot, i, Number(r[2 + i]));
      if (s.exhausted !== 0) this.budgets.setExhausted(k.slot, (s.exhausted = 0));
    } else if (r[0] === 1) {
      s.pending = false;
      this.budgets.setExhausted(k.slot, (s.exhausted |= 1 << Number(r[2])));
    } else {
      // Known counters (Redis kept its data, or its marker is fresh) are rebuilt at once, unless this very lookup
      // says they were lost: the key's epoch changed, or the marker did (a wipe the tick has not seen yet).
      if (!s.pending) {
        const known = this.known && !moved && (await boot(this.r)).boot === this.bootMark;
        s.dueAt = Date.now() + (known ? 0 : Math.max(0, this.rebuildWait - Number(r[2])));
      }
      s.pending = true;
      // A key first seen since Redis kept its data (a new key): rebuild from the ledger and lease at once.
      if (again && s.dueAt <= Date.now()) {
        await this.rebuildIfDue(k, s, w);
        if (!s.pending) await this.renew(k, s, w, lim, tok, mic, false);
      }
    }
  }

  /** Emptied counters, once every replica had time to re-register and flush: add the ledger's spend (once, fleet-wide). */
  private async rebuildIfDue(k: LeaseKey, s: KeyState, w: Window): Promise<void> {
    try {
      await this.record(this.bootMark!); // before the ledger read: the rebuild's grants follow it
    } catch {
      return; // the ledger is down: the key stays pending, as below
    }
    const d = new Date(w.day * 86_400_000);
    this.ledgerRead ??= Promise.all([
      this.ledgerSpend(w.day * 86_400_000),
      this.ledgerSpend(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1)),
    ]);
    const at = Date.now();
    let day: Map<string, { tok: number; usd: number }>, month: Map<string, { tok: number; usd: number }>;
    try {
      [day, month] = await this.ledgerRead;
    } catch {
      return; // the ledger is down: the key stays pending (open: checked locally; closed: 503) until it answers
    }
    const dd = day.get(k.id) ?? { tok: 0, usd: 0 },
      mm = month.get(k.id) ?? { tok: 0, usd: 0 };
    const wait = this.known ? 0 : this.rebuildWait;
    const a = await rebuild(this.r, w.dayKey, wait, dd.tok, dd.usd, at);
    const b = await rebuild(this.r, w.monthKey, wait, mm.tok, mm.usd, at);
    this.usage.leaseRenewed(2, 0);
    if (a >= 0 && b >= 0) {
      s.pending = false;
      // The read that counted: ours, or the one of the replica that rebuilt first (its time is in the hash).
      s.local.rebase(a === 1 ? at : Number((await this.r.hget(w.dayKey, "at")) ?? 0), this.rebaseMargin);
      if (a === 1 || b === 1)
        this.log.info({ key_id: k.id, day_tokens: dd.tok, month_tokens: mm.tok }, "fleet budgets: counters rebuilt from the ledger");
    }
  }

  /** Return what the key left unused, down to one request's worth (nothing when the fleet is out). */
  private async giveBack(k: LeaseKey, s: KeyState, w: Window, lim: Four, keepTok: number, keepMic: number): Promise<void> {
    const h = this.budgets.held(k.slot);
    if (h.day !== w.day || h.month !== w.month || s.epoch === "") return;
    const keep: Four = [keepTok, keepTok, keepMic, keepMic];
    const amounts = lim.map((l, i) =>
      l > 0 && h.avail[i]! > keep[i]! ? this.budgets.reclaim(k.slot, i, h.avail[i]! - keep[i]!) : 0,
    ) as Four;
    if (amounts.every((a) => a === 0)) return;
    let ok = false;
    try {
      const r = await adjust(this.r, w, this.candidate(), s.epoch, false, amounts);
      ok = r[0] === 0;
      this.usage.leaseRenewed(1, 0);
    } finally {
      if (!ok) for (let i = 0; i < 4; i++) this.budgets.grant(k.slot, i, amounts[i]!); // still ours
    }
  }

  private candidate(): string {
    return randomBytes(6).toString("base64url");
  }

  /** Shutdown (acceptors drained): return every lease held. Bounded by the client's timeouts; the caller bounds it too. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    if (this.early !== null) clearTimeout(this.early);
    Atomics.notify(this.budgets.i32, this.budgets.doorAt); // the doorbell's wait ends (and sees `closed`)
    if (this.running !== null) await this.running;
    if (this.up) {
      const now = Date.now();
      const jobs: Promise<void>[] = [];
      for (const k of this.keys()) {
        const s = this.state.get(k.id);
        if (s === undefined || !hasBudget(k.limits)) continue;
        jobs.push(this.giveBack(k, s, windowOf(k.id, now), limitsOf(k), 0, 0).catch(() => {}));
      }
      await Promise.all(jobs);
    }
    this.r.disconnect();
  }
}

/** A key's limits in lease order: tokens day, tokens month, µ$ day, µ$ month. */
function limitsOf(k: LeaseKey): Four {
  return [k.limits.tokensPerDay, k.limits.tokensPerMonth, k.limits.microsPerDay, k.limits.microsPerMonth];
}
