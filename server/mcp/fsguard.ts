/**
 * The file-system half of path allowlisting. Every path argument is located lexically
 * (core/policy/paths.ts), realpath'd with symlinks followed, checked against the globs,
 * then opened with O_NOFOLLOW and verified after the open: the kernel's own name for the
 * open descriptor (/proc/self/fd/N) must be the path that was checked. A symlink swapped
 * in between the check and the open is caught there. Files are created and directories
 * listed through a verified directory descriptor (/proc/self/fd/DIR/name), so a parent
 * swapped for a symlink cannot redirect them. All I/O is asynchronous and capped.
 */
import { constants, type Dirent } from "node:fs";
import { lstat, mkdir, open, readdir, readlink, realpath, type FileHandle } from "node:fs/promises";
import { posix } from "node:path";
import { OUTSIDE, PathPolicy, gitWriteRefusal, relTo, type Located } from "../../core/policy/paths.js";

const { O_RDONLY, O_RDWR, O_CREAT, O_NOFOLLOW, O_NONBLOCK, O_DIRECTORY } = constants;

/**
 * A refusal (policy said no) or a failure (the file is missing, the edit did not apply).
 * `shown`, when set, is the whole text the client reads instead of "Refused: "/"Failed: "
 * and the message (which the audit keeps): a path that resolves
 * outside the workspace is audited as a refusal but answered like a missing file, so the
 * tools are no oracle for which host paths exist.
 */
export class ToolError extends Error {
  readonly denied: boolean;
  readonly shown: string | null;
  constructor(message: string, denied: boolean, shown: string | null = null) {
    super(message);
    this.denied = denied;
    this.shown = shown;
  }
}
const deny = (m: string) => new ToolError(m, true);
const fail = (m: string) => new ToolError(m, false);
const notFound = (what: string) => `${what}: no such file or directory`;
/** A policy refusal, or for OUTSIDE the same words as a missing file. */
const refuse = (why: string, rel: string) => (why === OUTSIDE ? new ToolError(why, true, "Failed: " + notFound(rel)) : deny(why));

export interface WorkspaceLimits {
  /** write_file/edit_file may create `.gitmodules`, `.gitattributes`... (POLICY_ALLOW_GIT_FILES). */
  allowGitFiles?: boolean;
  maxReadBytes: number;
  maxWriteBytes: number;
  listMaxEntries: number;
  searchMaxResults: number;
}

let procFd: boolean | null = null;
async function hasProcFd(): Promise<boolean> {
  if (procFd === null) {
    try {
      await readlink("/proc/self/fd/0");
      procFd = true;
    } catch {
      procFd = false;
    }
  }
  return procFd;
}

export interface WorkspaceHooks {
  /** Runs between the policy check and the open (tests swap a symlink in here). */
  afterCheck?(real: string): Promise<void>;
}

export class Workspace {
  readonly policy: PathPolicy;
  readonly limits: WorkspaceLimits;
  private readonly hooks: WorkspaceHooks | null;

  constructor(policy: PathPolicy, limits: WorkspaceLimits, hooks: WorkspaceHooks | null = null) {
    this.policy = policy;
    this.limits = limits;
    this.hooks = hooks;
  }

  private located(arg: unknown): Located & { ok: true } {
    const l = this.policy.locate(arg);
    if (!l.ok) throw deny(l.reason);
    return l;
  }

  /** realpath with symlinks followed, then the policy check. */
  async resolveExisting(arg: unknown, wantDir: boolean | null = null): Promise<{ real: string; rel: string; isDir: boolean }> {
    const l = this.located(arg);
    let real: string;
    try {
      real = await realpath(l.abs);
    } catch (e) {
      throw fail(errnoMessage(e, l.rel));
    }
    const st = await lstat(real);
    const isDir = st.isDirectory();
    const why = this.policy.refusal(real, isDir);
    if (why !== null) throw refuse(why, l.rel);
    if (wantDir === true && !isDir) throw fail(`${l.rel} is not a directory`);
    if (wantDir === false && isDir) throw fail(`${l.rel} is a directory`);
    const root = this.policy.rootOf(real)!;
    return { real, rel: relOf(root, real), isDir };
  }

