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
  /** Auth headers for a key, as a flat [name, value, name, value] list. */
  auth(key: string): string[];
}

const ADAPTERS: Record<ProviderType, Adapter> = {
  anthropic: {
    messagesPath: "/v1/messages",
    countTokensPath: "/v1/messages/count_tokens",
    auth: (key) => ["x-api-key", key],
  },
  // Azure AI Foundry's Anthropic endpoint takes `api-key` or `x-api-key`; the base ends in .../anthropic.
  "azure-anthropic": {
    messagesPath: "/v1/messages",
    countTokensPath: "/v1/messages/count_tokens",
    auth: (key) => ["x-api-key", key, "api-key", key],
  },
  // Databricks serves the Anthropic Messages API under /serving-endpoints/anthropic; the
  // model in the body is the serving endpoint's name.
  databricks: {
    messagesPath: "/serving-endpoints/anthropic/v1/messages",
    countTokensPath: "/serving-endpoints/anthropic/v1/messages/count_tokens",
    auth: (key) => ["authorization", `Bearer ${key}`],
  },
  // The paths depend on the model; core/providers/bedrock and core/providers/vertex build them.
  bedrock: { messagesPath: "", countTokensPath: "", auth: (key) => ["authorization", `Bearer ${key}`] },
  vertex: { messagesPath: "", countTokensPath: "", auth: (token) => ["authorization", `Bearer ${token}`] },
  mock: { messagesPath: "", countTokensPath: "", auth: () => [] },
};

/** A provider ready for the hot path: everything derived once at start-up. */
export interface ProviderRuntime {
  readonly name: string;
  readonly type: ProviderType;
  /** Index in the metrics layout (0 is reserved for "none"). */
  readonly index: number;
  readonly origin: string;
  readonly messagesPath: string;
  readonly countTokensPath: string;
  /** Headers with the configured key, built once; null when the client's key is passed through. */
  readonly authHeaders: readonly string[] | null;
  readonly adapter: Adapter;
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
      authHeaders: p.passThroughKey || p.apiKey === null ? null : Object.freeze(a.auth(p.apiKey)),
      adapter: a,
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
