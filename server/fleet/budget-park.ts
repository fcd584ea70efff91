/**
 * Requests parked while their key's budget lease is renewed (docs/fleet.md, "Budgets across the
 * fleet"), one park per acceptor thread. Without it, a replica holding too little of a key's
 * lease answered 503 while its main thread fetched more: every budgeted key's first request on
 * every replica (each start, each rolling deploy, each new key) failed for no reason.
 *
 * The reserve stage answers WAIT instead (core/pipeline/stages/budget.ts) and the request joins
 * this list. One timer, armed only while the list is not empty, retries every PARK_CHECK_MS:
 * the retry is the reserve stage itself (Pipeline.resumeBody), a few Atomics on the shared lease
 * counters, no Redis call. Admitted, the request continues where it stopped (dispatch); refused
 * (the fleet reported the budget used up, or Redis became unreachable in closed mode) it gets
 * that answer; still short after BUDGET_LEASE_WAIT_MS it gets the 503 it got before. A client
 * that leaves is dropped by its abort handler (the context finishes it: 499, settled once) and
 * its entry is skipped at the next check; nothing is written to its response.
 *
 * Parking rings the main thread's doorbell (Budgets.ring) so the lease loop renews at once, and
 * counts the request in the key's slot so one grant covers everyone waiting.
 */
import type { Budgets } from "../../core/budget.js";
import { codeNumber, CONTINUE, WAIT } from "../../core/pipeline/codes.js";
import { BLOCK_LEASE_SHORT, type UsageMetrics, WAIT_ABORTED, WAIT_ADMITTED, WAIT_REFUSED, WAIT_TIMEOUT } from "../../core/usage-metrics.js";
import type { RequestCtx } from "../context.js";

/** How often parked requests try their reservation again (a few Atomics each). */
export const PARK_CHECK_MS = 2;
const E_UNAVAILABLE = codeNumber("GW_ERR_BUDGET_UNAVAILABLE");

export class LeasePark {
  private readonly waitMs: number;
  private readonly budgets: Budgets;
  private readonly usage: UsageMetrics;
  /** Continues a request after its body stages: CONTINUE dispatches, an error number refuses (server/app.ts). */
  private readonly next: (ctx: RequestCtx, r: number) => void;
  /** The parked requests in arrival order, and when each one's wait ends (performance.now()). */
  private readonly items: RequestCtx[] = [];
  private readonly until: number[] = [];
  private timer: NodeJS.Timeout | null = null;

  constructor(waitMs: number, budgets: Budgets, usage: UsageMetrics, next: (ctx: RequestCtx, r: number) => void) {
    this.waitMs = waitMs;
    this.budgets = budgets;
    this.usage = usage;
    this.next = next;
  }

  /** Park `ctx`, whose reserve stage answered WAIT (its body is read; its budget slot is set). */
  add(ctx: RequestCtx): void {
    this.items.push(ctx);
    this.until.push(performance.now() + this.waitMs);
    this.budgets.parked(ctx.budgetSlot, 1);
    this.usage.leaseWaitStarted();
    // uWS calls the context's onAborted; the context calls this, then finishes the request (499).
    ctx.onAbort = () => this.leave(ctx, WAIT_ABORTED);
    if (this.timer === null) {
      this.budgets.ring();
      this.arm();
    }
  }

  private arm(): void {
    this.timer = setTimeout(this.check, PARK_CHECK_MS);
    this.timer.unref(); // the client's socket keeps the thread alive, not the park
  }

  private leave(ctx: RequestCtx, result: number): void {
    ctx.onAbort = null;
    this.budgets.parked(ctx.budgetSlot, -1);
    this.usage.leaseWaitEnded(result);
  }

  private readonly check = (): void => {
    this.timer = null;
    const items = this.items,
      until = this.until;
    const now = performance.now();
    let kept = 0;
    for (let i = 0; i < items.length; i++) {
      const ctx = items[i]!;
      if (ctx.aborted) continue; // left: counted by its abort handler
      if (ctx.done) {
        this.leave(ctx, WAIT_ABORTED); // finished by someone else (not expected): never resumed
        continue;
      }
      let left = false;
      try {
        let r = ctx.pipeline!.resumeBody(ctx);
        if (r === WAIT && now < until[i]!) {
          items[kept] = ctx;
          until[kept++] = until[i]!;
          continue;
        }
        left = true;
        if (r === WAIT) {
          this.leave(ctx, WAIT_TIMEOUT);
          this.usage.blocked(BLOCK_LEASE_SHORT);
          r = E_UNAVAILABLE;
        } else this.leave(ctx, r === CONTINUE ? WAIT_ADMITTED : WAIT_REFUSED);
        this.next(ctx, r);
      } catch (e) {
        // A bug: answered like one in a uWS handler (server/app.ts guard), and the park goes on.
        ctx.shared.log.error({ req_id: ctx.id, err: String((e as Error)?.stack ?? e) }, "parked request failed");
        if (!left) this.leave(ctx, WAIT_REFUSED);
        ctx.fail("GW_ERR_SERVER_INTERNAL");
      }
    }
    items.length = kept;
    until.length = kept;
    if (kept === 0) return;
    // Still short: the flag is up again (the retry raised it); wake the lease loop for it.
    this.budgets.ring();
    this.arm();
  };
}
