/**
 * The long-streams scenario (`npm run loadtest -- --streams 1000,5000`): N concurrent slow
 * SSE streams through one target to loadtest/stream-upstream.ts in `--interval` mode (one
 * timestamped event every interval). For each target it reports errors, how long the last
 * stream waited for its first event (a hidden queue shows here), the delay each event
 * gained on its way (receive time minus the upstream's send time), RSS per open stream and
 * the CPU the target spends while the streams idle. Everything is bounded by `boundS`.
 */
import { setMaxListeners } from "node:events";
import { Pool } from "undici";
import { cpuMs, rssBytes } from "./procs.js";
import { percentile } from "./stats.js";
import type { Target } from "./measure.js";

export interface StreamsResult {
  target: string;
  streams: number;
  events_per_stream: number;
  interval_ms: number;
  completed: number;
  /** Non-200 answers, broken or cut streams, and streams still open at the bound. */
  errors: number;
  statuses: Record<string, number>;
  /** Request sent → first event received, ms. */
  first_event_p50_ms: number;
  first_event_max_ms: number;
  /** Receive time − upstream send time per event, ms (same clock: both on this machine). */
  relay_delay_p50_ms: number;
  relay_delay_p99_ms: number;
  rss_before_bytes: number;
  rss_held_bytes: number;
  rss_per_stream_bytes: number;
  /** CPU ms the target spent per second while every stream was open and idle between events. */
  cpu_ms_per_s_held: number;
  wall_s: number;
}

const T_RE = /t=(\d+\.\d+)/g;
const now = () => performance.timeOrigin + performance.now();

export async function streamsRun(t: Target, n: number, events: number, intervalMs: number, boundS: number): Promise<StreamsResult> {
  const pool = new Pool(`http://127.0.0.1:${t.port}`, {
    connections: n,
    pipelining: 1,
    headersTimeout: boundS * 1000,
    bodyTimeout: boundS * 1000,
  });
  const abort = new AbortController();
  setMaxListeners(n + 16, abort.signal); // one listener per stream is expected here
  const bound = setTimeout(() => abort.abort(new Error("bound reached")), boundS * 1000);
  const statuses: Record<string, number> = {};
  const delays: number[] = [];
  const firsts: number[] = [];
  let completed = 0,
    errors = 0;
  const pid = t.pid!;
  const rssBefore = rssBytes(pid);
  const t0 = performance.now();
  // Sampled while every stream should be open: from a quarter to three quarters of a stream's life.
  const life = events * intervalMs;
  let rssHeld = NaN,
    cpuA = NaN,
    cpuB = NaN,
    tA = 0,
    tB = 0;
  const sA = setTimeout(() => ((cpuA = cpuMs(pid)), (tA = performance.now())), life / 4);
  const sB = setTimeout(() => ((rssHeld = rssBytes(pid)), (cpuB = cpuMs(pid)), (tB = performance.now())), (life * 3) / 4);
  const one = async (): Promise<void> => {
    const sent = performance.now();
    let seen = 0;
    try {
      const res = await pool.request({ path: t.path, method: "POST", headers: t.headers, body: t.body, signal: abort.signal });
      statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1;
      if (res.statusCode !== 200) {
        await res.body.arrayBuffer();
        errors++;
        return;
      }
      res.body.setEncoding("utf8");
      let tail = "";
      for await (const chunk of res.body as AsyncIterable<string>) {
        const at = now();
        const text = tail + chunk;
        T_RE.lastIndex = 0;
        let m: RegExpExecArray | null;
        let end = 0;
        while ((m = T_RE.exec(text)) !== null && m.index + m[0].length < text.length) {
          if (seen === 0) firsts.push(performance.now() - sent);
          seen++;
          delays.push(at - Number(m[1]));
          end = m.index + m[0].length;
        }
        tail = text.slice(end).slice(-64);
      }
      if (seen === events) completed++;
      else errors++;
    } catch {
      errors++;
    }
  };
  await Promise.all(Array.from({ length: n }, one));
  clearTimeout(bound);
  clearTimeout(sA);
  clearTimeout(sB);
  await pool.close();
  delays.sort((a, b) => a - b);
  firsts.sort((a, b) => a - b);
  return {
    target: t.name,
    streams: n,
    events_per_stream: events,
    interval_ms: intervalMs,
    completed,
    errors,
    statuses,
    first_event_p50_ms: percentile(firsts, 0.5),
    first_event_max_ms: firsts.length === 0 ? NaN : firsts[firsts.length - 1]!,
    relay_delay_p50_ms: percentile(delays, 0.5),
    relay_delay_p99_ms: percentile(delays, 0.99),
    rss_before_bytes: rssBefore,
    rss_held_bytes: rssHeld,
    rss_per_stream_bytes: (rssHeld - rssBefore) / n,
    cpu_ms_per_s_held: tB > tA ? ((cpuB - cpuA) * 1000) / (tB - tA) : NaN,
    wall_s: (performance.now() - t0) / 1000,
  };
}
