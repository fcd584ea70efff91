/**
 * Mock Anthropic upstream (uWebSockets.js), for integration tests and load tests.
 *
 *   node dist/loadtest/mock-upstream.js [--host 127.0.0.1] [--port 0] [--record] [--fault SPEC]
 *
 * Prints exactly one line `{"port":N}` on stdout once listening. Exits 0 on
 * SIGTERM / SIGINT.
 *
 * API routes are matched by path suffix, so any provider base path works
 * (`/v1/messages`, `/anthropic/v1/messages`, `/serving-endpoints/anthropic/v1/messages`...):
 *   POST  …/v1/messages                 JSON or SSE (`"stream": true`)
 *   POST  …/v1/messages/count_tokens    {"input_tokens":N}
 *   GET   …/v1/models, …/v1/models/{id}
 *   POST  …/chat/completions               OpenAI Chat Completions, JSON or SSE (loadtest/mock-openai.ts),
 *                                          with the same faults and recording; errors in OpenAI's shape
 *
 * Control routes:
 *   POST   /__mock/record    {"on":true|false}
 *   GET    /__mock/requests  last 200 recorded requests [{method,url,headers,body}]
 *   DELETE /__mock/requests
 *   POST   /__mock/faults    {"faults":[spec,...]}  (each consumed by one POST …/v1/messages)
 *   DELETE /__mock/faults
 *   POST   /__mock/key-faults {"keys":{"<key>":spec,...}}  every request with that key (x-api-key, api-key or
 *                           a bearer) gets the fault, e.g. {"k-busy":"status:429;retry-after:2"}; replaces the table
 *   DELETE /__mock/key-faults
 *   GET    /__mock/stats     {"requests":N,"active":M}  API calls (model-list GETs, which gateways fetch in
 *                           the background, are not counted)
 *
 * Fault specs (header `x-mock-fault: <spec>`, else the queue, else `--fault SPEC` for every
 * request, e.g. a deployment that is always slow; parts may be combined with `;`, e.g.
 * `delay:50;status:500`):
 *   status:<code>[;retry-after:<s>]  error reply with an Anthropic error body
 *   reset                            close the connection without a response
 *   hang                             never respond
 *   delay:<ms>                       wait before responding
 *   slow-stream:<ms>                 wait between SSE frames
 *   cut-stream:<n>                   write n SSE frames, then close the connection
 *   stream-error:<n>                 write n SSE frames, then an `event: error` frame (overloaded_error) and end
 *   encoding:<gzip|br|deflate>       compress the reply (JSON or SSE) and say so in content-encoding
 *   body:html                        reply text/html (with status:<code>, an error page) echoing the request's x-api-key
 *   body:no-usage                    a JSON reply (or SSE stream) without any usage field
 *   huge-event:<bytes>               SSE: after message_start, one data line of that many bytes with no blank line, then end
 *   aws-exception:<name>             Bedrock mode: an event-stream exception frame first (or after stream-error:<n> events)
 * Header `x-mock-events: <n>` sets the number of text_delta events per text block.
 *
 * Bedrock mode (loadtest/mock-bedrock.ts): `POST /model/{id}/invoke|invoke-with-response-stream|count-tokens`,
 * SigV4 verified on every request; `--aws-credentials AKID:SECRET[:TOKEN]`, `--bedrock-api-key KEY`,
 * `GET /__aws/credentials` issues credentials living `--aws-credentials-ttl S` seconds.
 * Vertex mode (loadtest/mock-vertex.ts): `POST /v1/projects/…/publishers/anthropic/models/{m}:rawPredict|:streamRawPredict`,
 * bearer checked; `POST /token` (JWT-bearer grant, `--vertex-public-key PEM`), tokens living
 * `--vertex-token-ttl S` seconds; the metadata server under `/computeMetadata/v1/`.
 */
