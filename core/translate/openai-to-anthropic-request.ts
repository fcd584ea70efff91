/**
 * OpenAI Chat Completions request → Anthropic Messages request, for
 * `POST /v1/chat/completions` routed to an Anthropic-format provider. The input is
 * already validated (core/translate/validate-openai.ts). Pure.
 *
 * System and developer messages, wherever they appear, become the `system` prompt in
 * order (Anthropic has no mid-conversation system turn). Consecutive `tool` messages and
 * the user turn after them become one user message of `tool_result` blocks, as Anthropic
 * requires. Dropped (docs/openai.md): `response_format`, `metadata`, `logprobs`, `seed`,
 * penalties, `logit_bias`, `stream_options` (the gateway answers include_usage itself).
 */

type Obj = Record<string, unknown>;

/** Anthropic requires max_tokens; OpenAI does not. Used when the client sends neither field. */
export const DEFAULT_MAX_TOKENS = 4096;

/** Thinking budgets for `reasoning_effort` (Anthropic's minimum budget is 1024). */
const EFFORT_BUDGET: Record<string, number> = { low: 1024, medium: 4096, high: 16384, xhigh: 32768 };

/** A request that validates but cannot be expressed: the field and why. */
export interface TranslateError {
  param: string;
  message: string;
}

export function isTranslateError(v: unknown): v is TranslateError {
  return typeof v === "object" && v !== null && typeof (v as TranslateError).param === "string" && !("messages" in v);
}

export function openAIToAnthropicRequest(req: Obj, model: string): Obj | TranslateError {
  const system: Obj[] = [];
  const messages: Obj[] = [];
  const list = req.messages as Obj[];
  for (let i = 0; i < list.length; i++) {
    const m = list[i]!;
    const path = `messages.${i}`;
    switch (m.role) {
      case "system":
      case "developer":
        pushText(system, m.content);
        break;
      case "user": {
        const blocks = userBlocks(m.content, path);
        if (!Array.isArray(blocks)) return blocks;
        append(messages, "user", blocks);
        break;
      }
      case "assistant": {
        const blocks = assistantBlocks(m, path);
        if (!Array.isArray(blocks)) return blocks;
        if (blocks.length > 0) append(messages, "assistant", blocks);
        break;
      }
      case "tool": {
        const content = typeof m.content === "string" ? m.content : textOf(m.content as Obj[]);
        append(messages, "user", [{ type: "tool_result", tool_use_id: m.tool_call_id, content }]);
        break;
      }
    }
  }
  const maxTokens = num(req.max_completion_tokens) ?? num(req.max_tokens) ?? DEFAULT_MAX_TOKENS;
  const out: Obj = { model, max_tokens: maxTokens, messages };
  if (system.length > 0) out.system = system;
  if (typeof req.temperature === "number") out.temperature = req.temperature;
  if (typeof req.top_p === "number") out.top_p = req.top_p;
  const stop = req.stop;
  if (typeof stop === "string") out.stop_sequences = [stop];
  else if (Array.isArray(stop) && stop.length > 0) out.stop_sequences = stop;
  if (req.stream === true) out.stream = true;
  if (typeof req.user === "string" && req.user !== "") out.metadata = { user_id: req.user };

  const tools = req.tools as Obj[] | undefined;
  if (Array.isArray(tools) && tools.length > 0) {
    out.tools = tools.map((t) => {
      const fn = t.function as Obj;
      const tool: Obj = { name: fn.name, input_schema: fn.parameters ?? { type: "object", properties: {} } };
      if (typeof fn.description === "string") tool.description = fn.description;
      return tool;
    });
    let choice: Obj | null = null;
    const tc = req.tool_choice;
    if (tc === "auto") choice = { type: "auto" };
    else if (tc === "none") choice = { type: "none" };
    else if (tc === "required") choice = { type: "any" };
    else if (typeof tc === "object" && tc !== null) choice = { type: "tool", name: ((tc as Obj).function as Obj).name };
    if (req.parallel_tool_calls === false) (choice ??= { type: "auto" }).disable_parallel_tool_use = true;
    if (choice !== null) out.tool_choice = choice;
  }

  const effort = req.reasoning_effort;
  const budget = typeof effort === "string" ? EFFORT_BUDGET[effort] : undefined;
  if (budget !== undefined) {
    // The budget must stay below max_tokens; raise max_tokens rather than starve the answer.
    out.thinking = { type: "enabled", budget_tokens: budget };
    if (maxTokens <= budget) out.max_tokens = budget + maxTokens;
  }
  return out;
}

