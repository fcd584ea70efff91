/**
 * The sandbox's view, worked out on a real tree: what is masked and what stays read-only,
 * and the bound on the walk (past it the command is refused, not run unmasked).
 */
import { after, test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, realpathSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PathPolicy } from "../../../core/policy/paths.js";
import { ToolError } from "../../../server/mcp/fsguard.js";
import { hooksPathOf, sandboxView } from "../../../server/mcp/sandbox-view.js";

const ws = realpathSync(mkdtempSync(join(tmpdir(), "portcullis-view-")));
after(() => rmSync(ws, { recursive: true, force: true }));
const f = (p: string, c = "") => {
  mkdirSync(join(ws, p, ".."), { recursive: true });
  writeFileSync(join(ws, p), c);
};

test("masks every refused path (node_modules too, .git/config) and keeps every .git and hooks directory read-only", async () => {
  f(".git/config", '[core]\n\thooksPath = tools/hooks\n[remote "o"]\n\turl = https://t@x/y\n');
  f(".git/HEAD", "ref: refs/heads/main\n");
  f("tools/hooks/pre-commit", "#!/bin/sh\n");
  f("node_modules/pkg/.env", "X=1\n");
  f("node_modules/pkg/index.js");
  f("sub/.git", "gitdir: ../modules/sub\n");
  f("modules/sub/config", "[core]\n");
  f("deploy/server.pem");
  const policy = new PathPolicy({ roots: [ws], allowed: ["**"], blocked: ["private/**"] });
  f("private/notes.txt");
  const v = await sandboxView(policy, 10_000, 5_000);
  const masked = v.masks.map((m) => m.path.slice(ws.length + 1) + (m.dir ? "/" : "")).sort();
  assert.deepEqual(masked, [".git/config", "deploy/server.pem", "modules/sub/config", "node_modules/pkg/.env", "private/"]);
  assert.deepEqual(v.readOnly.map((p) => p.slice(ws.length + 1)).sort(), [".git", "modules/sub", "sub/.git", "tools/hooks"]);
  assert.deepEqual(v.gitEntries.map((p) => p.slice(ws.length + 1)).sort(), [".git", "sub/.git"]);
  assert.equal(hooksPathOf('[Core]\n  HooksPath = "a b"\n[core "x"]\n'), "a b");
});

test("past SANDBOX_MASK_MAX_ENTRIES the command is refused rather than run with an unmasked tree", async () => {
  for (let i = 0; i < 150; i++) f(`many/f${i}`);
  const policy = new PathPolicy({ roots: [ws], allowed: ["**"], blocked: [] });
  await assert.rejects(
    sandboxView(policy, 100, 5_000),
    (e: unknown) => e instanceof ToolError && /more than 100 entries .*SANDBOX_MASK_MAX_ENTRIES.*not run/.test(e.message),
  );
});
