/**
 * Deterministic Anthropic Messages API replies.
 *
 * PURE module: no I/O. Used by the gateway's in-process `mock` provider and by
 * the standalone mock upstream (loadtest/mock-upstream.ts).
 *
 * Everything here is a function of the request (plus the caller-supplied id),
 * so the same request always yields byte-identical output.
 *
 * As the demo's partner for Claude Code it behaves like a terse assistant: it answers the
 * user's latest prompt (injected `<system-reminder>` blocks skipped, see core/mock-intent.ts),
 * calls a tool only when the prompt asks for one in the documented way (with arguments that
 * satisfy that tool's input_schema), answers a tool_result turn by quoting the result, and
 * streams the way the API does (message_start, content blocks with their indexes, a ping,
 * message_delta with usage, message_stop).
 *
 * Hot path note: strings are assembled with template literals; only
 * user-derived strings go through JSON.stringify.
 */
import { promptText, toolAsk } from "./mock-intent.js";

export interface MockRequest {
  model: string;
  messages: Array<{ role: string; content: unknown }>;
  system?: unknown;
  tools?: Array<{ name: string; input_schema?: unknown }>;
  thinking?: { type?: string; budget_tokens?: number };
  max_tokens?: number;
  stream?: boolean;
}

/**
 * The thinking-block signature exactly as it appears in the raw JSON text
 * (between the quotes). It contains an escaped forward slash (`\/`) and a
 * `\u00e9` escape, both of which JSON.parse + JSON.stringify would rewrite
 * (to `/` and a literal `é`), so tests can prove the gateway passes upstream
 * bytes through untouched.
 */
export const MOCK_SIGNATURE_RAW = "EqMBCkYIBxgCKkBtb2NrLXNpZ25hdHVyZQ\\/cG9ydGN1bGxpcw==caf\\u00e9+bW9jaw==";

/** The decoded value of MOCK_SIGNATURE_RAW (what JSON.parse yields). */
export const MOCK_SIGNATURE: string = JSON.parse(`"${MOCK_SIGNATURE_RAW}"`) as string;

/** Prefix of every mock text reply to a plain user turn. */
export const MOCK_REPLY_PREFIX = "Mock reply to: ";
/** Prefix of the mock text reply to a tool_result turn. */
export const MOCK_TOOL_RESULT_PREFIX = "Mock reply to tool result: ";
/** Prefix of the mock text reply to a tool_result turn marked is_error. */
export const MOCK_TOOL_ERROR_PREFIX = "Mock reply to tool error: ";
/** Added to a reply when tools are offered but none was asked for: how to get a tool call. */
export const MOCK_TOOL_HINT =
  ' (This is the Portcullis mock. To see a tool call, ask e.g. "use the Read tool on README.md" or "use the Bash tool to run ls".)';

/** Default number of text_delta events per streamed text block. */
export const DEFAULT_TEXT_EVENTS = 5;
/** Upper bound on text_delta events (guards against absurd x-mock-events values). */
export const MAX_TEXT_EVENTS = 100_000;

const QUOTE_LIMIT = 200;

type Block =
  | { kind: "thinking"; thinking: string }
  | { kind: "text"; text: string }
  | { kind: "tool_use"; id: string; name: string; inputJson: string };

interface Plan {
  blocks: Block[];
  stopReason: "end_turn" | "tool_use";
  inputTokens: number;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null;
}

/** Concatenated text of a content value (string, or array of text blocks). */
function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let out = "";
  for (const b of content) {
    if (isObj(b) && b.type === "text" && typeof b.text === "string") {
      out = out === "" ? b.text : `${out}\n${b.text}`;
    }
  }
  return out;
}

/** Cut to at most `n` UTF-16 units without splitting a surrogate pair. */
function clip(s: string, n: number): string {
  if (s.length <= n) return s;
  let end = n;
  const c = s.charCodeAt(end - 1);
  if (c >= 0xd800 && c <= 0xdbff) end -= 1;
  return s.slice(0, end);
}

function findToolResult(content: unknown): Record<string, unknown> | undefined {
  if (!Array.isArray(content)) return undefined;
  for (const b of content) {
    if (isObj(b) && b.type === "tool_result") return b;
  }
  return undefined;
}

