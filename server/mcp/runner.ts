/**
 * Runs one command in the sandbox: spawn with an argv array (never a shell), a scrubbed
 * environment, a wall-clock kill of the whole process group, and an output cap that kills
 * the command once exceeded. Asynchronous throughout: a long command never blocks the
 * event loop that serves /v1/messages.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { McpConfig } from "../../core/policy/config.js";
import { SANDBOX_ENV, sandboxArgv, spawnAs, type SandboxPlan, type SandboxRun } from "../../core/policy/sandbox-argv.js";
import { seccompProgram } from "../../core/policy/seccomp.js";
import type { CommandCgroup } from "./cgroup.js";

/** Built once per process: the same filter for every command. */
const SECCOMP = seccompProgram(process.arch);

export interface RunOptions {
  /** Workspace paths blocked by policy, hidden inside the sandbox. */
  masks?: readonly { path: string; dir: boolean }[];
  emptyFile?: string;
  /** Bound read-only even for a template that writes (`.git`, hooks directories). */
  readOnly?: readonly string[];
  /** The command's own cgroup (created by the caller, removed when the run ends). */
  cgroup?: CommandCgroup | null;
}

export interface RunResult {
  exitCode: number | null;
  signal: string | null;
  timedOut: boolean;
  /** Output went over SANDBOX_OUTPUT_BYTES: the command was killed and output cut. */
  truncated: boolean;
  stdout: string;
  stderr: string;
  durationMs: number;
  /** The sandbox itself could not start (spawn error). */
  spawnError: string | null;
}

export interface Running {
  result: Promise<RunResult>;
  kill(): void;
}

export function planFor(cfg: McpConfig): SandboxPlan {
  const s = cfg.sandbox;
  return {
    backend: s.backend,
    bwrap: s.bwrap,
    prlimit: s.prlimit,
    engine: s.engine,
    image: s.image,
    layout: s.layout,
    roBinds: s.roBinds,
    roots: cfg.roots,
    uid: s.uid,
    gid: s.gid,
    limits: s.limits,
    bash: s.bash,
    setpriv: s.setpriv,
    dropPrivileges: s.dropPrivileges,
    seccomp: s.seccomp,
  };
}

export function runSandboxed(
  cfg: McpConfig,
  plan: SandboxPlan,
  argv: readonly string[],
  cwd: string,
  writes: boolean,
  timeoutMs: number,
  opts: RunOptions = {},
): Running {
  const s = cfg.sandbox;
  const name = `portcullis-${randomBytes(6).toString("hex")}`;
  const cg = opts.cgroup ?? null;
  const run: SandboxRun = {
    argv,
    cwd,
    writes,
    name,
    masks: opts.masks ?? [],
    readOnly: opts.readOnly ?? [],
    cgroup: cg?.dir ?? "",
    ...(opts.emptyFile === undefined ? {} : { emptyFile: opts.emptyFile }),
  };
  const { file, args } = sandboxArgv(plan, run);
  const as = spawnAs(plan, run);
  const t0 = performance.now();
  const direct = s.backend === "none";
  const seccomp = plan.seccomp;
  // As root: spawned as SANDBOX_UID, or (to join a cgroup first) dropped by setpriv in the launcher.
  const child = spawn(file, args, {
    cwd: direct ? cwd : "/",
    env: direct ? { ...SANDBOX_ENV } : { PATH: SANDBOX_ENV.PATH! },
    stdio: seccomp ? ["ignore", "pipe", "pipe", "pipe"] : ["ignore", "pipe", "pipe"],
    detached: true,
    ...(as === null ? {} : as),
  });
  if (seccomp) {
    // bwrap reads the program from fd 3 to EOF before it starts the command.
    const fd3 = child.stdio[3] as NodeJS.WritableStream & { on(e: "error", f: () => void): void };
    fd3.on("error", () => {});
    fd3.end(SECCOMP!); // loadMcpConfig refuses bwrap on an architecture without a table
  }
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let bytes = 0;
  let truncated = false;
  let timedOut = false;
  let killed = false;
  let spawnError: string | null = null;

  const kill = () => {
    if (killed) return;
    killed = true;
    cg?.kill();
    try {
      if (child.pid !== undefined) process.kill(-child.pid, "SIGKILL");
    } catch {
      try {
        child.kill("SIGKILL");
      } catch {
        /* already gone */
      }
    }
    if (s.backend === "docker" || s.backend === "podman") {
      const k = spawn(s.engine, ["kill", name], { stdio: "ignore", detached: true });
      k.on("error", () => {});
      k.unref();
    }
  };
  const take = (into: Buffer[]) => (chunk: Buffer) => {
    if (truncated) return;
    const room = s.outputBytes - bytes;
    if (chunk.length > room) {
      into.push(chunk.subarray(0, room));
      bytes = s.outputBytes;
      truncated = true;
      kill();
      return;
    }
    into.push(chunk);
    bytes += chunk.length;
  };
  child.stdout!.on("data", take(out));
  child.stderr!.on("data", take(err));
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);

  const result = new Promise<RunResult>((resolve) => {
    let settled = false;
    const settle = (code: number | null, signal: NodeJS.Signals | null) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      cg?.remove();
      resolve({
        exitCode: code,
        signal: signal ?? null,
        timedOut,
        truncated,
        stdout: Buffer.concat(out).toString("utf8"),
        stderr: Buffer.concat(err).toString("utf8"),
        durationMs: Math.round(performance.now() - t0),
        spawnError,
      });
    };
    child.once("error", (e) => {
      spawnError = String((e as Error).message ?? e);
      // A spawn failure emits no "close" when no process ever existed.
      if (child.pid === undefined) settle(null, null);
    });
    child.once("close", settle);
  });
  return { result, kill };
}
