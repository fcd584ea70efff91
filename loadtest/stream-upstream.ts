/**
 * A minimal SSE upstream for the streaming scenario: `POST …/v1/messages` answers with the
 * project's deterministic mock reply (core/mock-reply.ts `mockStreamFrames`) streamed as
 * `--events N` text_delta events, written as one corked burst per reply; `POST
 * …/chat/completions` answers OpenAI chunks the same way (loadtest/mock-openai.ts). Anything
 * else gets the JSON reply. It exists because the gateway does not forward `x-mock-events` and
 * loadtest/mock-upstream.ts has no CLI default for the event count.
 *
 *   node dist/loadtest/stream-upstream.js --events 50 [--port 0] [--interval MS] [--bulk-bytes N]
 *
 * With `--interval MS` each Anthropic stream is slow, like a model generating: one
 * text_delta every MS ms whose text is the upstream's send time (`t=<epoch ms>`, µs
 * precision from performance.timeOrigin), so the client can measure what a relay adds to
 * each event (loadtest/streams.ts).
 *
 * A stream whose model contains "bulk" (the slow-reader scenario) is fat instead: `--bulk-bytes`
 * (default 16 MiB) of 16 KiB text_delta events, as fast as the reader takes them. It honours
 * backpressure (writes stop when uWS reports it and resume on writable) and counts the bytes
 * it has written: while the client reads nothing, that count stops at what the sockets and
 * any relay in between hold. `GET /stats` answers the counts.
 *
 * Prints `{"port":N}` once listening; exits on SIGTERM.
 */
import uWS from "uWebSockets.js";
import { mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { parseFlags } from "../bench/format.js";
import { mockChatFrames, mockChatJson } from "./mock-openai.js";
import { BULK_DELTA, streamEndFrames, streamHeadFrames, timedDeltaFrame } from "./stream-frames.js";

const flags = parseFlags(process.argv.slice(2));
const events = Number(flags.get("events") ?? 50);
const interval = Number(flags.get("interval") ?? 0);
const bulkBytes = Number(flags.get("bulk-bytes") ?? 16 * 1024 * 1024);
let seq = 0;
/** Fat streams: started, sent in full, cut; bytes handed to uWS so far (all of them). */
const bulk = { started: 0, completed: 0, aborted: 0, sent_bytes: 0 };

/** A slow stream: message_start now, then one timestamped delta per `interval` ms, then the end. */
function slowStream(res: uWS.HttpResponse, id: string, model: string, isAborted: () => boolean): void {
  res.cork(() => streamHead(res, id, model));
  const t0 = performance.now();
  let k = 0;
  const tick = (): void => {
    if (isAborted()) return;
    k++;
    const last = k >= events;
    res.cork(() => {
      res.write(timedDeltaFrame());
      if (last) res.end(streamEndFrames(events));
    });
    // Scheduled from the stream's start, so timer lateness does not accumulate.
    if (!last) setTimeout(tick, Math.max(0, t0 + (k + 1) * interval - performance.now()));
  };
  setTimeout(tick, interval);
}

/** Status, headers, message_start and content_block_start of a streamed reply. */
function streamHead(res: uWS.HttpResponse, id: string, model: string): void {
  res.writeStatus("200 OK").writeHeader("content-type", "text/event-stream; charset=utf-8").writeHeader("cache-control", "no-cache");
  res.write(streamHeadFrames(id, model));
}

/** A fat stream written as fast as the reader takes it, never faster (see the header). */
function bulkStream(res: uWS.HttpResponse, id: string, model: string, isAborted: () => boolean): void {
  bulk.started++;
  const count = Math.max(1, Math.ceil(bulkBytes / BULK_DELTA.length));
  let k = 0;
  // Returns false while the reader holds us back; uWS calls it again once writable.
  const pump = (): boolean => {
    if (isAborted()) return true;
    while (k < count) {
      k++;
      bulk.sent_bytes += BULK_DELTA.length; // uWS keeps what it could not send yet
      if (!res.write(BULK_DELTA)) return false;
    }
    res.end(streamEndFrames(count));
    bulk.completed++;
    return true;
  };
  res.cork(() => {
    streamHead(res, id, model);
    if (!pump()) res.onWritable(() => pump());
  });
}

const app = uWS.App();
app.get("/stats", (res) => {
  res.writeHeader("content-type", "application/json").end(JSON.stringify({ bulk }));
});
app.post("/*", (res, httpReq) => {
  const openai = httpReq.getUrl().endsWith("/chat/completions");
  let aborted = false;
  res.onAborted(() => {
    aborted = true;
    if (bulkReq) bulk.aborted++;
  });
  let bulkReq = false;
  const parts: Buffer[] = [];
  res.onData((ab, isLast) => {
    parts.push(Buffer.from(new Uint8Array(ab).slice()));
    if (!isLast || aborted) return;
    let req: MockRequest;
    try {
      req = JSON.parse(Buffer.concat(parts).toString("utf8")) as MockRequest;
    } catch {
      res.cork(() => res.writeStatus("400 Bad Request").end());
      return;
    }
    const id = `msg_stream_${++seq}`;
    const oreq = req as unknown as Record<string, unknown>;
    if (req.stream === true && !openai && String(oreq.model).includes("bulk")) {
      bulkReq = true;
      return bulkStream(res, id, String(oreq.model), () => aborted);
    }
    if (interval > 0 && req.stream === true && !openai) return slowStream(res, id, String(oreq.model), () => aborted);
    if (req.stream !== true) {
      res.cork(() => res.writeHeader("content-type", "application/json").end(openai ? mockChatJson(oreq, id) : mockMessageJson(req, id)));
      return;
    }
    const frames = openai ? mockChatFrames(oreq, id, events) : mockStreamFrames(req, id, events);
    res.cork(() => {
      res.writeStatus("200 OK").writeHeader("content-type", "text/event-stream; charset=utf-8").writeHeader("cache-control", "no-cache");
      for (const f of frames) res.write(f);
      res.end();
    });
  });
});
app.listen("127.0.0.1", Number(flags.get("port") ?? 0), (token) => {
  if (!token) {
    process.stderr.write("stream-upstream: listen failed\n");
    process.exit(1);
  }
  process.stdout.write(JSON.stringify({ port: uWS.us_socket_local_port(token) }) + "\n");
  const stop = (): void => {
    uWS.us_listen_socket_close(token);
    process.exit(0);
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
});