import uWS from "uWebSockets.js";
import { brotliCompressSync, deflateSync, gzipSync } from "node:zlib";
import {
  DEFAULT_TEXT_EVENTS,
  MAX_TEXT_EVENTS,
  mockCountTokens,
  mockErrorJson,
  mockMessageJson,
  mockModelJson,
  mockModelsJson,
  mockStreamFrames,
  type MockRequest,
} from "../core/mock-reply.js";
import { mockChatFrames, mockChatJson, mockOpenAIErrorJson } from "./mock-openai.js";
import { handleBedrock, isBedrockPath, issueCredentials, type BedrockMockOptions, type MockIO } from "./mock-bedrock.js";
import { handleMetadata, handleToken, handleVertex, isVertexPath, loadPublicKey, type VertexMockOptions } from "./mock-vertex.js";

// ---------------------------------------------------------------- CLI

interface Options {
  host: string;
  port: number;
  record: boolean;
  /** Applied to every messages request that brings no fault of its own ("" = none). */
  fault: string;
  bedrock: BedrockMockOptions;
  vertex: VertexMockOptions;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    host: "127.0.0.1",
    port: 0,
    record: false,
    fault: "",
    bedrock: { staticKey: null, apiKey: null, issuedTtlS: 3600 },
    vertex: { publicKey: null, tokenTtlS: 3600 },
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf("=");
    const name = eq >= 0 ? a.slice(0, eq) : a;
    const inline = eq >= 0 ? a.slice(eq + 1) : undefined;
    const value = (): string => {
      if (inline !== undefined) return inline;
      const v = argv[++i];
      if (v === undefined) throw new Error(`missing value for ${name}`);
      return v;
    };
    switch (name) {
      case "--host":
        o.host = value();
        break;
      case "--port": {
        const p = Number(value());
        if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`bad --port`);
        o.port = p;
        break;
      }
      case "--record":
        o.record = true;
        break;
      case "--fault":
        o.fault = value();
        parseFault(o.fault); // a typo stops the start
        break;
      case "--aws-credentials": {
        const [id, secret, token] = value().split(":");
        if (!id || !secret) throw new Error("bad --aws-credentials (AKID:SECRET[:TOKEN])");
        o.bedrock.staticKey = { id, secret, token };
        break;
      }
      case "--bedrock-api-key":
        o.bedrock.apiKey = value();
        break;
      case "--aws-credentials-ttl":
        o.bedrock.issuedTtlS = Number(value());
        if (!(o.bedrock.issuedTtlS >= 1)) throw new Error("bad --aws-credentials-ttl");
        break;
      case "--vertex-public-key":
        o.vertex.publicKey = loadPublicKey(value());
        break;
      case "--vertex-token-ttl":
        o.vertex.tokenTtlS = Number(value());
        if (!(o.vertex.tokenTtlS >= 1)) throw new Error("bad --vertex-token-ttl");
        break;
      default:
        throw new Error(`unknown argument: ${a}`);
    }
  }
  return o;
}

// ---------------------------------------------------------------- state

interface Recorded {
  /** Date.now() when the request arrived. */
  at: number;
  method: string;
  url: string;
  headers: Record<string, string>;
  body: string;
}

const RECORD_LIMIT = 200;
let recording = false;
let recorded: Recorded[] = [];
let faultQueue: string[] = [];
/** Per upstream key, a fault spec every request with that key gets (a key that is rate-limited, revoked...). */
let keyFaults = new Map<string, string>();
let totalRequests = 0;
let activeRequests = 0;
let seq = 0;
let opts: Options;

const STATUS_TEXT: Record<number, string> = {
  200: "200 OK",
  400: "400 Bad Request",
  401: "401 Unauthorized",
  402: "402 Payment Required",
  403: "403 Forbidden",
  404: "404 Not Found",
  405: "405 Method Not Allowed",
  408: "408 Request Timeout",
  413: "413 Payload Too Large",
  429: "429 Too Many Requests",
  500: "500 Internal Server Error",
  502: "502 Bad Gateway",
  503: "503 Service Unavailable",
  504: "504 Gateway Timeout",
  529: "529 Overloaded",
};

function statusLine(code: number): string {
  return STATUS_TEXT[code] ?? `${code} Mock`;
}

// ---------------------------------------------------------------- faults

interface Fault {
  status?: number;
  retryAfter?: string;
  reset?: boolean;
  hang?: boolean;
  delayMs?: number;
  slowStreamMs?: number;
  cutStream?: number;
  streamError?: number;
  encoding?: "gzip" | "br" | "deflate";
  body?: "html" | "no-usage";
  hugeEvent?: number;
  awsException?: string;
}

