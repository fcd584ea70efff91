/**
 * Real worker threads for the stress tests of the shared-memory structures (breakers,
 * rate limits, budgets): a test file runs copies of itself as workers on one
 * SharedArrayBuffer. The workers pass a barrier before their loop, so they really hammer
 * the same slots at once, and the wait for their results is bounded: a hung or failed
 * worker fails the test with a clear message instead of hanging it.
 */
import { Worker, workerData, parentPort } from "node:worker_threads";

interface Envelope<D> {
  index: number;
  threads: number;
  gate: SharedArrayBuffer;
  data: D;
}

const BARRIER_MS = 30_000;

/** Run `threads` copies of the module at `url` (which calls `workerMain`) and collect their results. */
export async function runThreads<D, R>(url: URL, threads: number, data: D, timeoutMs = 60_000): Promise<R[]> {
  const gate = new SharedArrayBuffer(8); // [arrived, go]
  const workers = Array.from(
    { length: threads },
    (_, index) => new Worker(url, { workerData: { index, threads, gate, data } satisfies Envelope<D> }),
  );
  const results = Promise.all(
    workers.map(
      (w, index) =>
        new Promise<R>((resolve, reject) => {
          let got = false;
          let value: R | undefined;
          w.on("message", (v: R) => {
            value = v;
            got = true;
          });
          w.on("error", reject);
          w.on("exit", (code) =>
            code === 0 && got ? resolve(value as R) : reject(new Error(`stress worker ${index} exited ${code} without a result`)),
          );
        }),
    ),
  );
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`stress workers did not finish within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([results, timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((w) => w.terminate()));
  }
}

/** In a worker: wait for every thread to arrive, run `body`, post its result. */
export function workerMain<D, R>(body: (data: D, index: number) => R): void {
  const env = workerData as Envelope<D>;
  const g = new Int32Array(env.gate);
  if (Atomics.add(g, 0, 1) + 1 === env.threads) {
    Atomics.store(g, 1, 1);
    Atomics.notify(g, 1);
  } else if (Atomics.wait(g, 1, 0, BARRIER_MS) === "timed-out") {
    throw new Error(`stress worker ${env.index}: the other threads did not arrive within ${BARRIER_MS} ms`);
  }
  parentPort!.postMessage(body(env.data, env.index));
}
