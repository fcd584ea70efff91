/**
 * Deterministic OpenAI Chat Completions replies for the mock upstream's
 * `…/chat/completions` endpoint (loadtest/mock-upstream.ts). Pure: the same request gives
 * the same bytes. The replies exercise what translators get wrong: tool-call arguments
 * split at awkward places (inside a key, inside a string, before the closing brace),
 * reasoning deltas (`reasoning_content`) when `reasoning_effort` is set or the model's name
 * has "reason" in it (like deepseek-reasoner, which always reasons), and the usage
 * chunk after finish_reason when `stream_options.include_usage` is set.
 */
import { MOCK_REPLY_PREFIX, MOCK_TOOL_RESULT_PREFIX } from "../core/mock-reply.js";

type Obj = Record<string, unknown>;

/** The mock tool call's arguments, streamed in these pieces (they join to `{"query":"mock"}`). */
export const MOCK_OPENAI_ARG_PIECES = ['{"', "que", 'ry":"m', 'ock"', "}"];
export const MOCK_OPENAI_REASONING = ["Thinking ", "it over."];
export const MOCK_OPENAI_TOOL_TEXT = "Let me call a tool.";

interface Plan {
  reasoning: string[];
  text: string;
  tool: string | null;
  promptTokens: number;
}

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let s = "";
  for (const p of content as Obj[]) if (p.type === "text" && typeof p.text === "string") s += p.text;
  return s;
}

function plan(req: Obj): Plan {
  const msgs = (req.messages as Obj[]) ?? [];
  const last = msgs[msgs.length - 1] ?? {};
  const effort = req.reasoning_effort;
  const reasons = (typeof effort === "string" && effort !== "none") || String(req.model).includes("reason");
  const reasoning = reasons ? MOCK_OPENAI_REASONING : [];
  const tools = Array.isArray(req.tools) ? (req.tools as Obj[]) : [];
  let chars = 0;
  for (const m of msgs) chars += textOf(m.content).length;
  const promptTokens = 10 + Math.ceil(chars / 4);
  if (last.role === "tool")
    return { reasoning, text: MOCK_TOOL_RESULT_PREFIX + textOf(last.content).slice(0, 200), tool: null, promptTokens };
  if (tools.length > 0 && req.tool_choice !== "none") {
    const fn = (tools[0]!.function ?? {}) as Obj;
    return { reasoning, text: MOCK_OPENAI_TOOL_TEXT, tool: String(fn.name), promptTokens };
  }
  return { reasoning, text: MOCK_REPLY_PREFIX + textOf(last.content).slice(0, 200), tool: null, promptTokens };
}

function usage(p: Plan, completion: number): string {
  const cached = p.promptTokens >= 20 ? 8 : 0;
  return `{"prompt_tokens":${p.promptTokens},"completion_tokens":${completion},"total_tokens":${p.promptTokens + completion},"prompt_tokens_details":{"cached_tokens":${cached}}}`;
}

function completionTokens(p: Plan, textEvents: number): number {
  return p.reasoning.length + textEvents + (p.tool === null ? 0 : MOCK_OPENAI_ARG_PIECES.length + 1);
}

const TOOL_ID = "call_mock_1";

export function mockChatJson(req: Obj, id: string): string {
  const p = plan(req);
  const message: Obj = { role: "assistant", content: p.text };
  if (p.reasoning.length > 0) message.reasoning_content = p.reasoning.join("");
  if (p.tool !== null)
    message.tool_calls = [{ id: TOOL_ID, type: "function", function: { name: p.tool, arguments: MOCK_OPENAI_ARG_PIECES.join("") } }];
  const choice = { index: 0, message, logprobs: null, finish_reason: p.tool === null ? "stop" : "tool_calls" };
  return `{"id":"${id}","object":"chat.completion","created":1700000000,"model":${JSON.stringify(String(req.model))},"choices":[${JSON.stringify(choice)}],"usage":${usage(p, completionTokens(p, 1))}}`;
}

/** Split `s` into `n` non-empty pieces; a short text is padded with " mock" words first (as core/mock-reply.ts does). */
function pieces(s: string, n: number): string[] {
  while (s.length < n) s += " mock";
  const out: string[] = [];
  const size = Math.max(1, Math.ceil(s.length / n));
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out;
}

/** The reply as SSE frames (`data: …\n\n` each), ending with `data: [DONE]`. */
export function mockChatFrames(req: Obj, id: string, textEvents: number): string[] {
  const p = plan(req);
  const head = `data: {"id":"${id}","object":"chat.completion.chunk","created":1700000000,"model":${JSON.stringify(String(req.model))},"choices":[{"index":0,"delta":`;
  const frame = (delta: string, finish = "null"): string => `${head}${delta},"logprobs":null,"finish_reason":${finish}}]}\n\n`;
  const frames = [frame(`{"role":"assistant","content":""}`)];
  for (const r of p.reasoning) frames.push(frame(`{"reasoning_content":${JSON.stringify(r)}}`));
  const text = pieces(p.text, textEvents);
  for (const t of text) frames.push(frame(`{"content":${JSON.stringify(t)}}`));
  if (p.tool !== null) {
    frames.push(
      frame(
        `{"tool_calls":[{"index":0,"id":"${TOOL_ID}","type":"function","function":{"name":${JSON.stringify(p.tool)},"arguments":""}}]}`,
      ),
    );
    for (const a of MOCK_OPENAI_ARG_PIECES)
      frames.push(frame(`{"tool_calls":[{"index":0,"function":{"arguments":${JSON.stringify(a)}}}]}`));
  }
  frames.push(frame("{}", p.tool === null ? '"stop"' : '"tool_calls"'));
  const so = req.stream_options as Obj | null | undefined;
  if (typeof so === "object" && so !== null && so.include_usage === true) {
    frames.push(
      `data: {"id":"${id}","object":"chat.completion.chunk","created":1700000000,"model":${JSON.stringify(String(req.model))},"choices":[],"usage":${usage(p, completionTokens(p, text.length))}}\n\n`,
    );
  }
  frames.push("data: [DONE]\n\n");
  return frames;
}

/** An error body in OpenAI's shape. */
export function mockOpenAIErrorJson(status: number, message: string): string {
  const type = status === 429 ? "rate_limit_exceeded" : status >= 500 ? "server_error" : "invalid_request_error";
  return `{"error":{"message":${JSON.stringify(message)},"type":"${type}","param":null,"code":null}}`;
}
