/**
 * What git_status and git_diff may show. Inside the sandbox a denied `.env` reads as empty,
 * but `.git/objects` still holds its committed contents, so git would print them as deleted
 * lines, and `git status` would name it. Two layers, both pure: pathspecs that keep git
 * from looking at denied paths at all, built from the policy's globs, and a filter over
 * the output that drops every entry naming a path the policy refuses (and every entry whose
 * path cannot be read back, so a parsing surprise hides rather than shows).
 */
import { expandBraces } from "./glob.js";

/** `:(exclude,glob,icase)` pathspecs for the deny globs, after a positive one per allow glob. */
export function gitPathspecs(allowed: readonly string[], denied: readonly string[]): string[] {
  const out: string[] = [];
  for (const g of allowed) for (const e of expandBraces(g)) out.push(`:(glob)${e}`);
  for (const g of denied) for (const e of expandBraces(g)) out.push(`:(exclude,glob,icase)${e}`);
  return out;
}

/** Undo git's C-style quoting of a path ("a\\tb", "\\303\\244"); null when malformed. */
export function unquoteGitPath(s: string): string | null {
  if (!s.startsWith('"')) return s;
  if (!s.endsWith('"') || s.length < 2) return null;
  const bytes: number[] = [];
  const body = s.slice(1, -1);
  const esc: Record<string, number> = { a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, "\\": 92 };
  for (let i = 0; i < body.length; i++) {
    const c = body[i]!;
    if (c !== "\\") {
      for (const b of Buffer.from(c, "utf8")) bytes.push(b);
      continue;
    }
    const n = body[++i];
    if (n === undefined) return null;
    if (n in esc) bytes.push(esc[n]!);
    else if (/[0-7]/.test(n) && /^[0-7]{3}$/.test(body.slice(i, i + 3))) {
      bytes.push(parseInt(body.slice(i, i + 3), 8));
      i += 2;
    } else return null;
  }
  return Buffer.from(bytes).toString("utf8");
}

/** Printable form of a path for our own output lines (a newline in a name cannot forge an entry). */
const show = (p: string) => (/[\u0000-\u001f\u007f"\\]/.test(p) ? JSON.stringify(p) : p);

/**
 * `git status --porcelain=v1 -z --branch` output, filtered: `hidden(path)` says whether a
 * repository-relative path must not be shown. Returns porcelain lines ("XY path",
 * "XY orig -> path"), branch line first.
 */
export function filterStatus(z: string, hidden: (path: string) => boolean): string {
  const t = z.split("\0");
  const out: string[] = [];
  for (let i = 0; i < t.length; i++) {
    const e = t[i]!;
    if (e === "") continue;
    if (e.startsWith("## ")) {
      out.push(e);
      continue;
    }
    if (e.length < 4 || e[2] !== " ") continue;
    const xy = e.slice(0, 2);
    const path = e.slice(3);
    const orig = xy[0] === "R" || xy[0] === "C" || xy[1] === "R" || xy[1] === "C" ? t[++i] : undefined;
    if (hidden(path) || (orig !== undefined && hidden(orig))) continue;
    out.push(orig === undefined ? `${xy} ${show(path)}` : `${xy} ${show(orig)} -> ${show(path)}`);
  }
  return out.join("\n") + (out.length > 0 ? "\n" : "");
}

/** The paths a `diff --git` section names (header, ---/+++, rename/copy lines); null = unreadable. */
function sectionPaths(lines: readonly string[]): string[] | null {
  const paths: string[] = [];
  const header = lines[0]!.slice("diff --git ".length);
  // Unquoted "a/X b/X" with the same X on both sides (the common case, spaces allowed).
  if (!header.startsWith('"') && header.startsWith("a/") && (header.length - 5) % 2 === 0) {
    const half = (header.length - 5) / 2;
    const a = header.slice(2, 2 + half);
    if (header.slice(2 + half) === ` b/${a}`) paths.push(a);
  }
  for (const l of lines) {
    let m: string | null = null;
    if (l.startsWith("--- ") || l.startsWith("+++ ")) {
      const p = unquoteGitPath(l.slice(4).replace(/\t$/, ""));
      if (p === null) return null;
      if (p === "/dev/null") continue;
      if (!/^[ab]\//.test(p)) return null;
      m = p.slice(2);
    } else {
      const r = /^(?:rename|copy) (?:from|to) (.*)$/.exec(l);
      if (r !== null) {
        m = unquoteGitPath(r[1]!);
        if (m === null) return null;
      }
    }
    if (m !== null) paths.push(m);
    if (l.startsWith("@@")) break;
  }
  return paths.length === 0 ? null : paths;
}

/**
 * `git diff` output (with a/ and b/ prefixes) without the sections of hidden paths: a
 * section goes when any path it names is hidden, or when no path can be read from it.
 */
export function filterDiff(diff: string, hidden: (path: string) => boolean): string {
  const lines = diff.split("\n");
  const out: string[] = [];
  let section: string[] | null = null;
  const flush = () => {
    if (section === null) return;
    const paths = sectionPaths(section);
    if (paths !== null && !paths.some(hidden)) out.push(...section);
    section = null;
  };
  for (const l of lines) {
    if (l.startsWith("diff --git ")) {
      flush();
      section = [l];
    } else if (l === "") continue;
    else if (section !== null) section.push(l);
    else out.push(l);
  }
  flush();
  return out.length > 0 ? out.join("\n") + "\n" : "";
}
