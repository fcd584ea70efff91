/**
 * Path allowlisting, the pure half: lexical checks on a path argument, resolution against
 * a workspace root, containment, and the allow/deny globs (deny wins). The file-system
 * half (realpath, open-then-verify) is server/mcp/fsguard.ts, which calls back in here
 * with the real paths it found.
 */
import { posix } from "node:path";
import { GlobSet } from "./glob.js";

/** Denied by default, always (POLICY_FILE_BLOCKED_PATHS adds to this list). */
export const DEFAULT_BLOCKED_PATHS: readonly string[] = [
  "**/.env",
  "**/.env.*",
  "**/.envrc",
  "**/.git/config",
  // Hooks, config and objects: writing there runs code on the host at the next git command.
  "**/.git/**",
  "**/.ssh/**",
  "**/.gnupg/**",
  "**/.aws/**",
  "**/.azure/**",
  "**/.kube/**",
  "**/.docker/config.json",
  "**/.npmrc",
  "**/.pypirc",
  "**/.netrc",
  "**/.pgpass",
  "**/.git-credentials",
  "**/*.pem",
  "**/*.key",
  "**/*.p12",
  "**/*.pfx",
  "**/*.jks",
  "**/*.keystore",
  "**/id_rsa*",
  "**/id_dsa*",
  "**/id_ecdsa*",
  "**/id_ed25519*",
  "**/*.tfstate",
  "**/*.tfstate.*",
];

export const DEFAULT_ALLOWED_PATHS: readonly string[] = ["**"];

/** The refusal for a real path outside every root (audited; the client is told "no such file"). */
export const OUTSIDE = "path resolves outside the workspace (a symlink points out)";

/** `.git*` files a write may still create without POLICY_ALLOW_GIT_FILES: they run nothing. */
const HARMLESS_GIT_FILES = new Set([".gitignore", ".gitkeep"]);

/**
 * Why write_file/edit_file may not write `rel` (relative to its root) with `content`, or
 * null. Git runs code from its own files: a `.git` file or directory anywhere (a `gitdir:`
 * pointer to a crafted config with core.fsmonitor makes the developer's next `git status`
 * run it), `.gitmodules` and `.gitattributes` (filters, submodule URLs) and `.git*` config.
 * A `HEAD` file holding a ref or an object id is what turns a directory of files into a
 * git repository, so it is refused too. Names are compared without case.
 */
export function gitWriteRefusal(rel: string, content: string | null, allowGitFiles: boolean): string | null {
  const parts = rel.toLowerCase().split("/");
  if (parts.includes(".git"))
    return `path ${JSON.stringify(rel)} is inside or is a .git entry; git runs code from there, so the tools never write it`;
  const head = content === null ? "" : content.slice(0, 256);
  if (/^\s*gitdir:/i.test(head)) return 'content starting with "gitdir:" would point git at another repository; refused';
  const name = parts[parts.length - 1]!;
  if (name === "head" && /^\s*(ref:|[0-9a-f]{40})/i.test(head))
    return `a HEAD file naming a ref or commit would make ${JSON.stringify(posix.dirname(rel))} a git repository; refused`;
  if (name.startsWith(".git") && !HARMLESS_GIT_FILES.has(name) && !allowGitFiles) {
    return `path ${JSON.stringify(rel)} is a git control file (filters, hooks, submodules); set POLICY_ALLOW_GIT_FILES=true to let the tools write it`;
  }
  return null;
}

/** Linux limits: PATH_MAX 4096 bytes, NAME_MAX 255 bytes. */
export const MAX_PATH_BYTES = 4096;
export const MAX_NAME_BYTES = 255;

export type Located = { ok: true; root: string; abs: string; rel: string } | { ok: false; reason: string };

// Characters that look like "/", "\" or "." or that hide text: refused outright.
const LOOKALIKE = /[\u2024\u2025\u2026\u2215\u2044\u2571\u29F8\u29F9\u3002\uFE52\uFF0E\uFF0F\uFF3C\uFE68\u2216\u29F5\u00B7\u0338]/u;
const INVISIBLE =
  /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u200B-\u200F\u202A-\u202E\u2060-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0\uFFF0-\uFFFF]/u;
// C0 and C1 controls, DEL.
const CONTROL = /[\u0000-\u001F\u007F-\u009F]/u;
const PERCENT = /%[0-9A-Fa-f]{2}/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Why this path argument is refused before it is even resolved, or null. Percent-escapes,
 * backslashes, controls (NUL included), invisible and look-alike characters, text that
 * NFKC-normalisation would change, and over-long paths are refused: each is either a
 * smuggling attempt or a name no tool needs.
 */
