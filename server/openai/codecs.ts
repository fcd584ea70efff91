/**
 * The three ways a reply reaches a client when the OpenAI format is involved, as Codecs
 * for server/openai/relay.ts: pass-through (OpenAI → OpenAI client), OpenAI → Anthropic
 * client, Anthropic → OpenAI client. Each wraps a pure translator from core/translate/.
 */
import { sseErrorFrame, type ErrorCode } from "../../core/errors.js";
import { AnthropicToOpenAIStream, anthropicToOpenAIJson } from "../../core/translate/anthropic-to-openai-reply.js";
import { openAIErrorJson } from "../../core/translate/openai-errors.js";
import { OpenAIToAnthropicStream, openAIToAnthropicJson } from "../../core/translate/openai-to-anthropic-reply.js";
import type { RequestCtx } from "../context.js";
import { rawOpenAITokens, type Codec } from "./relay.js";

function openAIErrorFrame(type: string, message: string, code: ErrorCode): string {
  return `data: ${openAIErrorJson(type, message, null, code)}\n\n`;
}

/** OpenAI-format provider to an OpenAI client: bytes as received (the relay scans stream usage). */
export class PassThroughCodec implements Codec {
  readonly raw = true;
  private body: Buffer | null = null;
  event(): string {
    return "";
  }
  end(): string | null {
    return "";
  }
  json(body: Buffer): Buffer {
    this.body = body;
    return body;
  }
  errorFrame(type: string, message: string, code: ErrorCode): string {
    return openAIErrorFrame(type, message, code);
  }
  tokens(ctx: RequestCtx): void {
    if (this.body !== null) rawOpenAITokens(ctx, this.body);
  }
}

/** OpenAI-format provider to an Anthropic client (`POST /v1/messages`). */
export class ToAnthropicCodec implements Codec {
  readonly raw = false;
  private readonly stream: OpenAIToAnthropicStream;
  private readonly model: string;
  private readonly fallbackId: string;
  constructor(model: string, fallbackId: string) {
    this.model = model;
    this.fallbackId = fallbackId;
    this.stream = new OpenAIToAnthropicStream(model, fallbackId);
  }
  event(data: string): string {
    return this.stream.event(data);
  }
  end(): string | null {
    return this.stream.finishStream();
  }
  json(body: Buffer): string {
    return openAIToAnthropicJson(
      JSON.parse(body.toString("utf8")) as Record<string, unknown>,
      this.model,
      this.fallbackId,
      this.stream.usage,
    );
  }
  errorFrame(type: string, message: string, _code: ErrorCode, requestId: string): string {
    return sseErrorFrame(type, message, requestId);
  }
  tokens(ctx: RequestCtx): void {
    const u = this.stream.usage;
    if (u.inputTokens >= 0) ctx.inputTokens = u.inputTokens;
    if (u.outputTokens >= 0) ctx.outputTokens = u.outputTokens;
    if (u.cacheReadTokens >= 0) ctx.cacheReadTokens = u.cacheReadTokens;
  }
}

/** Anthropic-format provider to an OpenAI client (`POST /v1/chat/completions`). */
export class ToOpenAICodec implements Codec {
  readonly raw = false;
  private readonly stream: AnthropicToOpenAIStream;
  private readonly model: string;
  private readonly fallbackId: string;
  private readonly created: number;
  constructor(model: string, fallbackId: string, includeUsage: boolean) {
    this.model = model;
    this.fallbackId = fallbackId;
    this.created = Math.floor(Date.now() / 1000);
    this.stream = new AnthropicToOpenAIStream(model, fallbackId, this.created, includeUsage);
  }
  event(data: string): string {
    return this.stream.event(data);
  }
  end(): string | null {
    return this.stream.done ? "" : null;
  }
  json(body: Buffer): string {
    return anthropicToOpenAIJson(
      JSON.parse(body.toString("utf8")) as Record<string, unknown>,
      this.model,
      this.fallbackId,
      this.created,
      this.stream.usage,
    );
  }
  errorFrame(type: string, message: string, code: ErrorCode): string {
    return openAIErrorFrame(type, message, code);
  }
  tokens(ctx: RequestCtx): void {
    const u = this.stream.usage;
    if (u.inputTokens >= 0) ctx.inputTokens = u.inputTokens;
    if (u.outputTokens >= 0) ctx.outputTokens = u.outputTokens;
    if (u.cacheReadTokens >= 0) ctx.cacheReadTokens = u.cacheReadTokens;
    if (u.cacheCreationTokens >= 0) ctx.cacheCreationTokens = u.cacheCreationTokens;
  }
}