  /** Check that an open descriptor is the path that was checked. Closes it on refusal. */
  private async verify(fh: FileHandle, expected: string, wantDir: boolean): Promise<void> {
    try {
      if (await hasProcFd()) {
        const actual = await readlink(`/proc/self/fd/${fh.fd}`);
        if (actual !== expected) throw deny("the path changed between the check and the open (symlink race); refused");
        const why = this.policy.refusal(actual, wantDir);
        if (why !== null) throw deny(why);
      } else {
        const [a, b] = await Promise.all([fh.stat(), lstat(expected)]);
        if (a.dev !== b.dev || a.ino !== b.ino) throw deny("the path changed between the check and the open (symlink race); refused");
      }
      const st = await fh.stat();
      if (wantDir ? !st.isDirectory() : !st.isFile()) throw fail(wantDir ? "not a directory" : "not a regular file");
    } catch (e) {
      await fh.close().catch(() => {});
      throw e;
    }
  }

  private async openVerified(real: string, flags: number, wantDir: boolean): Promise<FileHandle> {
    let fh: FileHandle;
    try {
      fh = await open(real, flags | O_NOFOLLOW | O_NONBLOCK);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // O_NOFOLLOW gives ELOOP on a symlink, and ENOTDIR with O_DIRECTORY: the path was a
      // checked regular file or directory a moment ago, so it was swapped.
      if (code === "ELOOP" || (wantDir && code === "ENOTDIR"))
        throw deny("the path changed between the check and the open (symlink race); refused");
      throw fail(errnoMessage(e, real));
    }
    await this.verify(fh, real, wantDir);
    return fh;
  }