function nonNegInt(v: string, spec: string): number {
  const n = Number(v);
  if (v === "" || !Number.isInteger(n) || n < 0) throw new Error(`bad mock fault spec: ${spec}`);
  return n;
}

/** Parses a fault spec; throws on anything unknown (so typos are loud). */
function parseFault(spec: string): Fault {
  const f: Fault = {};
  for (const raw of spec.split(";")) {
    const part = raw.trim();
    if (part === "") continue;
    const c = part.indexOf(":");
    const key = (c >= 0 ? part.slice(0, c) : part).trim().toLowerCase();
    const val = c >= 0 ? part.slice(c + 1).trim() : "";
    switch (key) {
      case "status": {
        const s = nonNegInt(val, spec);
        if (s < 100 || s > 999) throw new Error(`bad mock fault spec: ${spec}`);
        f.status = s;
        break;
      }
      case "retry-after":
        if (val === "") throw new Error(`bad mock fault spec: ${spec}`);
        f.retryAfter = val;
        break;
      case "reset":
        f.reset = true;
        break;
      case "hang":
        f.hang = true;
        break;
      case "delay":
        f.delayMs = nonNegInt(val, spec);
        break;
      case "slow-stream":
        f.slowStreamMs = nonNegInt(val, spec);
        break;
      case "cut-stream":
        f.cutStream = nonNegInt(val, spec);
        break;
      case "stream-error":
        f.streamError = nonNegInt(val, spec);
        break;
      case "encoding":
        if (val !== "gzip" && val !== "br" && val !== "deflate") throw new Error(`bad mock fault spec: ${spec}`);
        f.encoding = val;
        break;
      case "body":
        if (val !== "html" && val !== "no-usage") throw new Error(`bad mock fault spec: ${spec}`);
        f.body = val;
        break;
      case "huge-event":
        f.hugeEvent = nonNegInt(val, spec);
        break;
      case "aws-exception":
        if (!/^[a-zA-Z]+$/.test(val)) throw new Error(`bad mock fault spec: ${spec}`);
        f.awsException = val;
        break;
      default:
        throw new Error(`bad mock fault spec: ${spec}`);
    }
  }
  return f;
}

// ---------------------------------------------------------------- per-request state

interface Ctx {
  res: uWS.HttpResponse;
  aborted: boolean;
  /** counted in `active` until finished or aborted */
  tracked: boolean;
  /** status line written (a 500 can no longer be sent) */
  started: boolean;
  timer: NodeJS.Timeout | undefined;
  /** The request's x-api-key (echoed by the `body:html` fault, as a careless proxy would). */
  apiKey: string;
  /** An OpenAI Chat Completions request: replies and errors in OpenAI's shape. */
  openai: boolean;
}

function newCtx(res: uWS.HttpResponse, tracked: boolean): Ctx {
  const ctx: Ctx = { res, aborted: false, tracked, started: false, timer: undefined, apiKey: "", openai: false };
  if (tracked) {
    totalRequests++;
    activeRequests++;
  }
  res.onAborted(() => {
    ctx.aborted = true;
    if (ctx.timer !== undefined) clearTimeout(ctx.timer);
    ctx.timer = undefined;
    finish(ctx);
  });
  return ctx;
}

function finish(ctx: Ctx): void {
  if (ctx.tracked) {
    ctx.tracked = false;
    activeRequests--;
  }
}

function sendJson(ctx: Ctx, status: number, body: string, extra?: Array<[string, string]>): void {
  if (ctx.aborted || ctx.started) return;
  ctx.started = true;
  const res = ctx.res;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    res.writeHeader("content-type", "application/json");
    res.writeHeader("request-id", `req_mock_${++seq}`);
    if (extra) for (const [k, v] of extra) res.writeHeader(k, v);
    res.end(body);
  });
  finish(ctx);
}

function sendError(ctx: Ctx, status: number, message: string, extra?: Array<[string, string]>): void {
  sendJson(ctx, status, ctx.openai ? mockOpenAIErrorJson(status, message) : mockErrorJson(status, message), extra);
}

