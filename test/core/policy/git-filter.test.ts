import { test } from "node:test";
import assert from "node:assert/strict";
import { filterDiff, filterStatus, gitPathspecs, unquoteGitPath } from "../../../core/policy/git-filter.js";
import { expandBraces } from "../../../core/policy/glob.js";

const hidden = (p: string) => /(^|\/)\.env$|\.pem$|^secret dir\//.test(p);

test("pathspecs: one positive per allow glob, an exclude per deny glob, braces expanded", () => {
  assert.deepEqual(expandBraces("a/{b,c}/*.{x,y}"), ["a/b/*.x", "a/b/*.y", "a/c/*.x", "a/c/*.y"]);
  assert.deepEqual(gitPathspecs(["**"], ["**/.env", "**/*.{pem,key}"]), [
    ":(glob)**",
    ":(exclude,glob,icase)**/.env",
    ":(exclude,glob,icase)**/*.pem",
    ":(exclude,glob,icase)**/*.key",
  ]);
});

test("status: denied entries dropped, renames checked on both sides, names with newlines cannot forge lines", () => {
  const z =
    ["## main", " M a.txt", " M .env", "R  new.pem", "old.txt", "R  b.txt", "c.txt", "?? evil\n M fake.txt", "?? secret dir/"].join("\0") +
    "\0";
  assert.equal(filterStatus(z, hidden), ["## main", " M a.txt", "R  c.txt -> b.txt", '?? "evil\\n M fake.txt"'].join("\n") + "\n");
});

test("diff: a section naming a hidden path goes, whole; unreadable sections go too", () => {
  const diff = [
    "diff --git a/a.txt b/a.txt",
    "index 1..2 100644",
    "--- a/a.txt",
    "+++ b/a.txt",
    "@@ -1 +1 @@",
    "-one",
    "+two",
    "diff --git a/.env b/.env",
    "deleted file mode 100644",
    "--- a/.env",
    "+++ /dev/null",
    "@@ -1 +0,0 @@",
    "-API_KEY=secret",
    "diff --git a/x.txt b/k.pem",
    "similarity index 100%",
    "rename from x.txt",
    "rename to k.pem",
    'diff --git "a/q\\tz" "b/q\\tz"',
    '--- "a/q\\tz"',
    '+++ "b/q\\tz"',
    "@@ -1 +1 @@",
    "-1",
    "+2",
    'diff --git "a/bin\\001" "b/bin\\001"',
    "Binary files differ",
    "diff --git a/with space.txt b/with space.txt",
    "--- a/with space.txt\t",
    "+++ b/with space.txt\t",
    "@@ -1 +1 @@",
    "-s",
    "+t",
    "",
  ].join("\n");
  const out = filterDiff(diff, hidden);
  assert.doesNotMatch(out, /\.env|API_KEY|k\.pem/);
  assert.match(out, /^diff --git a\/a\.txt b\/a\.txt\n.*\n\+two\n/s);
  assert.match(out, /q\\tz.*\n.*\n.*\n@@ -1 \+1 @@\n-1\n\+2/s, "quoted names are read back");
  assert.match(out, /with space\.txt/);
  assert.doesNotMatch(out, /bin\\001/, "a binary section whose name is only quoted in the header is dropped (fail closed)");
  assert.equal(unquoteGitPath('"\\303\\244\\"x"'), 'ä"x');
  assert.equal(unquoteGitPath('"bad\\q"'), null);
});
