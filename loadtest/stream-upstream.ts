/**
 * A minimal SSE upstream for the streaming scenario: `POST …/v1/messages` answers with the
 * project's deterministic mock reply (core/mock-reply.ts `mockStreamFrames`) streamed as
 * `--events N` text_delta events, written as one corked burst per reply; `POST
 * …/chat/completions` answers OpenAI chunks the same way (loadtest/mock-openai.ts). Anything
 * else gets the JSON reply. It exists because the gateway does not forward `x-mock-events` and
 * loadtest/mock-upstream.ts has no CLI default for the event count.
 *
 *   node dist/loadtest/stream-upstream.js --events 50 [--port 0]
 *
 * Prints `{"port":N}` once listening; exits on SIGTERM.
 */
import uWS from "uWebSockets.js";
import { mockMessageJson, mockStreamFrames, type MockRequest } from "../core/mock-reply.js";
import { parseFlags } from "../bench/format.js";
import { mockChatFrames, mockChatJson } from "./mock-openai.js";

const flags = parseFlags(process.argv.slice(2));
const events = Number(flags.get("events") ?? 50);
let seq = 0;

const app = uWS.App();
app.post("/*", (res, httpReq) => {
  const openai = httpReq.getUrl().endsWith("/chat/completions");
  let aborted = false;
  res.onAborted(() => (aborted = true));
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