/** Reads the whole body; onAborted must already be registered (newCtx). */
function readBody(ctx: Ctx, cb: (body: Buffer) => void): void {
  let chunks: Buffer[] | undefined;
  ctx.res.onData((chunk, isLast) => {
    try {
      if (isLast) {
        let body: Buffer;
        if (chunks === undefined)
          body = Buffer.from(new Uint8Array(chunk)); // copy: chunk is neutered after return
        else {
          chunks.push(Buffer.from(new Uint8Array(chunk)));
          body = Buffer.concat(chunks);
        }
        chunks = undefined;
        cb(body);
      } else {
        (chunks ??= []).push(Buffer.from(new Uint8Array(chunk)));
      }
    } catch (err) {
      internalError(ctx, err);
    }
  });
}

function internalError(ctx: Ctx, err: unknown): void {
  try {
    process.stderr.write(`mock-upstream: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    if (ctx.aborted) return;
    if (ctx.started) ctx.res.close();
    else sendError(ctx, 500, "mock internal error");
  } catch {
    // response probably already ended; nothing more to do
  }
}

function parseJsonBody(ctx: Ctx, body: Buffer): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    sendError(ctx, 400, "invalid JSON body");
    return undefined;
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    sendError(ctx, 400, "body must be a JSON object");
    return undefined;
  }
  return v as Record<string, unknown>;
}

// ---------------------------------------------------------------- /v1/messages

function handleMessages(ctx: Ctx, body: Buffer, faultSpec: string, eventsHeader: string): void {
  const json = parseJsonBody(ctx, body);
  if (json === undefined) return;
  if (!Array.isArray(json.messages) || typeof json.model !== "string") {
    sendError(ctx, 400, "model (string) and messages (array) are required");
    return;
  }
  const req = json as unknown as MockRequest;

  let fault: Fault | undefined;
  if (faultSpec === "" && faultQueue.length > 0) faultSpec = faultQueue.shift()!;
  if (faultSpec === "") faultSpec = opts.fault;
  if (faultSpec !== "") {
    try {
      fault = parseFault(faultSpec);
    } catch (err) {
      sendError(ctx, 400, (err as Error).message);
      return;
    }
  }

  let events = DEFAULT_TEXT_EVENTS;
  if (eventsHeader !== "") {
    const n = Number(eventsHeader);
    if (Number.isInteger(n) && n >= 1) events = Math.min(n, MAX_TEXT_EVENTS);
  }

  if (fault === undefined) {
    respondMessages(ctx, req, json.stream === true, events, undefined);
    return;
  }
  if (fault.delayMs !== undefined && fault.delayMs > 0) {
    const f = fault;
    ctx.timer = setTimeout(() => {
      ctx.timer = undefined;
      try {
        applyFault(ctx, req, json.stream === true, events, f);
      } catch (err) {
        internalError(ctx, err);
      }
    }, fault.delayMs);
    return;
  }
  applyFault(ctx, req, json.stream === true, events, fault);
}

function applyFault(ctx: Ctx, req: MockRequest, stream: boolean, events: number, fault: Fault): void {
  if (ctx.aborted) return;
  if (fault.hang) return; // onAborted stays registered; `active` stays counted
  if (fault.reset) {
    ctx.res.close(); // onAborted runs → finish()
    return;
  }
  if (fault.body === "html") {
    sendHtml(ctx, fault.status ?? 200);
    return;
  }
  if (fault.status !== undefined && fault.status !== 200) {
    const extra: Array<[string, string]> = [];
    if (fault.retryAfter !== undefined) extra.push(["retry-after", fault.retryAfter]);
    if (fault.status === 529 || fault.status === 429) extra.push(["x-should-retry", "true"]);
    sendError(ctx, fault.status, "mock fault", extra);
    return;
  }
  respondMessages(ctx, req, stream, events, fault);
}

function respondMessages(ctx: Ctx, req: MockRequest, stream: boolean, events: number, fault: Fault | undefined): void {
  if (ctx.aborted) return;
  const id = ctx.openai ? `chatcmpl-mock_${++seq}` : `msg_mock_${++seq}`;
  if (!stream) {
    let body = ctx.openai ? mockChatJson(req as unknown as Record<string, unknown>, id) : mockMessageJson(req, id);
    if (fault?.body === "no-usage") body = withoutUsage(body);
    if (fault?.encoding !== undefined) {
      sendEncoded(ctx, "application/json", fault.encoding, body);
      return;
    }
    if (fault?.cutStream !== undefined) {
      // Non-streaming variant of cut-stream: headers + a truncated body, then close.
      const res = ctx.res;
      ctx.started = true;
      res.cork(() => {
        res.writeStatus("200 OK");
        res.writeHeader("content-type", "application/json");
        res.writeHeader("request-id", `req_mock_${seq}`);
        res.write(body.slice(0, Math.min(fault.cutStream!, body.length >> 1)));
      });
      setImmediate(() => {
        if (!ctx.aborted) ctx.res.close();
      });
      return;
    }
    sendJson(ctx, 200, body);
    return;
  }
  let frames = ctx.openai ? mockChatFrames(req as unknown as Record<string, unknown>, id, events) : mockStreamFrames(req, id, events);
  if (fault?.body === "no-usage") frames = frames.map(withoutUsage);
  if (fault?.hugeEvent !== undefined) frames = [frames[0]!, `event: content_block_delta\ndata: {"pad":"${"x".repeat(fault.hugeEvent)}"}`];
  if (fault?.encoding !== undefined) {
    sendEncoded(ctx, "text/event-stream; charset=utf-8", fault.encoding, frames.join(""));
    return;
  }
  streamFrames(ctx, frames, fault);
}

/** Drops every `"usage":{...}` object (flat in the mock's replies). */
function withoutUsage(s: string): string {
  return s.replace(/,?"usage":\{[^}]*\}/g, "");
}

function encode(encoding: "gzip" | "br" | "deflate", text: string): Buffer {
  const b = Buffer.from(text);
  return encoding === "gzip" ? gzipSync(b) : encoding === "br" ? brotliCompressSync(b) : deflateSync(b);
}

/** A whole reply compressed, written in two chunks so a decoder sees it arrive in parts. */
function sendEncoded(ctx: Ctx, contentType: string, encoding: "gzip" | "br" | "deflate", text: string): void {
  if (ctx.aborted || ctx.started) return;
  ctx.started = true;
  const z = encode(encoding, text);
  const half = z.length >> 1;
  const res = ctx.res;
  res.cork(() => {
    res.writeStatus("200 OK");
    res.writeHeader("content-type", contentType);
    res.writeHeader("content-encoding", encoding);
    res.writeHeader("request-id", `req_mock_${seq}`);
    res.write(z.subarray(0, half));
  });
  setImmediate(() => {
    if (ctx.aborted) return;
    res.cork(() => res.end(z.subarray(half)));
    finish(ctx);
  });
}

/** An HTML page (a proxy's error page, say) that echoes the caller's key. */
function sendHtml(ctx: Ctx, status: number): void {
  if (ctx.aborted || ctx.started) return;
  ctx.started = true;
  const res = ctx.res;
  res.cork(() => {
    res.writeStatus(statusLine(status));
    res.writeHeader("content-type", "text/html; charset=utf-8");
    res.end(`<html><body><h1>${status}</h1><p>request with key ${ctx.apiKey} refused</p></body></html>`);
  });
  finish(ctx);
}

const STREAM_ERROR_FRAME = `event: error\ndata: ${mockErrorJson(529, "mock stream fault")}\n\n`;
const OPENAI_STREAM_ERROR_FRAME = `data: ${mockOpenAIErrorJson(500, "mock stream fault")}\n\n`;

function streamFrames(
  ctx: Ctx,
  frames: Array<string | Buffer>,
  fault: Fault | undefined,
  contentType = "text/event-stream; charset=utf-8",
): void {
  const res = ctx.res;
  let limit = frames.length;
  let cut = false;
  let errorAt = -1;
  if (fault?.cutStream !== undefined && fault.cutStream < limit) {
    limit = fault.cutStream;
    cut = true;
  }
  if (fault?.streamError !== undefined && fault.streamError < limit) {
    limit = fault.streamError;
    cut = false;
    errorAt = limit;
  }
  const slowMs = fault?.slowStreamMs ?? 0;
  let i = 0;
  let headersSent = false;
  let blocked = false; // waiting for onWritable
  let ended = false;

  const end = (): void => {
    ended = true;
    if (cut) {
      // Let uWS flush what was written, then drop the connection.
      setImmediate(() => {
        if (!ctx.aborted) ctx.res.close();
      });
    } else {
      if (errorAt >= 0) res.write(ctx.openai ? OPENAI_STREAM_ERROR_FRAME : STREAM_ERROR_FRAME);
      res.end();
      finish(ctx);
    }
  };

  // Writes frames until done, backpressure, or (slow mode) one frame.
  const pump = (): void => {
    if (ctx.aborted || ended) return;
    res.cork(() => {
      if (!headersSent) {
        headersSent = true;
        ctx.started = true;
        res.writeStatus("200 OK");
        res.writeHeader("content-type", contentType);
        res.writeHeader("cache-control", "no-cache");
        res.writeHeader("request-id", `req_mock_${seq}`);
      }
      while (i < limit) {
        if (!res.write(frames[i++]!)) {
          blocked = true;
          return;
        }
        if (slowMs > 0) break;
      }
      if (i >= limit && !blocked) end();
    });
    if (!ended && slowMs > 0 && !blocked && !ctx.aborted) schedule();
  };

  const schedule = (): void => {
    ctx.timer = setTimeout(() => {
      ctx.timer = undefined;
      try {
        if (i >= limit) {
          if (!ctx.aborted && !ended) res.cork(end);
        } else pump();
      } catch (err) {
        internalError(ctx, err);
      }
    }, slowMs);
  };

  res.onWritable(() => {
    try {
      if (!blocked) return true;
      blocked = false;
      if (slowMs > 0) {
        if (!ended) schedule();
      } else pump();
    } catch (err) {
      internalError(ctx, err);
    }
    return true;
  });

  pump();
}

// ---------------------------------------------------------------- Bedrock and Vertex modes

function ioFor(ctx: Ctx, fault: Fault | undefined): MockIO {
  return {
    json: (status, body, extra) => sendJson(ctx, status, body, extra),
    stream: (frames, contentType) => streamFrames(ctx, frames, fault, contentType),
  };
}

function cloudRequest(
  ctx: Ctx,
  path: string,
  headers: Record<string, string>,
  body: Buffer,
  faultSpec: string,
  eventsHeader: string,
): void {
  let fault: Fault | undefined;
  if (faultSpec === "" && faultQueue.length > 0) faultSpec = faultQueue.shift()!;
  if (faultSpec === "") faultSpec = opts.fault;
  try {
    if (faultSpec !== "") fault = parseFault(faultSpec);
  } catch (err) {
    sendError(ctx, 400, (err as Error).message);
    return;
  }
  const n = Number(eventsHeader);
  const events = eventsHeader !== "" && Number.isInteger(n) && n >= 1 ? Math.min(n, MAX_TEXT_EVENTS) : DEFAULT_TEXT_EVENTS;
  const id = `msg_mock_${++seq}`;
  // The modes build their own error frames; only pacing and cut faults apply to the writer.
  const io = ioFor(ctx, fault === undefined ? undefined : { slowStreamMs: fault.slowStreamMs, cutStream: fault.cutStream });
  const run = (): void => {
    if (ctx.aborted || fault?.hang) return;
    if (fault?.reset) return void ctx.res.close();
    if (isVertexPath(path)) return handleVertex(opts.vertex, io, path, headers, body, fault?.status, events, id);
    handleBedrock(opts.bedrock, io, path, headers, body, fault, events, id).catch((err) => internalError(ctx, err));
  };
  if (fault?.delayMs !== undefined && fault.delayMs > 0) ctx.timer = setTimeout(run, fault.delayMs);
  else run();
}

// ---------------------------------------------------------------- router

function endsWith(path: string, suffix: string): boolean {
  return path.endsWith(suffix) || path.endsWith(`${suffix}/`);
}

function recordStart(req: uWS.HttpRequest, method: string, path: string, query: string): Recorded {
  const headers: Record<string, string> = {};
  req.forEach((k, v) => {
    headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
  });
  const entry: Recorded = {
    at: Date.now(),
    method: method.toUpperCase(),
    url: query === "" ? path : `${path}?${query}`,
    headers,
    body: "",
  };
  recorded.push(entry);
  if (recorded.length > RECORD_LIMIT) recorded.splice(0, recorded.length - RECORD_LIMIT);
  return entry;
}

/** The fault the request's key has in the key-fault table, or "". */
function keyFault(req: uWS.HttpRequest): string {
  if (keyFaults.size === 0) return "";
  const bearer = req.getHeader("authorization");
  const key = req.getHeader("x-api-key") || req.getHeader("api-key") || (bearer.startsWith("Bearer ") ? bearer.slice(7) : "");
  return keyFaults.get(key) ?? "";
}

function handleControl(ctx: Ctx, method: string, path: string): void {
  switch (`${method} ${path}`) {
    case "get /__mock/stats":
      sendJson(ctx, 200, `{"requests":${totalRequests},"active":${activeRequests}}`);
      return;
    case "get /__mock/requests":
      sendJson(ctx, 200, JSON.stringify(recorded));
      return;
    case "delete /__mock/requests":
      recorded = [];
      sendJson(ctx, 200, `{"ok":true}`);
      return;
    case "delete /__mock/faults":
      faultQueue = [];
      sendJson(ctx, 200, `{"ok":true}`);
      return;
    case "delete /__mock/key-faults":
      keyFaults = new Map();
      sendJson(ctx, 200, `{"ok":true}`);
      return;
    case "post /__mock/key-faults":
      readBody(ctx, (body) => {
        const json = parseJsonBody(ctx, body);
        if (json === undefined) return;
        const keys = json.keys as Record<string, unknown> | undefined;
        const table = new Map<string, string>();
        for (const [k, f] of Object.entries(typeof keys === "object" && keys !== null ? keys : {})) {
          try {
            if (typeof f !== "string") throw new Error("a key's fault must be a spec string");
            parseFault(f);
          } catch (err) {
            sendError(ctx, 400, (err as Error).message);
            return;
          }
          table.set(k, f);
        }
        keyFaults = table;
        sendJson(ctx, 200, `{"keys":${table.size}}`);
      });
      return;
    case "post /__mock/record":
      readBody(ctx, (body) => {
        const json = parseJsonBody(ctx, body);
        if (json === undefined) return;
        recording = json.on === true;
        sendJson(ctx, 200, `{"recording":${recording}}`);
      });
      return;
    case "post /__mock/faults":
      readBody(ctx, (body) => {
        const json = parseJsonBody(ctx, body);
        if (json === undefined) return;
        const faults = json.faults;
        if (!Array.isArray(faults) || !faults.every((f) => typeof f === "string")) {
          sendError(ctx, 400, "faults must be an array of strings");
          return;
        }
        for (const f of faults as string[]) {
          try {
            parseFault(f);
          } catch (err) {
            sendError(ctx, 400, (err as Error).message);
            return;
          }
        }
        faultQueue.push(...(faults as string[]));
        sendJson(ctx, 200, `{"queued":${faultQueue.length}}`);
      });
      return;
    default:
      sendError(ctx, 404, `no mock control route ${method.toUpperCase()} ${path}`);
  }
}

function route(res: uWS.HttpResponse, req: uWS.HttpRequest): void {
  const method = req.getMethod();
  const path = req.getUrl();

  if (path.startsWith("/__mock/")) {
    handleControl(newCtx(res, false), method, path);
    return;
  }

  // Everything below is read from `req` before any async work (req is stack-allocated).
  const faultSpec = req.getHeader("x-mock-fault") || keyFault(req);
  const eventsHeader = req.getHeader("x-mock-events");
  const entry = recording ? recordStart(req, method, path, req.getQuery() ?? "") : undefined;
  // Credential endpoints (recorded, not counted as API requests).
  if (method === "get" && path === "/__aws/credentials") {
    sendJson(newCtx(res, false), 200, issueCredentials(opts.bedrock));
    return;
  }
  if (method === "get" && path.startsWith("/computeMetadata/")) {
    handleMetadata(opts.vertex, ioFor(newCtx(res, false), undefined), path, req.getHeader("metadata-flavor"));
    return;
  }
  if (method === "post" && path === "/token") {
    const c = newCtx(res, false);
    readBody(c, (body) => handleToken(opts.vertex, ioFor(c, undefined), body));
    return;
  }
  const ctx = newCtx(res, !(method === "get" && path.startsWith("/v1/models")));
  ctx.apiKey = req.getHeader("x-api-key");

  if (method === "post" && (isBedrockPath(path) || isVertexPath(path))) {
    const headers: Record<string, string> = {};
    req.forEach((k, v) => (headers[k] = v));
    readBody(ctx, (body) => {
      if (entry) entry.body = body.toString("utf8");
      cloudRequest(ctx, path, headers, body, faultSpec, eventsHeader);
    });
    return;
  }
  if (method === "post") {
    if (endsWith(path, "/v1/messages") || endsWith(path, "/chat/completions")) {
      ctx.openai = !endsWith(path, "/v1/messages");
      readBody(ctx, (body) => {
        if (entry) entry.body = body.toString("utf8");
        handleMessages(ctx, body, faultSpec, eventsHeader);
      });
      return;
    }
    if (endsWith(path, "/v1/messages/count_tokens")) {
      readBody(ctx, (body) => {
        if (entry) entry.body = body.toString("utf8");
        if (faultSpec !== "") {
          let fault: Fault;
          try {
            fault = parseFault(faultSpec);
          } catch (err) {
            sendError(ctx, 400, (err as Error).message);
            return;
          }
          if (fault.hang) return;
          if (fault.reset) {
            ctx.res.close();
            return;
          }
          if (fault.status !== undefined && fault.status !== 200) {
            const extra: Array<[string, string]> = fault.retryAfter !== undefined ? [["retry-after", fault.retryAfter]] : [];
            sendError(ctx, fault.status, "mock fault", extra);
            return;
          }
        }
        const json = parseJsonBody(ctx, body);
        if (json === undefined) return;
        if (!Array.isArray(json.messages)) {
          sendError(ctx, 400, "messages (array) is required");
          return;
        }
        sendJson(ctx, 200, `{"input_tokens":${mockCountTokens(json as unknown as MockRequest)}}`);
      });
      return;
    }
  } else if (method === "get") {
    if (endsWith(path, "/v1/models")) {
      sendJson(ctx, 200, mockModelsJson());
      return;
    }
    const m = path.lastIndexOf("/v1/models/");
    if (m >= 0) {
      const id = decodeURIComponent(path.slice(m + "/v1/models/".length).replace(/\/$/, ""));
      if (id !== "" && !id.includes("/")) {
        sendJson(ctx, 200, mockModelJson(id));
        return;
      }
    }
  }
  // Drain any body so keep-alive stays usable, then 404.
  if (method === "post" || method === "put" || method === "patch") {
    readBody(ctx, () => sendError(ctx, 404, `no mock route ${method.toUpperCase()} ${path}`));
    return;
  }
  sendError(ctx, 404, `no mock route ${method.toUpperCase()} ${path}`);
}

// ---------------------------------------------------------------- main

function main(): void {
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`mock-upstream: ${(err as Error).message}\n`);
    process.exit(2);
  }
  recording = opts.record;

  const app = uWS.App();
  app.any("/*", (res, req) => {
    try {
      route(res, req);
    } catch (err) {
      // Never let an exception escape into uWS.
      try {
        process.stderr.write(`mock-upstream: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
        res.cork(() => {
          res
            .writeStatus("500 Internal Server Error")
            .writeHeader("content-type", "application/json")
            .end(mockErrorJson(500, "mock internal error"));
        });
      } catch {
        // already responded / aborted
      }
    }
  });

  app.listen(opts.host, opts.port, (token) => {
    if (!token) {
      process.stderr.write(`mock-upstream: failed to listen on ${opts.host}:${opts.port}\n`);
      process.exit(1);
    }
    const port = uWS.us_socket_local_port(token);
    process.stdout.write(`${JSON.stringify({ port })}\n`);

    const shutdown = (): void => {
      try {
        uWS.us_listen_socket_close(token);
      } catch {
        // ignore
      }
      process.exit(0);
    };
    process.once("SIGTERM", shutdown);
    process.once("SIGINT", shutdown);
  });
}

main();
