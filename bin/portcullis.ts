#!/usr/bin/env node
/**
 * The `portcullis` command (package.json "bin"; `npx portcullis`): start the gateway, print
 * every setting (`--help`), validate a config file (`check-config FILE`), or create a
 * virtual key through the admin API (`keys create`). Exit codes: 0 ok, 1 a bad setting or a
 * refused call, 2 a usage error. The admin key is read from the environment only, never
 * from the command line (where `ps` would show it), and never printed.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "../core/config.js";
import { loadConfigFromProcess } from "../server/config-load.js";
import { helpText } from "./settings-help.js";

function fail(code: number, message: string): never {
  process.stderr.write(`portcullis: ${message}\n`);
  process.exit(code);
}

function checkConfig(args: string[]): void {
  if (args.length !== 1) fail(2, "usage: portcullis check-config FILE");
  try {
    const cfg = loadConfigFromProcess({ ...process.env, CONFIG_FILE: args[0] });
    const providers = cfg.providers.filter((p) => p.type !== "mock" || cfg.defaultProvider === p.name).map((p) => p.name);
    process.stdout.write(
      `${args[0]}: ok (providers: ${providers.join(", ") || "none"}; routes: ${cfg.routes.length}; default provider: ${cfg.defaultProvider ?? "none"})\n`,
    );
  } catch (e) {
    if (e instanceof ConfigError) fail(1, `invalid setting ${e.message}`);
    throw e;
  }
}

const LIMIT_FLAGS = [
  "tokens-per-day",
  "tokens-per-month",
  "usd-per-day",
  "usd-per-month",
  "requests-per-minute",
  "tokens-per-minute",
] as const;

async function keysCreate(args: string[]): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        name: { type: "string" },
        models: { type: "string" },
        url: { type: "string" },
        ...Object.fromEntries(LIMIT_FLAGS.map((f) => [f, { type: "string" as const }])),
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    fail(2, `keys create: ${(e as Error).message}`);
  }
  const v = parsed.values as Record<string, string | undefined>;
  if (v.name === undefined || v.name.trim() === "") fail(2, "keys create: --name is required");
  const admin = process.env.ADMIN_API_KEY?.trim();
  if (!admin) fail(2, "keys create: set ADMIN_API_KEY in the environment (it is not accepted on the command line)");
  const limits: Record<string, number> = {};
  for (const f of LIMIT_FLAGS) {
    const raw = v[f];
    if (raw === undefined) continue;
    if (!/^\d+(\.\d+)?$/.test(raw.trim())) fail(2, `keys create: --${f} expects a non-negative number, got ${JSON.stringify(raw)}`);
    limits[f.replace(/-/g, "_")] = Number(raw);
  }
  const body: Record<string, unknown> = { name: v.name };
  if (v.models !== undefined)
    body.models = v.models
      .split(",")
      .map((m) => m.trim())
      .filter((m) => m !== "");
  if (Object.keys(limits).length > 0) body.limits = limits;
  const base = (v.url ?? process.env.PORTCULLIS_URL ?? `http://127.0.0.1:${process.env.PORT?.trim() || "8080"}`).replace(/\/+$/, "");
  let res: Response;
  try {
    res = await fetch(`${base}/admin/keys`, {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${admin}` },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(30_000),
    });
  } catch (e) {
    fail(1, `keys create: cannot reach ${base}: ${(e as Error).cause ?? (e as Error).message}`);
  }
  const text = await res.text();
  if (res.status !== 201) {
    let msg = text.slice(0, 500);
    try {
      const j = JSON.parse(text) as { error?: { type?: string; message?: string } };
      if (j.error?.message) msg = `${j.error.type ?? "error"}: ${j.error.message}`;
    } catch {
      // not JSON: show the start of the body as it came
    }
    fail(1, `keys create: ${base} answered ${res.status}: ${msg}`);
  }
  process.stdout.write(text.endsWith("\n") ? text : text + "\n");
}

export async function run(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  if (cmd === "--help" || cmd === "-h" || cmd === "help") {
    process.stdout.write(helpText());
    return;
  }
  if (cmd === undefined || cmd === "start") {
    const { main } = await import("../server/main.js");
    await main();
    return;
  }
  if (cmd === "check-config") return checkConfig(rest);
  if (cmd === "keys" && rest[0] === "create") return keysCreate(rest.slice(1));
  fail(2, `unknown command ${JSON.stringify(argv.join(" "))}; see portcullis --help`);
}

void run(process.argv.slice(2));
