/**
 * The one error catalogue. Every error the gateway itself produces has a code
 * `GW_ERR_<AREA>_<WHAT>`, an HTTP status and an Anthropic error type. docs/errors.md
 * lists the same table; test/core/errors.test.ts pins the two together.
 * Across threads, match on `code`, never on `instanceof`.
 */
export interface CatalogueEntry {
  readonly status: number;
  readonly type: string;
  /** Default message; some call sites give a more precise one. */
  readonly message: string;
}

export const CATALOGUE = {
  GW_ERR_REQ_INVALID_JSON: { status: 400, type: "invalid_request_error", message: "request body is not valid JSON" },
  GW_ERR_REQ_VALIDATION: { status: 400, type: "invalid_request_error", message: "request body failed validation" },
  GW_ERR_REQ_BODY_TOO_LARGE: { status: 413, type: "request_too_large", message: "request body exceeds the size limit" },
  GW_ERR_REQ_TIMEOUT: { status: 408, type: "timeout_error", message: "request body was not received in time" },
  GW_ERR_REQ_INVALID_HEADER: {
    status: 400,
    type: "invalid_request_error",
    message: "a request header has a value that cannot be forwarded",
  },
  GW_ERR_REQ_INVALID_QUERY: {
    status: 400,
    type: "invalid_request_error",
    message: "the query string must be ASCII (percent-encode other bytes)",
  },
  GW_ERR_REQ_CACHE_HEADER: { status: 400, type: "invalid_request_error", message: "x-portcullis-cache must be use, refresh or bypass" },
  GW_ERR_REQ_CONTENT_TYPE: { status: 400, type: "invalid_request_error", message: "content-type must be application/json" },
  GW_ERR_REQ_CONTENT_LENGTH: { status: 400, type: "invalid_request_error", message: "conflicting Content-Length headers" },
  GW_ERR_AUTH_MISSING_KEY: {
    status: 401,
    type: "authentication_error",
    message: "missing API key: send x-api-key or Authorization: Bearer",
  },
  GW_ERR_AUTH_INVALID_KEY: { status: 401, type: "authentication_error", message: "invalid API key" },
  GW_ERR_AUTH_MISSING_UPSTREAM_KEY: {
    status: 401,
    type: "authentication_error",
    message: "this model's provider takes your own provider key: send it in x-upstream-api-key",
  },
  GW_ERR_ROUTE_NOT_FOUND: { status: 404, type: "not_found_error", message: "no such endpoint" },
  GW_ERR_MODEL_NOT_FOUND: { status: 404, type: "not_found_error", message: "no route for this model" },
  GW_ERR_MCP_SESSION_MISSING: {
    status: 400,
    type: "invalid_request_error",
    message: "missing Mcp-Session-Id header: send initialize first",
  },
  GW_ERR_MCP_SESSION_UNKNOWN: { status: 404, type: "not_found_error", message: "unknown or expired MCP session: initialize again" },
  GW_ERR_MCP_ORIGIN_FORBIDDEN: { status: 403, type: "permission_error", message: "this Origin may not use the MCP endpoint" },
  GW_ERR_MCP_METHOD_NOT_ALLOWED: {
    status: 405,
    type: "invalid_request_error",
    message: "the MCP endpoint accepts POST only (no SSE stream, sessions expire by themselves)",
  },
  GW_ERR_UPSTREAM_CONNECT: { status: 502, type: "api_error", message: "could not connect to the upstream provider" },
  GW_ERR_UPSTREAM_PROTOCOL: { status: 502, type: "api_error", message: "the upstream provider sent an invalid response" },
  GW_ERR_UPSTREAM_ERROR_NOT_JSON: {
    status: 502,
    type: "api_error",
    message: "the upstream provider answered an error whose body is not JSON",
  },
  GW_ERR_UPSTREAM_TIMEOUT: { status: 504, type: "timeout_error", message: "the upstream provider did not answer in time" },
  GW_ERR_UPSTREAM_STREAM_CUT: { status: 502, type: "api_error", message: "the upstream stream ended before the message was complete" },
  GW_ERR_UPSTREAM_AUTH: { status: 502, type: "api_error", message: "the gateway could not obtain credentials for the upstream provider" },
  GW_ERR_UPSTREAM_KEYS_RESTING: {
    status: 429,
    type: "rate_limit_error",
    message: "every upstream key of this model's providers is rate-limited; retry after retry-after",
  },
  GW_ERR_UPSTREAM_CIRCUIT_OPEN: {
    status: 503,
    type: "overloaded_error",
    message: "every provider for this model is unavailable (circuit breaker open)",
  },
  GW_ERR_SHED_OVERLOADED: { status: 503, type: "overloaded_error", message: "the gateway is overloaded; retry later" },
  GW_ERR_SERVER_DRAINING: {
    status: 503,
    type: "overloaded_error",
    message: "the gateway is shutting down; retry (a new connection reaches another instance)",
  },
  GW_ERR_RATE_LIMITED: { status: 429, type: "rate_limit_error", message: "rate limit exceeded for this key" },
  GW_ERR_AUTH_MODEL_FORBIDDEN: { status: 403, type: "permission_error", message: "this key may not use this model" },
  GW_ERR_BUDGET_EXCEEDED: { status: 429, type: "rate_limit_error", message: "the budget of this key is used up" },
  GW_ERR_BUDGET_UNAVAILABLE: {
    status: 503,
    type: "overloaded_error",
    message: "budgets cannot be checked: the usage ledger is unavailable",
  },
  GW_ERR_ADMIN_UNAUTHORIZED: { status: 401, type: "authentication_error", message: "missing or invalid admin key" },
  GW_ERR_ADMIN_INVALID: { status: 400, type: "invalid_request_error", message: "invalid admin request" },
  GW_ERR_ADMIN_KEY_NOT_FOUND: { status: 404, type: "not_found_error", message: "no such key" },
  GW_ERR_ADMIN_KEY_TABLE_FULL: {
    status: 409,
    type: "invalid_request_error",
    message: "the key table is full (MAX_KEYS); restart to reclaim revoked keys' slots",
  },
  GW_ERR_LEDGER_UNAVAILABLE: { status: 503, type: "api_error", message: "the usage ledger is unavailable" },
  GW_ERR_SERVER_INTERNAL: { status: 500, type: "api_error", message: "internal gateway error" },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof CATALOGUE;

/** Anthropic's error types, in a fixed order (metrics label them by index). */
export const ERROR_TYPES = [
  "invalid_request_error",
  "authentication_error",
  "permission_error",
  "not_found_error",
  "request_too_large",
  "rate_limit_error",
  "api_error",
  "timeout_error",
  "overloaded_error",
] as const;

/** Anthropic error type for an HTTP status (used for upstream statuses with no usable body). */
export function errorTypeForStatus(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 408:
      return "timeout_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
      return "overloaded_error";
    case 504:
      return "timeout_error";
    case 529:
      return "overloaded_error";
    default:
      return status >= 500 ? "api_error" : "invalid_request_error";
  }
}