function estimateTokens(chars: number): number {
  return Math.max(1, Math.ceil(chars / 4));
}

/** ceil(chars of JSON(messages + system + tools) / 4), at least 1. */
export function mockCountTokens(req: Pick<MockRequest, "messages" | "system" | "tools">): number {
  let chars = 0;
  const m = JSON.stringify(req.messages ?? []);
  if (m !== undefined) chars += m.length;
  if (req.system !== undefined) {
    const s = JSON.stringify(req.system);
    if (s !== undefined) chars += s.length;
  }
  if (req.tools !== undefined && req.tools.length > 0) {
    const t = JSON.stringify(req.tools);
    if (t !== undefined) chars += t.length;
  }
  return estimateTokens(chars);
}

/** The tool_use block (in the assistant turn before `at`) that a tool_result answers. */
function toolUseName(messages: MockRequest["messages"], at: number, id: unknown): string | undefined {
  const prev = messages[at - 1];
  if (prev === undefined || prev.role !== "assistant" || !Array.isArray(prev.content)) return undefined;
  for (const b of prev.content) {
    if (isObj(b) && b.type === "tool_use" && b.id === id && typeof b.name === "string") return b.name;
  }
  return undefined;
}

function plan(req: MockRequest): Plan {
  const messages = Array.isArray(req.messages) ? req.messages : [];
  const lastIndex = messages.length - 1;
  const last = messages[lastIndex];
  const blocks: Block[] = [];

  // The user's latest own words: injected blocks never count as the prompt.
  let prompt = "";
  for (let i = lastIndex; i >= 0; i--) {
    const m = messages[i];
    if (m && m.role === "user") {
      prompt = promptText(m.content);
      if (prompt !== "") break;
    }
  }

  if (req.thinking && req.thinking.type === "enabled") {
    blocks.push({ kind: "thinking", thinking: `Mock thinking about: ${clip(prompt, QUOTE_LIMIT)}` });
  }

  const toolResult = last && last.role === "user" ? findToolResult(last.content) : undefined;
  let stopReason: Plan["stopReason"] = "end_turn";
  const offered = Array.isArray(req.tools) && req.tools.length > 0;
  if (toolResult !== undefined) {
    const quoted = clip(contentText(toolResult.content), QUOTE_LIMIT);
    const name = toolUseName(messages, lastIndex, toolResult.tool_use_id);
    const prefix = toolResult.is_error === true ? MOCK_TOOL_ERROR_PREFIX : MOCK_TOOL_RESULT_PREFIX;
    blocks.push({ kind: "text", text: `${prefix}${name === undefined ? "" : `(${name}) `}${quoted}` });
  } else {
    const ask = toolAsk(prompt, req.tools);
    const reply = `${MOCK_REPLY_PREFIX}${clip(prompt, QUOTE_LIMIT)}`;
    if (ask === null) {
      blocks.push({ kind: "text", text: offered ? reply + MOCK_TOOL_HINT : reply });
    } else if (!ask.ok) {
      blocks.push({ kind: "text", text: `${reply} (No tool call: ${ask.reason}.)` });
    } else {
      blocks.push({ kind: "text", text: `Calling the ${ask.call.name} tool.` });
      blocks.push({
        kind: "tool_use",
        id: `toolu_mock_${messages.length}`,
        name: ask.call.name,
        inputJson: JSON.stringify(ask.call.input),
      });
      stopReason = "tool_use";
    }
  }

  return { blocks, stopReason, inputTokens: mockCountTokens(req) };
}

function blockChars(b: Block): number {
  switch (b.kind) {
    case "thinking":
      return b.thinking.length;
    case "text":
      return b.text.length;
    case "tool_use":
      return b.name.length + b.inputJson.length;
  }
}

function outputTokens(blocks: Block[]): number {
  let chars = 0;
  for (const b of blocks) chars += blockChars(b);
  return estimateTokens(chars);
}

