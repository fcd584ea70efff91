/**
 * Whether a request uses the cache, decided once from settings, the key, its headers and its
 * body (docs/cache.md). Returns a small integer, no allocation.
 *
 * - Off unless CACHE_ENABLED (or PROMPT_CACHE_ENABLED) or the key's own `cache: "on"`;
 *   a key's `cache: "off"` wins over the global switch.
 * - `cache-control: no-cache` or `no-store` from the client: never served, never stored.
 * - `x-portcullis-cache: bypass` skips the cache, `refresh` skips the lookup but stores the
 *   answer, `use` asks for caching even when the candidate rule would not (the client says a
 *   repeated answer is fine). Any other value is a 400.
 * - The candidate rule (CACHE_CANDIDATES): `zero` caches `temperature: 0` only,
 *   `zero-or-absent` also requests without a temperature, `any` every request.
 */
import type { CacheCandidates } from "./config.js";

export const C_OFF = 0,
  C_BYPASS = 1,
  C_USE = 2,
  C_REFRESH = 3,
  C_BAD_HEADER = -1;

export interface ModeInput {
  enabled: boolean;
  candidates: CacheCandidates;
  /** The key's own setting; null = follow `enabled`. */
  keySetting: "on" | "off" | null;
  /** x-portcullis-cache, as received ("" when absent). */
  header: string;
  /** cache-control, as received ("" when absent). */
  cacheControl: string;
  temperature: unknown;
}

const NO_CACHE = /(?:^|[\s,])no-(?:cache|store)(?:$|[\s,=])/i;

export function cacheMode(m: ModeInput): number {
  const on = m.keySetting === "on" || (m.keySetting === null && m.enabled);
  if (!on) return C_OFF;
  const h = m.header === "" ? "" : m.header.trim().toLowerCase();
  if (h !== "" && h !== "use" && h !== "refresh" && h !== "bypass") return C_BAD_HEADER;
  if (h === "bypass") return C_BYPASS;
  if (m.cacheControl !== "" && NO_CACHE.test(m.cacheControl)) return C_BYPASS;
  if (h !== "use" && !candidate(m.candidates, m.temperature)) return C_BYPASS;
  return h === "refresh" ? C_REFRESH : C_USE;
}

function candidate(rule: CacheCandidates, t: unknown): boolean {
  if (rule === "any") return true;
  if (t === 0) return true;
  return rule === "zero-or-absent" && t === undefined;
}
