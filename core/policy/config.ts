/**
 * MCP workspace-tool settings: read once at start-up, validated (typia for the command
 * file, explicit checks for the environment), then frozen. Returns null when
 * WORKSPACE_ROOT is unset: the MCP server is off and /mcp answers 404.
 * The few file-system probes (realpath of the roots, the command file, where bwrap,
 * prlimit, bash and setpriv live, whether docker/podman answer `version`) go through `io`,
 * so tests can hand in a fake.
 */
import { execFileSync } from "node:child_process";
import { existsSync, lstatSync, readFileSync, readlinkSync, realpathSync, statSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { delimiter, join } from "node:path";
import { ConfigError, envBool, envInt, envList, envStr, type Env } from "../env.js";
import { typiaPath } from "../typia-path.js";
import { CommandTemplate, commandProblem, validateCommandsFile, type CommandSpec } from "./commands.js";
import { globSource } from "./glob.js";
import { DEFAULT_ALLOWED_PATHS, lexicalRefusal } from "./paths.js";
import { seccompProgram } from "./seccomp.js";
import { SYSTEM_DIRS, type LayoutEntry, type SandboxBackend, type SandboxLimits } from "./sandbox-argv.js";

import { TOOL_NAMES } from "./tool-names.js";
export { TOOL_NAMES, type ToolName } from "./tool-names.js";

export interface McpConfig {
  readonly roots: readonly string[];
  readonly allowedPaths: readonly string[];
  readonly blockedPaths: readonly string[];
  readonly maxReadBytes: number;
  readonly maxWriteBytes: number;
  readonly searchMaxResults: number;
  readonly listMaxEntries: number;
  readonly commands: readonly CommandSpec[];
  /**
   * Key id or "*" (every other key) -> allowed tool names ("*" = all tools); null = every
   * key may call every tool. A key matching no entry gets no tools.
   */
  readonly toolAccess: Readonly<Record<string, readonly string[]>> | null;
  /** Start-up only: whether MCP may be served with no client keys configured. */
  readonly allowAnonymous: boolean;
  /** write_file/edit_file may create `.gitmodules`, `.gitattributes` and other `.git*` files. */
  readonly allowGitFiles: boolean;
  readonly allowedOrigins: readonly string[];
  readonly sessionSecret: string;
  readonly sessionTtlSeconds: number;
  readonly git: string | null;
  readonly sandbox: {
    readonly backend: SandboxBackend;
    readonly bwrap: string;
    readonly prlimit: string;
    readonly engine: string;
    readonly image: string;
    readonly layout: readonly LayoutEntry[];
    readonly roBinds: readonly string[];
    readonly uid: number;
    readonly gid: number;
    /** The gateway runs as root: spawn with uid/gid (RLIMIT_NPROC does not bind root). */
    readonly dropPrivileges: boolean;
    readonly timeoutMs: number;
    readonly outputBytes: number;
    readonly limits: SandboxLimits;
    readonly bash: string;
    readonly setpriv: string;
    /** Pass the seccomp filter to bwrap (the bwrap backend; start-up refuses an architecture without a table). */
    readonly seccomp: boolean;
    /** "auto" (use a delegated cgroup v2 subtree when there is one), "off", or a cgroup directory. */
    readonly cgroup: string;
    /** Bounds of the walk that finds the paths to mask inside the sandbox. */
    readonly maskMaxEntries: number;
    readonly maskMaxMs: number;
  };
}

export interface McpIo {
  realpath(p: string): string;
  isDir(p: string): boolean;
  readFile(p: string): string;
  /** null when `p` is not a symlink. */
  readlink(p: string): string | null;
  exists(p: string): boolean;
  which(name: string, path: string): string | null;
  uid(): number;
  gid(): number;
  /** Does `file args...` exit 0 within a few seconds? */
  answers(file: string, args: readonly string[]): boolean;
}

export const nodeIo: McpIo = {
  realpath: (p) => realpathSync(p),
  isDir: (p) => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  },
  readFile: (p) => readFileSync(p, "utf8"),
  readlink: (p) => {
    try {
      return lstatSync(p).isSymbolicLink() ? readlinkSync(p) : null;
    } catch {
      return null;
    }
  },
  exists: (p) => existsSync(p),
  which: (name, path) => {
    if (name.startsWith("/")) return existsSync(name) ? name : null;
    for (const d of path.split(delimiter)) {
      if (d === "") continue;
      const f = join(d, name);
      if (existsSync(f)) return f;
    }
    return null;
  },
  uid: () => process.getuid?.() ?? 0,
  gid: () => process.getgid?.() ?? 0,
  answers: (file, args) => {
    try {
      execFileSync(file, args, { stdio: "ignore", timeout: 10_000 });
      return true;
    } catch {
      return false;
    }
  },
};

