/**
 * The stream upstream over TLS with HTTP/2 (node:http2), for measuring and testing the
 * gateway's `UPSTREAM_HTTP2` (the other upstreams here are uWS HTTP/1.1). It answers the same
 * bytes as loadtest/stream-upstream.ts (core/mock-reply.ts, loadtest/stream-frames.ts) and also
 * takes HTTP/1.1 (ALPN `http/1.1`), so one server compares both protocols:
 *
 *   node dist/loadtest/stream-upstream-h2.js --cert FILE --key FILE [--port 0] [--events 50]
 *     [--interval MS] [--bulk-bytes N] [--max-streams N] [--http1-only]
 *
 * `POST …/v1/messages` by model name: `stream: false` gets the JSON reply; a model containing
 * `bulk` the fat stream (`--bulk-bytes`, written as fast as the reader takes it, honouring
 * HTTP/2 flow control); `status-NNN` that status with an Anthropic error body (`retry-after`
 * on 429); `reset` a stream reset before any header (h2 RST_STREAM, or the HTTP/1.1 socket
 * closed); `cut` the stream's first two events, then the reset; otherwise the stream, as a burst
 * of `--events` text deltas, or with `--interval MS` (or a model containing `slow`: 500 ms by
 * default) one timestamped delta per interval. Every reply's message id is `msg_stream_h2`.
 * `--max-streams` is the server's SETTINGS_MAX_CONCURRENT_STREAMS (default Node's);
 * `--http1-only` makes it a TLS server that offers HTTP/1.1 only.
 *
 * `GET /goaway` sends a graceful GOAWAY on every h2 connection (streams in flight finish).
 * `GET /stats` answers what the server saw: requests per protocol, h2 sessions opened, streams
 * open now and at most, streams the client closed before the end (`aborted`, with the h2 RST codes) and the
 * fat streams' byte count. Prints `{"port":N}` once listening; exits on SIGTERM.
 */