function blockJson(b: Block): string {
  switch (b.kind) {
    case "thinking":
      return `{"type":"thinking","thinking":${JSON.stringify(b.thinking)},"signature":"${MOCK_SIGNATURE_RAW}"}`;
    case "text":
      return `{"type":"text","text":${JSON.stringify(b.text)}}`;
    case "tool_use":
      return `{"type":"tool_use","id":${JSON.stringify(b.id)},"name":${JSON.stringify(b.name)},"input":${b.inputJson}}`;
  }
}

function usageJson(inputTokens: number, outTokens: number): string {
  return `{"input_tokens":${inputTokens},"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":${outTokens}}`;
}

/** Raw JSON text of a non-streaming Anthropic `message` object. */
export function mockMessageJson(req: MockRequest, id: string): string {
  const p = plan(req);
  let content = "";
  for (let i = 0; i < p.blocks.length; i++) {
    content += i === 0 ? blockJson(p.blocks[i]!) : `,${blockJson(p.blocks[i]!)}`;
  }
  return (
    `{"id":${JSON.stringify(id)},"type":"message","role":"assistant","model":${JSON.stringify(String(req.model))},` +
    `"content":[${content}],"stop_reason":"${p.stopReason}","stop_sequence":null,` +
    `"usage":${usageJson(p.inputTokens, outputTokens(p.blocks))}}`
  );
}

/**
 * Split `s` into exactly `n` non-empty pieces (n <= s.length), without
 * splitting surrogate pairs where avoidable.
 */
function split(s: string, n: number): string[] {
  if (n <= 1 || s.length <= 1) return [s];
  const pieces: string[] = [];
  let start = 0;
  for (let k = 1; k <= n; k++) {
    let end = k === n ? s.length : Math.floor((s.length * k) / n);
    if (end < s.length) {
      const c = s.charCodeAt(end - 1);
      if (c >= 0xd800 && c <= 0xdbff) end += end - 1 > start ? -1 : 1; // keep surrogate pairs whole
    }
    if (end <= start) continue;
    pieces.push(s.slice(start, end));
    start = end;
  }
  return pieces;
}

/**
 * Text used in streams: when more text_delta events are asked for than the
 * reply has characters, it is padded deterministically with " mock" words so
 * every event carries a non-empty delta.
 */
function padText(text: string, events: number): string {
  if (text.length >= events) return text;
  let out = text;
  while (out.length < events) out += " mock";
  return out;
}

function frame(type: string, data: string): string {
  return `event: ${type}\ndata: ${data}\n\n`;
}

/** The API sends a ping after the first content_block_start; clients must accept it. */
const PING = frame("ping", `{"type":"ping"}`);

/**
 * SSE frames (each `event: <type>\ndata: <json>\n\n`) of a streamed reply, in
 * Anthropic's order: message_start, per block content_block_start / deltas /
 * content_block_stop (a ping after the first block's start), message_delta, message_stop.
 *
 * Each text block is streamed as exactly `textEvents` text_delta events (the
 * text is padded with " mock" words if it is shorter than that).
 */
