/**
 * Validation of `POST /v1/chat/completions` bodies: one typia `is` on the valid path,
 * typia `validate` only to explain a failure as one line naming the field
 * (`messages.0.role: expected ...`), like core/validate.ts does for /v1/messages.
 */
import typia from "typia";
import type { ChatRequest } from "../types/openai.js";
import { explain, type Checker } from "../validate.js";

const chat: Checker = {
  is: typia.createIs<ChatRequest>(),
  validate: typia.createValidate<ChatRequest>(),
};

/** null when valid, else `path: expected X, got Y`. Never throws. */
export function validateChatRequest(input: unknown): string | null {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return "body: expected a JSON object";
  try {
    if (chat.is(input)) return null;
    return badRole(input as { messages?: unknown }) ?? explain(chat, input, "").replace(TEMPERATURE_01, TEMPERATURE_02);
  } catch {
    return "body: could not be validated";
  }
}

const ROLES = new Set(["system", "developer", "user", "assistant", "tool"]);
// The shared explainer words temperature for the Messages API (0 to 1); OpenAI allows 0 to 2.
const TEMPERATURE_01 = "temperature: expected a number between 0 and 1";
const TEMPERATURE_02 = "temperature: expected a number between 0 and 2";

/** typia names a failed union by its member types; an unknown role is clearer said directly. */
function badRole(req: { messages?: unknown }): string | null {
  if (!Array.isArray(req.messages)) return null;
  for (let i = 0; i < req.messages.length; i++) {
    const m = req.messages[i] as { role?: unknown } | null;
    if (typeof m === "object" && m !== null && !ROLES.has(m.role as string)) {
      return `messages.${i}.role: expected "system" | "developer" | "user" | "assistant" | "tool", got ${JSON.stringify(m.role) ?? "missing"}`;
    }
  }
  return null;
}

/** The field a validation message names (the text before the first ": "), for OpenAI's `param`. */
export function paramOf(message: string): string | null {
  const i = message.indexOf(": ");
  return i <= 0 || message.startsWith("body:") ? null : message.slice(0, i);
}
