/**
 * OpenAI Chat Completions reply → Anthropic Messages reply, JSON and SSE, for
 * `POST /v1/messages` served by an OpenAI-format provider.
 *
 * The stream translator is a state machine driven by whole upstream events (see
 * core/translate/sse.ts): each `data:` payload in, Anthropic SSE text out. Blocks get
 * Anthropic indexes in the order they open: reasoning deltas become a `thinking` block,
 * content a `text` block, each tool call a `tool_use` block whose streamed arguments are
 * `input_json_delta`s. Blocks run one after another, as Anthropic sends them: a new block
 * closes the open one. OpenAI streams parallel calls one after another too; should a
 * server interleave them, a late argument delta still goes to its call's index (the SDKs
 * accumulate by index) rather than being lost. `message_delta` (stop reason + usage)
 * waits for `[DONE]` because the usage chunk comes after finish_reason.
 */

type Obj = Record<string, unknown>;

/** Token counts in Anthropic's terms (input excludes cache reads); -1 = not reported. */
export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
}

export function stopReasonFromOpenAI(finish: unknown): string {
  switch (finish) {
    case "length":
      return "max_tokens";
    case "tool_calls":
    case "function_call":
      return "tool_use";
    case "content_filter":
      return "refusal";
    default:
      return "end_turn";
  }
}

/** Reads an OpenAI `usage` object into `u`; returns false when there is none. */
function readUsage(usage: unknown, u: Usage): boolean {
  if (typeof usage !== "object" || usage === null) return false;
  const o = usage as Obj;
  const prompt = typeof o.prompt_tokens === "number" ? o.prompt_tokens : 0;
  const d = o.prompt_tokens_details as Obj | null | undefined;
  const cached = d !== null && typeof d === "object" && typeof d.cached_tokens === "number" ? d.cached_tokens : 0;
  u.inputTokens = Math.max(0, prompt - cached);
  u.cacheReadTokens = cached;
  u.outputTokens = typeof o.completion_tokens === "number" ? o.completion_tokens : 0;
  return true;
}

function usageJson(u: Usage): string {
  const inp = u.inputTokens < 0 ? 0 : u.inputTokens,
    out = u.outputTokens < 0 ? 0 : u.outputTokens;
  const cr = u.cacheReadTokens < 0 ? 0 : u.cacheReadTokens;
  return `{"input_tokens":${inp},"cache_creation_input_tokens":0,"cache_read_input_tokens":${cr},"output_tokens":${out}}`;
}

function messageId(upstreamId: unknown, fallback: string): string {
  return typeof upstreamId === "string" && upstreamId !== "" ? "msg_" + upstreamId.replace(/^chatcmpl-/, "") : fallback;
}

/** Reasoning text under the names compatible servers use (vLLM/DeepSeek, OpenRouter/Ollama). */
function reasoningOf(o: Obj): string | null {
  const r = o.reasoning_content ?? o.reasoning;
  return typeof r === "string" && r !== "" ? r : null;
}

function parseArgs(args: unknown): unknown {
  if (typeof args !== "string" || args === "") return {};
  try {
    const v = JSON.parse(args) as unknown;
    return typeof v === "object" && v !== null && !Array.isArray(v) ? v : {};
  } catch {
    return {};
  }
}

/** A whole `chat.completion` → an Anthropic `message` (JSON text). */
export function openAIToAnthropicJson(body: Obj, model: string, fallbackId: string, usage: Usage): string {
  const choice = (Array.isArray(body.choices) ? body.choices[0] : null) as Obj | null;
  const msg = (choice?.message ?? {}) as Obj;
  const content: Obj[] = [];
  const reasoning = reasoningOf(msg);
  if (reasoning !== null) content.push({ type: "thinking", thinking: reasoning, signature: "" });
  if (typeof msg.content === "string" && msg.content !== "") content.push({ type: "text", text: msg.content });
  if (typeof msg.refusal === "string" && msg.refusal !== "") content.push({ type: "text", text: msg.refusal });
  const calls = Array.isArray(msg.tool_calls) ? (msg.tool_calls as Obj[]) : [];
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!,
      fn = (c.function ?? {}) as Obj;
    content.push({
      type: "tool_use",
      id: typeof c.id === "string" ? c.id : `${fallbackId}_tool_${i}`,
      name: fn.name ?? "",
      input: parseArgs(fn.arguments),
    });
  }
  readUsage(body.usage, usage);
  const refused = typeof msg.refusal === "string" && msg.refusal !== "";
  const stop = refused ? "refusal" : stopReasonFromOpenAI(choice?.finish_reason);
  return `{"id":${JSON.stringify(messageId(body.id, fallbackId))},"type":"message","role":"assistant","model":${JSON.stringify(model)},"content":${JSON.stringify(content)},"stop_reason":"${stop}","stop_sequence":null,"usage":${usageJson(usage)}}`;
}

const NONE = 0,
  TEXT = 1,
  THINKING = 2,
  TOOL = 3;

/** Streams `chat.completion.chunk` payloads into Anthropic SSE frames. */
export class OpenAIToAnthropicStream {
  readonly usage: Usage = { inputTokens: -1, outputTokens: -1, cacheReadTokens: -1 };
  /** A terminal frame (message_stop or error) has been produced. */
  done = false;
  private started = false;
  private nextIndex = 0;
  /** The open block's index and kind. */
  private openIndex = -1;
  private openKind = NONE;
  /** OpenAI tool_call index → Anthropic block index. */
  private tools: number[] = [];
  private finish: string | null = null;
  private readonly model: string;
  private readonly fallbackId: string;