export function mockStreamFrames(req: MockRequest, id: string, textEvents: number = DEFAULT_TEXT_EVENTS): string[] {
  const p = plan(req);
  let events = Math.floor(textEvents);
  if (!(events >= 1)) events = 1;
  if (events > MAX_TEXT_EVENTS) events = MAX_TEXT_EVENTS;

  const blocks = p.blocks.map((b): Block => (b.kind === "text" ? { kind: "text", text: padText(b.text, events) } : b));
  const frames: string[] = [];
  frames.push(
    frame(
      "message_start",
      `{"type":"message_start","message":{"id":${JSON.stringify(id)},"type":"message","role":"assistant",` +
        `"model":${JSON.stringify(String(req.model))},"content":[],"stop_reason":null,"stop_sequence":null,` +
        `"usage":${usageJson(p.inputTokens, 1)}}}`,
    ),
  );

  for (let index = 0; index < blocks.length; index++) {
    const b = blocks[index]!;
    switch (b.kind) {
      case "thinking": {
        frames.push(
          frame(
            "content_block_start",
            `{"type":"content_block_start","index":${index},"content_block":{"type":"thinking","thinking":"","signature":""}}`,
          ),
        );
        if (index === 0) frames.push(PING);
        for (const piece of split(b.thinking, 3)) {
          frames.push(
            frame(
              "content_block_delta",
              `{"type":"content_block_delta","index":${index},"delta":{"type":"thinking_delta","thinking":${JSON.stringify(piece)}}}`,
            ),
          );
        }
        frames.push(
          frame(
            "content_block_delta",
            `{"type":"content_block_delta","index":${index},"delta":{"type":"signature_delta","signature":"${MOCK_SIGNATURE_RAW}"}}`,
          ),
        );
        break;
      }
      case "text": {
        frames.push(
          frame("content_block_start", `{"type":"content_block_start","index":${index},"content_block":{"type":"text","text":""}}`),
        );
        if (index === 0) frames.push(PING);
        for (const piece of split(b.text, events)) {
          frames.push(
            frame(
              "content_block_delta",
              `{"type":"content_block_delta","index":${index},"delta":{"type":"text_delta","text":${JSON.stringify(piece)}}}`,
            ),
          );
        }
        break;
      }
      case "tool_use": {
        frames.push(
          frame(
            "content_block_start",
            `{"type":"content_block_start","index":${index},"content_block":{"type":"tool_use","id":${JSON.stringify(b.id)},"name":${JSON.stringify(b.name)},"input":{}}}`,
          ),
        );
        if (index === 0) frames.push(PING);
        for (const piece of ["", ...split(b.inputJson, 2)]) {
          frames.push(
            frame(
              "content_block_delta",
              `{"type":"content_block_delta","index":${index},"delta":{"type":"input_json_delta","partial_json":${JSON.stringify(piece)}}}`,
            ),
          );
        }
        break;
      }
    }
    frames.push(frame("content_block_stop", `{"type":"content_block_stop","index":${index}}`));
  }

  frames.push(
    frame(
      "message_delta",
      `{"type":"message_delta","delta":{"stop_reason":"${p.stopReason}","stop_sequence":null},"usage":{"output_tokens":${outputTokens(blocks)}}}`,
    ),
  );
  frames.push(frame("message_stop", `{"type":"message_stop"}`));
  return frames;
}

/** Anthropic error type for an HTTP status. */
export function mockErrorType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 402:
      return "billing_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 504:
      return "timeout_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

/** `{"type":"error","error":{"type":<type for status>,"message":<message>}}` */
export function mockErrorJson(status: number, message = "mock fault"): string {
  return `{"type":"error","error":{"type":"${mockErrorType(status)}","message":${JSON.stringify(message)}}}`;
}

/** Models advertised by GET /v1/models. */
export const MOCK_MODELS: ReadonlyArray<{ id: string; display_name: string; created_at: string }> = [
  { id: "claude-sonnet-4-5", display_name: "Claude Sonnet 4.5 (mock)", created_at: "2025-09-29T00:00:00Z" },
  { id: "claude-opus-4-1", display_name: "Claude Opus 4.1 (mock)", created_at: "2025-08-05T00:00:00Z" },
  { id: "claude-haiku-4-5", display_name: "Claude Haiku 4.5 (mock)", created_at: "2025-10-01T00:00:00Z" },
];

function modelJson(m: { id: string; display_name: string; created_at: string }): string {
  return `{"type":"model","id":${JSON.stringify(m.id)},"display_name":${JSON.stringify(m.display_name)},"created_at":"${m.created_at}"}`;
}

/** Raw JSON of the GET /v1/models list page. */
export function mockModelsJson(): string {
  const data = MOCK_MODELS.map(modelJson).join(",");
  const first = MOCK_MODELS[0]!.id;
  const last = MOCK_MODELS[MOCK_MODELS.length - 1]!.id;
  return `{"data":[${data}],"has_more":false,"first_id":"${first}","last_id":"${last}"}`;
}

/** Raw JSON of GET /v1/models/{id} (any id is "known"). */
export function mockModelJson(id: string): string {
  const m = MOCK_MODELS.find((x) => x.id === id) ?? { id, display_name: `${id} (mock)`, created_at: "2025-01-01T00:00:00Z" };
  return modelJson(m);
}
