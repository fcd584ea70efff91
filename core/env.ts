/**
 * The one reader of settings from the environment, and the error that names a bad one.
 * Blank counts as unset, values are trimmed; a bad value throws ConfigError naming the
 * variable. Used by core/config.ts and core/policy/config.ts (range checks beyond the
 * syntax are theirs: typia for the main settings, `envInt` bounds here).
 */

export class ConfigError extends Error {
  /** The setting at fault: an env var name or `CONFIG_FILE <path>`. */
  readonly setting: string;
  constructor(setting: string, message: string) {
    super(`${setting}: ${message}`);
    this.setting = setting;
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

/** The trimmed value, or null when unset or blank. */
export function envStr(env: Env, name: string): string | null {
  const raw = env[name];
  return raw === undefined || raw.trim() === "" ? null : raw.trim();
}

/** A plain decimal number (Number("") is 0 and Number("1e3") is 1000: neither is accepted). */
export function envNum(env: Env, name: string, dflt: number): number {
  const s = envStr(env, name);
  if (s === null) return dflt;
  if (!/^-?\d+(\.\d+)?$/.test(s)) throw new ConfigError(name, `expected a number, got ${JSON.stringify(env[name])}`);
  return Number(s);
}

/** A whole number from `min` to `max`. */
export function envInt(env: Env, name: string, dflt: number, min: number, max: number): number {
  const s = envStr(env, name);
  if (s === null) return dflt;
  if (!/^\d+$/.test(s)) throw new ConfigError(name, `expected a whole number, got ${JSON.stringify(s)}`);
  const n = Number(s);
  if (n < min || n > max) throw new ConfigError(name, `expected a number from ${min} to ${max}, got ${n}`);
  return n;
}

/** true/1/yes/on or false/0/no/off, any case. */
export function envBool(env: Env, name: string, dflt: boolean): boolean {
  const s = envStr(env, name)?.toLowerCase() ?? null;
  if (s === null) return dflt;
  if (s === "true" || s === "1" || s === "yes" || s === "on") return true;
  if (s === "false" || s === "0" || s === "no" || s === "off") return false;
  throw new ConfigError(name, `expected true or false, got ${JSON.stringify(env[name])}`);
}

/** A comma-separated list, items trimmed, empty items dropped. */
export function envList(env: Env, name: string): string[] {
  const s = envStr(env, name);
  return s === null
    ? []
    : s
        .split(",")
        .map((x) => x.trim())
        .filter((x) => x !== "");
}
