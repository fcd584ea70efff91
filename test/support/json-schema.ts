/**
 * A small JSON-schema checker for tests (type, required, enum, additionalProperties: false,
 * minLength, array items, nested objects): enough to say whether a tool call's arguments
 * would pass the checks an agent such as Claude Code runs on them. Written apart from the
 * mock's own check so that a test does not grade the mock with the mock's code.
 */
type Schema = Record<string, unknown>;

function kind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (v === null) return "null";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

/** Every violation of `schema` by `value`, as "path: problem" ([] = valid). */
export function violations(value: unknown, schema: unknown, path = "$"): string[] {
  if (typeof schema !== "object" || schema === null) return [];
  const s = schema as Schema;
  const out: string[] = [];
  const k = kind(value);
  if (typeof s.type === "string") {
    const ok = s.type === k || (s.type === "number" && k === "integer");
    if (!ok) return [`${path}: expected ${s.type}, got ${k}`];
  }
  if (Array.isArray(s.enum) && !s.enum.includes(value)) out.push(`${path}: not one of ${s.enum.join(", ")}`);
  if (typeof value === "string" && typeof s.minLength === "number" && value.length < s.minLength)
    out.push(`${path}: shorter than ${s.minLength}`);
  if (k === "array" && s.items !== undefined) (value as unknown[]).forEach((v, i) => out.push(...violations(v, s.items, `${path}[${i}]`)));
  if (k === "object") {
    const obj = value as Record<string, unknown>;
    const props = (s.properties ?? {}) as Record<string, unknown>;
    for (const r of (s.required ?? []) as string[]) if (!(r in obj)) out.push(`${path}: missing required ${r}`);
    for (const [key, v] of Object.entries(obj)) {
      if (key in props) out.push(...violations(v, props[key], `${path}.${key}`));
      else if (s.additionalProperties === false) out.push(`${path}: unexpected property ${key}`);
    }
  }
  return out;
}