export function lexicalRefusal(p: unknown): string | null {
  if (typeof p !== "string") return "path must be a string";
  if (p.length === 0) return "path is empty";
  if (p.includes("\u0000")) return "path contains a NUL byte";
  if (CONTROL.test(p)) return "path contains a control character";
  if (Buffer.byteLength(p, "utf8") > MAX_PATH_BYTES) return `path is longer than ${MAX_PATH_BYTES} bytes`;
  if (p.includes("\\")) return "path contains a backslash; use / as the separator";
  if (PERCENT.test(p)) return "path contains a percent-escape (%xx); send the path unencoded";
  if (LOOKALIKE.test(p)) return "path contains a character that looks like a separator or dot";
  if (INVISIBLE.test(p)) return "path contains an invisible or bidirectional-control character";
  if (p.normalize("NFKC") !== p) return "path contains compatibility characters (it changes under NFKC normalisation)";
  if (LONE_SURROGATE.test(p)) return "path contains a lone surrogate";
  for (const name of p.split("/")) {
    if (Buffer.byteLength(name, "utf8") > MAX_NAME_BYTES) return `a path component is longer than ${MAX_NAME_BYTES} bytes`;
  }
  return null;
}

/** `child` equals `root` or lies under it (both absolute and normalised). */
export function isInside(root: string, child: string): boolean {
  if (child === root) return true;
  const r = root.endsWith("/") ? root : root + "/";
  return child.startsWith(r);
}

export interface PathPolicyOptions {
  /** Workspace roots: absolute, normalised, real paths. The first is the default. */
  roots: readonly string[];
  allowed: readonly string[];
  /** Extra denied globs; DEFAULT_BLOCKED_PATHS always apply. */
  blocked: readonly string[];
}

export class PathPolicy {
  readonly roots: readonly string[];
  private readonly allow: GlobSet;
  private readonly deny: GlobSet;
  /** The globs as configured (deny: the built-in list, then POLICY_FILE_BLOCKED_PATHS). */
  readonly allowGlobs: readonly string[];
  readonly denyGlobs: readonly string[];

  constructor(o: PathPolicyOptions) {
    if (o.roots.length === 0) throw new Error("at least one workspace root");
    this.roots = o.roots;
    this.allow = new GlobSet(o.allowed, false);
    // Deny globs ignore case: `.ENV` must not slip through on a case-insensitive mount.
    this.deny = new GlobSet([...DEFAULT_BLOCKED_PATHS, ...o.blocked], true);
    this.allowGlobs = this.allow.patterns;
    this.denyGlobs = this.deny.patterns;
  }

  /**
   * Resolve a path argument lexically: relative paths against the first root, absolute
   * ones only when under a root. No file-system access; symlinks are the caller's job.
   */
  locate(p: unknown): Located {
    const lex = lexicalRefusal(p);
    if (lex !== null) return { ok: false, reason: lex };
    const s = p as string;
    const abs = s.startsWith("/") ? posix.normalize(s) : posix.normalize(posix.join(this.roots[0]!, s));
    const clean = abs.length > 1 && abs.endsWith("/") ? abs.slice(0, -1) : abs;
    const root = this.rootOf(clean);
    if (root === null) {
      return { ok: false, reason: s.startsWith("/") ? "absolute path is outside the workspace" : "path escapes the workspace (../)" };
    }
    return { ok: true, root, abs: clean, rel: relTo(root, clean) };
  }

  /** The (longest) root containing an absolute normalised path, or null. */
  rootOf(abs: string): string | null {
    let best: string | null = null;
    for (const r of this.roots) if (isInside(r, abs) && (best === null || r.length > best.length)) best = r;
    return best;
  }

  /**
   * Why a real (symlink-free) absolute path is refused, or null when allowed. A directory
   * is allowed when an allow glob could match something inside it (`src/**` allows `src`).
   */
  refusal(realAbs: string, isDir = false): string | null {
    const root = this.rootOf(realAbs);
    if (root === null) return OUTSIDE;
    const rel = relTo(root, realAbs);
    // A directory whose every entry would be denied (`.git` under `**/.git/**`) is denied too.
    const d = this.deny.match(rel) ?? (isDir ? this.deny.match(rel + "/\u0001") : null);
    if (d !== null) return `path ${JSON.stringify(rel)} is blocked by policy (${d})`;
    if (rel !== "." && this.allow.match(rel) === null && !(isDir && this.allow.match(rel + "/\u0001") !== null))
      return `path ${JSON.stringify(rel)} is not in the allowed paths`;
    return null;
  }

  /** Whether a listing or a search should show this entry (same rules, no reason). */
  visible(realAbs: string, isDir = false): boolean {
    return this.refusal(realAbs, isDir) === null;
  }
}

export function relTo(root: string, abs: string): string {
  if (abs === root) return ".";
  return abs.slice(root.endsWith("/") ? root.length : root.length + 1);
}
