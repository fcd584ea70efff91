/**
 * The sandbox's view of the workspace, worked out before each command: the paths to hide
 * and the paths to keep read-only. A command must see the tree the file tools show, so
 * every path the policy refuses is masked (a file reads as empty, a directory as an empty
 * read-only tmpfs), node_modules included. Every `.git` (directory, or `gitdir:` file and
 * the directory it names) stays read-only even for a template that writes, with its
 * `config` masked (remote URLs carry tokens), and so does a `core.hooksPath` directory
 * inside the workspace: a command must not plant code that the developer's next git
 * command runs on the host. The walk is bounded in entries and time; past either bound the
 * command is refused rather than shown an unmasked tree.
 */
import type { Dirent } from "node:fs";
import { lstat, readFile, readdir, realpath } from "node:fs/promises";
import { posix } from "node:path";
import type { PathPolicy } from "../../core/policy/paths.js";
import { ToolError } from "./fsguard.js";

export interface SandboxView {
  masks: { path: string; dir: boolean }[];
  readOnly: string[];
  /** Every `.git` entry seen (symlinks too): a writing command may not add one. */
  gitEntries: string[];
}

/** Per-repository files hidden inside the sandbox: git needs the rest of `.git`. */
const GIT_SECRETS = ["config", "config.worktree"];
/** Largest `.git` file or config read for `gitdir:` / `core.hooksPath`. */
const MAX_GIT_FILE = 64 * 1024;

async function small(path: string): Promise<string | null> {
  try {
    const st = await lstat(path);
    if (!st.isFile() || st.size > MAX_GIT_FILE) return null;
    return await readFile(path, "utf8");
  } catch {
    return null;
  }
}

/** `core.hooksPath` from a git config file (last one wins, as in git), or null. */
export function hooksPathOf(config: string): string | null {
  let inCore = false;
  let found: string | null = null;
  for (const raw of config.split("\n")) {
    const line = raw.trim();
    const sec = /^\[\s*([A-Za-z0-9.-]+)(?:\s+"[^"]*")?\s*\]/.exec(line);
    if (sec !== null) {
      inCore = sec[1]!.toLowerCase() === "core";
      continue;
    }
    const kv = /^hookspath\s*=\s*(.*)$/i.exec(line);
    if (inCore && kv !== null) found = kv[1]!.replace(/^"(.*)"$/, "$1").trim();
  }
  return found;
}

export async function sandboxView(policy: PathPolicy, maxEntries: number, maxMs: number): Promise<SandboxView> {
  const masks: { path: string; dir: boolean }[] = [];
  const readOnly = new Set<string>();
  const gitEntries: string[] = [];
  const t0 = performance.now();
  let seen = 0;

  const inside = (p: string) => policy.rootOf(p) !== null;
  /** A git directory at `gitDir` whose work tree is `workTree`. */
  const gitDir = async (dir: string, workTree: string) => {
    readOnly.add(dir);
    for (const f of GIT_SECRETS) {
      const p = `${dir}/${f}`;
      const cfg = await small(p);
      if (cfg === null) continue;
      masks.push({ path: p, dir: false });
      const hooks = hooksPathOf(cfg);
      if (hooks === null || hooks === "") continue;
      const abs = posix.resolve(workTree, hooks.replace(/^~(?=\/)/, "/nonexistent"));
      try {
        const real = await realpath(abs);
        if (inside(real) && (await lstat(real)).isDirectory()) readOnly.add(real);
      } catch {
        /* a hooks path that does not exist runs nothing */
      }
    }
  };

  const queue = [...policy.roots];
  while (queue.length > 0) {
    const d = queue.shift()!;
    let ents: Dirent[];
    try {
      ents = await readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of ents) {
      if (++seen > maxEntries) {
        throw new ToolError(
          `the workspace has more than ${maxEntries} entries to check before a command may run (SANDBOX_MASK_MAX_ENTRIES); the command was not run`,
          false,
        );
      }
      if ((seen & 255) === 0 && performance.now() - t0 > maxMs) {
        throw new ToolError(
          `checking the workspace for paths to hide took over ${maxMs} ms (SANDBOX_MASK_MAX_MS); the command was not run`,
          false,
        );
      }
      const abs = `${d}/${e.name}`;
      const isGit = e.name.toLowerCase() === ".git";
      if (isGit) gitEntries.push(abs);
      // Symlinks are not masked: they resolve inside the sandbox to a target that is.
      if (e.isSymbolicLink()) continue;
      const isDir = e.isDirectory();
      if (isGit) {
        if (isDir) await gitDir(abs, d);
        else {
          readOnly.add(abs);
          const ptr = /^gitdir:\s*(.+?)\s*$/m.exec((await small(abs)) ?? "");
          if (ptr !== null) {
            try {
              const real = await realpath(posix.resolve(d, ptr[1]!));
              if (inside(real) && (await lstat(real)).isDirectory()) await gitDir(real, d);
            } catch {
              /* dangling: git fails on it */
            }
          }
        }
        continue;
      }
      if (policy.refusal(abs, isDir) !== null) {
        masks.push({ path: abs, dir: isDir });
        continue;
      }
      if (isDir) queue.push(abs);
    }
  }
  // A directory inside a read-only one is covered already; a mask under a read-only bind still applies.
  return { masks, readOnly: [...readOnly], gitEntries };
}
