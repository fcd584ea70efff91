/**
 * Per-provider beta and field policy. Claude Code sends `anthropic-beta` values and body
 * fields (`context_management`, `output_config`, ...) as soon as Anthropic's own API has
 * them; Bedrock and Vertex reject what they do not know ("invalid beta flag", "extraneous
 * key"), so every request would fail. A policy says which betas pass, which are renamed
 * (the same feature under another name), which are dropped, and which body fields are
 * removed, so the request that reaches the provider is one it accepts.
 *
 * Compiled once at start-up from defaults (kept current for Bedrock and Vertex) merged with
 * the provider's `beta_policy` in the config file. Pure: the caller logs and counts drops.
 */

/** `beta_policy` in the config file; every key given replaces the default's. */
export interface BetaPolicyFile {
  /** Betas that pass unchanged; `["*"]` passes every beta not dropped or renamed. */
  pass_betas?: string[];
  /** Betas sent under another name (applied first; the new name is not checked again). */
  rename_betas?: Record<string, string>;
  /** Betas always dropped (overrides pass_betas, including "*"). */
  drop_betas?: string[];
  /** Top-level body fields always removed. */
  drop_fields?: string[];
  /** Top-level body fields kept only when one of these betas reaches the provider. */
  fields_need_beta?: Record<string, string[]>;
}

export interface BetaPolicy {
  readonly passAll: boolean;
  readonly pass: ReadonlySet<string>;
  readonly rename: ReadonlyMap<string, string>;
  readonly drop: ReadonlySet<string>;
  readonly dropFields: readonly string[];
  readonly fieldsNeedBeta: readonly (readonly [string, readonly string[]])[];
}

/** What one request keeps and loses under a policy. */
export interface PolicyResult {
  /** Betas to send, in the client's order, deduplicated. */
  betas: string[];
  droppedBetas: string[];
  /** Top-level fields present in the body that must be removed. */
  droppedFields: string[];
}

/**
 * Betas both Bedrock and Vertex document for Claude (Anthropic's "Claude on Amazon Bedrock"
 * and "Claude on Vertex AI" beta lists). Claude Code's first-party-only betas
 * (`claude-code-20250219`, `oauth-2025-04-20`, `prompt-caching-scope-*`, ...) are not here
 * and are dropped, which is what Claude Code itself does when it talks to these clouds.
 */
const CLOUD_BETAS = [
  "computer-use-2024-10-22",
  "computer-use-2025-01-24",
  "computer-use-2025-11-24",
  "token-efficient-tools-2025-02-19",
  "interleaved-thinking-2025-05-14",
  "output-128k-2025-02-19",
  "dev-full-thinking-2025-05-14",
  "context-1m-2025-08-07",
  "context-management-2025-06-27",
  "fine-grained-tool-streaming-2025-05-14",
  "effort-2025-11-24",
  "tool-search-tool-2025-10-19",
  "tool-examples-2025-10-29",
];

const CLOUD_DEFAULT: Required<BetaPolicyFile> = {
  pass_betas: CLOUD_BETAS,
  // The first-party name of tool search is advanced-tool-use; the clouds call it tool-search-tool.
  rename_betas: { "advanced-tool-use-2025-11-20": "tool-search-tool-2025-10-19" },
  drop_betas: [],
  drop_fields: [],
  fields_need_beta: {
    context_management: ["context-management-2025-06-27"],
    output_config: ["effort-2025-11-24"],
  },
};

const PASS_ALL: Required<BetaPolicyFile> = { pass_betas: ["*"], rename_betas: {}, drop_betas: [], drop_fields: [], fields_need_beta: {} };

/** The default policy file for a provider type. */
export function defaultPolicy(type: string): Required<BetaPolicyFile> {
  return type === "bedrock" || type === "vertex" ? CLOUD_DEFAULT : PASS_ALL;
}

/** Merge a config-file override onto the type's defaults and compile it. */
export function compilePolicy(type: string, override: BetaPolicyFile | undefined): BetaPolicy {
  const d = defaultPolicy(type);
  const f = { ...d, ...(override ?? {}) };
  return Object.freeze({
    passAll: f.pass_betas.includes("*"),
    pass: new Set(f.pass_betas),
    rename: new Map(Object.entries(f.rename_betas)),
    drop: new Set(f.drop_betas),
    dropFields: Object.freeze([...f.drop_fields]),
    fieldsNeedBeta: Object.freeze(Object.entries(f.fields_need_beta).map(([k, v]) => Object.freeze([k, Object.freeze([...v])] as const))),
  });
}

/** True when the policy can change nothing (pass everything, drop nothing). */
export function isPassThrough(p: BetaPolicy): boolean {
  return p.passAll && p.rename.size === 0 && p.drop.size === 0 && p.dropFields.length === 0 && p.fieldsNeedBeta.length === 0;
}

/**
 * Apply a policy to the client's `anthropic-beta` header value (comma-separated, as
 * received) and its parsed body. The body is not changed; `droppedFields` says what to remove.
 */
export function applyPolicy(p: BetaPolicy, betaHeader: string, body: Record<string, unknown>): PolicyResult {
  const betas: string[] = [];
  const droppedBetas: string[] = [];
  if (betaHeader !== "") {
    for (const raw of betaHeader.split(",")) {
      const b = raw.trim();
      if (b === "") continue;
      const renamed = p.rename.get(b);
      const out = renamed ?? (p.drop.has(b) || !(p.passAll || p.pass.has(b)) ? null : b);
      if (out === null) {
        if (!droppedBetas.includes(b)) droppedBetas.push(b);
      } else if (!betas.includes(out)) betas.push(out);
    }
  }
  const droppedFields: string[] = [];
  for (const f of p.dropFields) if (f in body) droppedFields.push(f);
  for (const [f, need] of p.fieldsNeedBeta) {
    if (!(f in body) || droppedFields.includes(f)) continue;
    let ok = false;
    for (const b of need) if (betas.includes(b)) ok = true;
    if (!ok) droppedFields.push(f);
  }
  return { betas, droppedBetas, droppedFields };
}
