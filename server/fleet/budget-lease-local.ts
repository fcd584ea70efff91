/**
 * What a replica admitted on its local check (BUDGET_FAIL_MODE=open while Redis is down or a
 * key's counters wait for their rebuild, docs/fleet.md): that spend never came out of a lease,
 * so it must join the key's counters in Redis afterwards, once, and never be lost. A baseline
 * snapshot of the key's spend counters is taken when the local check starts; the report is the
 * growth since it. When Redis lost the counters, the rebuild reads the ledger instead, which
 * already holds what was admitted well before that read: the baseline then moves to the last
 * snapshot taken a margin before the read (`trail`), so only what came after is reported.
 * Every error is on the over-counting side (a fleet that refuses a little early).
 */
import type { Spend } from "../../core/budget.js";
import type { Four } from "./budget-lease-scripts.js";

/** Snapshots kept per key while the local check runs (one per BUDGET_LEASE_MS). */
const TRAIL_MAX = 1000;
const DAY_MS = 86_400_000;

export class LocalSpend {
  private base: Spend | null = null;
  private baseDay = 0;
  private trail: { at: number; spend: Spend; day: number }[] = [];
  /** Redis was emptied since the baseline: what to report depends on the rebuild's ledger read (rebase). */
  lost = false;

  /** A baseline is held: spend since it is still to be reported. */
  get open(): boolean {
    return this.base !== null;
  }

  start(spend: Spend, now: number): void {
    this.base = spend;
    this.baseDay = Math.floor(now / DAY_MS);
    this.trail = [];
  }

  /** One more snapshot while the local check runs (a rebuild may move the baseline to it). */
  mark(spend: Spend, now: number): void {
    if (this.base !== null && this.trail.length < TRAIL_MAX) this.trail.push({ at: now, spend, day: Math.floor(now / DAY_MS) });
  }

  /**
   * The counters were rebuilt from a ledger read that started at `at` (the rebuilding replica's
   * clock): the baseline moves to the last snapshot `margin` ms (row flush, clock skew) before it.
   * No snapshot since the loss: this replica was not on the local check then, so the ledger has it all.
   */
  rebase(at: number, margin: number): void {
    let best: { spend: Spend; day: number } | null = null;
    for (const e of this.trail) if (e.at <= at - margin) best = e;
    if (this.trail.length === 0) this.base = null;
    else if (best !== null && this.base !== null) {
      this.base = best.spend;
      this.baseDay = best.day;
    }
    this.trail = [];
    this.lost = false;
  }

  /**
   * What to add to the counters (lease order; 0 for limits the key does not have): the growth of
   * the spend since the baseline, plus, on the final report (`inflight`), every reservation in
   * flight whichever way it was admitted. The final report ends the baseline; otherwise it moves on.
   */
  take(now: Spend, day: number, lim: Four, inflight: boolean, at: number): Four {
    const a = this.base!;
    const sameDay = this.baseDay === day;
    const ft = inflight ? now.reservedTokens : 0,
      fu = inflight ? now.reservedMicros : 0;
    const out = [
      lim[0] > 0 ? now.dayTokens - (sameDay ? a.dayTokens : 0) + ft : 0,
      lim[1] > 0 ? now.monthTokens - a.monthTokens + ft : 0,
      lim[2] > 0 ? now.dayMicros - (sameDay ? a.dayMicros : 0) + fu : 0,
      lim[3] > 0 ? now.monthMicros - a.monthMicros + fu : 0,
    ].map((x) => Math.max(0, x)) as Four;
    if (inflight) this.clear();
    else this.start(now, at);
    return out;
  }

  clear(): void {
    this.base = null;
    this.trail = [];
    this.lost = false;
  }
}
