/**
 * Reading the recent-latency ring (core/latency-ring.ts) in the render worker: percentiles
 * over the last 1 and 5 minutes for /metrics/observability, and the last minute second by
 * second for the dashboard. Runs off the serving threads; allocation here is fine.
 */
import {
  EPOCH_BASE_MS,
  RING_BUCKETS,
  ringAddSecond,
  ringPercentiles,
  ringSecond,
  ringWindow,
  SERIES,
  S_OVERHEAD,
  S_TOTAL,
  type RingWindow,
} from "../core/latency-ring.js";
import { ROUTES, RING_ROUTES, type MetricsLayout } from "../core/metrics.js";

const QS = [0.5, 0.95, 0.99, 0.999] as const;

export interface Percentiles {
  count: number;
  p50_ms: number | null;
  p95_ms: number | null;
  p99_ms: number | null;
  p999_ms: number | null;
}

type SeriesSet = Record<(typeof SERIES)[number], Percentiles>;

export interface WindowReport {
  /** Total requests (of the ring's routes) in the window, and those answered with status >= 400. */
  requests: number;
  errors: number;
  all: SeriesSet;
  by_provider: Record<string, SeriesSet>;
  by_route: Record<string, SeriesSet>;
}

function empty(): RingWindow {
  return { count: 0, errors: 0, buckets: new Float64Array(RING_BUCKETS) };
}

function reset(w: RingWindow): void {
  w.count = 0;
  w.errors = 0;
  w.buckets.fill(0);
}

function add(into: RingWindow, w: RingWindow): void {
  into.count += w.count;
  into.errors += w.errors;
  for (let b = 0; b < RING_BUCKETS; b++) into.buckets[b]! += w.buckets[b]!;
}

function pct(w: RingWindow): Percentiles {
  const [p50, p95, p99, p999] = ringPercentiles(w.buckets, QS);
  return { count: w.count, p50_ms: p50!, p95_ms: p95!, p99_ms: p99!, p999_ms: p999! };
}

/** Percentiles of every series over one window, overall, per provider and per route. */
export function windowReport(layout: MetricsLayout, u32: Uint32Array, sec: number, seconds: number, minutes: number): WindowReport {
  const ring = layout.ring;
  const all = SERIES.map(empty);
  const byP = new Map<number, RingWindow[]>();
  const byR = new Map<number, RingWindow[]>();
  for (let rr = 0; rr < ring.nRoutes; rr++) {
    for (let p = 0; p < layout.nP; p++) {
      for (let s = 0; s < SERIES.length; s++) {
        const w = ringWindow(u32, ring.series(rr, p, s), sec, seconds, minutes);
        if (w.count === 0) continue;
        add(all[s]!, w);
        if (!byP.has(p)) byP.set(p, SERIES.map(empty));
        if (!byR.has(rr)) byR.set(rr, SERIES.map(empty));
        add(byP.get(p)![s]!, w);
        add(byR.get(rr)![s]!, w);
      }
    }
  }
  const set = (ws: RingWindow[]): SeriesSet => ({ total: pct(ws[S_TOTAL]!), upstream_ttfb: pct(ws[1]!), overhead: pct(ws[S_OVERHEAD]!) });
  const by_provider: Record<string, SeriesSet> = {};
  for (const [p, ws] of byP) by_provider[layout.providers[p]!] = set(ws);
  const by_route: Record<string, SeriesSet> = {};
  for (const [rr, ws] of byR) by_route[ROUTES[RING_ROUTES[rr]!]!] = set(ws);
  return { requests: all[S_TOTAL]!.count, errors: all[S_TOTAL]!.errors, all: set(all), by_provider, by_route };
}

/** /metrics/observability's `recent_latency`: the last minute (60 one-second slots) and the last 5 minutes (minute slots, the current one included). */
export function recentLatency(
  layout: MetricsLayout,
  sab: SharedArrayBuffer,
  nowMs: number,
): { window_1m: WindowReport; window_5m: WindowReport } {
  const u32 = new Uint32Array(sab);
  const sec = ringSecond(nowMs);
  return { window_1m: windowReport(layout, u32, sec, 60, 0), window_5m: windowReport(layout, u32, sec, 0, 5) };
}

export interface SecondSeries {
  /** Unix seconds of each point: the last 60 complete seconds, oldest first. */
  t: number[];
  requests: number[];
  errors: number[];
  /** Per provider that served anything in the minute: p50/p95/p99 of total latency per second (ms; null = no request that second). */
  providers: Record<string, { p50: (number | null)[]; p95: (number | null)[]; p99: (number | null)[] }>;
  /** The gateway's own time per second, all providers. */
  overhead: { p50: (number | null)[]; p99: (number | null)[] };
}

/** The dashboard's charts: the last 60 complete seconds, second by second. */
export function secondSeries(layout: MetricsLayout, sab: SharedArrayBuffer, nowMs: number): SecondSeries {
  const u32 = new Uint32Array(sab);
  const ring = layout.ring;
  const last = ringSecond(nowMs) - 1;
  const out: SecondSeries = { t: [], requests: [], errors: [], providers: {}, overhead: { p50: [], p99: [] } };
  const perP: { p50: (number | null)[]; p95: (number | null)[]; p99: (number | null)[] }[] = [];
  const used = new Array<boolean>(layout.nP).fill(false);
  for (let p = 0; p < layout.nP; p++) perP.push({ p50: [], p95: [], p99: [] });
  const tot = empty(),
    ov = empty();
  for (let sec = last - 59; sec <= last; sec++) {
    out.t.push(sec + EPOCH_BASE_MS / 1000);
    let reqs = 0,
      errs = 0;
    reset(ov);
    for (let p = 0; p < layout.nP; p++) {
      reset(tot);
      for (let rr = 0; rr < ring.nRoutes; rr++) {
        ringAddSecond(u32, ring.series(rr, p, S_TOTAL), sec, tot);
        ringAddSecond(u32, ring.series(rr, p, S_OVERHEAD), sec, ov);
      }
      reqs += tot.count;
      errs += tot.errors;
      if (tot.count > 0) used[p] = true;
      const [p50, p95, p99] = ringPercentiles(tot.buckets, [0.5, 0.95, 0.99]);
      perP[p]!.p50.push(p50!);
      perP[p]!.p95.push(p95!);
      perP[p]!.p99.push(p99!);
    }
    out.requests.push(reqs);
    out.errors.push(errs);
    const [o50, o99] = ringPercentiles(ov.buckets, [0.5, 0.99]);
    out.overhead.p50.push(o50!);
    out.overhead.p99.push(o99!);
  }
  for (let p = 0; p < layout.nP; p++) if (used[p]) out.providers[layout.providers[p]!] = perP[p]!;
  return out;
}
