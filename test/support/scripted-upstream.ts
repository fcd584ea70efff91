/**
 * An SSE upstream whose every socket write a test dictates, for the relay tests
 * (test/server/sse-relay.test.ts). It speaks raw HTTP/1.1 over `node:net`, so a step is
 * exactly one `socket.write`: several SSE events in one TCP write, an event split across
 * writes, a stream cut mid-event or without `message_stop`, a pause until the test says
 * "go", or a fat stream written only as fast as the gateway takes it (its byte count is the
 * upstream's own, so a test sees backpressure from the provider's side).
 *
 * Run as a child with an IPC channel (test/support/scripted.ts starts it); the test queues
 * one script per request and hears what happened (request arrived, waiting, peer closed).
 * Anything without a script (the gateway's model-list fetch) gets a 404. Imported or run
 * without IPC (the test runner runs every file under dist/test/) it does nothing.
 */
import { createServer, type Socket } from "node:net";

/** One step of a scripted reply; each write step is one socket write. */
export type Step =
  /** Status line and headers (chunked, `connection: close`). */
  | { head: Record<string, string> }
  /** One socket write holding each string as its own HTTP chunk (and, with `end`, the terminating chunk). */
  | { chunks: string[]; end?: true }
  /** One socket write of these bytes as they are (HTTP chunk framing included, see httpChunks). */
  | { raw: string }
  /** Stop until the test sends `go` for this script. */
  | { wait: string }
  /** The terminating zero-length chunk: the body ends cleanly. */
  | { end: true }
  /** Close the socket without the terminating chunk. */
  | { cut: true }
  /** Write nothing more; keep the socket open until the peer closes it. */
  | { hold: true }
  /** `bytes` of 16 KiB text_delta events, each written only once the previous write drained. */
  | { bulk: number };

export type ToChild = { op: "script"; steps: Step[] } | { op: "go"; n: number } | { op: "stats"; n: number };

export type FromChild =
  | { ev: "listening"; port: number }
  | { ev: "queued"; n: number }
  | { ev: "request"; n: number; url: string; headers: Record<string, string>; body: string }
  | { ev: "waiting"; n: number; label: string }
  | { ev: "done"; n: number }
  | { ev: "closed"; n: number; early: boolean }
  | { ev: "stats"; n: number; written: number; blocked: boolean; finished: boolean }
  | { ev: "unscripted"; method: string; url: string };

/** The event a bulk step repeats (16 KiB of text each). */
export const BULK_DELTA = `event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"${"x".repeat(16 * 1024)}"}}\n\n`;

/** A reply's state: what it wrote, whether it waits for drain, whether its script finished. */
interface Reply {
  n: number;
  steps: Step[];
  written: number;
  blocked: boolean;
  finished: boolean;
  go: number;
  wake: (() => void) | null;
}

/** Each string as one HTTP/1.1 chunk. */
export function httpChunks(parts: string[]): string {
  let out = "";
  for (const p of parts) out += `${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`;
  return out;
}
const chunked = (parts: string[]): Buffer => Buffer.from(httpChunks(parts), "utf8");

function main(send: (m: FromChild) => void): void {
  const queue: Step[][] = [];
  const replies = new Map<number, Reply>();
  let seq = 0;

  const write = (sock: Socket, r: Reply, b: Buffer): Promise<void> => {
    r.written += b.length;
    if (sock.write(b)) return Promise.resolve();
    r.blocked = true;
    return new Promise((resolve) =>
      sock.once("drain", () => {
        r.blocked = false;
        resolve();
      }),
    );
  };

  async function play(sock: Socket, r: Reply): Promise<void> {
    for (const s of r.steps) {
      if (sock.destroyed) return;
      if ("head" in s) {
        let h = "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nconnection: close\r\n";
        for (const [k, v] of Object.entries(s.head)) h += `${k}: ${v}\r\n`;
        await write(sock, r, Buffer.from(`${h}\r\n`));
      } else if ("chunks" in s) {
        const b = chunked(s.chunks);
        if (s.end !== true) await write(sock, r, b);
        else {
          r.written += b.length;
          sock.end(Buffer.concat([b, Buffer.from("0\r\n\r\n")]));
        }
      } else if ("raw" in s) await write(sock, r, Buffer.from(s.raw, "utf8"));
      else if ("wait" in s) {
        send({ ev: "waiting", n: r.n, label: s.wait });
        if (r.go === 0) await new Promise<void>((resolve) => (r.wake = resolve));
        r.go--;
      } else if ("end" in s) {
        sock.end("0\r\n\r\n");
      } else if ("cut" in s) {
        r.finished = true; // closed by us, not by the peer
        sock.destroy();
        break;
      } else if ("hold" in s) {
        return;
      } else {
        const delta = chunked([BULK_DELTA]);
        for (let k = Math.ceil(s.bulk / BULK_DELTA.length); k > 0 && !sock.destroyed; k--) await write(sock, r, delta);
      }
    }
    r.finished = true;
    send({ ev: "done", n: r.n });
  }

  function answer(sock: Socket, method: string, url: string, headers: Record<string, string>, body: string): void {
    const steps = method === "POST" ? queue.shift() : undefined;
    if (steps === undefined) {
      send({ ev: "unscripted", method, url });
      sock.end("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}");
      return;
    }
    const r: Reply = { n: ++seq, steps, written: 0, blocked: false, finished: false, go: 0, wake: null };
    replies.set(r.n, r);
    send({ ev: "request", n: r.n, url, headers, body });
    sock.once("close", () => {
      send({ ev: "closed", n: r.n, early: !r.finished });
      r.wake?.(); // a reply waiting for "go" sees the socket gone and stops
    });
    play(sock, r).catch((e: Error) => process.stderr.write(`scripted-upstream: ${e.stack}\n`));
  }

  const server = createServer((sock) => {
    sock.setNoDelay(true);
    sock.on("error", () => {}); // a reset by the gateway is reported by "close"
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buf.subarray(0, end).toString("latin1").split("\r\n");
      const [method = "", url = ""] = lines[0]!.split(" ");
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(":");
        headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const len = Number(headers["content-length"] ?? 0);
      if (buf.length < end + 4 + len) return;
      sock.off("data", onData);
      answer(sock, method, url, headers, buf.subarray(end + 4, end + 4 + len).toString("utf8"));
    };
    sock.on("data", onData);
  });

  process.on("message", (m: ToChild) => {
    if (m.op === "script") {
      queue.push(m.steps);
      send({ ev: "queued", n: seq + queue.length });
    } else if (m.op === "go") {
      const r = replies.get(m.n);
      if (r === undefined) return;
      r.go++;
      const w = r.wake;
      r.wake = null;
      w?.();
    } else {
      const r = replies.get(m.n);
      send({ ev: "stats", n: m.n, written: r?.written ?? 0, blocked: r?.blocked ?? false, finished: r?.finished ?? false });
    }
  });
  process.on("disconnect", () => process.exit(0));
  server.listen(0, "127.0.0.1", () => {
    const a = server.address();
    send({ ev: "listening", port: typeof a === "object" && a !== null ? a.port : 0 });
  });
}

const send = process.send?.bind(process);
if (send !== undefined) main((m) => void send(m));
