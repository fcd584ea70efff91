/**
 * A provider's key pool from the config file (`api_keys`, `api_key_envs`), checked at
 * start-up: an empty pool, a duplicate key or env var, a missing env var, a pool beside
 * `api_key`/`api_key_env`, or a pool on a provider that takes no key stops the start,
 * naming the provider and the entry, never a key's value.
 */
import type { tags } from "typia";
import { ConfigError, envStr, type Env } from "./env.js";
import { MAX_POOL_KEYS, type PoolKey } from "./keypool.js";

type Weight = number & tags.ExclusiveMinimum<0> & tags.Maximum<1000000>;
type PerMinute = number & tags.Type<"uint32">;

/** Per-key options: share of the traffic, and its own requests / tokens per minute (0 = no limit). */
interface KeyOptions {
  weight?: Weight;
  rpm?: PerMinute;
  tpm?: PerMinute;
}
/** A literal key (kept in the file: prefer api_key_envs). */
export type PoolKeyEntry = (string & tags.MinLength<1>) | ({ key: string & tags.MinLength<1> } & KeyOptions);
/** The name of the environment variable that holds a key. */
export type PoolKeyEnvEntry = (string & tags.MinLength<1>) | ({ env: string & tags.MinLength<1> } & KeyOptions);

/** The fields of a provider entry this reads. */
export interface PoolFields {
  type: string;
  api_key?: string;
  api_key_env?: string;
  pass_through_key?: boolean;
  api_keys?: PoolKeyEntry[];
  api_key_envs?: PoolKeyEnvEntry[];
}

/** Types whose key is a plain header value (Bedrock: its API keys, sent as a bearer). */
const POOL_TYPES = new Set(["anthropic", "azure-anthropic", "databricks", "openai", "azure-openai", "bedrock"]);

/** The provider's pool, or null when it has none (one `api_key`/`api_key_env`, or pass-through). */
export function loadKeyPool(env: Env, setting: string, p: PoolFields): PoolKey[] | null {
  if (p.api_keys === undefined && p.api_key_envs === undefined) return null;
  const field = p.api_keys !== undefined ? "api_keys" : "api_key_envs";
  if (p.api_key !== undefined || p.api_key_env !== undefined) {
    throw new ConfigError(`${setting}.${field}`, "a pool replaces api_key/api_key_env: list every key in api_keys or api_key_envs");
  }
  if (p.pass_through_key === true) throw new ConfigError(`${setting}.${field}`, "a pool and pass_through_key exclude each other");
  if (!POOL_TYPES.has(p.type)) throw new ConfigError(`${setting}.${field}`, `type ${p.type} takes no key pool`);
  const out: PoolKey[] = [];
  const seen = new Map<string, string>();
  const add = (path: string, label: string, key: string, o: KeyOptions): void => {
    const first = seen.get(key);
    if (first !== undefined) throw new ConfigError(path, `is the same key as ${first}`);
    seen.set(key, label === path.slice(setting.length + 1) ? label : `${label} (${path.slice(setting.length + 1)})`);
    out.push(Object.freeze({ label, key, weight: o.weight ?? 1, rpm: o.rpm ?? 0, tpm: o.tpm ?? 0 }));
  };
  (p.api_keys ?? []).forEach((e, i) => {
    const path = `${setting}.api_keys.${i}`;
    add(path, `api_keys.${i}`, typeof e === "string" ? e : e.key, typeof e === "string" ? {} : e);
  });
  const envNames = new Map<string, string>();
  (p.api_key_envs ?? []).forEach((e, i) => {
    const path = `${setting}.api_key_envs.${i}`;
    const name = typeof e === "string" ? e : e.env;
    const again = envNames.get(name);
    if (again !== undefined) throw new ConfigError(path, `names ${name} again (as ${again} does)`);
    envNames.set(name, path);
    const key = envStr(env, name);
    if (key === null) throw new ConfigError(path, `environment variable ${name} is not set`);
    add(path, name, key, typeof e === "string" ? {} : e);
  });
  if (out.length === 0) throw new ConfigError(`${setting}.${field}`, "is empty: list at least one key");
  if (out.length > MAX_POOL_KEYS) throw new ConfigError(`${setting}.${field}`, `holds ${out.length} keys; at most ${MAX_POOL_KEYS}`);
  return out;
}
