/**
 * The workspace tools: their JSON Schemas for tools/list, argument validation (typia),
 * per-key access, dispatch to the guarded file system and the sandbox, and one audit
 * record per call: a `tool_call` log line, the shared `tool_calls_total{tool,decision}`
 * counter and a row for the SQLite ledger. `call` never throws: a refusal or failure is an
 * MCP tool error (`isError: true`) with a clear reason.
 */
import { typiaPath } from "../../core/typia-path.js";
import typia, { tags } from "typia";
import type { Logger } from "pino";
import { TOOL_DECISIONS, TOOL_OTHER, type Metrics, type ToolDecision } from "../../core/metrics.js";
import type { AuditRow } from "../../workers/ledger-task.js";
import { TOOL_NAMES, type McpConfig, type ToolName } from "../../core/policy/config.js";
import { CommandTemplate } from "../../core/policy/commands.js";
import { PathPolicy } from "../../core/policy/paths.js";
import { filterDiff, filterStatus, gitPathspecs } from "../../core/policy/git-filter.js";
import { ToolError, Workspace } from "./fsguard.js";
import { SandboxExec, gitBase, type CallResult } from "./exec.js";

interface ReadFileArgs {
  path: string;
  offset?: number & tags.Type<"uint32">;
  max_bytes?: number & tags.Type<"uint32"> & tags.Minimum<1>;
}
interface WriteFileArgs {
  path: string;
  content: string;
  create_dirs?: boolean;
}
interface EditFileArgs {
  path: string;
  old_string: string;
  new_string: string;
  replace_all?: boolean;
}
interface ListDirArgs {
  path?: string;
}
interface SearchArgs {
  query: string & tags.MinLength<1>;
  path?: string;
  max_results?: number & tags.Type<"uint32"> & tags.Minimum<1>;
  case_sensitive?: boolean;
}
interface RunCommandArgs {
  command: string;
  args?: Record<string, string | number>;
}
interface GitStatusArgs {
  root?: string;
}
interface GitDiffArgs {
  staged?: boolean;
  path?: string;
}

const VALIDATORS: Record<ToolName, (x: unknown) => typia.IValidation<unknown>> = {
  read_file: typia.createValidateEquals<ReadFileArgs>(),
  write_file: typia.createValidateEquals<WriteFileArgs>(),
  edit_file: typia.createValidateEquals<EditFileArgs>(),
  list_dir: typia.createValidateEquals<ListDirArgs>(),
  search: typia.createValidateEquals<SearchArgs>(),
  run_command: typia.createValidateEquals<RunCommandArgs>(),
  git_status: typia.createValidateEquals<GitStatusArgs>(),
  git_diff: typia.createValidateEquals<GitDiffArgs>(),
};

export interface ToolDef {
  name: ToolName;
  description: string;
  inputSchema: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

export type { CallResult };

/** A virtual key's tool rights (the admin API's `tools` / `commands`); static keys use tool_access. */
export interface KeyRights {
  /** Tool names, or "*"; empty = no tools. */
  tools: readonly string[];
  /** Command names run_command may run; null = every command. */
  commands: readonly string[] | null;
}

export interface CallCtx {
  keyId: string;
  /** Set for a virtual key; null for a static key or anonymous. */
  rights: KeyRights | null;
  reqId: string;
  /** Set by the caller; the tool registers a cancel (the client went away). */
  onCancel(f: (() => void) | null): void;
}

/** Where each call's audit record goes besides the log line (both optional, for tests). */
export interface AuditSinks {
  /** The shared metrics buffer: `tool_calls_total{tool,decision}` across every acceptor thread. */
  metrics?: Metrics;
  /** The SQLite ledger (server/usage-sink.ts batches it to the ledger worker). */
  audit?: (row: AuditRow) => void;
}

/** Longest reason kept in the ledger row. */
const MAX_REASON = 1000;

const PATH_DESC = "Path relative to the workspace root (or absolute inside it). / separators only.";
const obj = (properties: Record<string, unknown>, required: string[]) => ({
  type: "object",
  properties,
  required,
  additionalProperties: false,
});

export class Tools {
  private readonly cfg: McpConfig;
  private readonly log: Logger;
  private readonly ws: Workspace;
  private readonly commands = new Map<string, CommandTemplate>();
  private readonly defs: ToolDef[];
  private readonly sinks: AuditSinks;
  /** Runs commands (run_command, git) in the sandbox; its start-up state is the readiness. */
  readonly sandbox: SandboxExec;

