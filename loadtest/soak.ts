/**
 * `--soak SECONDS`: one long run at the usual connection count, sampling the target's RSS
 * every few seconds, to show whether memory is flat under sustained load (the target:
 * within ±10% after warm-up) or grows.
 */
import { loadRun, type RunResult, type Target } from "./measure.js";
import { rssBytes } from "./procs.js";

export interface Soak {
  seconds: number;
  every_s: number;
  rss_bytes: number[];
  /** max ÷ min − 1 over the samples after the first tenth of the run. */
  drift: number;
  run: RunResult;
}

export async function soakRun(t: Target, connections: number, seconds: number): Promise<Soak> {
  const every = Math.max(1, Math.min(30, Math.round(seconds / 20)));
  const samples: number[] = [];
  const timer = setInterval(() => samples.push(rssBytes(t.pid!)), every * 1000);
  let run: RunResult;
  try {
    run = await loadRun(t, connections, seconds);
  } finally {
    clearInterval(timer);
  }
  const steady = samples.slice(Math.floor(samples.length / 10));
  const drift = steady.length === 0 ? NaN : Math.max(...steady) / Math.min(...steady) - 1;
  return { seconds, every_s: every, rss_bytes: samples, drift, run };
}
