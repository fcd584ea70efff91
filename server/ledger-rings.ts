/**
 * The main thread's side of the acceptors' ledger rings (core/ledger-ring.ts): one ring per
 * acceptor thread, drained every LEDGER_BATCH_MS, when a thread asks (its ring is past half
 * full), when a thread reports it drained, and a last time at shutdown (the ring outlives
 * its thread, so even a terminated thread's rows are written). Rows go to the ledger;
 * rows a full ring dropped are counted with the ledger's own drops.
 */
import { LedgerRing } from "../core/ledger-ring.js";
import type { UsageRow } from "../workers/ledger-task.js";

export interface RowSink {
  add(rows: UsageRow[]): void;
  /** Rows that never reached the ledger (a full ring). */
  lost(n: number): void;
}

export class LedgerRings {
  private readonly rings: LedgerRing[] = [];
  private readonly sink: RowSink;
  private readonly timer: NodeJS.Timeout;

  constructor(sink: RowSink, everyMs: number) {
    this.sink = sink;
    this.timer = setInterval(() => this.drain(), everyMs);
    this.timer.unref(); // shutdown drains explicitly (close)
  }

  /** A ring for a new acceptor thread: its buffer goes into the thread's workerData. */
  create(bytes?: number): SharedArrayBuffer {
    const sab = LedgerRing.bufferFor(bytes);
    this.rings.push(new LedgerRing(sab));
    return sab;
  }

  drain(): void {
    for (const r of this.rings) {
      const rows = r.drain();
      if (rows.length > 0) this.sink.add(rows);
      const lost = r.takeDropped();
      if (lost > 0) this.sink.lost(lost);
    }
  }

  /** Stop the timer and take what is left. */
  close(): void {
    clearInterval(this.timer);
    this.drain();
  }
}
