/**
 * The three ways a reply reaches a client when the OpenAI format is involved, as the
 * Relay's codec hook (server/upstream.ts ReplyCodec): pass-through (OpenAI → OpenAI
 * client), OpenAI → Anthropic client, Anthropic → OpenAI client. The Relay frames, decodes
 * (gzip/br/deflate), applies backpressure and ends failed streams; a codec only turns whole
 * upstream events and bodies into the client's bytes and reads their usage. Each translated
 * codec wraps a pure translator from core/translate/.
 */
import { sseErrorFrame, type ErrorCode } from "../../core/errors.js";
import { AnthropicToOpenAIStream, anthropicToOpenAIJson } from "../../core/translate/anthropic-to-openai-reply.js";
import { openAIErrorJson } from "../../core/translate/openai-errors.js";
import { OpenAIToAnthropicStream, openAIToAnthropicJson } from "../../core/translate/openai-to-anthropic-reply.js";
import { SseReader } from "../../core/translate/sse.js";
import { lastNumberField } from "../../core/usage.js";
import type { RequestCtx } from "../context.js";
import type { ReplyCodec } from "../upstream.js";

const DONE = Buffer.from("data: [DONE]");
const ERROR_CHUNK = Buffer.from('data: {"error"');

/** OpenAI usage read from raw bytes (pass-through): input excludes cached tokens, as Anthropic counts. */
export function rawOpenAITokens(ctx: RequestCtx, b: Buffer): void {
  const prompt = lastNumberField(b, "prompt_tokens");
  if (prompt < 0) return;
  const cached = lastNumberField(b, "cached_tokens");
  ctx.cacheReadTokens = cached < 0 ? 0 : cached;
  ctx.inputTokens = Math.max(0, prompt - (cached < 0 ? 0 : cached));
  const out = lastNumberField(b, "completion_tokens");
  if (out >= 0) ctx.outputTokens = out;
}

function openAIErrorFrame(type: string, message: string, code: ErrorCode): string {
  return `data: ${openAIErrorJson(type, message, null, code)}\n\n`;
}

function terminal(b: Buffer): boolean {
  return b.includes(DONE) || b.includes(ERROR_CHUNK);
}

/** OpenAI-format provider to an OpenAI client: whole events as received, `data: [DONE]` kept. */
export class PassThroughCodec implements ReplyCodec {
  /** `[DONE]` (or an error chunk) went by: the stream ended cleanly. */
  private done = false;
  events(run: Buffer, ctx: RequestCtx): Buffer {
    if (!this.done && terminal(run)) this.done = true;
    rawOpenAITokens(ctx, run);
    return run;
  }
  end(tail: Buffer | null, ctx: RequestCtx): Buffer | string | null {
    if (tail !== null) {
      if (terminal(tail)) this.done = true;
      rawOpenAITokens(ctx, tail);
    }
    return this.done ? (tail ?? "") : null;
  }
  json(body: Buffer, ctx: RequestCtx): Buffer {
    rawOpenAITokens(ctx, body);
    return body;
  }
  errorFrame(type: string, message: string, code: ErrorCode): string {
    return openAIErrorFrame(type, message, code);
  }
}

interface StreamUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens?: number;
}

/** A translation driven by whole upstream events: the events' data in, the client's frames out. */
abstract class TranslatingCodec implements ReplyCodec {
  private readonly reader = new SseReader();
  /** Translated bytes not yet handed to the Relay. */
  private out = "";
  private readonly each = (_event: string, data: string) => {
    this.out += this.event(data);
  };
  /** One whole upstream event's data → the client's frames. */
  abstract event(data: string): string;
  /** The upstream stream ended: closing frames, or null when it was cut short. */
  protected abstract close(): string | null;
  protected abstract translateJson(body: Record<string, unknown>): string;
  protected abstract readonly usage: StreamUsage;
  abstract errorFrame(type: string, message: string, code: ErrorCode, requestId: string): string;

  events(run: Buffer, ctx: RequestCtx): string {
    this.reader.push(run, this.each);
    this.tokens(ctx);
    return this.take();
  }
  end(tail: Buffer | null, ctx: RequestCtx): string | null {
    if (tail !== null) this.reader.push(tail, this.each);
    this.reader.flush(this.each);
    const end = this.close();
    this.tokens(ctx);
    return end === null ? null : this.take() + end;
  }
  json(body: Buffer, ctx: RequestCtx): string {
    const out = this.translateJson(JSON.parse(body.toString("utf8")) as Record<string, unknown>);
    this.tokens(ctx);
    return out;
  }
  /** Pending translated frames (an error frame follows them). */
  protected take(): string {
    const o = this.out;
    this.out = "";
    return o;
  }
  /** Copy the usage seen so far into the request (ledger, budgets, rate limits). */
  tokens(ctx: RequestCtx): void {
    const u = this.usage;
    if (u.inputTokens >= 0) ctx.inputTokens = u.inputTokens;
    if (u.outputTokens >= 0) ctx.outputTokens = u.outputTokens;
    if (u.cacheReadTokens >= 0) ctx.cacheReadTokens = u.cacheReadTokens;
    if (u.cacheCreationTokens !== undefined && u.cacheCreationTokens >= 0) ctx.cacheCreationTokens = u.cacheCreationTokens;
  }
}

/** OpenAI-format provider to an Anthropic client (`POST /v1/messages`). */
export class ToAnthropicCodec extends TranslatingCodec {
  private readonly stream: OpenAIToAnthropicStream;
  private readonly model: string;
  private readonly fallbackId: string;
  protected readonly usage: StreamUsage;
  constructor(model: string, fallbackId: string) {
    super();
    this.model = model;
    this.fallbackId = fallbackId;
    this.stream = new OpenAIToAnthropicStream(model, fallbackId);
    this.usage = this.stream.usage;
  }
  event(data: string): string {
    return this.stream.event(data);
  }
  protected close(): string | null {
    return this.stream.finishStream();
  }
  protected translateJson(body: Record<string, unknown>): string {
    return openAIToAnthropicJson(body, this.model, this.fallbackId, this.stream.usage);
  }
  errorFrame(type: string, message: string, _code: ErrorCode, requestId: string): string {
    return this.take() + sseErrorFrame(type, message, requestId);
  }
}

/** Anthropic-format provider to an OpenAI client (`POST /v1/chat/completions`). */
export class ToOpenAICodec extends TranslatingCodec {
  private readonly stream: AnthropicToOpenAIStream;
  private readonly model: string;
  private readonly fallbackId: string;
  private readonly created: number;
  protected readonly usage: StreamUsage;
  constructor(model: string, fallbackId: string, includeUsage: boolean) {
    super();
    this.model = model;
    this.fallbackId = fallbackId;
    this.created = Math.floor(Date.now() / 1000);
    this.stream = new AnthropicToOpenAIStream(model, fallbackId, this.created, includeUsage);
    this.usage = this.stream.usage;
  }
  event(data: string): string {
    return this.stream.event(data);
  }
  protected close(): string | null {
    return this.stream.done ? "" : null;
  }
  protected translateJson(body: Record<string, unknown>): string {
    return anthropicToOpenAIJson(body, this.model, this.fallbackId, this.created, this.stream.usage);
  }
  errorFrame(type: string, message: string, code: ErrorCode): string {
    return this.take() + openAIErrorFrame(type, message, code);
  }
}
