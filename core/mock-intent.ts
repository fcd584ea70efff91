/**
 * What the built-in mock makes of a request: the user's own latest words (without the
 * `<system-reminder>` and other blocks that agents such as Claude Code inject into user
 * turns), and whether that prompt asks for a tool in the documented way, with arguments
 * built to satisfy the tool's `input_schema` from the request.
 *
 * PURE module: no I/O. Kept apart from core/mock-reply.ts, which renders the reply.
 *
 * The documented ways to make the mock call a tool (README "Demo"):
 *   use the Read tool on FILE          the main argument of the tool gets FILE
 *   use the Bash tool to run CMD       (also: "to", "for", "with", "at")
 *   use the NAME tool with {JSON}      exactly these arguments (checked against the schema)
 * A tool is only ever called when the prompt names one the request offers.
 */

/** Tags whose blocks an agent injects into a user turn; they are never the user's prompt. */
const INJECTED_TAGS = [
  "system-reminder",
  "command-name",
  "command-message",
  "local-command-stdout",
  "local-command-stderr",
  "user-prompt-submit-hook",
];
const INJECTED = new RegExp(`<(${INJECTED_TAGS.join("|")})>[\\s\\S]*?(?:</\\1>|$)`, "g");

/** "use the Read tool on FILE", "use the Bash tool to run CMD", "use the X tool with {...}". */
const TOOL_ASK = /\buse\s+the\s+([A-Za-z0-9_.-]+)\s+tool\b(?:\s+(?:to\s+run|on|to|for|with|at)\s+([\s\S]+))?/i;

/** Argument names that take the prompt's main value, best first. */
const MAIN_ARGS = ["command", "file_path", "notebook_path", "path", "pattern", "url", "query", "prompt"];

export interface ToolCall {
  name: string;
  input: Record<string, unknown>;
}

/** A tool the prompt asks for: the call to make, or why it cannot be made. */
export type ToolAsk = { ok: true; call: ToolCall } | { ok: false; reason: string };

type Schema = Record<string, unknown>;

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** The user's own text in a content value: text blocks, with injected blocks removed. */
export function promptText(content: unknown): string {
  const parts: string[] = [];
  const add = (t: string): void => {
    const s = t.replace(INJECTED, "").trim();
    if (s !== "") parts.push(s);
  };
  if (typeof content === "string") add(content);
  else if (Array.isArray(content)) {
    for (const b of content) if (isObj(b) && b.type === "text" && typeof b.text === "string") add(b.text);
  }
  return parts.join("\n");
}

/** The prompt's value for a tool: quotes and backticks around it and a final full stop removed. */
function cleanValue(raw: string): string {
  let v = raw.trim().split("\n")[0]!.trim();
  const q = v[0];
  if ((q === '"' || q === "'" || q === "`") && v.length > 1) {
    const end = v.indexOf(q, 1);
    if (end > 0) return v.slice(1, end);
  }
  v = v.replace(/[.!?]+$/, "");
  return v;
}

function typeOf(schema: Schema): string | undefined {
  const t = schema.type;
  if (typeof t === "string") return t;
  if (Array.isArray(t)) return t.find((x) => x !== "null") as string | undefined;
  return undefined;
}

/** A value valid against a (sub)schema: its default, its first enum value, else the least value of its type. */
function filler(name: string, schema: Schema, value: string): unknown {
  if (schema.default !== undefined) return schema.default;
  if (Array.isArray(schema.enum) && schema.enum.length > 0) return schema.enum[0];
  switch (typeOf(schema)) {
    case "string":
      // Claude Code's Agent tool rejects an unknown agent type: ask for the general one.
      if (name === "subagent_type") return "general-purpose";
      return value === "" ? "mock" : value.slice(0, 80);
    case "integer":
    case "number":
      return typeof schema.minimum === "number" ? Math.ceil(schema.minimum) : 1;
    case "boolean":
      return false;
    case "array":
      return [];
    case "object":
      return {};
    default:
      return value;
  }
}

