/**
 * The admission pipeline: an ordered list of stages, each `run(state) → number`
 * (CONTINUE or an error number, codes.ts), decided at start-up from the config
 * so a disabled feature is simply absent (build.ts). The list is cut in two where the
 * server reads the body: `head` runs on headers alone, `body` on the read body. After the
 * reply, `finish` prices the request, settles in reverse exactly the stages that admitted
 * it (a refusal never gives back what it did not take), then runs the taps (metrics,
 * ledger row, log line) that every request gets, refusals included.
 *
 * New work goes here as a stage (a cache lookup before dispatch, a translation check) or
 * a tap (a trace span end); `server/app.ts` only wires uWS to `runHead`/`runBody`.
 */
import { CONTINUE } from "./codes.js";
import type { RequestState } from "./state.js";

export interface Stage {
  readonly name: string;
  /** CONTINUE to admit; else an error number with details in the state's err* fields. */
  run(s: RequestState): number;
  /** After the reply, for a request this stage admitted (null: nothing to settle). */
  readonly settle: ((s: RequestState) => void) | null;
}

/** Runs after settlement for every finished request. */
export type Tap = (s: RequestState, status: number, durationUs: number) => void;

/** Fills `chargedTokens`/`chargedMicros` from the reply's usage, before settlement. */
export type Pricer = (s: RequestState) => void;

export class Pipeline {
  readonly head: readonly Stage[];
  readonly body: readonly Stage[];
  private readonly all: readonly Stage[];
  private readonly pricer: Pricer | null;
  private readonly taps: readonly Tap[];

  constructor(head: readonly Stage[], body: readonly Stage[], pricer: Pricer | null, taps: readonly Tap[]) {
    this.head = head;
    this.body = body;
    this.all = [...head, ...body];
    this.pricer = pricer;
    this.taps = taps;
  }

  /** The stages' names in order (docs, tests). */
  names(): string[] {
    return this.all.map((s) => s.name);
  }

  /** The same pipeline without the named stage (the benchmark's "minus validation" row). */
  without(name: string): Pipeline {
    return new Pipeline(
      this.head.filter((s) => s.name !== name),
      this.body.filter((s) => s.name !== name),
      this.pricer,
      this.taps,
    );
  }

  /** The stages that need only the headers. CONTINUE when all admitted. */
  runHead(s: RequestState): number {
    const st = this.head;
    for (let i = 0; i < st.length; i++) {
      const r = st[i]!.run(s);
      if (r !== CONTINUE) return r;
      s.admitted++;
    }
    return CONTINUE;
  }

  /** The stages that need the body (after runHead admitted). CONTINUE when all admitted. */
  runBody(s: RequestState): number {
    return this.bodyFrom(s, 0);
  }

  /** After a body stage answered WAIT: run the body stages again from that one (it did not admit). */
  resumeBody(s: RequestState): number {
    return this.bodyFrom(s, s.admitted - this.head.length);
  }

  private bodyFrom(s: RequestState, from: number): number {
    const st = this.body;
    for (let i = from; i < st.length; i++) {
      const r = st[i]!.run(s);
      if (r !== CONTINUE) return r;
      s.admitted++;
    }
    return CONTINUE;
  }

  /** After the reply: price, settle the admitted stages in reverse, run the taps. */
  finish(s: RequestState, status: number, durationUs: number): void {
    if (this.pricer !== null) this.pricer(s);
    const all = this.all;
    for (let i = s.admitted - 1; i >= 0; i--) {
      const f = all[i]!.settle;
      if (f !== null) f(s);
    }
    const taps = this.taps;
    for (let i = 0; i < taps.length; i++) taps[i]!(s, status, durationUs);
  }
}
