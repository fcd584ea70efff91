/**
 * Reads CONFIG_FILE (if set) and the environment into a validated GatewayConfig, with the
 * HTTP_THREADS default taken from the CPUs the process may use (cgroup v2 quota included),
 * and refuses a configuration that can serve no model.
 */
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { checkServable, ConfigError, cpuThreads, loadConfig, type GatewayConfig } from "../core/config.js";

/** The cgroup v2 CPU quota file of this process ("max 100000" when unlimited). */
export const CPU_MAX_FILE = "/sys/fs/cgroup/cpu.max";

function readCpuMax(): string | null {
  try {
    return readFileSync(CPU_MAX_FILE, "utf8");
  } catch {
    return null; // cgroup v1 or not Linux: no quota to honour
  }
}

/** The HTTP_THREADS default on this machine: the CPUs this process may use, cgroup quota included. */
export function defaultHttpThreads(): number {
  return cpuThreads(availableParallelism(), readCpuMax());
}
import { checkVertexCredentials } from "./providers/gcp-auth.js";

export function loadConfigFromProcess(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  let file: unknown = undefined;
  const path = env.CONFIG_FILE?.trim();
  if (path) {
    let text: string;
    try {
      text = readFileSync(path, "utf8");
    } catch (e) {
      throw new ConfigError("CONFIG_FILE", `cannot read ${JSON.stringify(path)}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    try {
      file = JSON.parse(text);
    } catch (e) {
      throw new ConfigError("CONFIG_FILE", `${JSON.stringify(path)} is not valid JSON: ${(e as Error).message}`);
    }
  }
  let prices: unknown = undefined;
  const pricesPath = env.PRICES_FILE?.trim();
  if (pricesPath) {
    try {
      prices = JSON.parse(readFileSync(pricesPath, "utf8"));
    } catch (e) {
      const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
      throw new ConfigError("PRICES_FILE", `cannot read ${JSON.stringify(pricesPath)} as JSON: ${why}`);
    }
  }
  const cfg = loadConfig(env, file, defaultHttpThreads(), prices);
  checkServable(cfg);
  checkVertexCredentials(cfg, (name) => {
    const fromFile = (file as { providers?: Record<string, { credentials_file?: unknown }> } | undefined)?.providers?.[name]
      ?.credentials_file;
    return fromFile !== undefined ? `CONFIG_FILE providers.${name}.credentials_file` : "GOOGLE_APPLICATION_CREDENTIALS";
  });
  return cfg;
}
