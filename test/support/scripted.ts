/**
 * Starts test/support/scripted-upstream.ts in its own process and talks to it over IPC: a
 * test queues the script of the next reply, says "go" where the script waits, and waits
 * (bounded) for what the upstream saw: the request, the peer closing, its byte count.
 */
import { fork, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import type { FromChild, Step, ToChild } from "./scripted-upstream.js";

export type { Step } from "./scripted-upstream.js";
export { BULK_DELTA, httpChunks } from "./scripted-upstream.js";

const SCRIPT = fileURLToPath(new URL("./scripted-upstream.js", import.meta.url));

export interface Scripted {
  /** e.g. http://127.0.0.1:12345 */
  url: string;
  /** Everything the upstream reported, in order. */
  messages: FromChild[];
  /** Queue the script of the next POST; resolves with that reply's number once queued. */
  script(steps: Step[]): Promise<number>;
  /** Let reply `n` go past the `wait` step it is at (or reaches next). */
  go(n: number): void;
  /** The first report (from index `from` on, so far or to come) that `match` accepts; fails after `ms` naming `what`. */
  waitFor(what: string, match: (m: FromChild) => boolean, ms?: number, from?: number): Promise<FromChild>;
  /** Reply `n`'s bytes written so far, whether it waits for the socket to drain, whether its script finished. */
  stats(n: number): Promise<{ written: number; blocked: boolean; finished: boolean }>;
  stop(): Promise<void>;
}

export async function startScripted(): Promise<Scripted> {
  const child: ChildProcess = fork(SCRIPT, [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  const messages: FromChild[] = [];
  const watchers = new Set<() => void>();
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.on("message", (m: FromChild) => {
    messages.push(m);
    for (const w of [...watchers]) w();
  });
  const send = (m: ToChild): void => void child.send(m);

  function waitFor(what: string, match: (m: FromChild) => boolean, ms = 10_000, from = 0): Promise<FromChild> {
    return new Promise((resolve, reject) => {
      let seen = from;
      const check = (): void => {
        for (; seen < messages.length; seen++) {
          if (!match(messages[seen]!)) continue;
          watchers.delete(check);
          clearTimeout(timer);
          return resolve(messages[seen]!);
        }
      };
      const timer = setTimeout(() => {
        watchers.delete(check);
        reject(
          new Error(
            `timed out after ${ms} ms waiting for the upstream to report ${what}; it reported: ${JSON.stringify(messages.slice(-8))}`,
          ),
        );
      }, ms);
      watchers.add(check);
      check();
    });
  }

  const port = await Promise.race([
    waitFor("listening", (m) => m.ev === "listening").then((m) => (m as { port: number }).port),
    exited.then(() => Promise.reject(new Error("scripted upstream exited before listening"))),
  ]);
  return {
    url: `http://127.0.0.1:${port}`,
    messages,
    async script(steps) {
      const from = messages.length;
      send({ op: "script", steps });
      const m = await waitFor("the script queued", (x) => x.ev === "queued", 5_000, from);
      return (m as { n: number }).n;
    },
    go(n) {
      send({ op: "go", n });
    },
    waitFor,
    async stats(n) {
      const from = messages.length;
      send({ op: "stats", n });
      const m = (await waitFor(`stats of reply ${n}`, (x) => x.ev === "stats" && x.n === n, 5_000, from)) as Extract<
        FromChild,
        { ev: "stats" }
      >;
      return { written: m.written, blocked: m.blocked, finished: m.finished };
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill("SIGTERM");
      const killer = setTimeout(() => child.kill("SIGKILL"), 5_000);
      await exited;
      clearTimeout(killer);
    },
  };
}