  constructor(cfg: McpConfig, log: Logger, sinks: AuditSinks = {}) {
    this.cfg = cfg;
    this.log = log;
    this.sinks = sinks;
    const policy = new PathPolicy({ roots: cfg.roots, allowed: cfg.allowedPaths, blocked: cfg.blockedPaths });
    this.ws = new Workspace(policy, {
      allowGitFiles: cfg.allowGitFiles,
      maxReadBytes: cfg.maxReadBytes,
      maxWriteBytes: cfg.maxWriteBytes,
      listMaxEntries: cfg.listMaxEntries,
      searchMaxResults: cfg.searchMaxResults,
    });
    for (const c of cfg.commands) this.commands.set(c.name, new CommandTemplate(c));
    this.sandbox = new SandboxExec(cfg, policy, log);
    this.defs = this.buildDefs();
  }

  private buildDefs(): ToolDef[] {
    const ro = { readOnlyHint: true, openWorldHint: false };
    const defs: ToolDef[] = [
      {
        name: "read_file",
        description: `Read a UTF-8 text file from the workspace. At most ${this.cfg.maxReadBytes} bytes per call; use offset to page.`,
        inputSchema: obj(
          {
            path: { type: "string", description: PATH_DESC },
            offset: { type: "integer", minimum: 0, description: "Byte offset to start at (default 0)." },
            max_bytes: { type: "integer", minimum: 1, maximum: this.cfg.maxReadBytes, description: "Bytes to read at most." },
          },
          ["path"],
        ),
        annotations: ro,
      },
      {
        name: "write_file",
        description: `Create or overwrite a text file in the workspace (at most ${this.cfg.maxWriteBytes} bytes).`,
        inputSchema: obj(
          {
            path: { type: "string", description: PATH_DESC },
            content: { type: "string", description: "The whole new file content." },
            create_dirs: { type: "boolean", description: "Create missing parent directories (default false)." },
          },
          ["path", "content"],
        ),
        annotations: { destructiveHint: true, openWorldHint: false },
      },
      {
        name: "edit_file",
        description: "Replace an exact string in a workspace file. old_string must occur exactly once unless replace_all is true.",
        inputSchema: obj(
          {
            path: { type: "string", description: PATH_DESC },
            old_string: { type: "string", minLength: 1, description: "Exact text to replace." },
            new_string: { type: "string", description: "Replacement text." },
            replace_all: { type: "boolean", description: "Replace every occurrence (default false)." },
          },
          ["path", "old_string", "new_string"],
        ),
        annotations: { destructiveHint: true, openWorldHint: false },
      },
      {
        name: "list_dir",
        description: "List a workspace directory: directories end with /, symlinks with @. Paths blocked by policy are hidden.",
        inputSchema: obj({ path: { type: "string", description: PATH_DESC + " Default: the root." } }, []),
        annotations: ro,
      },
      {
        name: "search",
        description: `Search workspace text files for a literal string; returns path:line: text, at most ${this.cfg.searchMaxResults} results.`,
        inputSchema: obj(
          {
            query: { type: "string", minLength: 1, description: "Literal text to find (not a regex)." },
            path: { type: "string", description: "Directory or file to search. Default: the root." },
            max_results: { type: "integer", minimum: 1, maximum: this.cfg.searchMaxResults },
            case_sensitive: { type: "boolean", description: "Default false." },
          },
          ["query"],
        ),
        annotations: ro,
      },
    ];
    if (this.commands.size > 0) {
      defs.push({
        name: "run_command",
        description:
          "Run one of the allowed workspace commands in a sandbox (no network, read-only system) and return its exit code and output. Commands:\n" +
          [...this.commands.values()].map((c) => "- " + c.describe()).join("\n"),
        inputSchema: obj(
          {
            command: { type: "string", enum: [...this.commands.keys()], description: "The command name." },
            args: {
              type: "object",
              additionalProperties: { type: ["string", "integer"] },
              description: "The command's parameters by name.",
            },
          },
          ["command"],
        ),
        annotations: { openWorldHint: false },
      });
    }
    if (this.cfg.git !== null) {
      defs.push(
        {
          name: "git_status",
          description: "git status (porcelain v1, with the branch) of a workspace root, run in the sandbox.",
          inputSchema: obj({ root: { type: "string", description: "Which workspace root (default the first)." } }, []),
          annotations: ro,
        },
        {
          name: "git_diff",
          description: "git diff of the working tree (or the index with staged: true), optionally limited to one path, run in the sandbox.",
          inputSchema: obj({ staged: { type: "boolean" }, path: { type: "string", description: PATH_DESC } }, []),
          annotations: ro,
        },
      );
    }
    return defs;
  }

