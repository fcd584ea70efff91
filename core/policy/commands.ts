/**
 * The safe command DSL: a declarative allowlist of command templates with typed
 * parameters. A template's argv is literal strings and parameter slots; a call supplies
 * values for the slots, each checked against its type, and the result is an argv array
 * that is executed directly (never through a shell). Pure: path parameters come back
 * unresolved and the caller resolves them through the path allowlist.
 */
import typia, { tags } from "typia";

export interface StringParamSpec {
  param: string & tags.Pattern<"^[a-z][a-z0-9_]{0,31}$">;
  type: "string";
  /** Regular expression the whole value must match (it is anchored for you). */
  match: string & tags.MinLength<1>;
  optional?: boolean;
  /** Literal text joined in front of the value in the same argv element, e.g. "--grep=". */
  prefix?: string;
  /** Values may start with "-" (off by default: they would be read as options). */
  allow_leading_dash?: boolean;
  max_length?: number & tags.Type<"uint32"> & tags.Minimum<1> & tags.Maximum<4096>;
  description?: string;
}

export interface EnumParamSpec {
  param: string & tags.Pattern<"^[a-z][a-z0-9_]{0,31}$">;
  type: "enum";
  values: (string & tags.MinLength<1>)[] & tags.MinItems<1>;
  optional?: boolean;
  prefix?: string;
  description?: string;
}

export interface IntegerParamSpec {
  param: string & tags.Pattern<"^[a-z][a-z0-9_]{0,31}$">;
  type: "integer";
  min: number & tags.Type<"int64">;
  max: number & tags.Type<"int64">;
  optional?: boolean;
  prefix?: string;
  description?: string;
}

export interface PathParamSpec {
  param: string & tags.Pattern<"^[a-z][a-z0-9_]{0,31}$">;
  type: "path";
  optional?: boolean;
  prefix?: string;
  description?: string;
}

export type ParamSpec = StringParamSpec | EnumParamSpec | IntegerParamSpec | PathParamSpec;

export interface CommandSpec {
  name: string & tags.Pattern<"^[a-z][a-z0-9_-]{0,63}$">;
  description?: string;
  /** argv[0] is a literal program name or absolute path; later elements are literals or slots. */
  argv: (string | ParamSpec)[] & tags.MinItems<1>;
  /** The command writes to the workspace (bound read-write in the sandbox). Default false. */
  writes?: boolean;
  /** Working directory, relative to the first workspace root. Default: the root. */
  cwd?: string;
  /** Wall-clock limit for this command; default SANDBOX_TIMEOUT_MS. */
  timeout_ms?: number & tags.Type<"uint32"> & tags.Minimum<100>;
}

export interface CommandsFile {
  commands?: CommandSpec[];
  /** Key id (`static-0`, ...) or "*" to the tool names that key may call. */
  tool_access?: Record<string, string[]>;
}

export const validateCommandsFile = typia.createValidate<CommandsFile>();

export type Bound = { ok: true; values: Map<string, string>; paths: Map<string, string> } | { ok: false; reason: string };

const CONTROL = /[\u0000-\u001F\u007F-\u009F\u2028\u2029]/u;

/** Compile-time checks the type system cannot express. Returns a problem or null. */
export function commandProblem(c: CommandSpec): { field: string; message: string } | null {
  const a0 = c.argv[0];
  if (typeof a0 !== "string" || a0.length === 0) return { field: "argv.0", message: "argv[0] must be a literal program name" };
  const seen = new Set<string>();
  for (let i = 1; i < c.argv.length; i++) {
    const a = c.argv[i]!;
    if (typeof a === "string") continue;
    if (seen.has(a.param)) return { field: `argv.${i}.param`, message: `parameter ${a.param} appears twice` };
    seen.add(a.param);
    if (a.type === "string") {
      try {
        new RegExp(`^(?:${a.match})$`);
      } catch (e) {
        return { field: `argv.${i}.match`, message: `invalid regular expression: ${(e as Error).message}` };
      }
    }
    if (a.type === "integer" && a.min > a.max) return { field: `argv.${i}.min`, message: "min is greater than max" };
  }
  if (c.cwd !== undefined && (c.cwd.startsWith("/") || c.cwd.split("/").includes(".."))) {
    return { field: "cwd", message: "cwd is relative to the workspace root and may not contain .." };
  }
  return null;
}

export class CommandTemplate {
  readonly spec: CommandSpec;
  readonly params: readonly ParamSpec[];
  private readonly regex = new Map<string, RegExp>();

