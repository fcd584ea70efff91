/**
 * Path allowlisting against real files in a temp workspace: the attack corpus, symlinks
 * pointing out, and a symlink swapped in between the check and the open.
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  realpathSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  existsSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PathPolicy } from "../../../core/policy/paths.js";
import { ToolError, Workspace, type WorkspaceHooks } from "../../../server/mcp/fsguard.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-fs-")));
const ws = join(base, "ws");
const outside = join(base, "outside");
mkdirSync(join(ws, "src", "deep"), { recursive: true });
mkdirSync(outside);
writeFileSync(join(ws, "src", "a.ts"), "export const a = 1;\nconst needle = 'x';\n");
writeFileSync(join(ws, "src", "deep", "b.ts"), "needle again\n");
writeFileSync(join(ws, ".env"), "SECRET=hunter2\n");
mkdirSync(join(ws, ".git"));
writeFileSync(join(ws, ".git", "config"), "[core]\n");
writeFileSync(join(ws, "big.txt"), "x".repeat(5000));
writeFileSync(join(ws, "bin.dat"), Buffer.from([1, 2, 0, 3]));
writeFileSync(join(outside, "secret.txt"), "outside secret\n");
symlinkSync(outside, join(ws, "link-out"));
symlinkSync(join(outside, "secret.txt"), join(ws, "file-link-out"));
symlinkSync(join(ws, "src", "a.ts"), join(ws, "link-in"));
symlinkSync("../outside", join(ws, "rel-link-out"));
execFileSync("mkfifo", [join(ws, "fifo")]);
after(() => rmSync(base, { recursive: true, force: true }));

const limits = { maxReadBytes: 1000, maxWriteBytes: 2000, listMaxEntries: 100, searchMaxResults: 3 };
const policy = new PathPolicy({ roots: [ws], allowed: ["**"], blocked: [] });
const w = new Workspace(policy, limits);

async function refused(p: Promise<unknown>, why: RegExp, denied = true): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof ToolError, String(e));
    assert.match(e.message, why);
    assert.equal(e.denied, denied, e.message);
    return true;
  });
}

test("read, write, edit, list and search inside the workspace", async () => {
  assert.equal((await w.readFile("src/a.ts")).text, "export const a = 1;\nconst needle = 'x';\n");
  assert.equal((await w.readFile(join(ws, "src/a.ts"))).rel, "src/a.ts");
  assert.equal((await w.readFile("link-in")).rel, "src/a.ts", "a symlink inside is followed to its target");
  assert.deepEqual(await w.writeFile("new/dir/c.txt", "hello", true), { rel: "new/dir/c.txt", bytes: 5, created: true });
  assert.equal(readFileSync(join(ws, "new/dir/c.txt"), "utf8"), "hello");
  await refused(w.writeFile("nodir/c.txt", "x", false), /no such file or directory.*create_dirs/, false);
  assert.deepEqual(await w.editFile("new/dir/c.txt", "hello", "bye", false), { rel: "new/dir/c.txt", replaced: 1 });
  assert.equal(readFileSync(join(ws, "new/dir/c.txt"), "utf8"), "bye");
  await refused(w.editFile("new/dir/c.txt", "absent", "x", false), /not found/, false);
  await w.writeFile("dup.txt", "a a a", false);
  await refused(w.editFile("dup.txt", "a", "b", false), /occurs 3 times/, false);
  assert.equal((await w.editFile("dup.txt", "a", "b", true)).replaced, 3);
  const l = await w.listDir(".");
  assert.ok(l.lines.includes("src/") && l.lines.includes("link-in@"));
  assert.ok(!l.lines.includes(".env") && !l.lines.includes(".git/"), "blocked entries are hidden");
  assert.equal(l.hidden, 2);
  const s = await w.search("needle", ".", 10, false);
  assert.deepEqual(s.hits, ["src/a.ts:2: const needle = 'x';", "src/deep/b.ts:1: needle again"]);
  assert.equal((await w.search("SECRET", ".", 10, true)).hits.length, 0, "search skips blocked files and symlinks out");
  assert.equal((await w.search("outside", ".", 10, false)).hits.length, 0);
});

test("size caps: reads page at the cap, writes over the cap are refused, binary is refused", async () => {
  const r = await w.readFile("big.txt");
  assert.equal(r.text.length, 1000);
  assert.equal(r.size, 5000);
  assert.equal((await w.readFile("big.txt", 4500)).text.length, 500);
  await refused(w.writeFile("huge.txt", "y".repeat(2001), false), /write limit is 2000/);
  assert.equal(existsSync(join(ws, "huge.txt")), false);
  await refused(w.readFile("bin.dat"), /binary/, false);
  await refused(w.readFile("fifo"), /not a regular file/, false);
  await w.writeFile("many.txt", "needle\n".repeat(10), false);
  const s = await w.search("needle", ".", 100, false);
  assert.equal(s.hits.length, 3, "results capped at MCP_SEARCH_MAX_RESULTS");
  assert.equal(s.capped, true);
});

const CORPUS: [string, string, RegExp][] = [
  ["traversal", "../outside/secret.txt", /escapes the workspace/],
  ["traversal from a subdir", "src/../../outside/secret.txt", /escapes the workspace/],
  ["absolute outside", join(outside, "secret.txt"), /outside the workspace/],
  ["absolute /etc/shadow", "/etc/shadow", /outside the workspace/],
  ["symlinked dir pointing out", "link-out/secret.txt", /resolves outside the workspace/],
  ["symlinked file pointing out", "file-link-out", /resolves outside the workspace/],
  ["relative symlink pointing out", "rel-link-out/secret.txt", /resolves outside the workspace/],
  ["percent-encoded", "%2e%2e/outside/secret.txt", /percent-escape/],
  ["unicode look-alike dots", "\uFF0E\uFF0E/outside/secret.txt", /looks like a separator or dot/],
  ["unicode look-alike slash", "..\u2215outside\u2215secret.txt", /looks like a separator or dot/],
  ["NUL byte", "src/a.ts\u0000", /NUL/],
  ["over-long", "a/".repeat(2100), /longer than 4096/],
  ["backslashes", "..\\outside\\secret.txt", /backslash/],
  ["blocked .env", ".env", /blocked by policy/],
  ["blocked .git/config", ".git/config", /blocked by policy|is inside or is a \.git entry/],
  ["blocked via case", ".ENV", /no such file|blocked/],
];

test("attack corpus on real files: read, write and list are all refused", async () => {
  for (const [name, p, why] of CORPUS) {
    if (name === "blocked via case") continue;
    await refused(w.readFile(p), why, true).catch((e) => assert.fail(`${name} (read): ${e}`));
    await refused(w.writeFile(p, "pwned", false), why, true).catch((e) => assert.fail(`${name} (write): ${e}`));
  }
  await refused(w.listDir("link-out"), /resolves outside/);
  await refused(w.listDir(".git"), /blocked by policy/);
  await refused(w.search("secret", "link-out", 5, false), /resolves outside/);
  await refused(w.writeFile("link-out/new.txt", "pwned", true), /resolves outside/);
  await refused(w.writeFile("rel-link-out/deep/new.txt", "pwned", true), /resolves outside/);
  assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), "outside secret\n", "nothing outside changed");
  assert.equal(existsSync(join(outside, "new.txt")) || existsSync(join(outside, "deep")), false);
});

test("a symlink that resolves outside gets the same answer as a missing file (no existence oracle); the audit keeps the real reason", async () => {
  const answers: string[] = [];
  for (const p of ["file-link-out", "missing-file"]) {
    await assert.rejects(w.readFile(p), (e: unknown) => {
      assert.ok(e instanceof ToolError);
      answers.push((e.shown ?? "Failed: " + e.message).replace(p, "P"));
      if (p === "file-link-out") assert.equal(e.denied, true, "audited as a refusal");
      return true;
    });
  }
  assert.equal(answers[0], answers[1]);
  assert.equal(answers[0], "Failed: P: no such file or directory");
});

test("a symlink swapped in after the check is caught by verifying the opened file", async () => {
  const target = join(ws, "swap.txt");
  writeFileSync(target, "harmless\n");
  const swap: WorkspaceHooks = {
    async afterCheck(real) {
      if (real !== target) return;
      // Atomically replace the checked file with a symlink pointing out.
      symlinkSync(join(outside, "secret.txt"), target + ".tmp");
      renameSync(target + ".tmp", target);
    },
  };
  const racy = new Workspace(policy, limits, swap);
  await refused(racy.readFile("swap.txt"), /symlink/);
  await refused(racy.writeFile("swap.txt", "pwned", false), /symlink/);
  assert.equal(readFileSync(join(outside, "secret.txt"), "utf8"), "outside secret\n");

  // The parent directory swapped for a symlink out, between the check and the create.
  mkdirSync(join(ws, "pdir"));
  const swapDir: WorkspaceHooks = {
    async afterCheck(real) {
      if (real !== join(ws, "pdir", "f.txt")) return;
      renameSync(join(ws, "pdir"), join(ws, "pdir.old"));
      symlinkSync(outside, join(ws, "pdir"));
    },
  };
  await refused(new Workspace(policy, limits, swapDir).writeFile("pdir/f.txt", "pwned", false), /changed between the check and the open/);
  assert.equal(existsSync(join(outside, "f.txt")), false, "no file was created outside");

  // A listed directory swapped after the check.
  mkdirSync(join(ws, "ldir"));
  const swapList: WorkspaceHooks = {
    async afterCheck(real) {
      if (real !== join(ws, "ldir")) return;
      renameSync(join(ws, "ldir"), join(ws, "ldir.old"));
      symlinkSync(outside, join(ws, "ldir"));
    },
  };
  await refused(new Workspace(policy, limits, swapList).listDir("ldir"), /symlink/);
  assert.ok(statSync(join(outside, "secret.txt")).isFile());
});
