/**
 * Anthropic Messages request → OpenAI Chat Completions request, for `POST /v1/messages`
 * routed to an OpenAI-format provider. The input is already validated (core/validate.ts).
 * Pure: one object in, one object out.
 *
 * Dropped because OpenAI has no equivalent (docs/openai.md lists them): `cache_control`
 * anywhere, `context_management`, `output_config`, `thinking` (config, blocks and their
 * `signature`, redacted thinking), `top_k`, `service_tier`, `container`, `mcp_servers`,
 * server tools (web search, bash, ...), toolsets, and the `anthropic-beta` header.
 */

type Obj = Record<string, unknown>;

export interface OpenAIRequestOptions {
  /** Model name to send upstream. */
  model: string;
}

function isObj(v: unknown): v is Obj {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function anthropicToOpenAIRequest(req: Obj, opt: OpenAIRequestOptions): Obj {
  const messages: Obj[] = [];
  const system = systemText(req.system);
  if (system !== null) messages.push({ role: "system", content: system });
  for (const m of req.messages as Obj[]) addMessage(messages, m);

  const out: Obj = { model: opt.model, messages };
  // max_completion_tokens is the current name; OpenAI's reasoning models refuse max_tokens.
  if (typeof req.max_tokens === "number") out.max_completion_tokens = req.max_tokens;
  if (typeof req.temperature === "number") out.temperature = req.temperature;
  if (typeof req.top_p === "number") out.top_p = req.top_p;
  if (Array.isArray(req.stop_sequences) && req.stop_sequences.length > 0) out.stop = req.stop_sequences;
  if (req.stream === true) {
    out.stream = true;
    // Usage arrives only on request; the gateway needs it for budgets and the ledger.
    out.stream_options = { include_usage: true };
  }
  const md = req.metadata;
  if (isObj(md) && typeof md.user_id === "string" && md.user_id !== "") out.user = md.user_id;

  const tools = Array.isArray(req.tools) ? functionTools(req.tools as Obj[]) : [];
  const tc = isObj(req.tool_choice) ? req.tool_choice : null;
  if (tools.length > 0) {
    out.tools = tools;
    if (tc !== null) {
      const c = toolChoice(tc);
      if (c !== null) out.tool_choice = c;
      if (tc.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
    }
  }
  return out;
}

/**
 * The translated request for one target: its model, and its output limit under the field
 * that provider knows (`max_tokens` for older OpenAI-compatible servers). Key order kept.
 */
export function forTarget(req: Obj, model: string, maxTokensField: "max_completion_tokens" | "max_tokens"): Obj {
  const out: Obj = {};
  for (const k in req) {
    if (k === "model") out.model = model;
    else if (k === "max_completion_tokens") out[maxTokensField] = req[k];
    else out[k] = req[k];
  }
  return out;
}

function systemText(system: unknown): string | null {
  if (typeof system === "string") return system === "" ? null : system;
  if (!Array.isArray(system)) return null;
  const parts: string[] = [];
  for (const b of system) if (isObj(b) && typeof b.text === "string") parts.push(b.text);
  return parts.length === 0 ? null : parts.join("\n\n");
}

/** Custom tools become functions; server tools and toolsets have no OpenAI form and are dropped. */
function functionTools(tools: Obj[]): Obj[] {
  const out: Obj[] = [];
  for (const t of tools) {
    if (t.type !== undefined && t.type !== null && t.type !== "custom") continue;
    const fn: Obj = { name: t.name, parameters: t.input_schema ?? { type: "object", properties: {} } };
    if (typeof t.description === "string") fn.description = t.description;
    if (typeof t.strict === "boolean") fn.strict = t.strict;
    out.push({ type: "function", function: fn });
  }
  return out;
}

function toolChoice(tc: Obj): unknown {
  switch (tc.type) {
    case "auto":
      return "auto";
    case "any":
      return "required";
    case "none":
      return "none";
    case "tool":
      return { type: "function", function: { name: tc.name } };
    default:
      return null;
  }
}

/** A data: URL or a plain URL for an Anthropic image/document source. */
function sourceUrl(src: unknown): string | null {
  if (!isObj(src)) return null;
  if (src.type === "base64") return `data:${String(src.media_type)};base64,${String(src.data)}`;
  if (src.type === "url") return String(src.url);
  return null;
}

/** An Anthropic user-side block as an OpenAI content part, or null when it has none. */
function userPart(b: Obj): Obj | null {
  switch (b.type) {
    case "text":
      return { type: "text", text: b.text };
    case "image": {
      const url = sourceUrl(b.source);
      return url === null ? null : { type: "image_url", image_url: { url } };
    }
    case "document": {
      const src = b.source;
      if (!isObj(src)) return null;
      if (src.type === "text") return { type: "text", text: src.data };
      if (src.type === "base64") {
        const file: Obj = { file_data: sourceUrl(src) };
        file.filename = typeof b.title === "string" ? b.title : "document.pdf";
        return { type: "file", file };
      }
      if (src.type === "url") return { type: "text", text: String(src.url) };
      return null;
    }
    default:
      return null;
  }
}

function addMessage(out: Obj[], m: Obj): void {
  const content = m.content;
  if (m.role === "system") {
    const t = typeof content === "string" ? content : systemText(content);
    if (t !== null) out.push({ role: "system", content: t });
    return;
  }
  if (m.role === "assistant") return addAssistant(out, content);
  if (typeof content === "string") {
    out.push({ role: "user", content });
    return;
  }
  // Tool results become `tool` messages, which OpenAI wants right after the assistant's
  // tool_calls, so they go first; the turn's other blocks follow as one user message.
  const parts: Obj[] = [];
  for (const b of content as Obj[]) {
    if (b.type === "tool_result") {
      addToolResult(out, parts, b);
      continue;
    }
    const p = userPart(b);
    if (p !== null) parts.push(p);
  }
  if (parts.length > 0) out.push({ role: "user", content: collapse(parts) });
}

/** A single text part is sent as a plain string: every compatible server accepts that. */
function collapse(parts: Obj[]): unknown {
  return parts.length === 1 && parts[0]!.type === "text" ? parts[0]!.text : parts;
}

function addToolResult(out: Obj[], userParts: Obj[], b: Obj): void {
  let text = "";
  const c = b.content;
  if (typeof c === "string") text = c;
  else if (Array.isArray(c)) {
    for (const p of c as Obj[]) {
      if (p.type === "text") text = text === "" ? String(p.text) : `${text}\n${String(p.text)}`;
      else {
        // OpenAI tool messages carry text only: images and documents follow as user content.
        const up = userPart(p);
        if (up !== null) userParts.push(up);
      }
    }
  }
  // OpenAI has no is_error flag: the model is told in the text.
  if (b.is_error === true) text = text === "" ? "Error" : `Error: ${text}`;
  out.push({ role: "tool", tool_call_id: b.tool_use_id, content: text });
}

function addAssistant(out: Obj[], content: unknown): void {
  if (typeof content === "string") {
    out.push({ role: "assistant", content });
    return;
  }
  let text: string | null = null;
  let calls: Obj[] | null = null;
  for (const b of content as Obj[]) {
    if (b.type === "text") text = text === null ? String(b.text) : text + String(b.text);
    else if (b.type === "tool_use") {
      (calls ??= []).push({ id: b.id, type: "function", function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } });
    }
    // thinking / redacted_thinking: their signatures mean nothing to another provider.
  }
  // OpenAI refuses an assistant turn with neither content nor tool_calls (e.g. thinking only).
  const msg: Obj = { role: "assistant", content: text ?? (calls === null ? "" : null) };
  if (calls !== null) msg.tool_calls = calls;
  out.push(msg);
}
