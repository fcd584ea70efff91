/**
 * Host-side git checks around sandboxed commands. `gitTopOf` finds the work tree git will
 * report paths against. `quarantineNewGit` runs after a template with `writes: true`: the
 * sandbox keeps every existing `.git` read-only, but a writing command can still create a
 * new one (`sub/.git` holding `gitdir: ../evil`, whose config names an fsmonitor command),
 * and the developer's next `git status` there would run it on the host. Any `.git` that
 * was not there before the command is renamed out of git's way.
 */
import type { Dirent } from "node:fs";
import { lstat, readdir, rename } from "node:fs/promises";
import { posix } from "node:path";
import { randomBytes } from "node:crypto";
import type { PathPolicy } from "../../core/policy/paths.js";

/** The nearest directory at or above `cwd` holding a `.git`; `cwd` when there is none. */
export async function gitTopOf(cwd: string): Promise<string> {
  for (let d = cwd; ; d = posix.dirname(d)) {
    try {
      await lstat(`${d}/.git`);
      return d;
    } catch {
      if (d === "/") return cwd;
    }
  }
}

/**
 * Rename every `.git` under the roots that is not in `before` (absolute paths) to
 * `.git.portcullis-quarantine-XXXX`. Returns the renamed paths, relative to their root.
 * Visits at most `maxEntries` entries.
 */
export async function quarantineNewGit(policy: PathPolicy, before: readonly string[], maxEntries: number): Promise<string[]> {
  const known = new Set(before);
  const moved: string[] = [];
  const queue = [...policy.roots];
  let seen = 0;
  while (queue.length > 0 && seen < maxEntries) {
    const d = queue.shift()!;
    let ents: Dirent[];
    try {
      ents = await readdir(d, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of ents) {
      if (++seen > maxEntries) break;
      const abs = `${d}/${e.name}`;
      // A .git of any kind (directory, gitdir: file, symlink) points git somewhere.
      if (e.name.toLowerCase() === ".git") {
        if (!known.has(abs)) {
          await rename(abs, `${abs}.portcullis-quarantine-${randomBytes(3).toString("hex")}`);
          moved.push(abs.slice(policy.rootOf(abs)!.length + 1));
        }
        continue;
      }
      if (e.isDirectory()) queue.push(abs);
    }
  }
  return moved;
}
