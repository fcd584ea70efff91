/**
 * What the balancing strategies read about each deployment (a route target: provider and
 * upstream model), in a SharedArrayBuffer every acceptor thread sees: the attempts in
 * flight, and a peak-EWMA of the time to the first upstream byte (Finagle's and Linkerd's
 * "peak EWMA"). A slow answer raises the average at once to the new peak; faster answers
 * pull it down gradually; and with no answers it decays toward 0 with time (decay time
 * DECAY_MS), so a deployment that was slow is tried again after a while rather than
 * shunned forever. A deployment with no measurement (0) looks attractive, so it gets one.
 *
 * Slots are decided at start-up from the config (`deploymentKeys`), identically in the main
 * thread (which sizes the buffer and labels the gauge) and in every acceptor thread. The
 * hot path reads three Int32 words per deployment and computes the decay from a table,
 * with no clock read: the caller passes the time it already has (the request's arrival).
 *
 * Races: in-flight counts change by Atomics.add/sub, so they are exact. The average and its
 * time stamp are two words: an update may interleave with another thread's, and then one
 * sample of the two is lost, which an average of many samples absorbs. The picks read with
 * plain loads (a third of the cost of Atomics.load here; an aligned Int32 never tears), so a
 * pick may see a value a few nanoseconds old, which is no worse than the pick being earlier.
 */
import type { RouteConfig } from "./config.js";
import { esc } from "./prometheus.js";

/** The average decays as exp(-t / DECAY_MS) while nothing is measured (Finagle's default decay time). */
export const DECAY_MS = 10_000;

// Int32 words per slot: in flight, average time to first byte (µs), when it was last set (Clock32 ms).
const W_INFLIGHT = 0,
  W_EWMA = 1,
  W_STAMP = 2;
const STRIDE = 4;
const MAX_US = 0x7fffffff;

/** exp(-t / DECAY_MS) for t in steps of DECAY_MS / STEPS, up to LIMIT decay times (then 0). */
const STEPS = 128,
  LIMIT = 24;
const DECAY = new Float64Array(STEPS * LIMIT);
for (let i = 0; i < DECAY.length; i++) DECAY[i] = Math.exp(-i / STEPS);
const PER_MS = STEPS / DECAY_MS;

/** The factor a value decays by over `ms` (a negative span, another thread's newer stamp, is 0 ms). */
export function decay(ms: number): number {
  if (ms <= 0) return 1;
  const i = (ms * PER_MS) | 0;
  return i < DECAY.length ? DECAY[i]! : 0;
}

/** A deployment's key: its provider and the upstream model ("" = the client's model is sent). */
export function deploymentKey(provider: string, model: string | null): string {
  return `${provider}\0${model ?? ""}`;
}

/** Every route target and fallback, once each, in config order (the slot of each is its index). */
export function deploymentKeys(routes: readonly RouteConfig[], defaultProvider: string | null): string[] {
  const keys = new Set<string>();
  for (const r of routes) {
    keys.add(deploymentKey(r.provider, r.model));
    for (const d of r.deployments ?? []) keys.add(deploymentKey(d.provider, d.model));
    for (const f of r.fallbacks) keys.add(deploymentKey(f.provider, f.model));
  }
  if (defaultProvider !== null) keys.add(deploymentKey(defaultProvider, null));
  return [...keys];
}

export class DeploymentState {
  readonly i32: Int32Array;
  readonly slots: number;
  /** performance.now() + origin = Clock32 ms (this thread's time origin minus the shared clock base). */
  private readonly origin: number;

  /** `clockBase`: the shared Clock32 base (core/clock.ts), so every thread stamps the same time. */
  constructor(sab: SharedArrayBuffer, clockBase = 0) {
    this.i32 = new Int32Array(sab);
    this.slots = this.i32.length / STRIDE;
    this.origin = performance.timeOrigin - clockBase;
  }

