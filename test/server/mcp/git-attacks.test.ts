/**
 * The two routes by which a client key could make the developer's own git run a command
 * on the host, tried end to end with a real git, real bwrap and a real workspace: (1) the
 * file tools planting `sub/.git` (`gitdir: ../evilgit`) next to a crafted git directory
 * whose config names an fsmonitor command, (2) a `writes: true` template writing
 * `.git/config`, a hook, the `core.hooksPath` directory and a new `.git`. A control shows
 * each plant works when written directly, then the test shows that through the gateway
 * the marker file is never created by the developer's `git status`.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { loadMcpConfig } from "../../../core/policy/config.js";
import { Tools, type CallCtx } from "../../../server/mcp/tools.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-gitatk-")));
const ws = join(base, "ws");
const MARKER = join(base, "MARKER");
const EVIL_CONFIG = `[core]\n\trepositoryformatversion = 0\n\tfsmonitor = "touch ${MARKER}; false"\n`;
const ctx: CallCtx = { keyId: "static-0", rights: null, reqId: "t", onCancel: () => {} };
let tools: Tools;

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", ["-c", "user.email=t@t", "-c", "user.name=t", ...args], { cwd, encoding: "utf8" });
/** The developer's own `git status`, as a shell prompt or an IDE runs it. */
const developerStatus = (cwd: string) => spawnSync("git", ["status"], { cwd, encoding: "utf8" });

before(() => {
  mkdirSync(ws);
  git(ws, "init", "-q", "-b", "main");
  writeFileSync(join(ws, "a.txt"), "hello\n");
  mkdirSync(join(ws, ".githooks"));
  git(ws, "config", "core.hooksPath", ".githooks");
  git(ws, "add", "a.txt");
  git(ws, "commit", "-qm", "init");
  // The sandbox runs as nobody when the tests run as root: give it every write permission,
  // so only the sandbox's own rules stand between a command and .git.
  execFileSync("chmod", ["-R", "a+rwX", ws]);
  chmodSync(base, 0o755);
  const cmds = join(base, "commands.json");
  writeFileSync(
    cmds,
    JSON.stringify({
      commands: [
        {
          name: "plant",
          writes: true,
          argv: [
            "sh",
            "-c",
            [
              `printf '[core]\\n\\tfsmonitor = "touch ${MARKER}; false"\\n' >> .git/config`,
              `printf '#!/bin/sh\\ntouch ${MARKER}\\n' > .git/hooks/pre-commit`,
              `printf '#!/bin/sh\\ntouch ${MARKER}\\n' > .githooks/pre-commit`,
              "mkdir -p evil2/objects evil2/refs sub2 && echo 'ref: refs/heads/main' > evil2/HEAD",
              `printf '[core]\\n\\trepositoryformatversion = 0\\n\\tfsmonitor = "touch ${MARKER}; false"\\n' > evil2/config`,
              "echo 'gitdir: ../evil2' > sub2/.git",
              "echo ran",
            ].join("; "),
          ],
        },
      ],
    }),
  );
  const cfg = loadMcpConfig({ WORKSPACE_ROOT: ws, PATH: process.env.PATH, POLICY_COMMANDS_FILE: cmds }, 1)!;
  tools = new Tools(cfg, pino({ level: "silent" }));
});
after(() => rmSync(base, { recursive: true, force: true }));

async function call(name: string, args: Record<string, unknown>) {
  const r = await tools.call(name, args, ctx);
  return { text: r.content.map((c) => c.text).join(""), isError: r.isError === true };
}

function plantEvilGitDir(dir: string): void {
  mkdirSync(join(dir, "objects"), { recursive: true });
  mkdirSync(join(dir, "refs"), { recursive: true });
  writeFileSync(join(dir, "HEAD"), "ref: refs/heads/main\n");
  writeFileSync(join(dir, "config"), EVIL_CONFIG);
}

test("control: a gitdir: pointer to a crafted config makes the developer's git status run a command", () => {
  const c = join(base, "control");
  mkdirSync(join(c, "sub"), { recursive: true });
  plantEvilGitDir(join(c, "evilgit"));
  writeFileSync(join(c, "sub", ".git"), "gitdir: ../evilgit\n");
  developerStatus(join(c, "sub"));
  assert.equal(existsSync(MARKER), true, "the attack is real on this git");
  rmSync(MARKER);
});

