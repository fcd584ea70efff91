/**
 * Errors in OpenAI's shape (`{"error":{"message","type","param","code"}}`) for the
 * `/v1/chat/completions` route. The gateway's own errors come from the one catalogue
 * (core/errors.ts) in Anthropic's shape; on this route they are re-shaped here, keeping
 * the status, the message and the GW_ERR code. An Anthropic-format upstream's error
 * body is re-shaped the same way; an OpenAI-format upstream's passes untouched.
 */

/** OpenAI's `type` for an Anthropic error type (the SDKs decide by status; this is for people). */
function openAIType(anthropicType: string): string {
  switch (anthropicType) {
    case "api_error":
    case "overloaded_error":
    case "timeout_error":
      return "server_error";
    case "rate_limit_error":
      return "rate_limit_exceeded";
    default:
      return anthropicType;
  }
}

export function openAIErrorJson(anthropicType: string, message: string, param: string | null, code: string | null): string {
  return `{"error":{"message":${JSON.stringify(message)},"type":${JSON.stringify(openAIType(anthropicType))},"param":${param === null ? "null" : JSON.stringify(param)},"code":${code === null ? "null" : JSON.stringify(code)}}}`;
}

const ANTHROPIC_ERROR = Buffer.from('"type":"error"');

/**
 * An error body in Anthropic's shape re-shaped for OpenAI clients; any other body is
 * returned as it is. `code` names the gateway's code when the gateway made the error.
 */
export function toOpenAIErrorBody(body: string | Uint8Array, code: string | null, param: string | null = null): string | Uint8Array {
  const buf = typeof body === "string" ? Buffer.from(body) : Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  if (!buf.includes(ANTHROPIC_ERROR)) return body;
  let parsed: { error?: { type?: unknown; message?: unknown } };
  try {
    parsed = JSON.parse(buf.toString("utf8")) as typeof parsed;
  } catch {
    return body;
  }
  const e = parsed.error;
  if (typeof e !== "object" || e === null) return body;
  return openAIErrorJson(
    typeof e.type === "string" ? e.type : "api_error",
    typeof e.message === "string" ? e.message : "error",
    param,
    code,
  );
}
