import { test } from "node:test";
import assert from "node:assert/strict";
import { LAUNCHER, bwrapArgs, containerArgs, sandboxArgv, spawnAs, type SandboxPlan } from "../../../core/policy/sandbox-argv.js";

const plan: SandboxPlan = {
  backend: "bwrap",
  bwrap: "/usr/bin/bwrap",
  prlimit: "/usr/bin/prlimit",
  engine: "/usr/bin/docker",
  image: "node:20-slim",
  layout: [
    { kind: "ro-bind", path: "/usr" },
    { kind: "symlink", target: "usr/bin", path: "/bin" },
  ],
  roBinds: ["/opt/tool"],
  roots: ["/ws/a", "/ws/b"],
  uid: 65534,
  gid: 65534,
  limits: { cpuSeconds: 10, memoryMb: 512, pids: 64, fileBytes: 1048576, cpus: 2 },
  bash: "/usr/bin/bash",
  setpriv: "/usr/bin/setpriv",
  dropPrivileges: false,
  seccomp: true,
};
const run = { argv: ["npm", "test", "--", "$(x)"], cwd: "/ws/a", writes: false, name: "portcullis-abc" };

function pairs(a: string[], flag: string): string[][] {
  const out: string[][] = [];
  a.forEach((x, i) => {
    if (x === flag) out.push(a.slice(i + 1, i + 3));
  });
  return out;
}

test("bwrap: all namespaces, no network, read-only system and workspace, tmpfs /tmp, die-with-parent, new session, clean env, limits", () => {
  const a = bwrapArgs(plan, run);
  for (const f of [
    "--unshare-all",
    "--unshare-user",
    "--unshare-net",
    "--disable-userns",
    "--die-with-parent",
    "--new-session",
    "--clearenv",
  ])
    assert.ok(a.includes(f), f);
  assert.equal(a[a.indexOf("--seccomp") + 1], "3", "the filter is read from fd 3");
  assert.deepEqual(
    pairs(a, "--ro-bind").filter((p) => p[0] === "/usr" || p[0]!.startsWith("/ws") || p[0] === "/opt/tool"),
    [
      ["/usr", "/usr"],
      ["/opt/tool", "/opt/tool"],
      ["/ws/a", "/ws/a"],
      ["/ws/b", "/ws/b"],
    ],
  );
  assert.equal(a.includes("--bind"), false, "no writable bind");
  assert.deepEqual(pairs(a, "--symlink"), [["usr/bin", "/bin"]]);
  assert.equal(a[a.indexOf("--tmpfs") + 1], "/tmp");
  assert.equal(a[a.indexOf("--remount-ro") + 1], "/");
  assert.deepEqual(a.slice(a.indexOf("--proc"), a.indexOf("--proc") + 4), ["--proc", "/proc", "--dev", "/dev"]);
  assert.ok(!pairs(a, "--ro-bind-try").some((p) => p[0] === "/etc/shadow" || p[0] === "/etc"), "no /etc/shadow, no whole /etc");
  assert.deepEqual(a.slice(a.indexOf("--chdir"), a.indexOf("--chdir") + 2), ["--chdir", "/ws/a"]);
  // prlimit sits between bwrap's options and the command, then the argv verbatim.
  const p = a.indexOf("/usr/bin/prlimit");
  assert.deepEqual(a.slice(p), [
    "/usr/bin/prlimit",
    "--cpu=10",
    `--as=${512 * 1024 * 1024}`,
    "--nproc=64",
    "--fsize=1048576",
    "--nofile=1024",
    "--core=0",
    "--",
    "npm",
    "test",
    "--",
    "$(x)",
  ]);
  const env = pairs(a, "--setenv").map((x) => x[0]);
  assert.ok(env.includes("PATH") && env.includes("HOME"));
  assert.ok(!env.some((k) => /KEY|TOKEN|SECRET/.test(k!)), "no secrets in the sandbox environment");
});

test("bwrap: a template that writes binds the workspace read-write, but every .git read-only after it", () => {
  const a = bwrapArgs(plan, { ...run, writes: true, readOnly: ["/ws/a/.git", "/ws/a/.githooks"] });
  assert.deepEqual(pairs(a, "--bind"), [
    ["/ws/a", "/ws/a"],
    ["/ws/b", "/ws/b"],
  ]);
  assert.deepEqual(
    pairs(a, "--ro-bind").filter((p) => p[0]!.startsWith("/ws")),
    [
      ["/ws/a/.git", "/ws/a/.git"],
      ["/ws/a/.githooks", "/ws/a/.githooks"],
    ],
  );
  assert.ok(a.indexOf("/ws/a/.git") > a.lastIndexOf("/ws/b"), "the read-only binds come after the writable root");
  const ro = bwrapArgs(plan, { ...run, readOnly: ["/ws/a/.git"] });
  assert.ok(!ro.includes("/ws/a/.git"), "a read-only workspace needs no extra bind");
});

