/**
 * Running a command for a tool: the sandbox's view of the tree worked out first (masks,
 * read-only .git), the command's own cgroup when there is one, the run itself, and after a
 * writing command the quarantine of any `.git` it planted. Also the git tools' argv and
 * output filter, the result text, and the start-up self-test whose outcome /health/ready
 * shows (a sandbox that cannot start makes every command fail at once with the reason).
 */
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, posix } from "node:path";
import type { Logger } from "pino";
import type { McpConfig } from "../../core/policy/config.js";
import type { PathPolicy } from "../../core/policy/paths.js";
import type { SandboxPlan } from "../../core/policy/sandbox-argv.js";
import { Cgroups } from "./cgroup.js";
import { ToolError } from "./fsguard.js";
import { gitTopOf, quarantineNewGit } from "./git-guard.js";
import { planFor, runSandboxed, type RunResult, type Running } from "./runner.js";
import { sandboxView } from "./sandbox-view.js";

export interface CallResult {
  content: { type: "text"; text: string }[];
  isError?: boolean;
}

/** Registers the kill of a running command for a client that goes away. */
export interface Cancellable {
  reqId: string;
  onCancel(f: (() => void) | null): void;
}

/**
 * git as the gateway runs it (in the sandbox, or on the host with SANDBOX_BACKEND=none): no
 * fsmonitor command, no hooks, no transport at all, no pager, no lock files, and only this
 * root trusted. GIT_CONFIG_NOSYSTEM and GIT_CONFIG_GLOBAL=/dev/null come with SANDBOX_ENV.
 */
export function gitBase(git: string, root: string): string[] {
  return [
    git,
    "-c",
    `safe.directory=${root}`,
    "-c",
    "core.fsmonitor=false",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "protocol.allow=never",
    "-c",
    "core.pager=cat",
    "-c",
    "diff.external=",
    "-c",
    "core.quotePath=true",
    "--no-optional-locks",
  ];
}

export class SandboxExec {
  private readonly cfg: McpConfig;
  private readonly policy: PathPolicy;
  private readonly log: Logger;
  private readonly plan: SandboxPlan;
  /** Bound over blocked files inside the sandbox: reads see an empty file. */
  private readonly emptyFile: string;
  /** One cgroup v2 per command when the host allows it, else the rlimits alone. */
  readonly cgroups: Cgroups;
  /** Why the start-up self-test failed (commands then fail at once), or null. */
  down: string | null = null;

  constructor(cfg: McpConfig, policy: PathPolicy, log: Logger) {
    this.cfg = cfg;
    this.policy = policy;
    this.log = log;
    this.plan = planFor(cfg);
    const local = cfg.sandbox.backend === "bwrap" || cfg.sandbox.backend === "none";
    this.cgroups = Cgroups.setup(local ? cfg.sandbox.cgroup : "off", cfg.sandbox.limits);
    const dir = mkdtempSync(join(tmpdir(), "portcullis-mask-"));
    chmodSync(dir, 0o755);
    this.emptyFile = join(dir, "empty");
    writeFileSync(this.emptyFile, "", { mode: 0o444 });
  }

  /** Run one command; the result is returned whatever its exit code. */
  async run(argv: string[], cwd: string, writes: boolean, timeoutMs: number, ctx: Cancellable): Promise<RunResult> {
    if (this.down !== null) throw new ToolError(`the sandbox is unavailable: ${this.down}`, false);
    // The command sees the tree the file tools show: every refused path hidden, .git read-only.
    const view =
      this.cfg.sandbox.backend === "none"
        ? { masks: [], readOnly: [], gitEntries: [] }
        : await sandboxView(this.policy, this.cfg.sandbox.maskMaxEntries, this.cfg.sandbox.maskMaxMs);
    const cgroup = await this.cgroups.create().catch((e: NodeJS.ErrnoException) => {
      throw new ToolError(`could not create the command's cgroup under ${this.cgroups.status.base}: ${e.code ?? e.message}`, false);
    });
    const running: Running = runSandboxed(this.cfg, this.plan, argv, cwd, writes, timeoutMs, {
      masks: view.masks,
      readOnly: view.readOnly,
      emptyFile: this.emptyFile,
      cgroup,
    });
    ctx.onCancel(running.kill);
    let r: RunResult;
    try {
      r = await running.result;
    } finally {
      ctx.onCancel(null);
    }
    if (r.spawnError !== null) throw new ToolError(`the sandbox could not start: ${r.spawnError}`, false);
    if (writes) {
      // A writing command cannot change an existing .git, but it could create a new one.
      const moved = await quarantineNewGit(this.policy, view.gitEntries, this.cfg.sandbox.maskMaxEntries);
      if (moved.length > 0) {
        this.log.warn({ req_id: ctx.reqId, quarantined: moved }, "a command created git control files; renamed");
        r = {
          ...r,
          stderr:
            r.stderr +
            `\n[portcullis: the command created ${moved.join(", ")}; git runs code from such files, so they were renamed to *.portcullis-quarantine]\n`,
        };
      }
    }
    return r;
  }

  /** The tool result for a finished command: status line, stdout, stderr. */
  report(r: RunResult, timeoutMs: number): { result: CallResult; exitCode: number | null } {
    const status = r.timedOut
      ? `killed after the ${timeoutMs} ms time limit`
      : r.truncated
        ? `killed: output exceeded ${this.cfg.sandbox.outputBytes} bytes`
        : r.signal !== null
          ? `killed by ${r.signal}`
          : `exit code ${r.exitCode}`;
    const parts = [status];
    if (r.stdout !== "") parts.push("--- stdout ---\n" + r.stdout);
    if (r.stderr !== "") parts.push("--- stderr ---\n" + r.stderr);
    const failed = r.timedOut || r.truncated || r.exitCode !== 0;
    return {
      result: failed
        ? { content: [{ type: "text", text: parts.join("\n") }], isError: true }
        : { content: [{ type: "text", text: parts.join("\n") }] },
      exitCode: r.exitCode,
    };
  }

  /**
   * A git tool's result with its stdout filtered: `hidden` takes a repository-relative path
   * (git prints them relative to the top of the work tree) and asks the policy.
   */
  async gitOutput(
    r: RunResult,
    cwd: string,
    timeoutMs: number,
    filter: (out: string, hidden: (p: string) => boolean) => string,
  ): Promise<{ result: CallResult; exitCode: number | null }> {
    const top = await gitTopOf(cwd);
    const hidden = (p: string) => {
      const dir = p.endsWith("/");
      return this.policy.refusal(posix.normalize(`${top}/${dir ? p.slice(0, -1) : p}`), dir) !== null;
    };
    return this.report({ ...r, stdout: r.exitCode === 0 ? filter(r.stdout, hidden) : "" }, timeoutMs);
  }

  /** Start-up self-test: can the sandbox run `true` at all? null when it can, else why not. */
  async selfTest(): Promise<string | null> {
    const r = await runSandboxed(this.cfg, this.plan, ["true"], this.cfg.roots[0]!, false, 15_000, { emptyFile: this.emptyFile }).result;
    if (r.spawnError !== null) return r.spawnError;
    if (r.exitCode === 0) return null;
    const err = r.stderr.trim().split("\n").pop() ?? "";
    return (
      (r.timedOut ? "timed out" : r.signal !== null ? `killed by ${r.signal}` : `exit code ${r.exitCode}`) +
      (err === "" ? "" : `: ${err.slice(0, 300)}`)
    );
  }
}
