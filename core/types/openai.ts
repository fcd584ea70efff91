/**
 * The OpenAI Chat Completions request (`POST /v1/chat/completions`) as the official SDKs
 * send it, for typia validation at the front door (core/translate/validate-openai.ts).
 * Same policy as core/types/messages.ts: known fields are checked for type, unknown fields
 * pass (new API features must not be refused by the gateway), values whose authority is
 * the upstream (model names, media types) are only type-checked.
 */
import type { tags } from "typia";

// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface JsonObject {}

export interface TextPart {
  type: "text";
  text: string;
}

export interface ImageUrlPart {
  type: "image_url";
  image_url: { url: string & tags.MinLength<1>; detail?: string };
}

export interface FilePart {
  type: "file";
  file: { file_data?: string; file_id?: string; filename?: string };
}

export interface AudioPart {
  type: "input_audio";
  input_audio: { data: string; format: string };
}

export interface RefusalPart {
  type: "refusal";
  refusal: string;
}

export type UserPart = TextPart | ImageUrlPart | FilePart | AudioPart;

export interface SystemMessage {
  role: "system" | "developer";
  content: string | TextPart[];
  name?: string;
}

export interface UserMessage {
  role: "user";
  content: string | UserPart[];
  name?: string;
}

export interface ToolCall {
  id: string & tags.MinLength<1>;
  type: "function";
  function: { name: string & tags.MinLength<1>; arguments: string };
}

export interface AssistantMessage {
  role: "assistant";
  content?: string | Array<TextPart | RefusalPart> | null;
  refusal?: string | null;
  tool_calls?: ToolCall[];
  name?: string;
}

export interface ToolMessage {
  role: "tool";
  tool_call_id: string & tags.MinLength<1>;
  content: string | TextPart[];
}

export type ChatMessage = SystemMessage | UserMessage | AssistantMessage | ToolMessage;

export interface FunctionTool {
  type: "function";
  function: {
    name: string & tags.MinLength<1> & tags.MaxLength<128>;
    description?: string;
    parameters?: JsonObject;
    strict?: boolean | null;
  };
}

export type ToolChoice = "auto" | "none" | "required" | { type: "function"; function: { name: string & tags.MinLength<1> } };

export interface ChatRequest {
  model: string & tags.MinLength<1>;
  messages: ChatMessage[] & tags.MinItems<1>;
  tools?: FunctionTool[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  max_tokens?: (number & tags.Type<"uint32"> & tags.Minimum<1>) | null;
  max_completion_tokens?: (number & tags.Type<"uint32"> & tags.Minimum<1>) | null;
  temperature?: (number & tags.Minimum<0> & tags.Maximum<2>) | null;
  top_p?: (number & tags.Minimum<0> & tags.Maximum<1>) | null;
  stop?: string | string[] | null;
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean } | null;
  response_format?: { type: "text" | "json_object" | "json_schema"; json_schema?: JsonObject };
  reasoning_effort?: "none" | "minimal" | "low" | "medium" | "high" | "xhigh" | null;
  user?: string;
  metadata?: Record<string, string> | null;
  n?: (number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<1>) | null;
}
