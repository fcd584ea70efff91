/**
 * Glob patterns for the path allowlist, compiled once to anchored regular expressions.
 * Matched against a path relative to its workspace root, with `/` separators.
 *
 * - `**` as a whole segment matches zero or more segments (`**\/x`, `a/**`, `a/**\/b`);
 * - `*` matches any run of characters inside one segment (dot files included);
 * - `?` matches one character other than `/`;
 * - `{a,b}` matches either alternative (no nesting);
 * - everything else is literal.
 */
const SPECIAL = /[.+^$()|[\]\\]/g;

function segmentToRegex(seg: string): string {
  let out = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i]!;
    if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else if (c === "{") {
      const end = seg.indexOf("}", i);
      if (end < 0) throw new Error(`unclosed { in glob segment ${JSON.stringify(seg)}`);
      const alts = seg
        .slice(i + 1, end)
        .split(",")
        .map((a) => segmentToRegex(a));
      out += `(?:${alts.join("|")})`;
      i = end;
    } else out += c.replace(SPECIAL, "\\$&");
  }
  return out;
}

/** Compile a glob to an anchored RegExp source. Throws on a malformed pattern. */
export function globSource(glob: string): string {
  const g = glob
    .trim()
    .replace(/^\.\/+/, "")
    .replace(/\/+$/, "");
  if (g === "") throw new Error("empty glob");
  if (g.startsWith("/")) throw new Error(`globs are relative to a workspace root, got ${JSON.stringify(glob)}`);
  const segs = g.split("/");
  let re = "";
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    const last = i === segs.length - 1;
    if (s === "**") {
      // Zero or more whole segments, each followed by "/" unless it is the tail.
      re += last ? "(?:.*)" : "(?:[^/]+/)*";
    } else {
      re += segmentToRegex(s) + (last ? "" : "/");
    }
  }
  return `^${re}$`;
}

/** `a/{b,c}/*.{x,y}` as the plain globs it stands for (git pathspecs have no braces). */
export function expandBraces(glob: string): string[] {
  const open = glob.indexOf("{");
  if (open < 0) return [glob];
  const close = glob.indexOf("}", open);
  if (close < 0) return [glob];
  const head = glob.slice(0, open);
  const tails = expandBraces(glob.slice(close + 1));
  const out: string[] = [];
  for (const alt of glob.slice(open + 1, close).split(",")) for (const t of tails) out.push(head + alt + t);
  return out;
}

export class GlobSet {
  private readonly res: RegExp[];
  readonly patterns: readonly string[];

  constructor(patterns: readonly string[], caseInsensitive: boolean) {
    this.patterns = patterns;
    this.res = patterns.map((p) => new RegExp(globSource(p), caseInsensitive ? "i" : ""));
  }

  /** The first pattern matching `rel`, or null. */
  match(rel: string): string | null {
    for (let i = 0; i < this.res.length; i++) if (this.res[i]!.test(rel)) return this.patterns[i]!;
    return null;
  }
}
