import { test } from "node:test";
import assert from "node:assert/strict";
import { GlobSet, globSource } from "../../../core/policy/glob.js";
import { DEFAULT_BLOCKED_PATHS, PathPolicy, lexicalRefusal } from "../../../core/policy/paths.js";

const policy = new PathPolicy({ roots: ["/ws/main", "/ws/other"], allowed: ["**"], blocked: ["secrets/**"] });

test("globs: ** spans segments, * stays in one, braces alternate, case flag", () => {
  const g = new GlobSet(["**/.env*", "src/**/*.{ts,js}", "a/*/c"], false);
  assert.equal(g.match(".env"), "**/.env*");
  assert.equal(g.match("x/y/.env.local"), "**/.env*");
  assert.equal(g.match("src/a.ts"), "src/**/*.{ts,js}");
  assert.equal(g.match("src/x/y/a.js"), "src/**/*.{ts,js}");
  assert.equal(g.match("src/a.tsx"), null);
  assert.equal(g.match("a/b/c"), "a/*/c");
  assert.equal(g.match("a/b/x/c"), null);
  assert.equal(new GlobSet(["**/.env"], true).match("sub/.ENV"), "**/.env");
  assert.throws(() => globSource("/abs/**"));
  assert.throws(() => globSource("a/{b"));
  // Regex metacharacters are literal.
  assert.equal(new GlobSet(["a+b(c).txt"], false).match("a+b(c).txt"), "a+b(c).txt");
  assert.equal(new GlobSet(["a+b(c).txt"], false).match("aab(c)xtxt"), null);
});

test("the default deny list covers .env*, .git/config, key files", () => {
  const p = new PathPolicy({ roots: ["/ws"], allowed: ["**"], blocked: [] });
  for (const rel of [
    ".env",
    ".env.local",
    "app/.env.production",
    ".git/config",
    "sub/.git/config",
    ".git/hooks/pre-commit",
    "id_rsa",
    "home/.ssh/id_ed25519",
    "certs/server.pem",
    "tls/private.key",
    ".npmrc",
    ".aws/credentials",
    "x/.netrc",
    "state/prod.tfstate",
  ]) {
    assert.match(p.refusal(`/ws/${rel}`) ?? "", /blocked by policy/, rel);
  }
  for (const rel of ["src/env.ts", "README.md", "environment.md", "gitconfig.txt", "keys.md"])
    assert.equal(p.refusal(`/ws/${rel}`), null, rel);
  assert.match(p.refusal("/ws/.git", true) ?? "", /blocked/);
  assert.ok(DEFAULT_BLOCKED_PATHS.includes("**/.git/config"));
});

test("deny wins over allow; allow limits what is visible; directories above allowed globs are allowed", () => {
  const p = new PathPolicy({ roots: ["/ws"], allowed: ["src/**", "README.md"], blocked: ["src/generated/**"] });
  assert.equal(p.refusal("/ws/src/a.ts"), null);
  assert.equal(p.refusal("/ws/README.md"), null);
  assert.match(p.refusal("/ws/package.json") ?? "", /not in the allowed paths/);
  assert.match(p.refusal("/ws/src/generated/x.ts") ?? "", /blocked by policy \(src\/generated\/\*\*\)/);
  assert.match(p.refusal("/ws/src/.env") ?? "", /blocked/);
  assert.equal(p.refusal("/ws/src", true), null);
  assert.equal(p.refusal("/ws", true), null);
});

test("locate: relative against the first root, absolute only inside a root", () => {
  assert.deepEqual(policy.locate("src/a.ts"), { ok: true, root: "/ws/main", abs: "/ws/main/src/a.ts", rel: "src/a.ts" });
  assert.deepEqual(policy.locate("/ws/other/x"), { ok: true, root: "/ws/other", abs: "/ws/other/x", rel: "x" });
  assert.deepEqual(policy.locate("."), { ok: true, root: "/ws/main", abs: "/ws/main", rel: "." });
  assert.deepEqual(policy.locate("a/../b/./c/"), { ok: true, root: "/ws/main", abs: "/ws/main/b/c", rel: "b/c" });
  // /ws/mainly is not inside /ws/main.
  assert.equal(policy.locate("/ws/mainly/x").ok, false);
});

