/**
 * Request types of the Anthropic Messages API (`POST /v1/messages`) and the
 * count_tokens endpoint (`POST /v1/messages/count_tokens`), as validated by
 * the gateway on the hot path (see core/validate.ts).
 *
 * Policy:
 *  - Known shapes are validated strictly (required fields, field types, ranges).
 *  - Unknown fields anywhere are allowed (validated with `typia.validate`, not
 *    `validateEquals`), so new API features pass through untouched.
 *  - Content blocks whose `type` is not one of the known names pass as opaque
 *    blocks (`UnknownContentBlock`): new block types (server_tool_use,
 *    web_search_tool_result, search_result, container_upload, mcp_tool_use, ...)
 *    appear constantly and must not be rejected by the gateway.
 *  - Where the upstream API is the authority on a value (model names, media
 *    types, cache ttl strings, ...), we only check the JSON type and leave the
 *    value check to upstream: lenient rather than rejecting real clients.
 */
import type { tags } from "typia";

/** Any JSON object (not null, not an array). Keys are not inspected. */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface JsonObject {}

export type NonEmptyString = string & tags.MinLength<1>;

/* ------------------------------------------------------------------------ */
/* Shared                                                                   */
/* ------------------------------------------------------------------------ */

export interface CacheControl {
  type: "ephemeral";
  /** "5m" | "1h" today; left to upstream to check. */
  ttl?: string;
}

/* ------------------------------------------------------------------------ */
/* Content blocks                                                           */
/* ------------------------------------------------------------------------ */

export interface TextBlock {
  type: "text";
  text: string;
  citations?: JsonObject[] | null;
  cache_control?: CacheControl | null;
}

export interface Base64Source {
  type: "base64";
  media_type: string;
  data: string;
}

export interface UrlSource {
  type: "url";
  url: string;
}

export interface FileSource {
  type: "file";
  file_id: string;
}

export interface PlainTextSource {
  type: "text";
  media_type: string;
  data: string;
}

export interface ContentSource {
  type: "content";
  content: string | Array<TextBlock | ImageBlock>;
}

export type ImageSource = Base64Source | UrlSource | FileSource;

export type DocumentSource = Base64Source | PlainTextSource | UrlSource | ContentSource | FileSource;

export interface ImageBlock {
  type: "image";
  source: ImageSource;
  cache_control?: CacheControl | null;
}

export interface DocumentBlock {
  type: "document";
  source: DocumentSource;
  title?: string | null;
  context?: string | null;
  citations?: JsonObject | null;
  cache_control?: CacheControl | null;
}

export interface ToolUseBlock {
  type: "tool_use";
  id: string;
  name: string;
  input: JsonObject;
  cache_control?: CacheControl | null;
}

/**
 * The minimal shape every content block must have. Blocks whose `type` is not a
 * known name are only checked against this shape (opaque pass-through).
 */
export interface BlockEnvelope {
  type: string;
}

/** A content block of a type the gateway does not know: passed through. */
export interface UnknownContentBlock {
  type: string;
  [key: string]: unknown;
}

export type ToolResultContentBlock = TextBlock | ImageBlock | DocumentBlock | UnknownContentBlock;

/**
 * `Content` is the element type of `content` when it is an array; the
 * validator instantiates it with `BlockEnvelope` and dispatches on `type`
 * itself (see core/validate.ts).
 */
export interface ToolResultBlock<Content = ToolResultContentBlock> {
  type: "tool_result";
  tool_use_id: string;
  content?: string | Content[];
  is_error?: boolean;
  cache_control?: CacheControl | null;
}

export interface ThinkingBlock {
  type: "thinking";
  thinking: string;
  signature: string;
}

export interface RedactedThinkingBlock {
  type: "redacted_thinking";
  data: string;
}

/**
 * A content block. Any block whose `type` is not one of the block types above
 * passes as `UnknownContentBlock` (server_tool_use, web_search_tool_result,
 * search_result, container_upload, mcp_tool_use, ...).
 *
 * NOTE: do not hand this union to typia directly. typia cannot discriminate a
 * union that mixes literal `type`s with a catch-all `type: string` (it falls
 * back to discriminating by property presence, so e.g. an unknown block that
 * has an `id` would be checked as tool_use and rejected). core/validate.ts
 * validates `BlockEnvelope` and dispatches on `type` by hand instead.
 */
export type ContentBlock =
  | TextBlock
  | ImageBlock
  | DocumentBlock
  | ToolUseBlock
  | ToolResultBlock
  | ThinkingBlock
  | RedactedThinkingBlock
  | UnknownContentBlock;

/* ------------------------------------------------------------------------ */
/* Messages                                                                 */
/* ------------------------------------------------------------------------ */

export type Role = "user" | "assistant" | "system";

