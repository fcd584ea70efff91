/**
 * Anthropic Messages reply → OpenAI `chat.completion` / `chat.completion.chunk`, for
 * `POST /v1/chat/completions` served by an Anthropic-format provider.
 *
 * The stream translator is driven by whole Anthropic SSE events (core/translate/sse.ts).
 * A tool_use block becomes a `delta.tool_calls` entry whose first chunk carries `index`,
 * `id`, `type` and `function.name`; its `input_json_delta`s follow as
 * `function.arguments` deltas. Thinking becomes `reasoning_content` deltas (the field
 * DeepSeek, vLLM and others use; the official SDK passes it through untouched).
 * `message_stop` produces the finish_reason chunk, the usage chunk when the client asked
 * for `stream_options.include_usage`, then `data: [DONE]`.
 */

import { fastDelta, INPUT_JSON, NONE, parseFastDelta, TEXT } from "./anthropic-delta-fast.js";

type Obj = Record<string, unknown>;

/** Token counts in Anthropic's terms, for the gateway's ledger and budgets. -1 = unknown. */
export interface AnthropicUsage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheCreationTokens: number;
}

export function finishReasonFromAnthropic(stop: unknown): string {
  switch (stop) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    default:
      return "stop"; // end_turn, stop_sequence, pause_turn
  }
}

function readUsage(usage: unknown, u: AnthropicUsage): void {
  if (typeof usage !== "object" || usage === null) return;
  const o = usage as Obj;
  if (typeof o.input_tokens === "number") u.inputTokens = o.input_tokens;
  if (typeof o.output_tokens === "number") u.outputTokens = o.output_tokens;
  if (typeof o.cache_read_input_tokens === "number") u.cacheReadTokens = o.cache_read_input_tokens;
  if (typeof o.cache_creation_input_tokens === "number") u.cacheCreationTokens = o.cache_creation_input_tokens;
}

/** OpenAI's usage: prompt tokens include cached ones, which are also reported on their own. */
export function openAIUsageJson(u: AnthropicUsage): string {
  const cached = Math.max(0, u.cacheReadTokens);
  const prompt = Math.max(0, u.inputTokens) + cached + Math.max(0, u.cacheCreationTokens);
  const completion = Math.max(0, u.outputTokens);
  return `{"prompt_tokens":${prompt},"completion_tokens":${completion},"total_tokens":${prompt + completion},"prompt_tokens_details":{"cached_tokens":${cached}}}`;
}

function completionId(id: unknown, fallback: string): string {
  return "chatcmpl-" + (typeof id === "string" && id !== "" ? id : fallback);
}