  constructor(model: string, fallbackId: string) {
    this.model = model;
    this.fallbackId = fallbackId;
  }

  /** One SSE `data:` payload from the upstream; returns the frames to send ("" for none). */
  event(data: string): string {
    if (this.done) return "";
    if (data === "[DONE]") return this.end();
    let chunk: Obj;
    try {
      chunk = JSON.parse(data) as Obj;
    } catch {
      return ""; // keep-alive noise from some servers; a torn stream is caught at the end
    }
    if (chunk.error !== undefined) return this.error(chunk.error);
    let out = this.started ? "" : this.start(chunk);
    // Usage may come with finish_reason or in a chunk of its own: it is sent with message_delta.
    readUsage(chunk.usage, this.usage);
    const choices = chunk.choices;
    if (!Array.isArray(choices) || choices.length === 0) return out;
    const choice = choices[0] as Obj;
    const delta = (choice.delta ?? {}) as Obj;
    const reasoning = reasoningOf(delta);
    if (reasoning !== null) out += this.textual(THINKING, reasoning);
    if (typeof delta.content === "string" && delta.content !== "") out += this.textual(TEXT, delta.content);
    if (typeof delta.refusal === "string" && delta.refusal !== "") {
      out += this.textual(TEXT, delta.refusal);
      this.finish = "refusal";
    }
    if (Array.isArray(delta.tool_calls)) for (const tc of delta.tool_calls as Obj[]) out += this.toolDelta(tc);
    if (typeof choice.finish_reason === "string" && choice.finish_reason !== "") {
      if (this.finish === null) this.finish = stopReasonFromOpenAI(choice.finish_reason);
      out += this.closeOpen();
    }
    return out;
  }

  /** The upstream body ended: the closing frames when the reply was whole, else null (torn). */
  finishStream(): string | null {
    if (this.done) return "";
    // Some servers end after finish_reason without `[DONE]`: the reply is still whole.
    return this.finish !== null ? this.end() : null;
  }

  private start(chunk: Obj): string {
    this.started = true;
    const id = messageId(chunk.id, this.fallbackId);
    return (
      `event: message_start\ndata: {"type":"message_start","message":{"id":${JSON.stringify(id)},"type":"message","role":"assistant","model":${JSON.stringify(this.model)},"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":0}}}\n\n` +
      `event: ping\ndata: {"type":"ping"}\n\n`
    );
  }

  private openBlock(kind: number): string {
    let out = this.closeOpen();
    const index = this.nextIndex++;
    this.openIndex = index;
    this.openKind = kind;
    const block = kind === TEXT ? `{"type":"text","text":""}` : `{"type":"thinking","thinking":"","signature":""}`;
    out += `event: content_block_start\ndata: {"type":"content_block_start","index":${index},"content_block":${block}}\n\n`;
    return out;
  }

  private textual(kind: number, text: string): string {
    const out = this.openKind === kind ? "" : this.openBlock(kind);
    const d =
      kind === TEXT
        ? `{"type":"text_delta","text":${JSON.stringify(text)}}`
        : `{"type":"thinking_delta","thinking":${JSON.stringify(text)}}`;
    return out + `event: content_block_delta\ndata: {"type":"content_block_delta","index":${this.openIndex},"delta":${d}}\n\n`;
  }

  private toolDelta(tc: Obj): string {
    const ti = typeof tc.index === "number" ? tc.index : this.tools.length === 0 ? 0 : this.tools.length - 1;
    const fn = (tc.function ?? {}) as Obj;
    let out = "";
    let index = this.tools[ti];
    if (index === undefined) {
      out += this.closeOpen();
      index = this.nextIndex++;
      this.tools[ti] = index;
      this.openIndex = index;
      this.openKind = TOOL;
      const id = typeof tc.id === "string" && tc.id !== "" ? tc.id : `toolu_${this.fallbackId}_${ti}`;
      const name = typeof fn.name === "string" ? fn.name : "";
      out += `event: content_block_start\ndata: {"type":"content_block_start","index":${index},"content_block":{"type":"tool_use","id":${JSON.stringify(id)},"name":${JSON.stringify(name)},"input":{}}}\n\n`;
    }
    const args = fn.arguments;
    if (typeof args === "string" && args !== "") {
      out += `event: content_block_delta\ndata: {"type":"content_block_delta","index":${index},"delta":{"type":"input_json_delta","partial_json":${JSON.stringify(args)}}}\n\n`;
    }
    return out;
  }

  private closeOpen(): string {
    if (this.openKind === NONE) return "";
    const i = this.openIndex;
    this.openKind = NONE;
    this.openIndex = -1;
    return `event: content_block_stop\ndata: {"type":"content_block_stop","index":${i}}\n\n`;
  }

  private end(): string {
    let out = this.started ? "" : this.start({});
    out += this.closeOpen();
    this.done = true;
    const stop = this.finish ?? "end_turn";
    return (
      out +
      `event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"${stop}","stop_sequence":null},"usage":${usageJson(this.usage)}}\n\n` +
      `event: message_stop\ndata: {"type":"message_stop"}\n\n`
    );
  }

  private error(err: unknown): string {
    this.done = true;
    const e = (typeof err === "object" && err !== null ? err : {}) as Obj;
    const message = typeof e.message === "string" ? e.message : "upstream stream error";
    return `event: error\ndata: {"type":"error","error":{"type":"api_error","message":${JSON.stringify(message)}}}\n\n`;
  }
}
