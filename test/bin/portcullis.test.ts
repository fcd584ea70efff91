/**
 * The `portcullis` command, run as a separate process the way a user runs it: `--help`
 * lists every setting with the default the code really applies, `check-config` exits 0 on a
 * good file and 1 naming the bad field, `keys create` creates a key through a real gateway's
 * admin API and that key then works. The packaged install is in pack.test.ts.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { ENV_NAMES, loadConfig, type Settings } from "../../core/config.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const BIN = fileURLToPath(new URL("../../bin/portcullis.js", import.meta.url));
const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const ADMIN = "admin-key-for-cli-test-0123456789";
const dir = mkdtempSync(join(tmpdir(), "portcullis-cli-"));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}
/** Run the command with a clean environment plus `env`; bounded at 30 s. */
function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [BIN, ...args], { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    p.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    p.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const t = setTimeout(() => p.kill("SIGKILL"), 30_000);
    p.once("close", (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

describe("portcullis --help", () => {
  test("lists every setting of the schema with the default the code applies, and its meaning", async () => {
    const r = await cli(["--help"]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    const dflt = loadConfig({}, undefined, 1) as unknown as Record<string, unknown>;
    for (const [key, env] of Object.entries(ENV_NAMES) as [keyof Settings, string][]) {
      const line = lines.find((l) => l.trimStart().startsWith(`${env} `));
      assert.ok(line, `${env} is listed`);
      const shown = /\[(.*)\]$/.exec(line)![1]!;
      if (key === "http_threads") assert.match(shown, /CPU/);
      else if (key === "circuit_breaker_half_open_probes") assert.equal(shown, "CIRCUIT_BREAKER_SUCCESS_THRESHOLD");
      else assert.equal(shown, dflt[key] === null ? "none" : String(dflt[key]), `${env} default`);
      assert.ok(
        line
          .replace(env, "")
          .replace(/\[.*\]$/, "")
          .trim().length > 10,
        `${env} has a meaning`,
      );
    }
  });

  test("lists every setting that README.md and docs/ document", async () => {
    const out = (await cli(["--help"])).stdout;
    const listed = new Set(out.split("\n").map((l) => l.trim().split(" ")[0]));
    const documented = new Set<string>();
    for (const f of ["README.md", "docs/mcp.md", "docs/budgets.md", "docs/operations.md"]) {
      for (const row of readFileSync(join(ROOT, f), "utf8").matchAll(/^\| ((?:`[A-Z][A-Z0-9_]+`(?:, )?)+) \|/gm)) {
        for (const m of row[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)) documented.add(m[1]!);
      }
    }
    assert.ok(documented.size >= 50, `settings found in the docs: ${documented.size}`);
    const missing = [...documented].filter((s) => !listed.has(s));
    assert.deepEqual(missing, [], "documented but not in --help");
  });
});

describe("portcullis check-config FILE", () => {
  const file = (name: string, v: unknown): string => {
    const p = join(dir, name);
    writeFileSync(p, typeof v === "string" ? v : JSON.stringify(v));
    return p;
  };

  test("a good file: exit 0 and a summary of what it configures", async () => {
    const p = file("good.json", {
      providers: { main: { type: "anthropic", api_key_env: "MAIN_KEY" } },
      routes: [{ match: "claude-*", provider: "main" }],
      default_provider: "main",
    });
    const r = await cli(["check-config", p], { MAIN_KEY: "sk-main-12345678" });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /: ok \(providers: main; routes: 1; default provider: main\)/);
    assert.doesNotMatch(r.stdout + r.stderr, /sk-main-12345678/, "the key is not echoed");
  });

  test("a bad field: exit 1 naming the field", async () => {
    const bad = file("bad.json", {
      providers: { main: { type: "anthropic", api_key: "sk-main-12345678" } },
      routes: [{ match: "claude-*", provider: "nope" }],
    });
    const r = await cli(["check-config", bad]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^portcullis: invalid setting CONFIG_FILE routes\.0\.provider: unknown provider "nope"/);
    const wrongType = await cli(["check-config", file("type.json", { providers: { main: { type: "gemini" } } })]);
    assert.equal(wrongType.code, 1);
    assert.match(wrongType.stderr, /CONFIG_FILE providers\.main\.type: expected/);
    const noKey = await cli(["check-config", file("nokey.json", { providers: { main: { type: "anthropic", api_key_env: "UNSET_VAR" } } })]);
    assert.equal(noKey.code, 1);
    assert.match(noKey.stderr, /CONFIG_FILE providers\.main\.api_key_env: environment variable UNSET_VAR is not set/);
  });

  test("not JSON, a missing file, a file that configures no provider, no FILE", async () => {
    const notJson = await cli(["check-config", file("broken.json", "{ nope")]);
    assert.equal(notJson.code, 1);
    assert.match(notJson.stderr, /invalid setting CONFIG_FILE: .* is not valid JSON/);
    const missing = await cli(["check-config", join(dir, "absent.json")]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /invalid setting CONFIG_FILE: cannot read .*ENOENT/);
    const empty = await cli(["check-config", file("empty.json", {})]);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /invalid setting ANTHROPIC_API_KEY: no provider is configured/);
    const usage = await cli(["check-config"]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: portcullis check-config FILE/);
  });
});

describe("portcullis keys create", () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ MODEL_PROVIDER: "mock", ADMIN_API_KEY: ADMIN });
  });
  after(async () => {
    await gw?.stop();
  });

  test("creates a key through the admin API; the printed key then authenticates", async () => {
    const r = await cli(
      [
        "keys",
        "create",
        "--name",
        "team-cli",
        "--models",
        "claude-sonnet-4-5, claude-haiku-4-5",
        "--usd-per-day",
        "2.5",
        "--tokens-per-month",
        "1000000",
        "--url",
        gw.url,
      ],
      { ADMIN_API_KEY: ADMIN },
    );
    assert.equal(r.code, 0, r.stderr);
    const k = JSON.parse(r.stdout) as { id: string; name: string; key: string; models: string[]; limits: Record<string, number> };
    assert.equal(k.name, "team-cli");
    assert.deepEqual(k.models, ["claude-sonnet-4-5", "claude-haiku-4-5"]);
    assert.equal(k.limits.usd_per_day, 2.5);
    assert.equal(k.limits.tokens_per_month, 1_000_000);
    assert.doesNotMatch(r.stdout + r.stderr, new RegExp(ADMIN), "the admin key is never printed");
    const models = await fetch(`${gw.url}/v1/models`, { headers: { "x-api-key": k.key } });
    assert.equal(models.status, 200);
    await models.arrayBuffer();
    const refused = await fetch(`${gw.url}/v1/models`, { headers: { "x-api-key": "sk-not-a-key-12345678" } });
    assert.equal(refused.status, 401, "control: an unknown key is refused");
    await refused.arrayBuffer();
  });

  test("a wrong admin key: exit 1 with the gateway's answer; usage errors exit 2", async () => {
    const wrong = await cli(["keys", "create", "--name", "x", "--url", gw.url], { ADMIN_API_KEY: "not-the-admin-key-0123456789" });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /answered 401: authentication_error/);
    assert.doesNotMatch(wrong.stderr, /not-the-admin-key/);
    const noName = await cli(["keys", "create", "--url", gw.url], { ADMIN_API_KEY: ADMIN });
    assert.equal(noName.code, 2);
    assert.match(noName.stderr, /--name is required/);
    const noAdmin = await cli(["keys", "create", "--name", "x", "--url", gw.url]);
    assert.equal(noAdmin.code, 2);
    assert.match(noAdmin.stderr, /set ADMIN_API_KEY in the environment/);
    const badNum = await cli(["keys", "create", "--name", "x", "--usd-per-day", "lots", "--url", gw.url], { ADMIN_API_KEY: ADMIN });
    assert.equal(badNum.code, 2);
    assert.match(badNum.stderr, /--usd-per-day expects a non-negative number/);
    const unknown = await cli(["frobnicate"]);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command/);
  });
});
