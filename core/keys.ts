/**
 * Virtual keys: the admin API's input types (validated with typia), the record stored in
 * the ledger, and the policy the hot path reads (core/auth.ts KeyEntry.virtual).
 *
 * A key is 32 random bytes (256 bits) and is stored only as its SHA-256 digest. A fast,
 * unsalted hash is enough for keys of that entropy: nobody can enumerate 2^256 candidates,
 * so a slow password hash (bcrypt, argon2) would buy nothing and cost milliseconds per
 * request, and a salt only defends against dictionaries, which random keys defeat anyway.
 */
import { randomBytes, hash } from "node:crypto";
import typia, { tags } from "typia";
import { hasBudget, type BudgetLimits } from "./budget.js";
import type { KeyEntry, VirtualKeyPolicy } from "./auth.js";
import type { ToolName } from "./policy/tool-names.js";

/** An MCP tool a key may call, or "*" for all of them. */
type ToolRight = ToolName | "*";
type CommandName = string & tags.Pattern<"^[a-z][a-z0-9_-]{0,63}$">;

type Count = number & tags.Type<"uint32">;
type Usd = number & tags.Minimum<0> & tags.Maximum<1000000000>;

export interface KeyLimitsInput {
  tokens_per_day?: Count;
  tokens_per_month?: Count;
  usd_per_day?: Usd;
  usd_per_month?: Usd;
  requests_per_minute?: Count;
  tokens_per_minute?: Count;
}

export interface CreateKeyInput {
  name: string & tags.MinLength<1> & tags.MaxLength<200>;
  models?: (string & tags.MinLength<1> & tags.MaxLength<200>)[] & tags.MaxItems<200>;
  limits?: KeyLimitsInput;
  /** MCP tools this key may call; default none. */
  tools?: ToolRight[] & tags.MaxItems<16>;
  /** run_command names this key may run; default every command its tools allow. */
  commands?: CommandName[] & tags.MaxItems<200>;
  /** The response cache for this key (docs/cache.md); default: CACHE_ENABLED. */
  cache?: "on" | "off";
}

export interface PatchKeyInput {
  name?: string & tags.MinLength<1> & tags.MaxLength<200>;
  models?: ((string & tags.MinLength<1> & tags.MaxLength<200>)[] & tags.MaxItems<200>) | null;
  /** Replaces the limits; a limit left out (or null) is removed. */
  limits?: KeyLimitsInput;
  tools?: ToolRight[] & tags.MaxItems<16>;
  /** null: every command again. */
  commands?: (CommandName[] & tags.MaxItems<200>) | null;
  /** null: follow CACHE_ENABLED again. */
  cache?: "on" | "off" | null;
}

export const validateCreateKey = typia.createValidateEquals<CreateKeyInput>();
export const validatePatchKey = typia.createValidateEquals<PatchKeyInput>();

/** A virtual key as stored in the ledger and sent between threads (no secret). */
export interface KeyRecord {
  id: string;
  name: string;
  /** Hex SHA-256 of the secret. */
  digest: string;
  models: string[] | null;
  limits: KeyLimitsInput;
  /** MCP tool names or "*"; keys from before tool rights existed were migrated to ["*"]. */
  tools: string[];
  /** run_command names; null = every command. */
  commands: string[] | null;
  /** The response cache for this key; null or absent = CACHE_ENABLED decides. */
  cache?: "on" | "off" | null;
  created_at: string;
  revoked_at: string | null;
}

/** A new key: the record to store and the secret to show once. */
export function newKey(input: CreateKeyInput, now: Date): { record: KeyRecord; secret: string } {
  const secret = "sk-pc-" + randomBytes(32).toString("base64url");
  const record: KeyRecord = {
    id: "key_" + randomBytes(9).toString("base64url").replace(/[-_]/g, "x"),
    name: input.name,
    digest: hash("sha256", secret, "hex"),
    models: input.models ?? null,
    limits: input.limits ?? {},
    tools: input.tools ?? [],
    commands: input.commands ?? null,
    cache: input.cache ?? null,
    created_at: now.toISOString(),
    revoked_at: null,
  };
  return { record, secret };
}

export function budgetOf(l: KeyLimitsInput): BudgetLimits {
  return {
    tokensPerDay: l.tokens_per_day ?? 0,
    tokensPerMonth: l.tokens_per_month ?? 0,
    microsPerDay: Math.round((l.usd_per_day ?? 0) * 1e6),
    microsPerMonth: Math.round((l.usd_per_month ?? 0) * 1e6),
  };
}

/**
 * The hot path's view of a key. Per-key rate limits replace the global RATE_LIMIT_*
 * settings; a rate limit the key does not set falls back to the global one.
 */
export function policyOf(r: KeyRecord, globalRpm: number, globalTpm: number): VirtualKeyPolicy {
  const budget = Object.freeze(budgetOf(r.limits));
  const hasRate = r.limits.requests_per_minute !== undefined || r.limits.tokens_per_minute !== undefined;
  return Object.freeze({
    name: r.name,
    models: r.models === null ? null : Object.freeze([...r.models]),
    budget,
    budgeted: hasBudget(budget),
    tools: Object.freeze([...r.tools]),
    commands: r.commands === null ? null : Object.freeze([...r.commands]),
    cache: r.cache ?? null,
    rate: hasRate
      ? Object.freeze({
          requestsPerMinute: r.limits.requests_per_minute ?? globalRpm,
          tokensPerMinute: r.limits.tokens_per_minute ?? globalTpm,
        })
      : null,
  });
}

export function entryOf(r: KeyRecord, slot: number, globalRpm: number, globalTpm: number): KeyEntry {
  return Object.freeze({ id: r.id, index: slot, digest: Buffer.from(r.digest, "hex"), virtual: policyOf(r, globalRpm, globalTpm) });
}

/** May this key call `model`? Exact names, or prefixes ending in `*`. */
export function modelAllowed(models: readonly string[] | null, model: string): boolean {
  if (models === null) return true;
  for (let i = 0; i < models.length; i++) {
    const m = models[i]!;
    if (m.endsWith("*") ? model.startsWith(m.slice(0, -1)) : m === model) return true;
  }
  return false;
}

/** The listing shape: never the secret or its digest. */
export function publicKey(r: KeyRecord): Omit<KeyRecord, "digest"> {
  return {
    id: r.id,
    name: r.name,
    models: r.models,
    limits: r.limits,
    tools: r.tools,
    commands: r.commands,
    cache: r.cache ?? null,
    created_at: r.created_at,
    revoked_at: r.revoked_at,
  };
}