export function errorTypeIndex(type: string): number {
  const i = (ERROR_TYPES as readonly string[]).indexOf(type);
  return i < 0 ? ERROR_TYPES.indexOf("api_error") : i;
}

/** The standard reason phrase, for uWS writeStatus ("404 Not Found"). Built once. */
const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  408: "Request Timeout",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Entity",
  429: "Too Many Requests",
  500: "Internal Server Error",
  501: "Not Implemented",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
  529: "Overloaded",
};
const STATUS_LINES = new Map<number, string>();
export function statusLine(status: number): string {
  let s = STATUS_LINES.get(status);
  if (s === undefined) {
    s = `${status} ${REASONS[status] ?? "Status"}`;
    STATUS_LINES.set(status, s);
  }
  return s;
}

/** Body prefixes for catalogue errors with their default message, serialised once. */
const PREFIXES = new Map<string, string>();
for (const [code, e] of Object.entries(CATALOGUE)) {
  PREFIXES.set(code, `{"type":"error","error":{"type":${JSON.stringify(e.type)},"message":${JSON.stringify(e.message)}},"request_id":"`);
}

/** Anthropic-shaped error body. `message` overrides the catalogue text. */
export function errorBody(code: ErrorCode, requestId: string, message?: string): string {
  if (message === undefined) return PREFIXES.get(code)! + requestId + '"}';
  return `{"type":"error","error":{"type":${JSON.stringify(CATALOGUE[code].type)},"message":${JSON.stringify(message)}},"request_id":${JSON.stringify(requestId)}}`;
}

/** An SSE `event: error` frame in Anthropic's shape, for failures after a stream started. */
export function sseErrorFrame(type: string, message: string, requestId: string): string {
  return `event: error\ndata: {"type":"error","error":{"type":${JSON.stringify(type)},"message":${JSON.stringify(message)}},"request_id":${JSON.stringify(requestId)}}\n\n`;
}
