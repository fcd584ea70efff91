/**
 * One deadline sweep per thread instead of a `setTimeout` per request and per attempt
 * (issue 12: two or three timers per request, ~0.7 µs a pair, plus their closures). The
 * things that can expire (a body being read, an upstream call) are nodes of one intrusive
 * list sorted by deadline, so adding and removing allocate nothing and cost O(1) in the
 * usual case (deadlines arrive in about the order they end). One timer is armed for the
 * earliest deadline; when it fires, every due node is unlinked and expired, and the timer
 * is armed for the next one. A node removed before its time never fires, and the timer is
 * not moved for it: it fires at the removed node's time, finds nothing due, and re-arms.
 * Deadlines are exact (to the timer's resolution), not rounded to a tick.
 */

/** Something with a deadline: extend it and implement `expire`. */
export abstract class Deadline {
  /** performance.now() at which `expire` runs; the list's order. */
  dlAt = 0;
  dlPrev: Deadline | null = null;
  dlNext: Deadline | null = null;
  /** In a sweep's list. */
  dlArmed = false;
  /** The deadline passed (called once, after the node left the list). */
  abstract expire(): void;
}

export class DeadlineSweep {
  private head: Deadline | null = null;
  private tail: Deadline | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** When the armed timer fires (Infinity: none). */
  private timerAt = Infinity;
  /** An expiry that threw (a bug): reported here, and the other nodes still expire. The acceptor logs it. */
  onError: (e: unknown) => void = (e) => process.emitWarning(`deadline expiry failed: ${String((e as Error)?.stack ?? e)}`);

  /** Expire `d` at `at` (performance.now() time); re-adding moves it. */
  add(d: Deadline, at: number): void {
    if (d.dlArmed) this.remove(d);
    d.dlAt = at;
    // Sorted insert from the tail: deadlines mostly arrive in order, so this stops at once.
    let p = this.tail;
    while (p !== null && p.dlAt > at) p = p.dlPrev;
    const next = p === null ? this.head : p.dlNext;
    d.dlPrev = p;
    d.dlNext = next;
    if (next !== null) next.dlPrev = d;
    else this.tail = d;
    if (p !== null) p.dlNext = d;
    else this.head = d;
    d.dlArmed = true;
    if (at < this.timerAt) this.arm(at);
  }

  /** `d` will not expire (it finished first); a no-op when it is not in the list. */
  remove(d: Deadline): void {
    if (!d.dlArmed) return;
    const p = d.dlPrev,
      n = d.dlNext;
    if (p !== null) p.dlNext = n;
    else this.head = n;
    if (n !== null) n.dlPrev = p;
    else this.tail = p;
    d.dlPrev = null;
    d.dlNext = null;
    d.dlArmed = false;
  }

  private arm(at: number): void {
    if (this.timer !== null) clearTimeout(this.timer);
    const ms = at - performance.now();
    this.timer = setTimeout(this.sweep, ms > 0 ? ms : 0);
    // The client's socket keeps the thread alive, not a deadline.
    this.timer.unref();
    this.timerAt = at;
  }

  private readonly sweep = (): void => {
    this.timer = null;
    this.timerAt = Infinity;
    const now = performance.now();
    for (let d = this.head; d !== null && d.dlAt <= now; d = this.head) {
      this.remove(d);
      try {
        d.expire();
      } catch (e) {
        this.onError(e);
      }
    }
    if (this.head !== null && this.timer === null) this.arm(this.head.dlAt);
  };
}

/** This thread's sweep (module state is per thread: each acceptor has its own). */
export const deadlines = new DeadlineSweep();