function globs(env: Env, name: string, dflt: readonly string[]): string[] {
  const g = envList(env, name);
  for (const p of g) {
    try {
      globSource(p);
    } catch (e) {
      throw new ConfigError(name, `bad glob ${JSON.stringify(p)}: ${(e as Error).message}`);
    }
  }
  return g.length === 0 ? [...dflt] : g;
}

/**
 * `keyCount` is the number of configured client keys (their ids are static-0...); with
 * none, MCP needs MCP_ALLOW_ANONYMOUS=true, because its tools write files and run commands.
 */
export function loadMcpConfig(env: Env, keyCount = 0, io: McpIo = nodeIo): McpConfig | null {
  const rootList = envList(env, "WORKSPACE_ROOT");
  if (rootList.length === 0) return null;

  const roots: string[] = [];
  for (const r of rootList) {
    if (!r.startsWith("/")) throw new ConfigError("WORKSPACE_ROOT", `each root must be an absolute path, got ${JSON.stringify(r)}`);
    if (lexicalRefusal(r) !== null) throw new ConfigError("WORKSPACE_ROOT", `${JSON.stringify(r)}: ${lexicalRefusal(r)}`);
    if (!io.isDir(r)) throw new ConfigError("WORKSPACE_ROOT", `${JSON.stringify(r)} is not an existing directory`);
    const real = io.realpath(r);
    if (real === "/") throw new ConfigError("WORKSPACE_ROOT", "the file-system root cannot be a workspace");
    if (!roots.includes(real)) roots.push(real);
  }

  const allowAnonymous = envBool(env, "MCP_ALLOW_ANONYMOUS", false);
  if (keyCount === 0 && !allowAnonymous) {
    throw new ConfigError(
      "WORKSPACE_ROOT",
      "the MCP workspace tools need client keys (GATEWAY_API_KEYS or api_keys); set MCP_ALLOW_ANONYMOUS=true to serve them without keys",
    );
  }

  let commands: CommandSpec[] = [];
  let toolAccess: Record<string, string[]> | null = null;
  const cmdFile = envStr(env, "POLICY_COMMANDS_FILE");
  if (cmdFile !== null) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(io.readFile(cmdFile));
    } catch (e) {
      throw new ConfigError("POLICY_COMMANDS_FILE", `cannot read ${cmdFile} as JSON: ${(e as Error).message}`);
    }
    const v = validateCommandsFile(parsed);
    if (!v.success) {
      const e = v.errors[0]!;
      const got = e.value === undefined ? "nothing" : JSON.stringify(e.value)?.slice(0, 80);
      throw new ConfigError(`POLICY_COMMANDS_FILE ${typiaPath(e.path) || "(root)"}`, `expected ${e.expected}, got ${got}`);
    }
    commands = v.data.commands ?? [];
    const names = new Set<string>();
    commands.forEach((c, i) => {
      if (names.has(c.name)) throw new ConfigError(`POLICY_COMMANDS_FILE commands.${i}.name`, `duplicate command ${c.name}`);
      names.add(c.name);
      const pr = commandProblem(c);
      if (pr !== null) throw new ConfigError(`POLICY_COMMANDS_FILE commands.${i}.${pr.field}`, pr.message);
      new CommandTemplate(c);
    });
    if (v.data.tool_access !== undefined) {
      toolAccess = {};
      for (const [k, tools] of Object.entries(v.data.tool_access)) {
        const m = /^static-(\d+)$/.exec(k);
        if (k !== "*" && (m === null || Number(m[1]) >= keyCount) && !(k === "anonymous" && allowAnonymous)) {
          throw new ConfigError(
            `POLICY_COMMANDS_FILE tool_access.${k}`,
            `unknown key id; ids are static-0 to static-${Math.max(0, keyCount - 1)} in key order, or "*"`,
          );
        }
        for (const t of tools) {
          if (t !== "*" && !(TOOL_NAMES as readonly string[]).includes(t)) {
            throw new ConfigError(
              `POLICY_COMMANDS_FILE tool_access.${k}`,
              `unknown tool ${JSON.stringify(t)}; tools: ${TOOL_NAMES.join(", ")}`,
            );
          }
        }
        toolAccess[k] = [...tools];
      }
    }
  }

  const backendRaw = envStr(env, "SANDBOX_BACKEND") ?? "bwrap";
  if (!["bwrap", "docker", "podman", "none"].includes(backendRaw)) {
    throw new ConfigError("SANDBOX_BACKEND", `expected bwrap, docker, podman or none, got ${JSON.stringify(backendRaw)}`);
  }
  const backend = backendRaw as SandboxBackend;
  if (backend === "none" && !envBool(env, "SANDBOX_ALLOW_UNSANDBOXED", false)) {
    throw new ConfigError(
      "SANDBOX_BACKEND",
      "none runs commands on the host as the gateway's user, where /proc/1/environ holds every provider key; set SANDBOX_ALLOW_UNSANDBOXED=true to accept that",
    );
  }
  const PATH = env.PATH ?? "/usr/local/bin:/usr/bin:/bin";
  let bwrap = "";
  let engine = "";
  let image = "";
  const prlimit = io.which("prlimit", PATH) ?? "";
  if (backend === "bwrap") {
    bwrap = io.which("bwrap", PATH) ?? "";
    if (bwrap === "")
      throw new ConfigError(
        "SANDBOX_BACKEND",
        "bwrap (Debian package bubblewrap) is not installed; install it, or set SANDBOX_BACKEND to docker, podman or none",
      );
    if (seccompProgram(process.arch) === null)
      throw new ConfigError("SANDBOX_BACKEND", `no seccomp syscall table for the ${process.arch} architecture (x64 and arm64 have one)`);
  }
  if (backend === "bwrap" || backend === "none") {
    if (prlimit === "")
      throw new ConfigError("SANDBOX_BACKEND", "prlimit (util-linux) is needed for the sandbox limits and was not found in PATH");
  }
  if (backend === "docker" || backend === "podman") {
    image = envStr(env, "SANDBOX_IMAGE") ?? ""; // read before the engine checks, so every setting is read on any machine
    engine = io.which(backend, PATH) ?? "";
    if (engine === "") throw new ConfigError("SANDBOX_BACKEND", `${backend} is not installed`);
    // Never exercised on the project's own machines: refuse an engine that does not even answer.
    if (!io.answers(engine, ["version"]))
      throw new ConfigError("SANDBOX_BACKEND", `${engine} version failed: the ${backend} engine is not usable by this user`);
    if (image === "") throw new ConfigError("SANDBOX_IMAGE", `is required when SANDBOX_BACKEND=${backend}`);
  }

  let bash = "";
  let setpriv = "";
  if (backend === "bwrap" || backend === "none") {
    bash = io.which("bash", PATH) ?? "";
    if (bash === "")
      throw new ConfigError(
        "SANDBOX_BACKEND",
        "bash is needed to start the sandbox (it closes inherited descriptors) and was not found in PATH",
      );
  }

  const layout: LayoutEntry[] = [];
  for (const d of SYSTEM_DIRS) {
    const link = io.readlink(d);
    if (link !== null) layout.push({ kind: "symlink", target: link, path: d });
    else if (io.isDir(d)) layout.push({ kind: "ro-bind", path: d });
  }
  const roBinds = envList(env, "SANDBOX_RO_BINDS");
  for (const b of roBinds) {
    if (!b.startsWith("/") || b.includes(",") || lexicalRefusal(b) !== null || !io.exists(b)) {
      throw new ConfigError("SANDBOX_RO_BINDS", `${JSON.stringify(b)} must be an existing absolute path`);
    }
  }

  const myUid = io.uid();
  const isRoot = myUid === 0;
  const uid = envInt(env, "SANDBOX_UID", isRoot ? 65534 : myUid, 0, 4294967294);
  const gid = envInt(env, "SANDBOX_GID", isRoot ? 65534 : io.gid(), 0, 4294967294);
  const dropPrivileges = isRoot && uid !== 0;
  if (dropPrivileges && bash !== "") {
    setpriv = io.which("setpriv", PATH) ?? "";
    if (setpriv === "")
      throw new ConfigError("SANDBOX_UID", "setpriv (util-linux) is needed to drop from root to SANDBOX_UID and was not found in PATH");
  }
  const cgroup = envStr(env, "SANDBOX_CGROUP") ?? "auto";
  if (cgroup !== "auto" && cgroup !== "off" && (!cgroup.startsWith("/") || lexicalRefusal(cgroup) !== null || !io.isDir(cgroup))) {
    throw new ConfigError("SANDBOX_CGROUP", `expected auto, off or an existing cgroup v2 directory, got ${JSON.stringify(cgroup)}`);
  }

  const secret = envStr(env, "MCP_SESSION_SECRET");
  if (secret !== null && secret.length < 32) throw new ConfigError("MCP_SESSION_SECRET", "must be at least 32 characters");

  const maxWriteBytes = envInt(env, "POLICY_MAX_WRITE_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024);
  return Object.freeze({
    roots: Object.freeze(roots),
    allowedPaths: Object.freeze(globs(env, "POLICY_FILE_ALLOWED_PATHS", DEFAULT_ALLOWED_PATHS)),
    blockedPaths: Object.freeze(globs(env, "POLICY_FILE_BLOCKED_PATHS", [])),
    maxReadBytes: envInt(env, "POLICY_MAX_READ_BYTES", 1024 * 1024, 1, 64 * 1024 * 1024),
    maxWriteBytes,
    searchMaxResults: envInt(env, "MCP_SEARCH_MAX_RESULTS", 100, 1, 10_000),
    listMaxEntries: envInt(env, "MCP_LIST_MAX_ENTRIES", 1000, 1, 100_000),
    commands: Object.freeze(commands),
    toolAccess,
    allowAnonymous,
    allowGitFiles: envBool(env, "POLICY_ALLOW_GIT_FILES", false),
    allowedOrigins: Object.freeze(envList(env, "MCP_ALLOWED_ORIGINS")),
    sessionSecret: secret ?? randomBytes(32).toString("hex"),
    sessionTtlSeconds: envInt(env, "MCP_SESSION_TTL_SECONDS", 86_400, 60, 30 * 86_400),
    git: io.which("git", PATH),
    sandbox: Object.freeze({
      backend,
      bwrap,
      prlimit,
      engine,
      image,
      layout: Object.freeze(layout),
      roBinds: Object.freeze(roBinds),
      uid,
      gid,
      dropPrivileges,
      bash,
      setpriv,
      seccomp: backend === "bwrap",
      cgroup,
      maskMaxEntries: envInt(env, "SANDBOX_MASK_MAX_ENTRIES", 200_000, 100, 10_000_000),
      maskMaxMs: envInt(env, "SANDBOX_MASK_MAX_MS", 2000, 10, 60_000),
      timeoutMs: envInt(env, "SANDBOX_TIMEOUT_MS", 30_000, 100, 3_600_000),
      outputBytes: envInt(env, "SANDBOX_OUTPUT_BYTES", 256 * 1024, 1024, 16 * 1024 * 1024),
      limits: Object.freeze({
        cpuSeconds: envInt(env, "SANDBOX_CPU_SECONDS", 60, 1, 86_400),
        memoryMb: envInt(env, "SANDBOX_MEMORY_MB", 2048, 64, 1_048_576),
        pids: envInt(env, "SANDBOX_PIDS", 256, 8, 1_000_000),
        fileBytes: envInt(env, "SANDBOX_FILE_BYTES", 256 * 1024 * 1024, 1024, 2 ** 40),
        cpus: envInt(env, "SANDBOX_CPUS", 1, 1, 1024),
      }),
    }),
  });
}