import { createSecureServer, type Http2ServerRequest, type Http2ServerResponse, type ServerHttp2Session } from "node:http2";
import { readFileSync } from "node:fs";
import type { RequestListener } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { constants } from "node:http2";
import { mockErrorJson, mockMessageJson, mockModelsJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { parseFlags } from "../bench/format.js";
import { BULK_DELTA, streamEndFrames, streamHeadFrames, timedDeltaFrame } from "./stream-frames.js";

const flags = parseFlags(process.argv.slice(2));
const events = Number(flags.get("events") ?? 50);
const interval = Number(flags.get("interval") ?? 0);
/** A model containing `slow` streams one event per this many ms whatever `--interval` says. */
const slowInterval = interval > 0 ? interval : 500;
const bulkBytes = Number(flags.get("bulk-bytes") ?? 16 * 1024 * 1024);
const maxStreams = flags.has("max-streams") ? Number(flags.get("max-streams")) : undefined;
const stats = {
  requests: { h1: 0, h2: 0 },
  sessions: 0,
  open: 0,
  /** The most streams open at once so far. */
  max_open: 0,
  aborted: 0,
  rst_codes: {} as Record<string, number>,
  bulk: { started: 0, completed: 0, sent_bytes: 0 },
};

const SSE_HEAD = { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" };

/** Ends the request's stream (h2) or connection (HTTP/1.1) without an answer. */
function reset(req: Http2ServerRequest): void {
  if (req.httpVersion === "2.0") req.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
  else req.socket.destroy();
}

function slowStream(res: Http2ServerResponse, id: string, model: string, gone: () => boolean): void {
  res.writeHead(200, SSE_HEAD);
  res.write(streamHeadFrames(id, model));
  const t0 = performance.now();
  let k = 0;
  const tick = (): void => {
    if (gone()) return;
    k++;
    if (k >= events) return void res.end(timedDeltaFrame() + streamEndFrames(events));
    res.write(timedDeltaFrame());
    // Scheduled from the stream's start, so timer lateness does not accumulate.
    setTimeout(tick, Math.max(0, t0 + (k + 1) * slowInterval - performance.now()));
  };
  setTimeout(tick, slowInterval);
}

/** A fat stream written as fast as the reader takes it, never faster. */
function bulkStream(res: Http2ServerResponse, id: string, model: string, gone: () => boolean): void {
  stats.bulk.started++;
  const count = Math.max(1, Math.ceil(bulkBytes / BULK_DELTA.length));
  let k = 0;
  const pump = (): void => {
    while (k < count) {
      if (gone()) return;
      k++;
      stats.bulk.sent_bytes += BULK_DELTA.length;
      if (!res.write(BULK_DELTA)) return void res.once("drain", pump);
    }
    res.end(streamEndFrames(count));
    stats.bulk.completed++;
  };
  res.writeHead(200, SSE_HEAD);
  res.write(streamHeadFrames(id, model));
  pump();
}

function answer(req: Http2ServerRequest, res: Http2ServerResponse, raw: Buffer, gone: () => boolean): void {
  let body: MockRequest;
  try {
    body = JSON.parse(raw.toString("utf8")) as MockRequest;
  } catch {
    return void res.writeHead(400).end();
  }
  const model = String(body.model);
  const id = "msg_stream_h2"; // the same for every request, so replies can be compared byte for byte
  const status = /status-(\d{3})/.exec(model);
  if (status !== null) {
    const code = Number(status[1]);
    res.writeHead(code, { "content-type": "application/json", ...(code === 429 ? { "retry-after": "3" } : {}) });
    return void res.end(mockErrorJson(code, `upstream answered ${code}`));
  }
  if (model.includes("reset")) return reset(req);
  if (body.stream !== true) {
    res.writeHead(200, { "content-type": "application/json" });
    return void res.end(mockMessageJson(body, id));
  }
  if (model.includes("cut")) {
    res.writeHead(200, SSE_HEAD);
    res.write(streamHeadFrames(id, model));
    // Reset once those bytes are on their way, so the client sees a stream that started.
    return void setTimeout(() => reset(req), 50);
  }
  if (model.includes("bulk")) return bulkStream(res, id, model, gone);
  if (interval > 0 || model.includes("slow")) return slowStream(res, id, model, gone);
  res.writeHead(200, SSE_HEAD);
  res.end(mockStreamFrames(body, id, events).join(""));
}

function onRequest(req: Http2ServerRequest, res: Http2ServerResponse): void {
  if (req.method === "GET" && req.url === "/goaway") {
    // Graceful GOAWAY on every h2 connection, as servers send before a restart: streams in flight finish, no new ones.
    for (const s of sessions) if (!s.closed) s.goaway(constants.NGHTTP2_NO_ERROR);
    return void res.writeHead(204).end();
  }
  if (req.method === "GET") {
    res.writeHead(200, { "content-type": "application/json" });
    return void res.end(req.url === "/stats" ? JSON.stringify(stats) : mockModelsJson());
  }
  stats.requests[req.httpVersion === "2.0" ? "h2" : "h1"]++;
  stats.open++;
  if (stats.open > stats.max_open) stats.max_open = stats.open;
  let closed = false;
  res.once("close", () => {
    closed = true;
    stats.open--;
    if (res.writableEnded) return; // answered in full; else the client reset or closed it first
    stats.aborted++;
    const code = req.httpVersion === "2.0" ? String(req.stream.rstCode) : "h1";
    stats.rst_codes[code] = (stats.rst_codes[code] ?? 0) + 1;
  });
  const parts: Buffer[] = [];
  req.on("data", (c: Buffer) => parts.push(c));
  req.once("end", () => answer(req, res, Buffer.concat(parts), () => closed));
}

const tls = { cert: readFileSync(flags.get("cert")!), key: readFileSync(flags.get("key")!) };
// `--http1-only`: a TLS origin that does not offer h2 (ALPN http/1.1), same replies; node:https's
// request and response have the members used here.
const server = flags.has("http1-only")
  ? createHttpsServer(tls, onRequest as unknown as RequestListener)
  : createSecureServer(
      { ...tls, allowHTTP1: true, ...(maxStreams === undefined ? {} : { settings: { maxConcurrentStreams: maxStreams } }) },
      onRequest,
    );
const sessions = new Set<ServerHttp2Session>();
server.on("session", (s: ServerHttp2Session) => {
  stats.sessions++;
  sessions.add(s);
  s.once("close", () => sessions.delete(s));
});
server.on("sessionError", () => {}); // a client that goes away mid-handshake is not this server's failure
server.listen(Number(flags.get("port") ?? 0), "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: (server.address() as { port: number }).port }) + "\n");
});
const stop = (): void => {
  server.close();
  process.exit(0);
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