test("route 1: the file tools refuse .git entries, gitdir: content and git control files; the developer's git status runs nothing", async () => {
  // A crafted git directory is ordinary files, except its HEAD, which is refused; plant the
  // rest of it directly, so the pointer refusal below is tested on its own.
  for (const [p, c] of [
    ["evilgit/config", EVIL_CONFIG],
    ["evilgit/objects/x", ""],
    ["evilgit/refs/x", ""],
  ] as const) {
    const r = await call("write_file", { path: p, content: c, create_dirs: true });
    assert.equal(r.isError, false, r.text);
  }
  assert.match((await call("write_file", { path: "evilgit/HEAD", content: "ref: refs/heads/main\n" })).text, /^Refused: .*git repository/);
  writeFileSync(join(ws, "evilgit", "HEAD"), "ref: refs/heads/main\n");
  const refusals: [string, string, RegExp][] = [
    ["sub/.git", "gitdir: ../evilgit\n", /gitdir:|\.git entry/],
    ["sub/.git", "not a pointer, still a .git\n", /\.git entry/],
    ["sub/.GIT", "x\n", /\.git entry/],
    ["sub/.git/config", EVIL_CONFIG, /\.git entry/],
    [".git/config", EVIL_CONFIG, /\.git entry/],
    [".git/hooks/pre-commit", "#!/bin/sh\n", /\.git entry/],
    ["sub/notgit", "gitdir: ../evilgit\n", /gitdir:/],
    [".gitmodules", '[submodule "x"]\n', /POLICY_ALLOW_GIT_FILES/],
    ["sub/.gitattributes", "* filter=evil\n", /POLICY_ALLOW_GIT_FILES/],
    [".gitconfig", "[core]\n", /POLICY_ALLOW_GIT_FILES/],
  ];
  for (const [p, content, why] of refusals) {
    const r = await call("write_file", { path: p, content, create_dirs: true });
    assert.equal(r.isError, true, `${p} must be refused`);
    assert.match(r.text, /^Refused: /);
    assert.match(r.text, why, p);
  }
  assert.equal(
    (await call("write_file", { path: ".gitignore", content: "dist/\n" })).isError,
    false,
    ".gitignore runs nothing and stays writable",
  );
  // edit_file cannot turn an ordinary file into a pointer either.
  await call("write_file", { path: "sub/ptr", content: "placeholder\n", create_dirs: true });
  const e = await call("edit_file", { path: "sub/ptr", old_string: "placeholder", new_string: "gitdir: ../evilgit" });
  assert.match(e.text, /^Refused: .*gitdir:/);
  assert.equal(existsSync(join(ws, "sub", ".git")), false);
  developerStatus(join(ws, "sub"));
  developerStatus(ws);
  assert.equal(existsSync(MARKER), false, "no host command ran");
});

test("route 2: a writes: true template cannot change .git or the hooksPath directory, and a new .git it plants is renamed", async () => {
  const configBefore = readFileSync(join(ws, ".git", "config"), "utf8");
  const r = await call("run_command", { command: "plant" });
  assert.match(r.text, /ran/, "the command itself ran");
  assert.match(r.text, /Read-only file system|Permission denied/);
  assert.equal(readFileSync(join(ws, ".git", "config"), "utf8"), configBefore, ".git/config unchanged");
  assert.equal(existsSync(join(ws, ".git", "hooks", "pre-commit")), false);
  assert.equal(existsSync(join(ws, ".githooks", "pre-commit")), false, "core.hooksPath directory read-only too");
  assert.equal(existsSync(join(ws, "sub2", ".git")), false, "the planted pointer was moved away");
  assert.ok(readdirSync(join(ws, "sub2")).some((n) => n.startsWith(".git.portcullis-quarantine-")));
  assert.match(r.text, /created sub2\/\.git/);
  developerStatus(join(ws, "sub2"));
  developerStatus(ws);
  git(ws, "commit", "--allow-empty", "-qm", "hooks would run here");
  assert.equal(existsSync(MARKER), false, "no host command ran");
});
