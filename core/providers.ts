/**
 * Provider adapters as data: the upstream path for each operation and how the provider
 * wants to be authenticated. Adding a provider is adding an entry.
 */
import type { ProviderConfig, ProviderType } from "./config.js";
import { compilePolicy, type BetaPolicy } from "./beta-policy.js";

interface Adapter {
  /** Path under the provider's base URL. */
  readonly messagesPath: string;
  readonly countTokensPath: string;
  /** Path of the provider's model list (`GET`, Anthropic's shape), or null when it has none. */
  readonly modelsPath: string | null;
  /** Auth headers for a key, as a flat [name, value, name, value] list. */
  auth(key: string): string[];
}

const ADAPTERS: Record<ProviderType, Adapter> = {
  anthropic: {
    messagesPath: "/v1/messages",
    countTokensPath: "/v1/messages/count_tokens",
    modelsPath: "/v1/models",
    auth: (key) => ["x-api-key", key],
  },
  // Azure AI Foundry's Anthropic endpoint takes `api-key` or `x-api-key`; the base ends in .../anthropic.
  "azure-anthropic": {
    messagesPath: "/v1/messages",
    countTokensPath: "/v1/messages/count_tokens",
    modelsPath: null,
    auth: (key) => ["x-api-key", key, "api-key", key],
  },
  // Databricks serves the Anthropic Messages API under /serving-endpoints/anthropic; the
  // model in the body is the serving endpoint's name.
  databricks: {
    messagesPath: "/serving-endpoints/anthropic/v1/messages",
    countTokensPath: "/serving-endpoints/anthropic/v1/messages/count_tokens",
    modelsPath: null,
    auth: (key) => ["authorization", `Bearer ${key}`],
  },
  mock: { messagesPath: "", countTokensPath: "", modelsPath: null, auth: () => [] },
  // OpenAI-format providers (server/openai/): base_url ends in /v1 for OpenAI, OpenRouter,
  // Ollama, vLLM; Azure's path names the deployment and api-version per request.
  openai: { messagesPath: "/chat/completions", countTokensPath: "", modelsPath: null, auth: (key) => ["authorization", `Bearer ${key}`] },
  "azure-openai": { messagesPath: "/openai/deployments/", countTokensPath: "", modelsPath: null, auth: (key) => ["api-key", key] },
  // The paths depend on the model; core/providers/bedrock and core/providers/vertex build them.
  bedrock: { messagesPath: "", countTokensPath: "", modelsPath: null, auth: (key) => ["authorization", `Bearer ${key}`] },
  vertex: { messagesPath: "", countTokensPath: "", modelsPath: null, auth: (token) => ["authorization", `Bearer ${token}`] },
};

/** Does this provider speak OpenAI's Chat Completions rather than Anthropic's Messages? */
export function isOpenAIFormat(type: ProviderType): boolean {
  return type === "openai" || type === "azure-openai";
}

/** A provider ready for the hot path: everything derived once at start-up. */
export interface ProviderRuntime {
  readonly name: string;
  readonly type: ProviderType;
  /** Index in the metrics layout (0 is reserved for "none"). */
  readonly index: number;
  readonly origin: string;
  readonly messagesPath: string;
  readonly countTokensPath: string;
  readonly modelsPath: string | null;
  /** Headers with the configured key, built once; null when the client's key is passed through. */
  readonly authHeaders: readonly string[] | null;
  readonly adapter: Adapter;
  /** azure-openai's api-version, else null. */
  readonly apiVersion: string | null;
  /** OpenAI-format providers: the output-limit field of translated requests. */
  readonly maxTokensField: "max_completion_tokens" | "max_tokens";
  /** Which betas and body fields reach this provider (core/beta-policy.ts). */
  readonly policy: BetaPolicy;
  /** The validated config entry (region, project, credentials for bedrock/vertex). */
  readonly config: ProviderConfig;
}

export function buildProviders(configs: readonly ProviderConfig[]): ProviderRuntime[] {
  return configs.map((p, i) => {
    const a = ADAPTERS[p.type];
    return Object.freeze({
      name: p.name,
      type: p.type,
      index: i + 1,
      origin: p.origin,
      messagesPath: p.basePath + a.messagesPath,
      countTokensPath: p.basePath + a.countTokensPath,
      modelsPath: a.modelsPath === null ? null : p.basePath + a.modelsPath,
      authHeaders: p.passThroughKey || p.apiKey === null ? null : Object.freeze(a.auth(p.apiKey)),
      adapter: a,
      apiVersion: p.apiVersion ?? null,
      maxTokensField: p.maxTokensField ?? "max_completion_tokens",
      policy: compilePolicy(p.type, p.betaPolicy ?? undefined),
      config: p,
    });
  });
}

/** Auth headers for one request: the configured ones, or the client's key for pass-through. */
export function authHeadersFor(p: ProviderRuntime, clientKey: string | null): readonly string[] {
  if (p.authHeaders !== null) return p.authHeaders;
  return clientKey === null ? [] : p.adapter.auth(clientKey);
}