function num(v: unknown): number | null {
  return typeof v === "number" ? v : null;
}

function textOf(parts: Obj[]): string {
  let s = "";
  for (const p of parts) if (p.type === "text") s += String(p.text);
  return s;
}

function pushText(into: Obj[], content: unknown): void {
  if (typeof content === "string") {
    if (content !== "") into.push({ type: "text", text: content });
    return;
  }
  for (const p of content as Obj[]) if (p.type === "text" && p.text !== "") into.push({ type: "text", text: p.text });
}

/** Same-role turns in a row are merged: tool results then the user's words make one turn. */
function append(messages: Obj[], role: string, blocks: Obj[]): void {
  const last = messages[messages.length - 1];
  if (last !== undefined && last.role === role) (last.content as Obj[]).push(...blocks);
  else messages.push({ role, content: blocks });
}

const DATA_URL = /^data:([^;,]+);base64,/;

function imageBlock(url: string): Obj {
  const m = DATA_URL.exec(url);
  if (m !== null) return { type: "image", source: { type: "base64", media_type: m[1], data: url.slice(m[0].length) } };
  return { type: "image", source: { type: "url", url } };
}

function userBlocks(content: unknown, path: string): Obj[] | TranslateError {
  if (typeof content === "string") return [{ type: "text", text: content }];
  const out: Obj[] = [];
  const parts = content as Obj[];
  for (let j = 0; j < parts.length; j++) {
    const p = parts[j]!;
    if (p.type === "text") out.push({ type: "text", text: p.text });
    else if (p.type === "image_url") out.push(imageBlock(String((p.image_url as Obj).url)));
    else if (p.type === "file") {
      const f = p.file as Obj;
      const m = typeof f.file_data === "string" ? DATA_URL.exec(f.file_data) : null;
      if (m === null)
        return {
          param: `${path}.content.${j}.file`,
          message: `${path}.content.${j}.file: only inline file_data (a base64 data: URL) can be sent to this model`,
        };
      out.push({ type: "document", source: { type: "base64", media_type: m[1], data: (f.file_data as string).slice(m[0].length) } });
    } else
      return {
        param: `${path}.content.${j}.type`,
        message: `${path}.content.${j}.type: ${JSON.stringify(p.type)} parts are not supported by this model`,
      };
  }
  return out;
}

function assistantBlocks(m: Obj, path: string): Obj[] | TranslateError {
  const out: Obj[] = [];
  const c = m.content;
  if (typeof c === "string") {
    if (c !== "") out.push({ type: "text", text: c });
  } else if (Array.isArray(c)) {
    for (const p of c as Obj[]) {
      const t = p.type === "text" ? p.text : p.type === "refusal" ? p.refusal : null;
      if (typeof t === "string" && t !== "") out.push({ type: "text", text: t });
    }
  }
  const calls = m.tool_calls as Obj[] | undefined;
  if (Array.isArray(calls)) {
    for (let k = 0; k < calls.length; k++) {
      const fn = calls[k]!.function as Obj;
      let input: unknown;
      try {
        input = fn.arguments === "" ? {} : JSON.parse(fn.arguments as string);
      } catch {
        input = null;
      }
      if (typeof input !== "object" || input === null || Array.isArray(input)) {
        const param = `${path}.tool_calls.${k}.function.arguments`;
        return { param, message: `${param}: expected a JSON object encoded as a string` };
      }
      out.push({ type: "tool_use", id: calls[k]!.id, name: fn.name, input });
    }
  }
  return out;
}
