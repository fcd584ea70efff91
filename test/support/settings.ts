/**
 * The settings the gateway really reads: every environment variable name that the start-up
 * configuration (server/config-load.ts → core/config.ts → core/policy/config.ts) looks up,
 * recorded by running it on environments that switch each optional part on. Names built at
 * run time from a config file (`api_key_env`) are not settings of their own and are not listed.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { loadConfigFromProcess } from "../../server/config-load.js";

/** Environments that together reach every branch that reads a setting. */
function environments(): Record<string, string>[] {
  const ws = mkdtempSync(join(tmpdir(), "portcullis-settings-"));
  const mcp = { WORKSPACE_ROOT: ws, GATEWAY_API_KEYS: "settings-probe-key-123", PATH: process.env.PATH ?? "" };
  // Bedrock and Vertex providers read their region and credentials settings.
  const cloud = join(ws, "cloud-providers.json");
  writeFileSync(
    cloud,
    JSON.stringify({ providers: { b: { type: "bedrock" }, v: { type: "vertex", project_id: "p", region: "us-east5" } } }),
  );
  return [
    {},
    mcp,
    { ...mcp, SANDBOX_BACKEND: "docker" },
    { ...mcp, SANDBOX_BACKEND: "none" },
    { CONFIG_FILE: cloud, AWS_REGION: "us-east-1" },
    { CONFIG_FILE: cloud },
  ];
}

export function settingsRead(): Set<string> {
  const read = new Set<string>();
  for (const env of environments()) {
    const recording = new Proxy(env, {
      get(target, name) {
        if (typeof name === "string") read.add(name);
        return target[name as string];
      },
    });
    try {
      loadConfigFromProcess(recording);
    } catch {
      // A backend whose program is missing here stops the load after its settings were read:
      // the names looked up so far are what this probe is after.
    }
  }
  read.delete("PATH");
  return read;
}