  /** A virtual key: its own `tools`; a static key: `tool_access` from the command file. */
  allowedFor(keyId: string, tool: string, rights: KeyRights | null = null): boolean {
    if (rights !== null) return rights.tools.includes(tool) || rights.tools.includes("*");
    const a = this.cfg.toolAccess;
    if (a === null) return true;
    const list = a[keyId] ?? a["*"];
    return list !== undefined && (list.includes(tool) || list.includes("*"));
  }

  list(keyId: string, rights: KeyRights | null = null): ToolDef[] {
    return this.defs.filter((d) => this.allowedFor(keyId, d.name, rights));
  }

  has(name: string): boolean {
    return this.defs.some((d) => d.name === name);
  }

  async call(name: string, args: unknown, ctx: CallCtx): Promise<CallResult> {
    const t0 = performance.now();
    let decision: ToolDecision = "allow";
    let reason: string | null = null;
    let exitCode: number | null = null;
    let result: CallResult;
    try {
      if (!(TOOL_NAMES as readonly string[]).includes(name) || !this.has(name))
        throw new ToolError(`unknown tool ${JSON.stringify(name.slice(0, 64))}`, true);
      if (!this.allowedFor(ctx.keyId, name, ctx.rights))
        throw new ToolError("tool_not_allowed", true, `Refused: tool ${name} is not allowed for this key`);
      const v = VALIDATORS[name as ToolName](args ?? {});
      if (!v.success) {
        const e = v.errors[0]!;
        throw new ToolError(`invalid arguments: ${typiaPath(e.path) || "(arguments)"} expected ${e.expected}`, true);
      }
      const r = await this.dispatch(name as ToolName, args as Record<string, unknown>, ctx);
      if (r.exitCode !== undefined) exitCode = r.exitCode;
      result = r.result;
      if (result.isError === true) reason = result.content[0]?.text.split("\n")[0] ?? null;
    } catch (e) {
      if (e instanceof ToolError) {
        decision = e.denied ? "deny" : "error";
        reason = e.message;
        // e.shown: what the client reads when it differs from the audited reason.
        const text = e.shown ?? (e.denied ? "Refused: " : "Failed: ") + e.message;
        result = { content: [{ type: "text", text }], isError: true };
      } else {
        decision = "error";
        reason = "internal error";
        this.log.error({ req_id: ctx.reqId, tool: name, err: String((e as Error)?.stack ?? e) }, "tool failed");
        result = { content: [{ type: "text", text: "Failed: internal error in the gateway" }], isError: true };
      }
    }
    const tool = name.slice(0, 64);
    const argSummary = summarise(args);
    const durationMs = Math.round((performance.now() - t0) * 1000) / 1000;
    const ti = (TOOL_NAMES as readonly string[]).indexOf(name);
    this.sinks.metrics?.toolCall(ti < 0 ? TOOL_OTHER : ti, TOOL_DECISIONS.indexOf(decision));
    this.log.info(
      {
        req_id: ctx.reqId,
        key_id: ctx.keyId,
        tool,
        args: argSummary,
        decision,
        reason: reason ?? undefined,
        exit_code: exitCode ?? undefined,
        duration_ms: durationMs,
      },
      "tool_call",
    );
    this.sinks.audit?.([
      ctx.reqId,
      Date.now(),
      ctx.keyId,
      tool,
      argSummary === undefined ? null : JSON.stringify(argSummary),
      decision,
      reason === null ? null : reason.slice(0, MAX_REASON),
      exitCode,
      durationMs,
    ]);
    return result;
  }

