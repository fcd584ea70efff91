/**
 * Builds the argv that runs one command inside the sandbox. Pure: the host layout
 * (which of /bin, /lib... are symlinks) is probed once at start-up and handed in.
 *
 * bwrap: every namespace unshared (network included), system folders bound read-only,
 * only a short list of harmless /etc files, the workspace roots read-only unless the
 * template writes, tmpfs /tmp, --die-with-parent, --new-session, a cleared environment,
 * and prlimit inside for CPU seconds, address space, process count and file size.
 * docker/podman: the equivalent `run` flags.
 */
export type SandboxBackend = "bwrap" | "docker" | "podman" | "none";

/** One entry of the read-only system layout inside a bwrap sandbox. */
export type LayoutEntry = { kind: "ro-bind"; path: string } | { kind: "symlink"; target: string; path: string };

export interface SandboxLimits {
  cpuSeconds: number;
  memoryMb: number;
  pids: number;
  /** Largest file a command may write, bytes (RLIMIT_FSIZE). */
  fileBytes: number;
  /** docker/podman --cpus. */
  cpus: number;
}

export interface SandboxPlan {
  backend: SandboxBackend;
  /** Executable paths found at start-up. */
  bwrap: string;
  prlimit: string;
  engine: string;
  image: string;
  layout: readonly LayoutEntry[];
  /** Extra read-only binds (e.g. a toolchain under /opt). */
  roBinds: readonly string[];
  roots: readonly string[];
  uid: number;
  gid: number;
  limits: SandboxLimits;
}

export interface SandboxRun {
  argv: readonly string[];
  cwd: string;
  writes: boolean;
  /** Container name, so a wall-clock kill can stop it (docker/podman only). */
  name: string;
  /** Workspace paths blocked by policy, hidden inside the sandbox (empty file / empty dir). */
  masks?: readonly { path: string; dir: boolean }[];
  /** An empty, world-readable regular file bound over masked files (default /dev/null). */
  emptyFile?: string;
}

/** The environment every command sees: nothing from the gateway's own. */
export const SANDBOX_ENV: Readonly<Record<string, string>> = Object.freeze({
  PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  HOME: "/tmp",
  TMPDIR: "/tmp",
  LANG: "C.UTF-8",
  LC_ALL: "C.UTF-8",
  CI: "1",
  NO_COLOR: "1",
  GIT_TERMINAL_PROMPT: "0",
  GIT_CONFIG_NOSYSTEM: "1",
});

/** System folders bound read-only when they exist as directories (symlinks are recreated). */
export const SYSTEM_DIRS: readonly string[] = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/** The only /etc entries a sandbox sees (bound when present). No shadow, no secrets. */
export const ETC_FILES: readonly string[] = [
  "/etc/ld.so.cache",
  "/etc/ld.so.conf",
  "/etc/ld.so.conf.d",
  "/etc/alternatives",
  "/etc/ssl",
  "/etc/ca-certificates",
  "/etc/passwd",
  "/etc/group",
  "/etc/nsswitch.conf",
  "/etc/localtime",
  "/etc/mime.types",
];

function prlimitArgs(p: SandboxPlan): string[] {
  const l = p.limits;
  return [
    p.prlimit,
    `--cpu=${l.cpuSeconds}`,
    `--as=${l.memoryMb * 1024 * 1024}`,
    `--nproc=${l.pids}`,
    `--fsize=${l.fileBytes}`,
    "--nofile=1024",
    "--core=0",
    "--",
  ];
}

/** The program and arguments to spawn for one run. */
export function sandboxArgv(p: SandboxPlan, run: SandboxRun): { file: string; args: string[] } {
  switch (p.backend) {
    case "bwrap":
      return { file: p.bwrap, args: bwrapArgs(p, run) };
    case "docker":
    case "podman":
      return { file: p.engine, args: containerArgs(p, run) };
    case "none": {
      const args = [...prlimitArgs(p).slice(1), ...run.argv];
      return { file: p.prlimit, args };
    }
  }
}

export function bwrapArgs(p: SandboxPlan, run: SandboxRun): string[] {
  const a: string[] = ["--unshare-all", "--unshare-net", "--die-with-parent", "--new-session", "--clearenv"];
  for (const [k, v] of Object.entries(SANDBOX_ENV)) a.push("--setenv", k, v);
  for (const e of p.layout) {
    if (e.kind === "ro-bind") a.push("--ro-bind", e.path, e.path);
    else a.push("--symlink", e.target, e.path);
  }
  for (const f of ETC_FILES) a.push("--ro-bind-try", f, f);
  for (const b of p.roBinds) a.push("--ro-bind", b, b);
  a.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  for (const r of p.roots) a.push(run.writes ? "--bind" : "--ro-bind", r, r);
  for (const m of run.masks ?? []) {
    if (m.dir) a.push("--tmpfs", m.path, "--remount-ro", m.path);
    else a.push("--ro-bind", run.emptyFile ?? "/dev/null", m.path);
  }
  // The sandbox's own root (where /etc and the mount points live) is read-only too.
  a.push("--remount-ro", "/");
  a.push("--chdir", run.cwd);
  a.push(...prlimitArgs(p), ...run.argv);
  return a;
}

export function containerArgs(p: SandboxPlan, run: SandboxRun): string[] {
  const l = p.limits;
  const a: string[] = [
    "run", "--rm", "--init",
    "--name", run.name,
    "--network", "none",
    "--read-only",
    "--cap-drop", "ALL",
    "--security-opt", "no-new-privileges",
    "--pids-limit", String(l.pids),
    "--memory", `${l.memoryMb}m`,
    "--memory-swap", `${l.memoryMb}m`,
    "--cpus", String(l.cpus),
    "--ulimit", `cpu=${l.cpuSeconds}:${l.cpuSeconds}`,
    "--ulimit", `fsize=${l.fileBytes}:${l.fileBytes}`,
    "--ulimit", "core=0:0",
    "--user", `${p.uid}:${p.gid}`,
    "--tmpfs", "/tmp:rw,nosuid,nodev,size=256m",
    "--workdir", run.cwd,
  ];
  for (const [k, v] of Object.entries(SANDBOX_ENV)) a.push("--env", `${k}=${v}`);
  for (const r of p.roots) a.push("--mount", `type=bind,source=${r},target=${r}${run.writes ? "" : ",readonly"}`);
  for (const b of p.roBinds) a.push("--mount", `type=bind,source=${b},target=${b},readonly`);
  for (const m of run.masks ?? []) {
    if (m.dir) a.push("--tmpfs", `${m.path}:ro`);
    else a.push("--mount", `type=bind,source=${run.emptyFile ?? "/dev/null"},target=${m.path},readonly`);
  }
  a.push(p.image, ...run.argv);
  return a;
}