test("bwrap and none start through the launcher: fds closed above the kept one, cgroup joined, privileges dropped by setpriv", () => {
  const { file, args } = sandboxArgv(plan, { ...run, cgroup: "/sys/fs/cgroup/x/cmd-1" });
  assert.equal(file, "/usr/bin/bash");
  assert.deepEqual(args.slice(0, 6), ["-c", LAUNCHER, "portcullis-launch", "3", "/sys/fs/cgroup/x/cmd-1", "/usr/bin/bwrap"]);
  const root = { ...plan, dropPrivileges: true };
  const inCgroup = { ...run, cgroup: "/cg/cmd-1" };
  const dropped = sandboxArgv(root, inCgroup).args;
  assert.deepEqual(dropped.slice(3, 10), ["3", "/cg/cmd-1", "/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"]);
  assert.equal(dropped[10], "/usr/bin/bwrap");
  assert.equal(spawnAs(root, inCgroup), null, "root joins the cgroup, then setpriv drops");
  assert.deepEqual(spawnAs(root, run), { uid: 65534, gid: 65534 }, "no cgroup: spawned as SANDBOX_UID directly");
  assert.equal(sandboxArgv(root, run).args[5], "/usr/bin/bwrap", "and no setpriv");
  const none = sandboxArgv({ ...plan, backend: "none", seccomp: false }, run).args;
  assert.equal(none[3], "2", "no seccomp fd to keep");
});

test("blocked workspace paths are masked: files by /dev/null, directories by an empty read-only tmpfs", () => {
  const masks = [
    { path: "/ws/a/.env", dir: false },
    { path: "/ws/a/.ssh", dir: true },
  ];
  const a = bwrapArgs(plan, { ...run, masks });
  const i = a.indexOf("/ws/a/.env");
  assert.deepEqual(a.slice(i - 2, i + 1), ["--ro-bind", "/dev/null", "/ws/a/.env"]);
  assert.ok(i > a.lastIndexOf("/ws/b"), "masks come after the workspace binds");
  const j = a.indexOf("/ws/a/.ssh");
  assert.deepEqual(a.slice(j - 1, j + 3), ["--tmpfs", "/ws/a/.ssh", "--remount-ro", "/ws/a/.ssh"]);
  const d = containerArgs({ ...plan, backend: "docker" }, { ...run, masks });
  assert.ok(d.includes("type=bind,source=/dev/null,target=/ws/a/.env,readonly"));
  assert.ok(d.includes("/ws/a/.ssh:ro"));
});

test("docker/podman: the equivalent run flags", () => {
  for (const backend of ["docker", "podman"] as const) {
    const { file, args } = sandboxArgv({ ...plan, backend, engine: `/usr/bin/${backend}` }, run);
    assert.equal(file, `/usr/bin/${backend}`);
    assert.deepEqual(args.slice(0, 3), ["run", "--rm", "--init"]);
    const flag = (f: string) => args[args.indexOf(f) + 1];
    assert.equal(flag("--network"), "none");
    assert.ok(args.includes("--read-only"));
    assert.equal(flag("--cap-drop"), "ALL");
    assert.equal(flag("--security-opt"), "no-new-privileges");
    assert.equal(flag("--pids-limit"), "64");
    assert.equal(flag("--memory"), "512m");
    assert.equal(flag("--cpus"), "2");
    assert.equal(flag("--user"), "65534:65534");
    assert.equal(flag("--name"), "portcullis-abc");
    assert.equal(flag("--workdir"), "/ws/a");
    assert.ok(args.includes("type=bind,source=/ws/a,target=/ws/a,readonly"));
    assert.ok(args.includes("type=bind,source=/opt/tool,target=/opt/tool,readonly"));
    assert.deepEqual(args.slice(args.indexOf("node:20-slim")), ["node:20-slim", "npm", "test", "--", "$(x)"]);
  }
  const w = containerArgs({ ...plan, backend: "docker" }, { ...run, writes: true });
  assert.ok(w.includes("type=bind,source=/ws/a,target=/ws/a"));
});

test("none: the launcher and prlimit only, argv unchanged", () => {
  const { file, args } = sandboxArgv({ ...plan, backend: "none" }, run);
  assert.equal(file, "/usr/bin/bash");
  assert.equal(args[5], "/usr/bin/prlimit");
  assert.deepEqual(args.slice(args.indexOf("--")), ["--", "npm", "test", "--", "$(x)"]);
});
