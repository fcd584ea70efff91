/**
 * One request's bridge between the API the client speaks and the format of each target
 * it may reach. UpstreamCall (server/call.ts) asks `handles(provider)` per attempt and, if
 * so, hands the attempt over to `send`, which builds the upstream body, path and headers
 * for that target and relays the reply through the one upstream Relay (server/upstream.ts)
 * with the right codec (server/openai/codecs.ts). Made only when the
 * OpenAI format is involved: `/v1/chat/completions`, or `/v1/messages` with an
 * OpenAI-format target; every other request never sees this module.
 */
import { dispatchAttempt, type AttemptOwner, type Pools, type ReplyCodec } from "../upstream.js";
import type { RequestCtx } from "../context.js";
import { authHeadersFor, isOpenAIFormat, type ProviderRuntime } from "../../core/providers.js";
import type { Route, Target } from "../../core/routing.js";
import { spliceModel } from "../../core/json-splice.js";
import { estimateInputTokens } from "../../core/budget.js";
import { errorTypeForStatus } from "../../core/errors.js";
import { anthropicToOpenAIRequest, forTarget } from "../../core/translate/anthropic-to-openai-request.js";
import { isTranslateError, openAIToAnthropicRequest } from "../../core/translate/openai-to-anthropic-request.js";
import { openAIErrorJson, toOpenAIErrorBody } from "../../core/translate/openai-errors.js";
import { paramOf } from "../../core/translate/validate-openai.js";
import { mockMessageJson, mockStreamFrames, type MockRequest } from "../../core/mock-reply.js";
import { PassThroughCodec, ToAnthropicCodec, ToOpenAICodec } from "./codecs.js";

type Obj = Record<string, unknown>;

/** What a translated attempt needs from the call. */
export interface AttemptRelay {
  /** True once the request reached the upstream socket. */
  readonly sent: boolean;
  abort(err: Error): void;
  endStreamWithError(type: string, message: string, code: import("../../core/errors.js").ErrorCode): void;
}

const CHAT = 0,
  MESSAGES = 1;

export class Translation {
  private readonly kind: number;
  private readonly ctx: RequestCtx;
  private readonly pools: Pools;
  private readonly body: Buffer;
  private readonly parsed: Obj;
  private readonly model: string;
  private readonly userAgent: string;
  private readonly count: boolean;
  /** The request in the other format, translated once (its model set per target). */
  private readonly other: Obj | null;
  private readonly maxEventBytes: number;

  constructor(
    kind: number,
    ctx: RequestCtx,
    pools: Pools,
    body: Buffer,
    parsed: Obj,
    model: string,
    userAgent: string,
    count: boolean,
    other: Obj | null,
    maxEventBytes: number,
  ) {
    this.kind = kind;
    this.ctx = ctx;
    this.pools = pools;
    this.body = body;
    this.parsed = parsed;
    this.model = model;
    this.userAgent = userAgent;
    this.count = count;
    this.other = other;
    this.maxEventBytes = maxEventBytes;
  }

  handles(p: ProviderRuntime): boolean {
    return this.kind === CHAT || isOpenAIFormat(p.type);
  }

  /**
   * Start one attempt at `t`; null when the answer was given without an upstream call.
   * `passKey`: what a pass-through provider gets (server/call.ts: never the gateway's own key);
   * `keyAuth`: the auth headers of the attempt's pool key (core/keypool.ts), null for the provider's own.
   */
  send(t: Target, owner: AttemptOwner, passKey: string, keyAuth: readonly string[] | null = null): AttemptRelay | null {
    const p = t.provider,
      ctx = this.ctx;
    const upstreamModel = t.upstreamModel ?? this.model;
    if (this.kind === MESSAGES && this.count) {
      // OpenAI has no token-counting endpoint: an estimate from the body's size.
      owner.succeeded();
      owner.ended();
      ctx.send(200, "application/json", `{"input_tokens":${estimateInputTokens(this.body.length)}}`);
      return null;
    }
    if (p.type === "mock") return this.answerMock(owner);
    const headers = ["content-type", "application/json", "accept-encoding", "identity", "x-request-id", ctx.clientRequestId ?? ctx.id];
    if (this.userAgent !== "") headers.push("user-agent", this.userAgent);
    const auth = keyAuth ?? authHeadersFor(p, passKey === "" ? null : passKey);
    for (let i = 0; i < auth.length; i++) headers.push(auth[i]!);
    let body: Buffer, codec: ReplyCodec, path: string;
    const stream = this.parsed.stream === true;
    if (isOpenAIFormat(p.type)) {
      path =
        p.type === "azure-openai"
          ? `${p.messagesPath}${encodeURIComponent(upstreamModel)}/chat/completions?api-version=${encodeURIComponent(p.apiVersion ?? "")}`
          : p.messagesPath;
      if (this.kind === CHAT) {
        body = upstreamModel !== this.model ? spliceModel(this.body, this.parsed, upstreamModel) : this.body;
        codec = new PassThroughCodec();
      } else {
        body = Buffer.from(JSON.stringify(forTarget(this.other!, upstreamModel, p.maxTokensField)));
        codec = new ToAnthropicCodec(this.model, ctx.id);
      }
    } else {
      path = p.messagesPath;
      headers.push("anthropic-version", "2023-06-01");
      this.other!.model = upstreamModel;
      body = Buffer.from(JSON.stringify(this.other));
      codec = new ToOpenAICodec(this.model, ctx.id, stream && includeUsage(this.parsed));
    }
    return dispatchAttempt(this.pools.get(p.origin), path, headers, body, ctx, owner, this.maxEventBytes, null, codec);
  }