export interface Message<Block = ContentBlock> {
  /** "system" turns are allowed by some betas and must pass. */
  role: Role;
  content: string | Block[];
}

/* ------------------------------------------------------------------------ */
/* Tools                                                                    */
/* ------------------------------------------------------------------------ */

/** A client ("custom") tool: no `type`, or `type: "custom"`. */
export interface CustomTool {
  type?: "custom" | null;
  name: NonEmptyString;
  description?: string;
  input_schema: JsonObject;
  cache_control?: CacheControl | null;
}

/**
 * A server / Anthropic-defined tool (web_search_20250305, bash_20250124,
 * text_editor_20250728, code_execution_20250825, ...): a versioned `type` and
 * a `name`; every other field is left to upstream.
 */
export interface ServerTool {
  type: string;
  name: NonEmptyString;
  cache_control?: CacheControl | null;
}

/**
 * A toolset (mcp_toolset, computer_toolset_20260801, browser_toolset_20260801):
 * names a family of tools and has no `name` of its own. Recognised by a `type`
 * matching TOOLSET_TYPE_RE.
 */
export interface Toolset {
  type: string;
  cache_control?: CacheControl | null;
}

export const TOOLSET_TYPE_RE = /^[a-z0-9_]*toolset(?:_[0-9]+)?$/;

export type Tool = CustomTool | ServerTool | Toolset;

/** What every `tools[]` entry must be before dispatching on `type`. */
export interface ToolEnvelope {
  type?: string | null;
}

export interface ToolChoiceAutoAnyNone {
  type: "auto" | "any" | "none";
  disable_parallel_tool_use?: boolean;
}

export interface ToolChoiceTool {
  type: "tool";
  name: NonEmptyString;
  disable_parallel_tool_use?: boolean;
}

export type ToolChoice = ToolChoiceAutoAnyNone | ToolChoiceTool;

/* ------------------------------------------------------------------------ */
/* Thinking                                                                 */
/* ------------------------------------------------------------------------ */

export interface ThinkingEnabled {
  type: "enabled";
  /** >= 1024 (and < max_tokens, which upstream checks). */
  budget_tokens: number & tags.Type<"uint32"> & tags.Minimum<1024>;
}

export interface ThinkingDisabled {
  type: "disabled";
}

/**
 * Other thinking modes ("adaptive" with optional `display`, "between_tools",
 * future ones): passed through, upstream checks their fields.
 */
export interface ThinkingOther {
  type: string;
  [key: string]: unknown;
}

export type ThinkingConfig = ThinkingEnabled | ThinkingDisabled | ThinkingOther;

/** What `thinking` must be before dispatching on `type`. */
export interface ThinkingEnvelope {
  type: string;
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */
/* ------------------------------------------------------------------------ */

export interface Metadata {
  user_id?: string | null;
}

/**
 * Type parameters: the shapes of content blocks, tools and thinking config.
 * The public types use the full unions; the validator uses the envelopes.
 */
export interface RequestParts {
  block: unknown;
  tool: unknown;
  thinking: unknown;
}

export interface PublicParts extends RequestParts {
  block: ContentBlock;
  tool: Tool;
  thinking: ThinkingConfig;
}

export interface EnvelopeParts extends RequestParts {
  block: BlockEnvelope;
  tool: ToolEnvelope;
  thinking: ThinkingEnvelope;
}

/** Fields shared by /v1/messages and /v1/messages/count_tokens. */
export interface MessagesRequestBase<P extends RequestParts = PublicParts> {
  model: NonEmptyString;
  messages: Message<P["block"]>[];
  system?: string | TextBlock[];
  tools?: P["tool"][];
  tool_choice?: ToolChoice;
  thinking?: P["thinking"];
  metadata?: Metadata;
  stream?: boolean;
  temperature?: number & tags.Minimum<0> & tags.Maximum<1>;
  top_p?: number & tags.Minimum<0> & tags.Maximum<1>;
  top_k?: number & tags.Type<"uint32">;
  stop_sequences?: string[];
  // Unknown top-level fields (context_management, output_config,
  // service_tier, container, mcp_servers, ...) are allowed.
}

/** `POST /v1/messages` */
export interface MessagesRequest<P extends RequestParts = PublicParts> extends MessagesRequestBase<P> {
  max_tokens: number & tags.Type<"uint32"> & tags.Minimum<1>;
}

/**
 * `POST /v1/messages/count_tokens`: like MessagesRequest but `max_tokens` is
 * not required. The sampling fields (stream, temperature, ...) are not part of
 * count_tokens; if a client sends them anyway (e.g. reusing a /v1/messages
 * body) they are checked with the same rules.
 */
export interface CountTokensRequest<P extends RequestParts = PublicParts> extends MessagesRequestBase<P> {
  max_tokens?: number & tags.Type<"uint32"> & tags.Minimum<1>;
}
