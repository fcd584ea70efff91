/**
 * Bedrock's InvokeModel shape for Claude, as pure transforms: the path carries the model id
 * (a foundation model, a cross-region inference profile such as `us.anthropic.…`, or an
 * ARN), and the body is the Messages body without `model` and `stream`, with
 * `anthropic_version: "bedrock-2023-05-31"` and the betas in `anthropic_beta` (Bedrock reads
 * no `anthropic-beta` header). CountTokens wraps that same body, base64, in its own envelope.
 */

export const BEDROCK_VERSION = "bedrock-2023-05-31";

/** `{base}/model/{id}/invoke`, `/invoke-with-response-stream` or `/count-tokens`. */
export function bedrockPath(basePath: string, modelId: string, stream: boolean, count: boolean): string {
  const op = count ? "count-tokens" : stream ? "invoke-with-response-stream" : "invoke";
  return `${basePath}/model/${encodeURIComponent(modelId)}/${op}`;
}

/** The InvokeModel body: `drop` names top-level fields the provider's policy removes. */
export function bedrockBody(parsed: Record<string, unknown>, betas: readonly string[], drop: readonly string[], count: boolean): Buffer {
  const out: Record<string, unknown> = { anthropic_version: BEDROCK_VERSION };
  for (const k in parsed) {
    if (k === "model" || k === "stream" || drop.includes(k)) continue;
    out[k] = parsed[k];
  }
  if (betas.length > 0) out.anthropic_beta = betas;
  if (!count) return Buffer.from(JSON.stringify(out));
  // CountTokens validates the wrapped body as an InvokeModel body, which needs max_tokens.
  if (out.max_tokens === undefined) out.max_tokens = 1;
  const inner = Buffer.from(JSON.stringify(out)).toString("base64");
  return Buffer.from(`{"input":{"invokeModel":{"body":"${inner}"}}}`);
}

/** CountTokens answers `{"inputTokens":N}`; Anthropic clients read `{"input_tokens":N}`. */
export function countTokensReply(body: Buffer): Buffer | null {
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch {
    return null;
  }
  const n = (v as { inputTokens?: unknown } | null)?.inputTokens;
  return typeof n === "number" && Number.isInteger(n) && n >= 0 ? Buffer.from(`{"input_tokens":${n}}`) : null;
}

/** What an AWS exception name means to an Anthropic client: a status and an error type. */
export interface MappedException {
  readonly status: number;
  readonly type: string;
}

/**
 * Bedrock runtime exceptions (lower camel case, as the event stream names them; the
 * `x-amzn-errortype` header uses upper camel case and is matched case-insensitively).
 * Throttling and "not ready" become 429 so the retry policy backs off and retries.
 */
const EXCEPTIONS: Readonly<Record<string, MappedException>> = {
  throttlingexception: { status: 429, type: "rate_limit_error" },
  modelnotreadyexception: { status: 429, type: "rate_limit_error" },
  servicequotaexceededexception: { status: 429, type: "rate_limit_error" },
  serviceunavailableexception: { status: 503, type: "overloaded_error" },
  internalserverexception: { status: 500, type: "api_error" },
  modelstreamerrorexception: { status: 502, type: "api_error" },
  modelerrorexception: { status: 502, type: "api_error" },
  modeltimeoutexception: { status: 504, type: "timeout_error" },
  validationexception: { status: 400, type: "invalid_request_error" },
  accessdeniedexception: { status: 403, type: "permission_error" },
  unrecognizedclientexception: { status: 401, type: "authentication_error" },
  resourcenotfoundexception: { status: 404, type: "not_found_error" },
};

/** Map an exception name (`throttlingException`, `ThrottlingException:http://…`); null if unknown. */
export function mapException(name: string): MappedException | null {
  const c = name.indexOf(":");
  const key = (c >= 0 ? name.slice(0, c) : name).trim().toLowerCase();
  return EXCEPTIONS[key] ?? null;
}

/** The `message` of an AWS JSON error body (`{"message":…}` or `{"Message":…}`), or "". */
export function awsErrorMessage(body: Buffer): string {
  try {
    const v = JSON.parse(body.toString("utf8")) as { message?: unknown; Message?: unknown };
    const m = v.message ?? v.Message;
    return typeof m === "string" ? m : "";
  } catch {
    return "";
  }
}
