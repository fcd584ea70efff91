/**
 * Builds the argv that runs one command inside the sandbox. Pure: the host layout
 * (which of /bin, /lib... are symlinks) is probed once at start-up and handed in.
 *
 * bwrap: every namespace unshared (network included), no nested user namespaces
 * (--disable-userns) and a seccomp filter on the escape calls (core/policy/seccomp.ts, read
 * by bwrap from fd 3), system folders bound read-only, only a short list of harmless /etc
 * files, the workspace roots read-only unless the template writes (and every `.git` in them
 * read-only even then), tmpfs /tmp, --die-with-parent, --new-session, a cleared
 * environment, and prlimit inside for CPU seconds, address space, process count and file
 * size. docker/podman: the equivalent `run` flags.
 *
 * bwrap and `none` are started through a short bash prologue (`launcherArgs`): it joins the
 * command's cgroup when there is one, closes every inherited descriptor above 2 (fd 3, the
 * seccomp program, is kept for bwrap, which closes it) and, after joining a cgroup as root,
 * drops to SANDBOX_UID with setpriv.
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
  /** bash (for the launcher prologue); "" for docker/podman. */
  bash: string;
  /** setpriv, used when the gateway runs as root and drops to uid/gid; "" otherwise. */
  setpriv: string;
  dropPrivileges: boolean;
  /** A seccomp program is passed on fd 3 (bwrap only). */
  seccomp: boolean;
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
  /** Workspace paths bound read-only even when the template writes (`.git`, hooks dirs). */
  readOnly?: readonly string[];
  /** The command's own cgroup v2 directory, joined before bwrap starts; "" = none. */
  cgroup?: string;
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
  GIT_CONFIG_GLOBAL: "/dev/null",
});

/**
 * The launcher prologue, run by bash on the host: $1 = highest descriptor to keep, $2 = a
 * cgroup directory to join ("" = none), then the program to exec. Every inherited
 * descriptor above $1 is closed, so nothing the gateway's parent left open (a socket, a
 * pipe) reaches the command.
 */
export const LAUNCHER =
  "k=$1; cg=$2; shift 2; " +
  'if [ -n "$cg" ]; then echo $$ > "$cg/cgroup.procs" || { echo "portcullis: cannot join cgroup $cg" >&2; exit 125; }; fi; ' +
  'for f in /proc/self/fd/*; do n=${f##*/}; if [ "$n" -gt "$k" ]; then eval "exec $n>&-"; fi; done; ' +
  'exec "$@"';

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

/**
 * bash LAUNCHER KEEP CGROUP [setpriv ...] program args... setpriv is needed only to join a
 * cgroup as root and then drop; without a cgroup the launcher itself is spawned as
 * SANDBOX_UID (`spawnAs`), which saves an exec per command.
 */
export function launcherArgs(p: SandboxPlan, keepFd: number, cgroup: string, file: string, args: readonly string[]): string[] {
  const drop = p.dropPrivileges && cgroup !== "" ? [p.setpriv, `--reuid=${p.uid}`, `--regid=${p.gid}`, "--clear-groups", "--"] : [];
  return ["-c", LAUNCHER, "portcullis-launch", String(keepFd), cgroup, ...drop, file, ...args];
}

/** The uid/gid to spawn the launcher as, or null to spawn as the gateway's own user. */
export function spawnAs(p: SandboxPlan, run: SandboxRun): { uid: number; gid: number } | null {
  if (!p.dropPrivileges) return null;
  if (p.backend === "docker" || p.backend === "podman") return null; // --user does it
  return (run.cgroup ?? "") === "" ? { uid: p.uid, gid: p.gid } : null;
}

/** The program and arguments to spawn for one run. */
export function sandboxArgv(p: SandboxPlan, run: SandboxRun): { file: string; args: string[] } {
  switch (p.backend) {
    case "bwrap":
      return { file: p.bash, args: launcherArgs(p, p.seccomp ? 3 : 2, run.cgroup ?? "", p.bwrap, bwrapArgs(p, run)) };
    case "docker":
    case "podman":
      return { file: p.engine, args: containerArgs(p, run) };
    case "none":
      return { file: p.bash, args: launcherArgs(p, 2, run.cgroup ?? "", p.prlimit, [...prlimitArgs(p).slice(1), ...run.argv]) };
  }
}

export function bwrapArgs(p: SandboxPlan, run: SandboxRun): string[] {
  // --unshare-user is explicit because --disable-userns needs it (bwrap >= 0.8).
  const a: string[] = [
    "--unshare-all",
    "--unshare-user",
    "--unshare-net",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
  ];
  if (p.seccomp) a.push("--seccomp", "3");
  for (const [k, v] of Object.entries(SANDBOX_ENV)) a.push("--setenv", k, v);
  for (const e of p.layout) {
    if (e.kind === "ro-bind") a.push("--ro-bind", e.path, e.path);
    else a.push("--symlink", e.target, e.path);
  }
  for (const f of ETC_FILES) a.push("--ro-bind-try", f, f);
  for (const b of p.roBinds) a.push("--ro-bind", b, b);
  a.push("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp");
  for (const r of p.roots) a.push(run.writes ? "--bind" : "--ro-bind", r, r);
  if (run.writes) for (const r of run.readOnly ?? []) a.push("--ro-bind", r, r);
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
    "run",
    "--rm",
    "--init",
    "--name",
    run.name,
    "--network",
    "none",
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--pids-limit",
    String(l.pids),
    "--memory",
    `${l.memoryMb}m`,
    "--memory-swap",
    `${l.memoryMb}m`,
    "--cpus",
    String(l.cpus),
    "--ulimit",
    `cpu=${l.cpuSeconds}:${l.cpuSeconds}`,
    "--ulimit",
    `fsize=${l.fileBytes}:${l.fileBytes}`,
    "--ulimit",
    "core=0:0",
    "--user",
    `${p.uid}:${p.gid}`,
    "--tmpfs",
    "/tmp:rw,nosuid,nodev,size=256m",
    "--workdir",
    run.cwd,
  ];
  for (const [k, v] of Object.entries(SANDBOX_ENV)) a.push("--env", `${k}=${v}`);
  for (const r of p.roots) a.push("--mount", `type=bind,source=${r},target=${r}${run.writes ? "" : ",readonly"}`);
  if (run.writes) for (const r of run.readOnly ?? []) a.push("--mount", `type=bind,source=${r},target=${r},readonly`);
  for (const b of p.roBinds) a.push("--mount", `type=bind,source=${b},target=${b},readonly`);
  for (const m of run.masks ?? []) {
    if (m.dir) a.push("--tmpfs", `${m.path}:ro`);
    else a.push("--mount", `type=bind,source=${run.emptyFile ?? "/dev/null"},target=${m.path},readonly`);
  }
  a.push(p.image, ...run.argv);
  return a;
}
