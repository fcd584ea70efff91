/**
 * A throw-away redis-server for tests: loopback, a free port, no persistence; resolves once it
 * accepts connections. `stop()` kills it (SIGKILL: the outage tests want the abrupt kind).
 * A missing package fails with one clear message.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { freePort } from "./free-port.js";

export interface RedisHandle {
  port: number;
  url: string;
  proc: ChildProcess;
  stop(): Promise<void>;
}

export async function startRedis(port?: number): Promise<RedisHandle> {
  const p = port ?? (await freePort());
  const proc = spawn("redis-server", ["--port", String(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = new Promise<void>((r) => proc.once("exit", () => r()));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
    await exited;
  };
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`redis-server did not start in time: ${out}`)), 15_000);
    proc.once("error", (e) => reject(new Error(`redis-server could not run (install Debian's redis-server package): ${e.message}`)));
    proc.stdout!.setEncoding("utf8");
    proc.stdout!.on("data", (d: string) => {
      out += d;
      if (out.includes("Ready to accept connections")) {
        clearTimeout(timer);
        resolve({ port: p, url: `redis://127.0.0.1:${p}`, proc, stop });
      }
    });
    void exited.then(() => reject(new Error(`redis-server exited: ${out}`)));
  });
}
