/**
 * scripts/system-deps.sh, the `pretest` step: on a machine that has the programs it is silent,
 * and where it may not install them it stops at once with one line naming every package.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const SCRIPT = fileURLToPath(new URL("../../../scripts/system-deps.sh", import.meta.url));
const PACKAGES = ["bubblewrap", "prometheus", "git", "redis-server", "util-linux", "chromium", "postgresql"];

const PROGRAMS = ["bwrap", "promtool", "prometheus", "git", "redis-server", "prlimit", "chromium", "pg_ctlcluster"];

/** A PATH holding only bash and id, plus stand-ins for `programs`. */
function pathWith(programs: readonly string[]): string {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-deps-"));
  chmodSync(dir, 0o755);
  for (const [name, target] of [
    ["bash", "/bin/bash"],
    ["id", "/usr/bin/id"],
  ] as const)
    symlinkSync(target, join(dir, name));
  for (const p of programs) {
    writeFileSync(join(dir, p), "#!/bin/sh\nexit 0\n");
    chmodSync(join(dir, p), 0o755);
  }
  return dir;
}

test("with every program present the pretest step succeeds silently, installing nothing", () => {
  // Stand-ins, so the check is the same on any machine (and never runs apt-get here).
  const r = spawnSync("/bin/bash", [SCRIPT], { encoding: "utf8", timeout: 30_000, env: { PATH: pathWith(PROGRAMS) } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout + r.stderr, "");
});

test("without root it installs nothing and fails at once with one line naming every missing package", () => {
  const asRoot = process.getuid?.() === 0;
  const r = spawnSync("/bin/bash", [SCRIPT], {
    encoding: "utf8",
    timeout: 30_000,
    env: { PATH: pathWith([]) },
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

test("only the missing packages are named", () => {
  const r = spawnSync("/bin/bash", [SCRIPT], {
    encoding: "utf8",
    timeout: 30_000,
    env: { PATH: pathWith(PROGRAMS.filter((p) => p !== "redis-server" && p !== "bwrap")) },
    ...(process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}),
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /missing: bubblewrap redis-server \(/);
  assert.doesNotMatch(r.stderr, /prometheus|util-linux|\bgit\b|chromium/);
});

test("as root it runs apt-get update, then installs exactly the missing packages, then passes", () => {
  const dir = pathWith(PROGRAMS.filter((p) => p !== "promtool" && p !== "prometheus"));
  const log = join(dir, "apt.log");
  // Stand-ins: `id` says root; `apt-get` records its arguments and "installs" the programs.
  rmSync(join(dir, "id"));
  writeFileSync(join(dir, "id"), "#!/bin/sh\necho 0\n");
  writeFileSync(
    join(dir, "apt-get"),
    `#!/bin/bash\necho "$*" >> ${JSON.stringify(log)}\nif [[ " $* " == *" install "* ]]; then for p in ${PROGRAMS.join(" ")}; do printf '#!/bin/sh\\nexit 0\\n' > ${JSON.stringify(dir)}/$p; /bin/chmod 755 ${JSON.stringify(dir)}/$p; done; fi\n`,
  );
  for (const f of ["id", "apt-get"]) chmodSync(join(dir, f), 0o755);
  const r = spawnSync("/bin/bash", [SCRIPT], { encoding: "utf8", timeout: 30_000, env: { PATH: dir } });
  assert.equal(r.status, 0, r.stderr);
  const calls = readFileSync(log, "utf8").trim().split("\n");
  assert.equal(calls.length, 2, calls.join("\n"));
  assert.match(calls[0]!, /^update\b/);
  assert.match(calls[1]!, /\binstall -y .*--no-install-recommends prometheus$/);
});
