/**
 * Spawns the built mock upstream (dist/loadtest/mock-upstream.js) for tests.
 *
 *   const mock = await startMock(["--record"]);
 *   await fetch(`${mock.url}/v1/messages`, ...);
 *   await mock.stop();
 */
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";

export interface MockHandle {
  port: number;
  /** e.g. http://127.0.0.1:12345 (no trailing slash) */
  url: string;
  /** SIGTERM and wait for exit (SIGKILL after 5s). Idempotent. */
  stop(): Promise<void>;
}

/** Path of the compiled mock upstream (this file lives at dist/test/support/). */
export const MOCK_UPSTREAM_PATH = fileURLToPath(new URL("../../loadtest/mock-upstream.js", import.meta.url));

const START_TIMEOUT_MS = 15_000;

function urlHost(args: string[]): string {
  let host = "127.0.0.1";
  for (let i = 0; i < args.length; i++) {
    if (args[i] === "--host" && args[i + 1] !== undefined) host = args[i + 1]!;
    else if (args[i]!.startsWith("--host=")) host = args[i]!.slice("--host=".length);
  }
  if (host === "0.0.0.0" || host === "::") return "127.0.0.1";
  return host.includes(":") ? `[${host}]` : host;
}

export async function startMock(args: string[] = []): Promise<MockHandle> {
  const child = spawn(process.execPath, [MOCK_UPSTREAM_PATH, "--host", "127.0.0.1", "--port", "0", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  let exited = child.exitCode !== null || child.signalCode !== null;
  const exitPromise = new Promise<void>((resolve) => {
    child.once("exit", () => {
      exited = true;
      resolve();
    });
  });

  const port = await new Promise<number>((resolve, reject) => {
    let buf = "";
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout!.off("data", onData);
      child.off("exit", onExit);
      child.off("error", onError);
      child.stdout!.resume(); // keep draining anything else printed
    };
    const onData = (d: Buffer): void => {
      buf += d.toString("utf8");
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        try {
          const v = JSON.parse(line) as { port?: unknown };
          if (typeof v.port === "number") {
            cleanup();
            resolve(v.port);
            return;
          }
        } catch {
          // not the port line
        }
      }
    };
    const onExit = (code: number | null, sig: NodeJS.Signals | null): void => {
      cleanup();
      reject(new Error(`mock upstream exited before listening (code ${code}, signal ${sig})`));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const timer = setTimeout(() => {
      cleanup();
      child.kill("SIGKILL");
      reject(new Error("mock upstream did not print its port in time"));
    }, START_TIMEOUT_MS);
    child.stdout!.on("data", onData);
    child.once("exit", onExit);
    child.once("error", onError);
  });

  return {
    port,
    url: `http://${urlHost(args)}:${port}`,
    async stop(): Promise<void> {
      if (exited) return;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exitPromise;
      clearTimeout(killer);
    },
  };
}
