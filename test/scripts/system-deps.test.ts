/**
 * scripts/system-deps.sh, the `pretest` step: on a machine that has the programs it is silent,
 * and where it may not install them it stops at once with one line naming every package.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../scripts/system-deps.sh", import.meta.url));
const PACKAGES = ["bubblewrap", "prometheus", "git", "redis-server", "util-linux"];

/** A PATH holding only bash and id: every program the tests need is missing from it. */
function barePath(): string {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-deps-"));
  chmodSync(dir, 0o755);
  for (const [name, target] of [["bash", "/bin/bash"], ["id", "/usr/bin/id"]] as const) symlinkSync(target, join(dir, name));
  return dir;
}

test("with every program present the pretest step succeeds silently", () => {
  const r = spawnSync("bash", [SCRIPT], { encoding: "utf8", timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, "");
});

test("without root it installs nothing and fails at once with one line naming every missing package", () => {
  const asRoot = process.getuid?.() === 0;
  const r = spawnSync("/bin/bash", [SCRIPT], {
    encoding: "utf8",
    timeout: 30_000,
    env: { PATH: barePath() },
    // As root, run it as nobody; otherwise the current user already is not root.
    ...(asRoot ? { uid: 65534, gid: 65534 } : {}),
  });
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stdout, "");
  const lines = r.stderr.trimEnd().split("\n");
  assert.equal(lines.length, 1, r.stderr);
  for (const p of PACKAGES) assert.match(lines[0]!, new RegExp(`\\b${p}\\b`));
  assert.match(lines[0]!, /apt-get install -y/);
});