  /** The built-in mock answers in Anthropic's format; an OpenAI client gets it translated. */
  private answerMock(owner: AttemptOwner): null {
    const ctx = this.ctx;
    owner.succeeded();
    owner.ended();
    const req = this.other as unknown as MockRequest;
    const codec = new ToOpenAICodec(this.model, ctx.id, includeUsage(this.parsed));
    const id = "msg_mock_" + ctx.id;
    if (this.parsed.stream !== true) {
      const out = codec.json(Buffer.from(mockMessageJson(req, id)), ctx);
      ctx.send(200, "application/json", out);
      return null;
    }
    let out = "";
    for (const f of mockStreamFrames(req, id)) {
      const at = f.indexOf("\ndata: ");
      out += codec.event(f.slice(at + 7, f.length - 2));
    }
    codec.tokens(ctx);
    const res = ctx.res;
    ctx.started = true;
    res.cork(() => {
      res.writeStatus("200 OK");
      res.writeHeader("content-type", "text/event-stream; charset=utf-8");
      res.writeHeader("cache-control", "no-cache");
      res.writeHeader("request-id", ctx.id);
      res.end(out, ctx.shared.draining);
    });
    ctx.finish(200);
    return null;
  }
}

function includeUsage(parsed: Obj): boolean {
  const so = parsed.stream_options;
  return typeof so === "object" && so !== null && (so as Obj).include_usage === true;
}

function hasOpenAITarget(route: Route): boolean {
  const t = route.targets;
  for (let i = 0; i < t.length; i++) if (isOpenAIFormat(t[i]!.provider.type)) return true;
  return false;
}

function hasAnthropicTarget(route: Route): boolean {
  const t = route.targets;
  for (let i = 0; i < t.length; i++) if (!isOpenAIFormat(t[i]!.provider.type)) return true;
  return false;
}

export interface PrepareInput {
  body: Buffer;
  parsed: Obj;
  model: string;
  /** The client's forwarded headers as [name, value, ...] (only user-agent is kept). */
  fwd: readonly string[];
  count: boolean;
  /** SSE_MAX_EVENT_BYTES: the Relay's bound on one upstream event. */
  maxEventBytes: number;
}

/**
 * The Translation for this request, null when none is needed (an Anthropic request with
 * only Anthropic-format targets: the byte-faithful path), or false when the client was
 * already answered (a request that cannot be expressed for a target).
 */
export function prepareTranslation(
  ctx: RequestCtx,
  chat: boolean,
  route: Route,
  pools: Pools,
  inp: PrepareInput,
): Translation | null | false {
  if (!chat && !hasOpenAITarget(route)) return null;
  let other: Obj | null = null;
  if (chat) {
    if (hasAnthropicTarget(route)) {
      const r = openAIToAnthropicRequest(inp.parsed, inp.model);
      if (isTranslateError(r)) {
        ctx.fail("GW_ERR_REQ_VALIDATION", r.message);
        return false;
      }
      other = r;
    }
  } else {
    // OpenAI-format upstream errors reach an Anthropic client in Anthropic's shape.
    ctx.reshapeError = toAnthropicErrorBody;
    if (!inp.count) other = anthropicToOpenAIRequest(inp.parsed, { model: inp.model });
  }
  let ua = "";
  for (let i = 0; i < inp.fwd.length; i += 2) if (inp.fwd[i] === "user-agent") ua = inp.fwd[i + 1]!;
  return new Translation(chat ? CHAT : MESSAGES, ctx, pools, inp.body, inp.parsed, inp.model, ua, inp.count, other, inp.maxEventBytes);
}

/** ctx.reshapeError for `/v1/chat/completions`: every error in OpenAI's shape. */
export function toOpenAIError(body: string | Uint8Array, code: string | null): string | Uint8Array {
  if (code === "GW_ERR_REQ_VALIDATION") {
    const msg = (JSON.parse(typeof body === "string" ? body : Buffer.from(body).toString("utf8")) as { error: { message: string } }).error
      .message;
    return openAIErrorJson("invalid_request_error", msg, paramOf(msg), code);
  }
  return toOpenAIErrorBody(body, code);
}

/** An OpenAI-shaped upstream error re-shaped for an Anthropic client; others as they are. */
export function toAnthropicErrorBody(body: string | Uint8Array, _code: string | null, status: number): string | Uint8Array {
  const text = typeof body === "string" ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8");
  let parsed: { type?: unknown; error?: { message?: unknown } } | { type?: unknown; error?: { message?: unknown } }[];
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    return body;
  }
  // Azure and some servers wrap the error in a one-element array.
  const o = Array.isArray(parsed) ? parsed[0] : parsed;
  if (o === undefined || o === null || typeof o !== "object" || o.type === "error" || typeof o.error !== "object" || o.error === null)
    return body;
  const message = typeof o.error.message === "string" ? o.error.message : "upstream error";
  return `{"type":"error","error":{"type":"${errorTypeForStatus(status)}","message":${JSON.stringify(message)}}}`;
}
