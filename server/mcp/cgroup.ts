/**
 * One cgroup v2 per sandboxed command, so SANDBOX_MEMORY_MB, SANDBOX_PIDS and SANDBOX_CPUS
 * hold for the whole command and not per process (RLIMIT_AS lets four 58 MB processes fit
 * in a 64 MB "limit"). Used when the gateway can write a cgroup v2 directory that has the
 * memory, pids and cpu controllers: SANDBOX_CGROUP names one (a subtree delegated to the
 * gateway's user), or `auto` takes the gateway's own cgroup and, like a systemd service
 * with Delegate=yes, moves the gateway into a `gateway` leaf so the controllers can be
 * enabled for its siblings. Otherwise the rlimits alone apply and start-up says what is
 * missing. The launcher (core/policy/sandbox-argv.ts) joins the cgroup before bwrap starts.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs";
import { mkdir, rmdir, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import type { SandboxLimits } from "../../core/policy/sandbox-argv.js";

export const CGROUP_CONTROLLERS = ["memory", "pids", "cpu"] as const;

export interface CgroupStatus {
  /** "cgroup": each command gets its own cgroup; "rlimits": per-process limits only. */
  mode: "cgroup" | "rlimits";
  /** Why the mode is rlimits (null in cgroup mode). */
  reason: string | null;
  /** The parent of the per-command cgroups (null in rlimits mode). */
  base: string | null;
}

export interface CommandCgroup {
  dir: string;
  /** Kill every process in it (cgroup.kill); safe to call twice. */
  kill(): void;
  /** Remove it once its processes are gone (retried briefly). */
  remove(): void;
}

/** Where cgroup2 is mounted, from /proc/self/mountinfo; null when it is not. */
function cgroup2Mount(): string | null {
  try {
    for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
      const sep = line.indexOf(" - ");
      if (sep < 0) continue;
      if (line.slice(sep + 3).split(" ")[0] === "cgroup2") return line.split(" ")[4]!;
    }
  } catch {
    /* no /proc */
  }
  return null;
}

/** The gateway's own cgroup v2 directory ("0::/path" in /proc/self/cgroup), or null. */
function ownCgroup(): string | null {
  const mount = cgroup2Mount();
  if (mount === null) return null;
  try {
    const line = readFileSync("/proc/self/cgroup", "utf8")
      .split("\n")
      .find((l) => l.startsWith("0::"));
    if (line === undefined) return null;
    const rel = line.slice(3);
    return rel === "/" ? mount : mount + rel;
  } catch {
    return null;
  }
}

const words = (f: string): string[] => {
  try {
    return readFileSync(f, "utf8")
      .trim()
      .split(/\s+/)
      .filter((w) => w !== "");
  } catch {
    return [];
  }
};

function limitFiles(l: SandboxLimits): [string, string][] {
  return [
    ["memory.max", String(l.memoryMb * 1024 * 1024)],
    ["memory.swap.max", "0"],
    ["pids.max", String(l.pids)],
    ["cpu.max", `${l.cpus * 100_000} 100000`],
  ];
}

export class Cgroups {
  readonly status: CgroupStatus;
  private readonly limits: SandboxLimits;

  private constructor(status: CgroupStatus, limits: SandboxLimits) {
    this.status = status;
    this.limits = limits;
  }

  /**
   * Decide the mode once at start-up: `setting` is SANDBOX_CGROUP ("auto", "off" or a
   * directory). Every failure is a reason for rlimits mode, never a crash.
   */
  static setup(setting: string, limits: SandboxLimits): Cgroups {
    const rl = (reason: string) => new Cgroups({ mode: "rlimits", reason, base: null }, limits);
    if (setting === "off") return rl("SANDBOX_CGROUP=off");
    const auto = setting === "auto";
    const base = auto ? ownCgroup() : setting;
    if (base === null) return rl("no cgroup v2 hierarchy is mounted (cgroup v1 only)");
    const have = words(`${base}/cgroup.controllers`);
    const missing = CGROUP_CONTROLLERS.filter((c) => !have.includes(c));
    if (missing.length > 0)
      return rl(
        `cgroup v2 controller${missing.length > 1 ? "s" : ""} ${missing.join(", ")} not delegated to ${base} (it has: ${have.join(" ") || "none"})`,
      );
    try {
      const enabled = words(`${base}/cgroup.subtree_control`);
      const off = CGROUP_CONTROLLERS.filter((c) => !enabled.includes(c));
      if (off.length > 0) {
        // No internal processes: the gateway leaves the cgroup whose children get controllers.
        if (auto) {
          mkdirSync(`${base}/gateway`, { recursive: true });
          writeFileSync(`${base}/gateway/cgroup.procs`, String(process.pid));
        }
        writeFileSync(`${base}/cgroup.subtree_control`, off.map((c) => "+" + c).join(" "));
      }
      // Probe: a child cgroup with the limits written, then removed.
      const probe = `${base}/portcullis-probe-${randomBytes(4).toString("hex")}`;
      mkdirSync(probe);
      try {
        for (const [f, v] of limitFiles(limits)) {
          // memory.swap.max is absent without swap accounting; every other limit must hold.
          if (f !== "memory.swap.max" || existsSync(`${probe}/${f}`)) writeFileSync(`${probe}/${f}`, v);
        }
      } finally {
        rmdirSync(probe);
      }
    } catch (e) {
      return rl(`cannot manage cgroups under ${base}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    return new Cgroups({ mode: "cgroup", reason: null, base }, limits);
  }

  /** A fresh cgroup for one command, with the limits written; null in rlimits mode. */
  async create(): Promise<CommandCgroup | null> {
    const base = this.status.base;
    if (base === null) return null;
    const dir = `${base}/cmd-${randomBytes(6).toString("hex")}`;
    await mkdir(dir);
    for (const [f, v] of limitFiles(this.limits)) {
      if (f === "memory.swap.max" && !existsSync(`${dir}/${f}`)) continue;
      try {
        await writeFile(`${dir}/${f}`, v);
      } catch (e) {
        await rmdir(dir).catch(() => {});
        throw e;
      }
    }
    let removed = false;
    return {
      dir,
      kill: () => {
        try {
          writeFileSync(`${dir}/cgroup.kill`, "1");
        } catch {
          /* before Linux 5.14, or already gone: the process-group kill still runs */
        }
      },
      remove: () => {
        if (removed) return;
        removed = true;
        let tries = 0;
        const attempt = () => {
          rmdir(dir).catch((e: NodeJS.ErrnoException) => {
            // EBUSY while the last processes exit: retry for about a second.
            if (e.code === "EBUSY" && ++tries < 20) setTimeout(attempt, 50).unref();
          });
        };
        attempt();
      },
    };
  }
}
