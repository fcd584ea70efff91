/**
 * The ceiling for the load test: a bare uWebSockets.js + undici pass-through with no
 * features (no auth, validation, routing, metrics or logging). It reads the body, POSTs
 * it to the upstream on one keep-alive Pool with the same dispatch-handler API the
 * gateway uses, and relays status, content type and body (SSE chunk by chunk).
 *
 *   node dist/loadtest/ceiling.js --upstream http://127.0.0.1:N [--port 0] [--connections 128]
 *
 * Prints `{"port":N}` once listening; exits on SIGTERM.
 */
import uWS, { type HttpResponse } from "uWebSockets.js";
import { Pool, type Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import { parseFlags } from "../bench/format.js";

const flags = parseFlags(process.argv.slice(2));
const upstream = flags.get("upstream");
if (upstream === undefined) {
  process.stderr.write("ceiling: --upstream http://host:port is required\n");
  process.exit(2);
}
const pool = new Pool(upstream, { connections: Number(flags.get("connections") ?? 128), pipelining: 1, keepAliveTimeout: 30_000 });

class Relay implements Dispatcher.DispatchHandler {
  aborted = false;
  private status = "200 OK";
  private type = "application/json";
  private sse = false;
  private chunks: Buffer[] = [];
  private controller: Dispatcher.DispatchController | null = null;
  constructor(private readonly res: HttpResponse) {}
  abort(): void {
    this.aborted = true;
    this.controller?.abort(new Error("client aborted"));
  }
  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
  }
  onResponseStart(_c: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    this.status = statusCode === 200 ? "200 OK" : `${statusCode} Upstream`;
    const ct = headers["content-type"];
    if (typeof ct === "string") this.type = ct;
    this.sse = this.type.startsWith("text/event-stream");
    if (this.sse && !this.aborted) {
      const res = this.res;
      res.cork(() => res.writeStatus(this.status).writeHeader("content-type", this.type));
    }
  }
  onResponseData(_c: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.aborted) return;
    if (!this.sse) {
      this.chunks.push(chunk);
      return;
    }
    const res = this.res;
    res.cork(() => res.write(chunk));
  }
  onResponseEnd(): void {
    if (this.aborted) return;
    const res = this.res;
    if (this.sse) {
      res.cork(() => res.end());
      return;
    }
    const body = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    res.cork(() => res.writeStatus(this.status).writeHeader("content-type", this.type).end(body));
  }
  onResponseError(_c: Dispatcher.DispatchController, err: Error): void {
    if (this.aborted) return;
    const res = this.res;
    res.cork(() => res.writeStatus("502 Bad Gateway").end(String(err.message)));
  }
}

const app = uWS.App();
app.post("/*", (res, req) => {
  const path = req.getUrl();
  const relay = new Relay(res);
  res.onAborted(() => relay.abort());
  const parts: Buffer[] = [];
  res.onData((ab, isLast) => {
    parts.push(Buffer.from(new Uint8Array(ab).slice()));
    if (!isLast) return;
    const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    pool.dispatch({ path, method: "POST", headers: ["content-type", "application/json"], body }, relay);
  });
});
app.any("/*", (res) => {
  res.writeStatus("404 Not Found").end();
});
app.listen("127.0.0.1", Number(flags.get("port") ?? 0), (token) => {
  if (!token) {
    process.stderr.write("ceiling: listen failed\n");
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port: uWS.us_socket_local_port(token) }) + "\n");
  const stop = (): void => {
    uWS.us_listen_socket_close(token);
    void pool.close().finally(() => process.exit(0));
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
});