  constructor(spec: CommandSpec) {
    this.spec = spec;
    const ps: ParamSpec[] = [];
    for (const a of spec.argv) {
      if (typeof a === "string") continue;
      ps.push(a);
      if (a.type === "string") this.regex.set(a.param, new RegExp(`^(?:${a.match})$`));
    }
    this.params = ps;
  }

  get name(): string {
    return this.spec.name;
  }

  /** Check call arguments against the parameter types. */
  bind(args: unknown): Bound {
    if (args === undefined || args === null) args = {};
    if (typeof args !== "object" || Array.isArray(args)) return { ok: false, reason: "args must be an object" };
    const given = args as Record<string, unknown>;
    const known = new Set(this.params.map((p) => p.param));
    for (const k of Object.keys(given)) {
      if (!known.has(k)) return { ok: false, reason: `unknown argument ${JSON.stringify(k.slice(0, 64))} for command ${this.name}` };
    }
    const values = new Map<string, string>();
    const paths = new Map<string, string>();
    for (const p of this.params) {
      const v = given[p.param];
      if (v === undefined || v === null) {
        if (p.optional === true) continue;
        return { ok: false, reason: `missing argument ${p.param}` };
      }
      const r = this.check(p, v);
      if (typeof r !== "string") return r;
      if (p.type === "path") paths.set(p.param, r);
      else values.set(p.param, r);
    }
    return { ok: true, values, paths };
  }

  private check(p: ParamSpec, v: unknown): string | { ok: false; reason: string } {
    const bad = (why: string) => ({ ok: false as const, reason: `argument ${p.param}: ${why}` });
    switch (p.type) {
      case "integer": {
        let n: number;
        if (typeof v === "number") n = v;
        else if (typeof v === "string" && /^-?\d{1,16}$/.test(v)) n = Number(v);
        else return bad("expected an integer");
        if (!Number.isSafeInteger(n)) return bad("expected an integer");
        if (n < p.min || n > p.max) return bad(`expected an integer from ${p.min} to ${p.max}, got ${n}`);
        return String(n);
      }
      case "enum": {
        if (typeof v !== "string" || !p.values.includes(v))
          return bad(`expected one of ${p.values.map((x) => JSON.stringify(x)).join(", ")}`);
        return v;
      }
      case "string":
      case "path": {
        if (typeof v !== "string") return bad("expected a string");
        if (v.length === 0) return bad("must not be empty");
        if (v.includes("\u0000")) return bad("contains a NUL byte");
        if (CONTROL.test(v)) return bad("contains a control character or line break");
        if (p.type === "path") return v; // the path allowlist does the rest
        const max = p.max_length ?? 1024;
        if (v.length > max) return bad(`longer than ${max} characters`);
        if (v.startsWith("-") && p.allow_leading_dash !== true) return bad("must not start with '-' (it would be read as an option)");
        if (!this.regex.get(p.param)!.test(v)) return bad(`does not match ${p.match}`);
        return v;
      }
    }
  }

  /**
   * The argv for bound values; `resolved` maps each path parameter to its checked real
   * path. Optional parameters that were not given drop out, prefix and all.
   */
  assemble(b: { values: Map<string, string> }, resolved: Map<string, string>): string[] {
    const out: string[] = [];
    for (const a of this.spec.argv) {
      if (typeof a === "string") {
        out.push(a);
        continue;
      }
      const v = a.type === "path" ? resolved.get(a.param) : b.values.get(a.param);
      if (v === undefined) continue;
      out.push((a.prefix ?? "") + v);
    }
    return out;
  }

  /** One-line parameter summary for the tool description. */
  describe(): string {
    const ps = this.params.map((p) => {
      let t: string;
      if (p.type === "string") t = `string matching ${p.match}`;
      else if (p.type === "enum") t = p.values.map((x) => JSON.stringify(x)).join("|");
      else if (p.type === "integer") t = `integer ${p.min}..${p.max}`;
      else t = "workspace path";
      return `${p.param}${p.optional === true ? "?" : ""}: ${t}${p.description ? ` (${p.description})` : ""}`;
    });
    const argv = this.spec.argv.map((a) => (typeof a === "string" ? a : `{${a.param}}`)).join(" ");
    return `${this.name}${this.spec.description ? ` - ${this.spec.description}` : ""}; runs \`${argv}\`${this.spec.writes === true ? " (may write the workspace)" : ""}; args { ${ps.join(", ")} }`;
  }
}
