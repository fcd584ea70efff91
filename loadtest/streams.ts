/**
 * The long-streams scenario (`npm run loadtest -- --streams 1000,5000`): N concurrent slow
 * SSE streams through one target to loadtest/stream-upstream.ts in `--interval` mode (one
 * timestamped event every interval). For each target it reports errors, how long the last
 * stream waited for its first event (a hidden queue shows here), the delay each event
 * gained on its way (receive time minus the upstream's send time), RSS per open stream and
 * the CPU the target spends while the streams idle. Everything is bounded by `boundS`.
 *
 * With slow readers (`--slow-readers SHARE`), that share of the N clients asks for a fat
 * stream instead (loadtest/stream-upstream.ts "bulk": 16 MiB by default, as fast as it is
 * read) over a raw socket that reads nothing for 5 s (or the streams' life), then reads the rest
 * at full speed and checks it is complete. Held backpressure shows as: the upstream could
 * write only what the sockets hold while the readers read nothing (its `/stats` just before
 * they resume, against the direct run), the target's RSS per slow reader far below the
 * stream's size, and the other streams' relay delay unchanged.
 */
import { once, setMaxListeners } from "node:events";
import { connect } from "node:net";
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
  /** Slow readers among the N (0: none), and what became of them. */
  slow_readers: number;
  slow_completed: number;
  slow_errors: number;
  /** Bytes a slow reader was sent in all (the fat stream's size). */
  slow_stream_bytes: number;
  /** Bytes the upstream wrote per slow stream while its reader read nothing (all of it: the target did not hold back). */
  slow_upstream_sent_bytes: number;
  /** RSS just before the slow readers resume minus before, divided by the slow readers (the fast streams' share included). */
  rss_per_slow_reader_bytes: number;
}

/** Slow readers: how many, what they ask for, and where to read the upstream's counts. */
export interface SlowReaders {
  count: number;
  body: string;
  /** The stream upstream's port (GET /stats). */
  upstreamPort: number;
}

interface Outcome {
  ok: boolean;
  bytes: number;
}

/**
 * One slow reader over a raw socket: sends the request, reads nothing for `holdMs` (the
 * socket is paused: the kernel's receive window fills and stays full), then reads the rest
 * at full speed. Complete means a 200 that ends with message_stop.
 */
async function slowReader(port: number, t: Target, body: string, holdMs: number, signal: AbortSignal): Promise<Outcome> {
  const sock = connect(port, "127.0.0.1");
  sock.pause();
  const abort = () => sock.destroy(new Error("bound reached"));
  signal.addEventListener("abort", abort, { once: true });
  try {
    await once(sock, "connect");
    const head = Object.entries(t.headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    sock.write(
      `POST ${t.path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n${head}content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
    await new Promise((r) => setTimeout(r, holdMs));
    let bytes = 0,
      first = "",
      tail = "";
    sock.on("data", (c: Buffer) => {
      bytes += c.length;
      // The start (status line) and the last bytes across chunks (message_stop, then the chunked end), not the 16 MiB between.
      if (first === "") first = c.toString("latin1", 0, 16);
      tail = (tail + c.toString("latin1", Math.max(0, c.length - 256))).slice(-256);
    });
    sock.resume();
    await once(sock, "end");
    return { ok: first.startsWith("HTTP/1.1 200") && tail.includes('data: {"type":"message_stop"}'), bytes };
  } catch {
    return { ok: false, bytes: 0 };
  } finally {
    signal.removeEventListener("abort", abort);
    sock.destroy();
  }
}

const T_RE = /t=(\d+\.\d+)/g;
/**
 * How long a slow reader reads nothing: below uWS's idle timeout, which cuts a client that has
 * taken nothing for 10 s (8-12 s in effect: uSockets' timers tick every 4 s).
 */
export const SLOW_HOLD_MS = 5000;
const now = () => performance.timeOrigin + performance.now();

export async function streamsRun(
  t: Target,
  n: number,
  events: number,
  intervalMs: number,
  boundS: number,
  slow: SlowReaders | null = null,
): Promise<StreamsResult> {
  const slowCount = slow === null ? 0 : Math.min(n, slow.count);
  const sentBefore = slow === null ? 0 : await upstreamSent(slow.upstreamPort);
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
  const hold = Math.min(life, SLOW_HOLD_MS);
  const slowRuns = slow === null ? [] : Array.from({ length: slowCount }, () => slowReader(t.port, t, slow.body, hold, abort.signal));
  // Just before the slow readers resume: what the upstream could write meanwhile.
  let sentHeld = NaN;
  let rssSlow = NaN;
  const sC =
    slow === null
      ? null
      : setTimeout(() => {
          rssSlow = rssBytes(pid);
          void upstreamSent(slow.upstreamPort).then((b) => (sentHeld = b));
        }, hold - 250);
  await Promise.all(Array.from({ length: n - slowCount }, one));
  const slowDone = await Promise.all(slowRuns);
  if (sC !== null) clearTimeout(sC);
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
    slow_readers: slowCount,
    slow_completed: slowDone.filter((o) => o.ok).length,
    slow_errors: slowDone.filter((o) => !o.ok).length,
    slow_stream_bytes: slowDone.reduce((m, o) => Math.max(m, o.bytes), 0),
    slow_upstream_sent_bytes: slowCount === 0 ? NaN : (sentHeld - sentBefore) / slowCount,
    rss_per_slow_reader_bytes: slowCount === 0 ? NaN : (rssSlow - rssBefore) / slowCount,
  };
}

/** The bytes the stream upstream has written into fat streams so far. */
async function upstreamSent(port: number): Promise<number> {
  const r = await fetch(`http://127.0.0.1:${port}/stats`);
  return ((await r.json()) as { bulk: { sent_bytes: number } }).bulk.sent_bytes;
}
