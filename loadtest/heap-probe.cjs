/**
 * Where a process's memory goes, per V8 isolate: preloaded into the gateway with
 * `NODE_OPTIONS=--require=…/loadtest/heap-probe.cjs` and `HEAP_PROBE_FILE=path`, it runs in
 * the main thread and in every worker thread (a `--require` preload does; `--import` does
 * not), and appends one JSON line per thread every `HEAP_PROBE_MS` (default 1000) with that
 * isolate's heap, and for the main thread the process's RSS and smaps_rollup. Once the file
 * named by `HEAP_PROBE_GC_FILE` exists, each thread runs one full GC (with --expose-gc) before
 * its next sample (marked `gc: true`), which tells garbage from what is really held, and with
 * `HEAP_PROBE_SNAPSHOT_DIR` writes a heap snapshot per thread there.
 * Measurement only (loadtest/memory.ts reads it); CommonJS because only CommonJS preloads
 * reach workers.
 *
 * A piscina thread that waits with blocking Atomics (piscina's default) runs no timer while
 * idle, so it reports only after a task; with `atomics: "async"` it reports like the others.
 */
"use strict";
const { appendFileSync, existsSync, readFileSync } = require("node:fs");
const { getHeapStatistics, getHeapSpaceStatistics, writeHeapSnapshot } = require("node:v8");
const wt = require("node:worker_threads");

const file = process.env.HEAP_PROBE_FILE;
if (file) {
  const every = Number(process.env.HEAP_PROBE_MS || 1000);
  const role = () => {
    if (wt.isMainThread) return "main";
    const d = wt.workerData;
    if (d && typeof d === "object" && "cfg" in d && "index" in d) return `acceptor ${d.index}`;
    if (d && typeof d === "object" && ("path" in d || "url" in d)) return "ledger (piscina)";
    return "metrics render (piscina)";
  };
  const kb = (text, field) => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
    return m === null ? null : Number(m[1]) * 1024;
  };
  const gcFile = process.env.HEAP_PROBE_GC_FILE;
  let collected = false;
  const sample = () => {
    let gc = false;
    if (!collected && gcFile && typeof globalThis.gc === "function" && existsSync(gcFile)) {
      globalThis.gc();
      collected = gc = true;
      const dir = process.env.HEAP_PROBE_SNAPSHOT_DIR;
      if (dir) writeHeapSnapshot(`${dir}/thread-${wt.threadId}.heapsnapshot`);
    }
    const h = getHeapStatistics();
    const spaces = {};
    for (const s of getHeapSpaceStatistics()) spaces[s.space_name] = s.space_size;
    const m = process.memoryUsage();
    const line = {
      at: Date.now(),
      pid: process.pid,
      thread: wt.threadId,
      role: role(),
      heap_total: h.total_heap_size,
      heap_used: h.used_heap_size,
      heap_limit: h.heap_size_limit,
      malloced: h.malloced_memory,
      external: h.external_memory,
      array_buffers: m.arrayBuffers,
      spaces,
      gc,
    };
    if (wt.isMainThread) {
      const status = readFileSync("/proc/self/status", "utf8");
      const smaps = readFileSync("/proc/self/smaps_rollup", "utf8");
      line.rss = kb(status, "VmRSS");
      line.rss_peak = kb(status, "VmHWM");
      line.rss_anon = kb(smaps, "Anonymous");
      line.rss_file = kb(status, "RssFile");
      line.threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1]);
    }
    try {
      appendFileSync(file, `${JSON.stringify(line)}\n`);
    } catch {
      // the file's directory is gone: the run is over
    }
  };
  setInterval(sample, every).unref();
  setTimeout(sample, 50).unref();
}
