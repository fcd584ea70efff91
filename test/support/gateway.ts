/**
 * Starts the built gateway (dist/server/main.js) as a separate process for integration
 * tests, waits for its "listening" log line and collects its log lines.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const MAIN = fileURLToPath(new URL("../../server/main.js", import.meta.url));

export interface Gateway {
  port: number;
  url: string;
  proc: ChildProcess;
  /** Every stdout line so far (pino JSON). */
  lines: string[];
  stderr(): string;
  /** Send a signal and resolve with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
  exited: Promise<number | null>;
}

function tempDb(): string {
  return join(mkdtempSync(join(tmpdir(), "portcullis-gw-")), "ledger.db");
}

export async function startGateway(env: Record<string, string>, script = MAIN): Promise<Gateway> {
  const proc = spawn(process.execPath, [script], {
    // Each gateway gets its own ledger file unless the test names one.
    env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", HTTP_THREADS: "1", LOG_LEVEL: "info", DATABASE_PATH: tempDb(), ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let err = "";
  let buf = "";
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));
  const port = await new Promise<number>((resolve, reject) => {
    proc.stdout!.setEncoding("utf8");
    proc.stdout!.on("data", (d: string) => {
      buf += d;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        lines.push(line);
        if (line.includes('"msg":"listening"')) resolve(JSON.parse(line).port);
      }
    });
    proc.stderr!.setEncoding("utf8");
    proc.stderr!.on("data", (d: string) => (err += d));
    void exited.then((code) => reject(new Error(`gateway exited with ${code} before listening: ${err}`)));
  });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    proc,
    lines,
    stderr: () => err,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      return exited;
    },
  };
}

/** Run the gateway expecting it to refuse to start; resolves with exit code and stderr. */
export function runExpectingFailure(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [MAIN], {
      env: { PATH: process.env.PATH ?? "", HOST: "127.0.0.1", PORT: "0", HTTP_THREADS: "1", DATABASE_PATH: tempDb(), ...env },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (d: string) => (stderr += d));
    const t = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    proc.once("exit", (code) => {
      clearTimeout(t);
      resolve({ code, stderr });
    });
  });
}