  private async dispatch(
    name: ToolName,
    a: Record<string, unknown>,
    ctx: CallCtx,
  ): Promise<{ result: CallResult; exitCode?: number | null }> {
    const text = (t: string, isError = false): { result: CallResult } => ({
      result: isError ? { content: [{ type: "text", text: t }], isError } : { content: [{ type: "text", text: t }] },
    });
    switch (name) {
      case "read_file": {
        const r = await this.ws.readFile(
          a.path,
          (a.offset as number | undefined) ?? 0,
          (a.max_bytes as number | undefined) ?? this.cfg.maxReadBytes,
        );
        const more = r.to < r.size ? `\n\n[bytes ${r.from}..${r.to} of ${r.size}; call again with offset ${r.to} for more]` : "";
        return text(r.text + more);
      }
      case "write_file": {
        const r = await this.ws.writeFile(a.path, a.content as string, a.create_dirs === true);
        return text(`${r.created ? "Created" : "Wrote"} ${r.rel} (${r.bytes} bytes)`);
      }
      case "edit_file": {
        const r = await this.ws.editFile(a.path, a.old_string as string, a.new_string as string, a.replace_all === true);
        return text(`Edited ${r.rel}: ${r.replaced} replacement${r.replaced === 1 ? "" : "s"}`);
      }
      case "list_dir": {
        const r = await this.ws.listDir(a.path);
        const tail =
          (r.truncated ? `\n[listing capped at ${this.cfg.listMaxEntries} entries]` : "") +
          (r.hidden > 0 ? `\n[${r.hidden} entries hidden by policy]` : "");
        return text((r.lines.length === 0 ? "(empty)" : r.lines.join("\n")) + tail);
      }
      case "search": {
        const r = await this.ws.search(
          a.query as string,
          a.path,
          (a.max_results as number | undefined) ?? this.cfg.searchMaxResults,
          a.case_sensitive === true,
        );
        const tail = r.capped ? `\n[results capped; narrow the query or the path]` : "";
        return text((r.hits.length === 0 ? "No matches." : r.hits.join("\n")) + tail);
      }
      case "run_command": {
        const t = this.commands.get(a.command as string);
        if (t === undefined)
          throw new ToolError(
            `unknown command ${JSON.stringify(String(a.command).slice(0, 64))}; allowed: ${[...this.commands.keys()].join(", ")}`,
            true,
          );
        if (ctx.rights !== null && ctx.rights.commands !== null && !ctx.rights.commands.includes(t.name)) {
          throw new ToolError("tool_not_allowed", true, `Refused: command ${t.name} is not allowed for this key`);
        }
        const b = t.bind(a.args);
        if (!b.ok) throw new ToolError(b.reason, true);
        const resolved = new Map<string, string>();
        for (const [param, p] of b.paths) resolved.set(param, (await this.ws.resolveExisting(p)).real);
        const cwd = t.spec.cwd === undefined ? this.cfg.roots[0]! : (await this.ws.resolveExisting(t.spec.cwd, true)).real;
        const timeoutMs = t.spec.timeout_ms ?? this.cfg.sandbox.timeoutMs;
        return this.sandbox.report(await this.sandbox.run(t.assemble(b, resolved), cwd, t.spec.writes === true, timeoutMs, ctx), timeoutMs);
      }
      case "git_status": {
        const root = a.root === undefined ? this.cfg.roots[0]! : (await this.ws.resolveExisting(a.root, true)).real;
        if (!this.cfg.roots.includes(root)) throw new ToolError("root must be one of the workspace roots", true);
        const spec = gitPathspecs(this.ws.policy.allowGlobs, this.ws.policy.denyGlobs);
        const r = await this.sandbox.run(
          [...gitBase(this.cfg.git!, root), "status", "--porcelain=v1", "-z", "--branch", "--", ...spec],
          root,
          false,
          this.cfg.sandbox.timeoutMs,
          ctx,
        );
        return this.sandbox.gitOutput(r, root, this.cfg.sandbox.timeoutMs, filterStatus);
      }
      case "git_diff": {
        const spec = gitPathspecs(this.ws.policy.allowGlobs, this.ws.policy.denyGlobs);
        const only = a.path === undefined ? null : await this.ws.resolveExisting(a.path);
        const cwd = only === null ? this.cfg.roots[0]! : this.ws.policy.rootOf(only.real)!;
        const argv = [
          ...gitBase(this.cfg.git!, cwd),
          "diff",
          "--no-ext-diff",
          "--no-textconv",
          "--no-color",
          "--src-prefix=a/",
          "--dst-prefix=b/",
        ];
        if (a.staged === true) argv.push("--cached");
        // One path: it is the positive pathspec; the deny globs still exclude.
        if (only !== null) argv.push("--", only.real, ...spec.filter((p) => p.startsWith(":(exclude")));
        else argv.push("--", ...spec);
        const r = await this.sandbox.run(argv, cwd, false, this.cfg.sandbox.timeoutMs, ctx);
        return this.sandbox.gitOutput(r, cwd, this.cfg.sandbox.timeoutMs, filterDiff);
      }
    }
  }
}

/** A short, secret-free summary of the arguments for the audit line. */
export function summarise(args: unknown): Record<string, unknown> | undefined {
  if (args === null || typeof args !== "object" || Array.isArray(args)) return undefined;
  const out: Record<string, unknown> = {};
  let n = 0;
  for (const [k, v] of Object.entries(args as Record<string, unknown>)) {
    if (++n > 12) break;
    const key = k.slice(0, 32);
    if (key === "content" || key === "old_string" || key === "new_string")
      out[key] = typeof v === "string" ? `<${Buffer.byteLength(v)} bytes>` : typeof v;
    else if (typeof v === "string") out[key] = v.length > 120 ? v.slice(0, 117) + "..." : v;
    else if (typeof v === "number" || typeof v === "boolean" || v === null) out[key] = v;
    else if (typeof v === "object") out[key] = summarise(v) ?? "[array]";
  }
  return out;
}