/** The attack corpus: every entry must be refused, with a reason a model can act on. */
const ATTACKS: [string, unknown, RegExp][] = [
  ["dot-dot traversal", "../../etc/passwd", /escapes the workspace/],
  ["traversal after a subdir", "src/../../other-secret", /escapes the workspace/],
  ["deep traversal", "a/b/../../../../../../root/.ssh/id_rsa", /escapes the workspace/],
  ["absolute outside", "/etc/shadow", /absolute path is outside/],
  ["absolute sibling prefix", "/ws/main-evil/x", /absolute path is outside/],
  ["root of fs", "/", /absolute path is outside/],
  ["percent-encoded dot-dot", "%2e%2e/%2e%2e/etc/passwd", /percent-escape/],
  ["percent-encoded slash", "..%2fetc%2fpasswd", /percent-escape/],
  ["double-encoded", "%252e%252e/etc", /percent-escape/],
  ["fullwidth dots", "\uFF0E\uFF0E/etc/passwd", /looks like a separator or dot/],
  ["one-dot leader", "\u2024\u2024/etc/passwd", /looks like a separator or dot/],
  ["division slash", "..\u2215etc\u2215passwd", /looks like a separator or dot/],
  ["fullwidth solidus", "..\uFF0Fetc", /looks like a separator or dot/],
  ["fraction slash", "src\u2044..\u2044x", /looks like a separator or dot/],
  ["fullwidth backslash", "..\uFF3Cetc", /looks like a separator or dot/],
  ["zero-width joiner", ".\u200D./etc", /invisible/],
  ["bidi override", "src/\u202Etxt.exe", /invisible/],
  ["compatibility ligature", "\uFB01le.txt", /NFKC/],
  ["NUL byte", "src/a.ts\u0000.png", /NUL/],
  ["NUL alone", "\u0000", /NUL/],
  ["newline", "src/a\nb", /control character/],
  ["backslash traversal", "..\\..\\etc\\passwd", /backslash/],
  ["backslash absolute", "C:\\Windows\\system32", /backslash/],
  ["over-long path", "a/".repeat(2100) + "x", /longer than 4096 bytes/],
  ["over-long name", "x".repeat(256), /component is longer than 255/],
  ["empty", "", /empty/],
  ["not a string", 42, /must be a string/],
  ["array", ["a"], /must be a string/],
  ["lone surrogate", "a\uD800b", /surrogate/],
];

test("attack corpus: every path is refused with a clear reason", () => {
  for (const [name, input, why] of ATTACKS) {
    const r = policy.locate(input);
    assert.equal(r.ok, false, `${name} must be refused`);
    assert.match((r as { reason: string }).reason, why, name);
  }
});

test("lexicalRefusal accepts ordinary names, unicode included", () => {
  for (const p of [
    "src/index.ts",
    "docs/Über uns.md",
    "a b/c-d_e.f",
    "日本語/ファイル.txt",
    "emoji/🦀.rs",
    ".github/workflows/ci.yml",
    "x".repeat(255),
  ]) {
    assert.equal(lexicalRefusal(p), null, p);
  }
});

test("git control files: .git anywhere, gitdir: content and .git* files are refused for writes", async () => {
  const { gitWriteRefusal } = await import("../../../core/policy/paths.js");
  for (const p of [".git", "sub/.git", "a/.GIT/config", ".git/hooks/pre-commit"])
    assert.match(gitWriteRefusal(p, null, true)!, /\.git entry/, p);
  assert.match(gitWriteRefusal("x", "  gitdir: ../evil", true)!, /gitdir:/);
  for (const p of [".gitmodules", "sub/.gitattributes", ".gitconfig"]) {
    assert.match(gitWriteRefusal(p, null, false)!, /POLICY_ALLOW_GIT_FILES/, p);
    assert.equal(gitWriteRefusal(p, null, true), null, `${p} with POLICY_ALLOW_GIT_FILES=true`);
  }
  for (const p of [".gitignore", "src/.gitkeep", "gitdir.txt", "my.git.txt"]) assert.equal(gitWriteRefusal(p, "text", false), null, p);
  assert.match(gitWriteRefusal("evil/HEAD", "ref: refs/heads/main\n", false)!, /would make "evil" a git repository/);
  assert.match(gitWriteRefusal("evil/head", "0123456789abcdef0123456789abcdef01234567", false)!, /git repository/);
  assert.equal(gitWriteRefusal("docs/HEAD", "# the head of the document\n", false), null, "an ordinary file named HEAD");
});
