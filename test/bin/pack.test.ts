/**
 * The package as a user gets it: `npm pack` makes a tarball with the `portcullis` bin and the
 * runtime code only; `npm install <tarball>` into an empty directory resolves its
 * dependencies (from the npm cache when it holds them, `--prefer-offline`); then
 * `npx portcullis --help` runs and `portcullis` starts a gateway that answers a call and
 * exits 0 on SIGTERM.
 *
 * Install scripts are off: the one native dependency (better-sqlite3) would otherwise
 * download a prebuilt binary or spend minutes compiling SQLite, which is its own packaging,
 * not ours; its binary is copied from this checkout's install instead. Every step is bounded.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as {
  name: string;
  version: string;
  bin: Record<string, string>;
  files: string[];
};
let dir: string;
let tarball: string;
let packed: string[];
let app: string;

function npm(args: string[], cwd: string, timeout: number): { status: number | null; out: string } {
  const r = spawnSync("npm", args, { cwd, encoding: "utf8", timeout, env: { ...process.env, npm_config_update_notifier: "false" } });
  return { status: r.status, out: `${r.stdout}\n${r.stderr}${r.error ? `\n${String(r.error)}` : ""}` };
}

before(() => {
  dir = mkdtempSync(join(tmpdir(), "portcullis-pack-"));
  const p = npm(["pack", "--ignore-scripts", "--json", "--pack-destination", dir], ROOT, 60_000);
  assert.equal(p.status, 0, p.out);
  const info = JSON.parse(p.out.slice(p.out.indexOf("["), p.out.lastIndexOf("]") + 1)) as { filename: string; files: { path: string }[] }[];
  tarball = join(dir, info[0]!.filename);
  packed = info[0]!.files.map((f) => f.path);
  app = join(dir, "app");
});
after(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("npm pack", () => {
  test("the tarball has the bin with its shebang and the runtime code, and no tests, benches or sources", () => {
    assert.ok(existsSync(tarball), tarball);
    assert.deepEqual(pkg.bin, { portcullis: "dist/bin/portcullis.js" });
    for (const f of [
      "package.json",
      "dist/bin/portcullis.js",
      "dist/bin/settings-help.js",
      "dist/server/main.js",
      "dist/server/acceptor.js",
      "dist/workers/ledger-task.js",
      "dist/workers/metrics-task.js",
      "dist/core/config.js",
    ]) {
      assert.ok(packed.includes(f), `${f} is packed`);
    }
    for (const f of packed)
      assert.doesNotMatch(f, /^(dist\/(test|bench|loadtest)\/|test\/|core\/|server\/|k8s\/|\.env)/, `${f} should not ship`);
    assert.match(readFileSync(join(ROOT, "dist", "bin", "portcullis.js"), "utf8"), /^#!\/usr\/bin\/env node\n/);
  });

  test("installs into an empty directory; npx portcullis --help runs; portcullis starts, serves and stops", async () => {
    mkdirSync(app);
    writeFileSync(join(app, "package.json"), JSON.stringify({ name: "fresh-app", private: true }));
    const i = npm(["install", "--prefer-offline", "--ignore-scripts", "--no-audit", "--no-fund", tarball], app, 240_000);
    assert.equal(i.status, 0, `npm install of the tarball failed (an offline machine needs the dependencies in its npm cache):\n${i.out}`);
    const installed = join(app, "node_modules", pkg.name);
    assert.equal(JSON.parse(readFileSync(join(installed, "package.json"), "utf8")).version, pkg.version);
    cpSync(join(ROOT, "node_modules", "better-sqlite3", "build"), join(app, "node_modules", "better-sqlite3", "build"), {
      recursive: true,
    });

    const help = spawnSync("npx", ["--offline", "--no-install", "portcullis", "--help"], { cwd: app, encoding: "utf8", timeout: 60_000 });
    assert.equal(help.status, 0, help.stderr);
    assert.match(help.stdout, /^Usage: portcullis/);
    assert.match(help.stdout, /GRACEFUL_SHUTDOWN_TIMEOUT/);

    const bin = join(app, "node_modules", ".bin", "portcullis");
    const gw = spawn(bin, [], {
      cwd: app,
      env: {
        PATH: process.env.PATH ?? "",
        HOST: "127.0.0.1",
        PORT: "0",
        HTTP_THREADS: "1",
        MODEL_PROVIDER: "mock",
        DATABASE_PATH: join(dir, "ledger.db"),
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const exited = new Promise<number | null>((r) => gw.once("exit", (code) => r(code)));
    let err = "";
    gw.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
    try {
      const port = await new Promise<number>((resolve, reject) => {
        let buf = "";
        const t = setTimeout(() => reject(new Error(`no "listening" line within 30 s: ${err}`)), 30_000);
        gw.stdout.setEncoding("utf8").on("data", (d: string) => {
          buf += d;
          const line = buf.split("\n").find((l) => l.includes('"msg":"listening"'));
          if (line !== undefined) {
            clearTimeout(t);
            resolve((JSON.parse(line) as { port: number }).port);
          }
        });
        void exited.then((code) => reject(new Error(`exited with ${code} before listening: ${err}`)));
      });
      const r = await fetch(`http://127.0.0.1:${port}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "hi" }] }),
      });
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { type: string }).type, "message");
    } finally {
      gw.kill("SIGTERM");
    }
    const code = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r("still running 30 s after SIGTERM"), 30_000).unref()),
    ]);
    if (code === "still running 30 s after SIGTERM") gw.kill("SIGKILL");
    assert.equal(code, 0, err);
  });
});