/** A whole Anthropic `message` → a `chat.completion` (JSON text). */
export function anthropicToOpenAIJson(msg: Obj, model: string, fallbackId: string, created: number, usage: AnthropicUsage): string {
  let text: string | null = null;
  let reasoning: string | null = null;
  const calls: Obj[] = [];
  for (const b of (Array.isArray(msg.content) ? msg.content : []) as Obj[]) {
    if (b.type === "text") text = (text ?? "") + String(b.text);
    else if (b.type === "thinking") reasoning = (reasoning ?? "") + String(b.thinking);
    else if (b.type === "tool_use")
      calls.push({ id: b.id, type: "function", function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
  }
  const message: Obj = { role: "assistant", content: text };
  if (reasoning !== null) message.reasoning_content = reasoning;
  if (calls.length > 0) message.tool_calls = calls;
  if (msg.stop_reason === "refusal") message.refusal = text ?? "";
  readUsage(msg.usage, usage);
  const choice = { index: 0, message, logprobs: null, finish_reason: finishReasonFromAnthropic(msg.stop_reason) };
  return `{"id":${JSON.stringify(completionId(msg.id, fallbackId))},"object":"chat.completion","created":${created},"model":${JSON.stringify(model)},"choices":[${JSON.stringify(choice)}],"usage":${openAIUsageJson(usage)}}`;
}

/** Streams Anthropic SSE events into `chat.completion.chunk` frames. */
export class AnthropicToOpenAIStream {
  readonly usage: AnthropicUsage = { inputTokens: -1, outputTokens: -1, cacheReadTokens: -1, cacheCreationTokens: -1 };
  /** A terminal frame ([DONE] or an error) has been produced. */
  done = false;
  private prefix = "";
  /** Anthropic block index → OpenAI tool_calls index (-1 for non-tool blocks). */
  private toolIndex: number[] = [];
  private nextTool = 0;
  private stop: unknown = null;
  private readonly model: string;
  private readonly fallbackId: string;
  private readonly created: number;
  private readonly includeUsage: boolean;
  private readonly fast: boolean;

  /** `fast` = false turns the delta fast path off (tests compare the two). */
  constructor(model: string, fallbackId: string, created: number, includeUsage: boolean, fast = true) {
    this.model = model;
    this.fallbackId = fallbackId;
    this.created = created;
    this.includeUsage = includeUsage;
    this.fast = fast;
  }

  /** One whole Anthropic event (its `data:` payload); returns the frames to send ("" for none). */
  event(data: string): string {
    if (this.done) return "";
    if (this.fast && this.prefix !== "") {
      const kind = parseFastDelta(data);
      if (kind !== NONE) return this.fastChunk(kind);
    }
    let ev: Obj;
    try {
      ev = JSON.parse(data) as Obj;
    } catch {
      return "";
    }
    switch (ev.type) {
      case "message_start": {
        const m = (ev.message ?? {}) as Obj;
        readUsage(m.usage, this.usage);
        this.prefix = `data: {"id":${JSON.stringify(completionId(m.id, this.fallbackId))},"object":"chat.completion.chunk","created":${this.created},"model":${JSON.stringify(this.model)},"choices":[{"index":0,"delta":`;
        return this.chunk(`{"role":"assistant","content":""}`, "null");
      }
      case "content_block_start": {
        const b = (ev.content_block ?? {}) as Obj;
        const index = ev.index as number;
        if (b.type !== "tool_use") {
          this.toolIndex[index] = -1;
          return typeof b.text === "string" && b.text !== "" ? this.chunk(`{"content":${JSON.stringify(b.text)}}`, "null") : "";
        }
        const ti = this.nextTool++;
        this.toolIndex[index] = ti;
        return this.chunk(
          `{"tool_calls":[{"index":${ti},"id":${JSON.stringify(b.id)},"type":"function","function":{"name":${JSON.stringify(b.name)},"arguments":""}}]}`,
          "null",
        );
      }
      case "content_block_delta": {
        const d = (ev.delta ?? {}) as Obj;
        switch (d.type) {
          case "text_delta":
            return this.chunk(`{"content":${JSON.stringify(d.text)}}`, "null");
          case "thinking_delta":
            return this.chunk(`{"reasoning_content":${JSON.stringify(d.thinking)}}`, "null");
          case "input_json_delta": {
            const ti = this.toolIndex[ev.index as number];
            if (ti === undefined || ti < 0 || d.partial_json === "") return "";
            return this.chunk(`{"tool_calls":[{"index":${ti},"function":{"arguments":${JSON.stringify(d.partial_json)}}}]}`, "null");
          }
          default:
            return ""; // signature_delta, citations: nothing to say in OpenAI's format
        }
      }
      case "message_delta": {
        const d = (ev.delta ?? {}) as Obj;
        if (d.stop_reason !== undefined && d.stop_reason !== null) this.stop = d.stop_reason;
        readUsage(ev.usage, this.usage);
        return "";
      }
      case "message_stop": {
        this.done = true;
        let out = this.chunk("{}", `"${finishReasonFromAnthropic(this.stop)}"`);
        if (this.includeUsage)
          out += this.prefix.slice(0, this.prefix.indexOf(`"choices":[`)) + `"choices":[],"usage":${openAIUsageJson(this.usage)}}\n\n`;
        return out + "data: [DONE]\n\n";
      }
      case "error":
        this.done = true;
        return openAIStreamError(ev.error);
      default:
        return ""; // ping, unknown future events
    }
  }

  /** A delta from the fast path: its raw JSON string literal spliced into the chunk. */
  private fastChunk(kind: number): string {
    const raw = fastDelta.raw;
    if (kind === TEXT) return this.chunk(`{"content":${raw}}`, "null");
    if (kind !== INPUT_JSON) return this.chunk(`{"reasoning_content":${raw}}`, "null");
    const ti = this.toolIndex[fastDelta.index];
    if (ti === undefined || ti < 0 || raw === '""') return "";
    return this.chunk(`{"tool_calls":[{"index":${ti},"function":{"arguments":${raw}}}]}`, "null");
  }

  private chunk(delta: string, finish: string): string {
    return `${this.prefix}${delta},"logprobs":null,"finish_reason":${finish}}]}\n\n`;
  }
}

/** An error chunk in OpenAI's streaming shape (what the SDKs raise as an APIError). */
export function openAIStreamError(err: unknown): string {
  const e = (typeof err === "object" && err !== null ? err : {}) as Obj;
  const message = typeof e.message === "string" ? e.message : "upstream stream error";
  const type = typeof e.type === "string" ? e.type : "api_error";
  return `data: {"error":{"message":${JSON.stringify(message)},"type":${JSON.stringify(type)},"param":null,"code":null}}\n\n`;
}
