/** Small pure helpers shared by `bench/run.ts` and `loadtest/run.ts`. */

export function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** A markdown table; numbers are printed as given (format them first). */
export function markdownTable(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const out = [`| ${header.join(" | ")} |`, `| ${header.map((h, i) => (i === 0 ? "---" : "---:")).join(" | ")} |`];
  for (const r of rows) out.push(`| ${r.map(String).join(" | ")} |`);
  return out.join("\n");
}

/** 1234567 -> "1,234,567"; 12.345 -> "12.3" (3 significant digits below 100). */
export function fmt(n: number, digits = 3): string {
  if (!Number.isFinite(n)) return "—";
  const a = Math.abs(n);
  if (a >= 100) return Math.round(n).toLocaleString("en-US");
  if (a === 0) return "0";
  return n.toPrecision(digits);
}

/** Nanoseconds as a short human string. */
export function ns(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (n >= 1e6) return `${fmt(n / 1e6)} ms`;
  if (n >= 1e3) return `${fmt(n / 1e3)} µs`;
  return `${fmt(n)} ns`;
}

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return "—";
  if (Math.abs(n) < 8) return "0 B";
  if (Math.abs(n) >= 1024 * 1024) return `${fmt(n / 1024 / 1024)} MiB`;
  if (Math.abs(n) >= 1024) return `${fmt(n / 1024)} KiB`;
  return `${Math.round(n)} B`;
}

/** "--name value" / "--name=value" / "--flag" parsing for the two runners. */
export function parseFlags(argv: readonly string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith("--")) continue;
    const eq = a.indexOf("=");
    if (eq > 0) m.set(a.slice(2, eq), a.slice(eq + 1));
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith("--")) m.set(a.slice(2), argv[++i]!);
    else m.set(a.slice(2), "true");
  }
  return m;
}
