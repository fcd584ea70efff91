/**
 * Starts the built gateway (dist/server/main.js) as a separate process for integration
 * tests, waits for its "listening" log line and collects its log lines. Tests wait for a
 * log line or a stderr message itself (`waitForLine`, `waitForStderr`), never for a fixed time.
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
  /**
   * Resolve with the first log line (parsed pino JSON) so far or to come that `match` accepts;
   * fail after `ms` naming `what`.
   */
  waitForLine(what: string, match: (line: Record<string, unknown>) => boolean, ms?: number): Promise<Record<string, unknown>>;
  /** Resolve once stderr matches `re`; fail after `ms`. */
  waitForStderr(re: RegExp, ms?: number): Promise<RegExpExecArray>;
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
    env: {
      PATH: process.env.PATH ?? "",
      HOST: "127.0.0.1",
      PORT: "0",
      HTTP_THREADS: "1",
      LOG_LEVEL: "info",
      DATABASE_PATH: tempDb(),
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: string[] = [];
  let err = "";
  let buf = "";
  /** Called after every new stdout line or stderr chunk. */
  const watchers = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...watchers]) w();
  };
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
      notify();
    });
    proc.stderr!.setEncoding("utf8");
    proc.stderr!.on("data", (d: string) => {
      err += d;
      notify();
    });
    void exited.then((code) => reject(new Error(`gateway exited with ${code} before listening: ${err}`)));
  });
  /** Resolve with `probe()`'s first defined value, re-probing on every new output; fail after `ms`. */
  function watch<T>(what: string, probe: () => T | undefined, ms: number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const done = (): void => {
        watchers.delete(check);
        clearTimeout(timer);
      };
      const check = (): void => {
        const v = probe();
        if (v === undefined) return;
        done();
        resolve(v);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`timed out after ${ms} ms waiting for ${what}; stderr: ${err.slice(-500)}`));
      }, ms);
      watchers.add(check);
      check();
    });
  }
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    proc,
    lines,
    stderr: () => err,
    waitForLine(what, match, ms = 10_000) {
      let seen = 0;
      return watch(
        what,
        () => {
          for (; seen < lines.length; seen++) {
            let v: Record<string, unknown>;
            try {
              v = JSON.parse(lines[seen]!) as Record<string, unknown>;
            } catch {
              continue; // not a log line
            }
            if (match(v)) return v;
          }
          return undefined;
        },
        ms,
      );
    },
    waitForStderr(re, ms = 10_000) {
      return watch(`stderr to match ${re}`, () => re.exec(err) ?? undefined, ms);
    },
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
