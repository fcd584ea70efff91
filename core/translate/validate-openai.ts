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
    return chat.is(input) ? null : explain(chat, input, "");
  } catch {
    return "body: could not be validated";
  }
}

/** The field a validation message names (the text before the first ": "), for OpenAI's `param`. */
export function paramOf(message: string): string | null {
  const i = message.indexOf(": ");
  return i <= 0 || message.startsWith("body:") ? null : message.slice(0, i);
}