  async readFile(
    arg: unknown,
    offset = 0,
    maxBytes = this.limits.maxReadBytes,
  ): Promise<{ rel: string; text: string; size: number; from: number; to: number }> {
    const r = await this.resolveExisting(arg, false);
    if (this.hooks?.afterCheck) await this.hooks.afterCheck(r.real);
    const fh = await this.openVerified(r.real, O_RDONLY, false);
    try {
      const size = (await fh.stat()).size;
      const want = Math.max(0, Math.min(maxBytes, this.limits.maxReadBytes, size - offset));
      const buf = Buffer.allocUnsafe(want);
      let got = 0;
      while (got < want) {
        const { bytesRead } = await fh.read(buf, got, want - got, offset + got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const data = buf.subarray(0, got);
      if (data.includes(0)) throw fail(`${r.rel} looks binary (it contains NUL bytes); not shown`);
      return { rel: r.rel, text: data.toString("utf8"), size, from: offset, to: offset + got };
    } finally {
      await fh.close();
    }
  }

  /** Open (or create) a regular file for read-write through a verified parent descriptor. */
  private async openForWrite(
    arg: unknown,
    create: boolean,
    createDirs: boolean,
  ): Promise<{ fh: FileHandle; rel: string; created: boolean }> {
    const l = this.located(arg);
    if (l.rel === ".") throw deny("cannot write a workspace root");
    const git = gitWriteRefusal(l.rel, null, this.limits.allowGitFiles === true);
    if (git !== null) throw deny(git);
    // An existing symlink inside the workspace is followed to its (checked) target.
    let target = l.abs;
    try {
      target = await realpath(l.abs);
    } catch {
      /* a new file: its parent is resolved below */
    }
    const name = posix.basename(target);
    let parentReal: string;
    try {
      parentReal = await realpath(posix.dirname(target));
    } catch (e) {
      if (!createDirs || !create)
        throw fail(errnoMessage(e, posix.dirname(l.rel)) + (create ? " (pass create_dirs: true to create it)" : ""));
      parentReal = await this.mkdirs(posix.dirname(target));
    }
    const real = parentReal === "/" ? "/" + name : `${parentReal}/${name}`;
    const why = this.policy.refusal(real, false);
    if (why !== null) throw refuse(why, l.rel);
    // The name the write really lands on (through a symlink) is checked as well.
    const realGit = gitWriteRefusal(relTo(this.policy.rootOf(real)!, real), null, this.limits.allowGitFiles === true);
    if (realGit !== null) throw deny(realGit);
    if (this.hooks?.afterCheck) await this.hooks.afterCheck(real);
    const dir = await this.openVerified(parentReal, O_RDONLY | O_DIRECTORY, true);
    let fh: FileHandle;
    let created = false;
    try {
      const via = `/proc/self/fd/${dir.fd}/${name}`;
      const viaOk = await hasProcFd();
      try {
        fh = await open(viaOk ? via : real, O_RDWR | O_NOFOLLOW | O_NONBLOCK);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ELOOP") throw deny("the path is a symlink that appeared after the check; refused");
        if (code !== "ENOENT" || !create) throw fail(errnoMessage(e, relOf(this.policy.rootOf(real)!, real)));
        fh = await open(viaOk ? via : real, O_RDWR | O_CREAT | constants.O_EXCL | O_NOFOLLOW | O_NONBLOCK, 0o644);
        created = true;
      }
    } finally {
      await dir.close();
    }
    await this.verify(fh, real, false);
    return { fh, rel: relOf(this.policy.rootOf(real)!, real), created };
  }

  /** mkdir -p below a root, one verified component at a time. Returns the real path. */
  private async mkdirs(absDir: string): Promise<string> {
    const root = this.policy.rootOf(absDir);
    if (root === null) throw deny("path escapes the workspace");
    let cur = await realpath(root);
    const parts = absDir === root ? [] : absDir.slice(root.length + 1).split("/");
    for (const part of parts) {
      const next = `${cur}/${part}`;
      try {
        cur = await realpath(next);
        if (this.policy.rootOf(cur) === null) throw refuse(OUTSIDE, relTo(root, next));
        continue;
      } catch (e) {
        if (e instanceof ToolError) throw e;
      }
      const why = this.policy.refusal(next, true);
      if (why !== null) throw deny(why);
      const dir = await this.openVerified(cur, O_RDONLY | O_DIRECTORY, true);
      try {
        await mkdir((await hasProcFd()) ? `/proc/self/fd/${dir.fd}/${part}` : next, { mode: 0o755 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw fail(errnoMessage(e, part));
      } finally {
        await dir.close();
      }
      cur = await realpath(next);
      if (this.policy.rootOf(cur) === null) throw refuse(OUTSIDE, relTo(root, next));
    }
    return cur;
  }

  async writeFile(arg: unknown, content: string, createDirs: boolean): Promise<{ rel: string; bytes: number; created: boolean }> {
    const data = Buffer.from(content, "utf8");
    if (data.length > this.limits.maxWriteBytes)
      throw deny(`content is ${data.length} bytes; the write limit is ${this.limits.maxWriteBytes}`);
    const git = gitWriteRefusal(this.located(arg).rel, content, this.limits.allowGitFiles === true);
    if (git !== null) throw deny(git);
    const { fh, rel, created } = await this.openForWrite(arg, true, createDirs);
    try {
      await fh.truncate(0);
      await fh.write(data, 0, data.length, 0);
    } finally {
      await fh.close();
    }
    return { rel, bytes: data.length, created };
  }

  async editFile(arg: unknown, oldStr: string, newStr: string, replaceAll: boolean): Promise<{ rel: string; replaced: number }> {
    if (oldStr === "") throw fail("old_string must not be empty");
    const { fh, rel } = await this.openForWrite(arg, false, false);
    try {
      const size = (await fh.stat()).size;
      if (size > this.limits.maxWriteBytes)
        throw deny(`${rel} is ${size} bytes; files over ${this.limits.maxWriteBytes} bytes cannot be edited`);
      const buf = Buffer.alloc(size);
      let got = 0;
      while (got < size) {
        const { bytesRead } = await fh.read(buf, got, size - got, got);
        if (bytesRead === 0) break;
        got += bytesRead;
      }
      const text = buf.subarray(0, got).toString("utf8");
      const count = text.split(oldStr).length - 1;
      if (count === 0) throw fail(`old_string was not found in ${rel}`);
      if (count > 1 && !replaceAll)
        throw fail(`old_string occurs ${count} times in ${rel}; add context to make it unique, or pass replace_all: true`);
      const edited = replaceAll ? text.split(oldStr).join(newStr) : text.replace(oldStr, () => newStr);
      const git = gitWriteRefusal(rel, edited, this.limits.allowGitFiles === true);
      if (git !== null) throw deny(git);
      const out = Buffer.from(edited, "utf8");
      if (out.length > this.limits.maxWriteBytes)
        throw deny(`the edited file would be ${out.length} bytes; the write limit is ${this.limits.maxWriteBytes}`);
      await fh.truncate(0);
      await fh.write(out, 0, out.length, 0);
      return { rel, replaced: replaceAll ? count : 1 };
    } finally {
      await fh.close();
    }
  }

  /** Entries of a directory, denied ones hidden, through a verified descriptor. */
  private async entries(real: string): Promise<Dirent[]> {
    const dir = await this.openVerified(real, O_RDONLY | O_DIRECTORY, true);
    try {
      return await readdir((await hasProcFd()) ? `/proc/self/fd/${dir.fd}` : real, { withFileTypes: true });
    } finally {
      await dir.close();
    }
  }

  async listDir(arg: unknown): Promise<{ rel: string; lines: string[]; truncated: boolean; hidden: number }> {
    const r = await this.resolveExisting(arg ?? ".", true);
    if (this.hooks?.afterCheck) await this.hooks.afterCheck(r.real);
    const all = await this.entries(r.real);
    all.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const lines: string[] = [];
    let hidden = 0;
    for (const e of all) {
      const abs = `${r.real}/${e.name}`;
      if (!this.policy.visible(abs, e.isDirectory())) {
        hidden++;
        continue;
      }
      if (lines.length >= this.limits.listMaxEntries) return { rel: r.rel, lines, truncated: true, hidden };
      lines.push(e.isDirectory() ? `${e.name}/` : e.isSymbolicLink() ? `${e.name}@` : e.name);
    }
    return { rel: r.rel, lines, truncated: false, hidden };
  }

  /**
   * Literal text search below a directory: symlinks are not followed, denied paths are
   * skipped, binary and over-cap files are skipped, results and files scanned are capped.
   */
  async search(
    query: string,
    arg: unknown,
    maxResults: number,
    caseSensitive: boolean,
  ): Promise<{ hits: string[]; capped: boolean; files: number }> {
    if (query === "") throw fail("query must not be empty");
    const cap = Math.max(1, Math.min(maxResults, this.limits.searchMaxResults));
    const r = await this.resolveExisting(arg ?? ".", null);
    const root = this.policy.rootOf(r.real)!;
    const needle = caseSensitive ? query : query.toLowerCase();
    const hits: string[] = [];
    const queue: string[] = r.isDir ? [r.real] : [];
    const files: string[] = r.isDir ? [] : [r.real];
    let scanned = 0;
    const MAX_FILES = 20_000;
    const scan = async (f: string): Promise<boolean> => {
      scanned++;
      let fh: FileHandle;
      try {
        fh = await this.openVerified(f, O_RDONLY, false);
      } catch {
        return true;
      }
      try {
        const size = (await fh.stat()).size;
        if (size > this.limits.maxReadBytes || size === 0) return true;
        const buf = Buffer.alloc(size);
        const { bytesRead } = await fh.read(buf, 0, size, 0);
        const data = buf.subarray(0, bytesRead);
        if (data.includes(0)) return true;
        const lines = data.toString("utf8").split("\n");
        for (let i = 0; i < lines.length; i++) {
          const line = lines[i]!;
          if ((caseSensitive ? line : line.toLowerCase()).includes(needle)) {
            hits.push(`${relOf(root, f)}:${i + 1}: ${line.length > 240 ? line.slice(0, 240) + "…" : line}`);
            if (hits.length >= cap) return false;
          }
        }
        return true;
      } finally {
        await fh.close();
      }
    };
    for (const f of files) if (!(await scan(f))) return { hits, capped: true, files: scanned };
    while (queue.length > 0 && scanned < MAX_FILES) {
      const d = queue.shift()!;
      let ents: Dirent[];
      try {
        ents = await this.entries(d);
      } catch {
        continue;
      }
      ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of ents) {
        const abs = `${d}/${e.name}`;
        if (e.isSymbolicLink()) continue;
        if (e.isDirectory()) {
          if (this.policy.visible(abs, true)) queue.push(abs);
        } else if (e.isFile() && this.policy.visible(abs, false)) {
          if (!(await scan(abs))) return { hits, capped: true, files: scanned };
          if (scanned >= MAX_FILES) break;
        }
      }
    }
    return { hits, capped: scanned >= MAX_FILES, files: scanned };
  }
}

function relOf(root: string, abs: string): string {
  return abs === root ? "." : abs.slice(root.length + 1);
}

function errnoMessage(e: unknown, what: string): string {
  const code = (e as NodeJS.ErrnoException).code;
  switch (code) {
    case "ENOENT":
      return `${what}: no such file or directory`;
    case "ENOTDIR":
      return `${what}: a parent is not a directory`;
    case "EISDIR":
      return `${what} is a directory`;
    case "EACCES":
    case "EPERM":
      return `${what}: permission denied`;
    case "ENAMETOOLONG":
      return `${what}: name too long`;
    default:
      return `${what}: ${code ?? String(e)}`;
  }
}
