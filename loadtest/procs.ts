/**
 * Child processes for the load test (mock, ceiling, gateway), each in its own process,
 * and what Linux tells us about them: CPU time and RSS from /proc.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { freePort } from "../test/support/free-port.js";

export interface Proc {
  name: string;
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

const CLK_TCK = 100; // Linux USER_HZ

/** utime + stime in ms (10 ms resolution) from a `/proc/…/stat` file. */
function statCpuMs(path: string): number {
  const stat = readFileSync(path, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After "pid (comm) ", field 3 (state) is f[0]; utime is field 14 → f[11], stime f[12].
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

/** utime + stime of a process, in ms (10 ms resolution). */
export function cpuMs(pid: number): number {
  return statCpuMs(`/proc/${pid}/stat`);
}

/** utime + stime of each of a process's threads, in ms, by thread id. */
export function threadCpuMs(pid: number): Map<number, number> {
  const out = new Map<number, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      out.set(Number(tid), statCpuMs(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return out;
}

/** Resident set size in bytes. */
export function rssBytes(pid: number): number {
  return statusKb(pid, "VmRSS");
}

/** The process's peak resident set size so far (VmHWM), in bytes. */
export function peakRssBytes(pid: number): number {
  return statusKb(pid, "VmHWM");
}

function statusKb(pid: number, field: string): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m === null ? NaN : Number(m[1]) * 1024;
}

/** A stop function: SIGTERM, then SIGKILL after `graceMs`; resolves once the child exited. */
export function stopper(child: ChildProcess, graceMs: number): () => Promise<void> {
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  return async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGTERM");
    const t = setTimeout(() => child.kill("SIGKILL"), graceMs);
    await exited;
    clearTimeout(t);
  };
}

/** A program that prints `{"port":N}` on stdout once listening (mock, ceiling, stream upstream). */
export function startPortPrinter(name: string, script: string, args: string[], timeoutMs = 15_000): Promise<Proc> {
  const child = spawn(process.execPath, [script, ...args], { stdio: ["ignore", "pipe", "inherit"] });
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${name} did not print its port within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once("exit", (code) => reject(new Error(`${name} exited (${code}) before listening`)));
    child.stdout!.setEncoding("utf8");
    child.stdout!.on("data", (d: string) => {
      buf += d;
      const m = /\{"port":(\d+)\}/.exec(buf);
      if (m === null) return;
      clearTimeout(timer);
      child.stdout!.removeAllListeners("data");
      child.stdout!.resume();
      resolve({ name, port: Number(m[1]), child, stop: stopper(child, 5_000) });
    });
  });
}

/**
 * The gateway (dist/server/main.js) on a port we choose, logging to a file; ready when
 * GET /health/live answers. SIGTERM lets it drain (idle keep-alives close within ~10 s).
 */
export async function startGateway(script: string, env: Record<string, string>, timeoutMs = 20_000): Promise<Proc> {
  const port = await freePort();
  let stderr = "";
  const child = spawn(process.execPath, [script], {
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", ...env, PORT: String(port) },
    stdio: ["ignore", "ignore", "pipe"],
  });
  child.stderr!.setEncoding("utf8");
  child.stderr!.on("data", (d: string) => (stderr += d));
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`gateway exited (${child.exitCode}) before listening: ${stderr}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/health/live`);
      await r.arrayBuffer();
      if (r.status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`gateway not live within ${timeoutMs} ms: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { name: "gateway", port, child, stop: stopper(child, 15_000) };
}

/** The upstreams every comparison needs: the mock, a 50-event SSE upstream, and a bare ceiling in front of each. */
export interface Upstreams {
  mock: Proc;
  sse: Proc;
  ceiling: Proc;
  ceilingSse: Proc;
}

/** Starts the four, appending each to `procs` as it starts (so a failure still stops the earlier ones). */
export async function startUpstreams(procs: Proc[]): Promise<Upstreams> {
  const js = (p: string) => fileURLToPath(new URL(p, import.meta.url));
  const mock = await startPortPrinter("mock", js("./mock-upstream.js"), ["--port", "0"]);
  procs.push(mock);
  const sse = await startPortPrinter("stream-upstream", js("./stream-upstream.js"), ["--port", "0", "--events", "50"]);
  procs.push(sse);
  const ceiling = await startPortPrinter("ceiling", js("./ceiling.js"), ["--port", "0", "--upstream", `http://127.0.0.1:${mock.port}`]);
  procs.push(ceiling);
  const ceilingSse = await startPortPrinter("ceiling-sse", js("./ceiling.js"), [
    "--port",
    "0",
    "--upstream",
    `http://127.0.0.1:${sse.port}`,
  ]);
  procs.push(ceilingSse);
  return { mock, sse, ceiling, ceilingSse };
}

/**
 * Run a load-test script's `main` when its module is the one node was started with (not when
 * imported): exit 0 when it is done (child processes and sockets may hold the loop), 1 with the
 * stack, prefixed by `name`, when it fails.
 */
export function runScript(moduleUrl: string, name: string, main: () => Promise<unknown>): void {
  if (process.argv[1] === undefined || fileURLToPath(moduleUrl) !== process.argv[1]) return;
  main().then(
    () => process.exit(0),
    (e) => {
      process.stderr.write(`${name}: ${(e as Error).stack ?? e}\n`);
      process.exit(1);
    },
  );
}