  /**
   * Clock32 ms of a performance.now() reading taken in this thread (no clock read of its own),
   * as a signed 32-bit integer (the same instant as Clock32's unsigned value, never boxed).
   */
  at(perfNow: number): number {
    return (this.origin + perfNow) | 0;
  }

  static bufferFor(slots: number): SharedArrayBuffer {
    return new SharedArrayBuffer(Math.max(1, slots) * STRIDE * 4);
  }

  /** An attempt was sent to the deployment in `slot`. */
  enter(slot: number): void {
    Atomics.add(this.i32, slot * STRIDE + W_INFLIGHT, 1);
  }

  /** That attempt ended; the caller makes sure this runs exactly once per `enter`. */
  leave(slot: number): void {
    Atomics.sub(this.i32, slot * STRIDE + W_INFLIGHT, 1);
  }

  /** A plain read (see the header). */
  inflight(slot: number): number {
    return this.i32[slot * STRIDE + W_INFLIGHT]!;
  }

  /** A time to first byte of `us` microseconds, measured at `now` (Clock32 ms). */
  observe(slot: number, us: number, now: number): void {
    const i = this.i32,
      o = slot * STRIDE;
    const rtt = us >= MAX_US ? MAX_US : us > 0 ? Math.round(us) : 0;
    for (;;) {
      const cur = Atomics.load(i, o + W_EWMA);
      const w = decay((now - Atomics.load(i, o + W_STAMP)) | 0);
      // A new peak is taken at once; anything lower moves the average by how long it has been.
      const next = rtt > cur * w ? rtt : Math.round(cur * w + rtt * (1 - w));
      if (Atomics.compareExchange(i, o + W_EWMA, cur, next) !== cur) continue;
      Atomics.store(i, o + W_STAMP, now);
      return;
    }
  }

  /** The average time to first byte at `now`, in µs (0 = never measured, or decayed away). */
  ewma(slot: number, now: number): number {
    const o = slot * STRIDE;
    return Atomics.load(this.i32, o + W_EWMA) * decay((now - Atomics.load(this.i32, o + W_STAMP)) | 0);
  }

  /** Is the deployment in slot `b` expected to answer sooner than the one in `a` (`cost`)? */
  sooner(b: number, a: number, now: number): boolean {
    return this.cost(b, now) < this.cost(a, now);
  }

  /**
   * What sending one more request to the deployment is expected to cost (lower is better):
   * the decayed average times the requests it would then have in flight. Unmeasured and
   * idle: 0, so it is tried; unmeasured but busy: worse than any measured one, so a burst
   * does not pile onto a deployment before its first answer says how fast it is.
   */
  cost(slot: number, now: number): number {
    const o = slot * STRIDE,
      i = this.i32;
    const n = i[o + W_INFLIGHT]!;
    const e = i[o + W_EWMA]!;
    if (e === 0) return n <= 0 ? 0 : UNMEASURED_BUSY + n;
    return e * decay((now - i[o + W_STAMP]!) | 0) * (n + 1);
  }
}

/**
 * Above any measured cost met in practice (10 minutes to a first byte, 2^18 requests in flight),
 * and small enough that adding the in-flight count stays exact (below 2^53).
 */
const UNMEASURED_BUSY = 2 ** 48;

/** The `upstream_inflight` gauge: attempts in flight per deployment, all acceptor threads together. */
export function renderInflightPrometheus(sab: SharedArrayBuffer, keys: readonly string[]): string {
  if (keys.length === 0) return "";
  const s = new DeploymentState(sab);
  const out = [
    "# HELP upstream_inflight Upstream attempts in flight, by provider and deployment (the route target's provider/model).",
    "# TYPE upstream_inflight gauge",
  ];
  keys.forEach((k, slot) => {
    const [provider, model] = k.split("\0") as [string, string];
    const deployment = model === "" ? provider : `${provider}/${model}`;
    out.push(`upstream_inflight{provider="${esc(provider)}",deployment="${esc(deployment)}"} ${s.inflight(slot)}`);
  });
  return out.join("\n") + "\n";
}