/** Problems of `input` against a schema's required fields, property types and enums ([] = valid). */
export function schemaProblems(input: Record<string, unknown>, schema: unknown): string[] {
  if (!isObj(schema)) return [];
  const props = isObj(schema.properties) ? schema.properties : {};
  const out: string[] = [];
  for (const r of Array.isArray(schema.required) ? schema.required : []) {
    if (typeof r === "string" && !(r in input)) out.push(`the required parameter \`${r}\` is missing`);
  }
  for (const [k, v] of Object.entries(input)) {
    const p = props[k];
    if (!isObj(p)) {
      if (schema.additionalProperties === false) out.push(`\`${k}\` is not a parameter of this tool`);
      continue;
    }
    const t = typeOf(p);
    const actual = Array.isArray(v) ? "array" : v === null ? "null" : typeof v === "object" ? "object" : typeof v;
    const fits = t === undefined || t === actual || (t === "integer" && Number.isInteger(v)) || (t === "number" && actual === "number");
    if (!fits) out.push(`\`${k}\` must be of type ${t}`);
    else if (Array.isArray(p.enum) && !p.enum.some((e) => e === v)) out.push(`\`${k}\` must be one of ${p.enum.map(String).join(", ")}`);
  }
  return out;
}

/** Whether the schema requires a string argument (one the prompt must supply). */
function requiredStrings(schema: unknown): boolean {
  if (!isObj(schema) || !isObj(schema.properties) || !Array.isArray(schema.required)) return false;
  const props = schema.properties;
  return schema.required.some((r) => typeof r === "string" && isObj(props[r]) && typeOf(props[r] as Schema) === "string");
}

/** Arguments for `schema` where the prompt's value goes to the tool's main argument. */
function buildInput(schema: unknown, value: string): Record<string, unknown> {
  if (!isObj(schema) || !isObj(schema.properties)) return {};
  const props = schema.properties;
  const required = (Array.isArray(schema.required) ? schema.required : []).filter(
    (r): r is string => typeof r === "string" && isObj(props[r]),
  );
  const strings = Object.keys(props).filter((k) => typeOf(props[k] as Schema) === "string");
  const main =
    MAIN_ARGS.find((k) => required.includes(k) && strings.includes(k)) ??
    required.find((k) => strings.includes(k)) ??
    MAIN_ARGS.find((k) => strings.includes(k));
  const input: Record<string, unknown> = {};
  if (main !== undefined && value !== "") input[main] = value;
  for (const r of required) if (!(r in input)) input[r] = filler(r, props[r] as Schema, value);
  return input;
}

/**
 * The tool call a prompt asks for, or null when it asks for none. A tool the request does not
 * offer, or explicit arguments that do not fit its schema, give a reason instead of a call.
 */
export function toolAsk(prompt: string, tools: unknown): ToolAsk | null {
  const m = TOOL_ASK.exec(prompt);
  if (m === null) return null;
  const wanted = m[1]!;
  const list = Array.isArray(tools) ? tools : [];
  const tool = list.find((t) => isObj(t) && typeof t.name === "string" && t.name.toLowerCase() === wanted.toLowerCase()) as
    | { name: string; input_schema?: unknown }
    | undefined;
  if (tool === undefined) {
    const names = list.filter((t) => isObj(t) && typeof t.name === "string").map((t) => (t as { name: string }).name);
    return {
      ok: false,
      reason: `this request offers no tool named ${wanted}${names.length > 0 ? ` (it offers: ${names.join(", ")})` : ""}`,
    };
  }
  const rest = m[2] === undefined ? "" : m[2].trim();
  let input: Record<string, unknown>;
  if (rest.startsWith("{")) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(rest.slice(0, rest.lastIndexOf("}") + 1));
    } catch {
      return { ok: false, reason: `the arguments for ${tool.name} are not valid JSON` };
    }
    if (!isObj(parsed)) return { ok: false, reason: `the arguments for ${tool.name} must be a JSON object` };
    input = parsed;
  } else {
    const value = cleanValue(rest);
    if (value === "" && requiredStrings(tool.input_schema)) {
      return { ok: false, reason: `say what the ${tool.name} tool should work on, e.g. "use the ${tool.name} tool on <value>"` };
    }
    input = buildInput(tool.input_schema, value);
  }
  const problems = schemaProblems(input, tool.input_schema);
  if (problems.length > 0) return { ok: false, reason: `cannot call ${tool.name}: ${problems.join("; ")}` };
  return { ok: true, call: { name: tool.name, input } };
}
