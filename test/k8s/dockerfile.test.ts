/**
 * The Dockerfile, parsed: a multi-stage build whose runtime stage is a digest-pinned slim
 * Node base with tini as PID 1 and no npm, running the build output as a non-root user, with
 * no secret baked in; a build argument moves it to Node 22/24 with the matching uWS build.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join, resolve, dirname, relative } from "node:path";
import { builtinModules } from "node:module";
import { ROOT, deployment, settingsConfigMap } from "./support.js";

interface Instr {
  op: string;
  args: string;
}
function dockerfile(): { stages: { from: string; name?: string; instrs: Instr[] }[]; args: Map<string, string> } {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const stages: { from: string; name?: string; instrs: Instr[] }[] = [];
  const args = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(line);
    assert.ok(m, `bad Dockerfile line: ${line}`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, " ").trim();
    if (op === "FROM") {
      const fm = /^(?:--platform=\S+ )?(\S+)(?: AS (\S+))?$/i.exec(rest)!;
      const from = fm[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args.get(a ?? b) ?? "");
      stages.push({ from, name: fm[2], instrs: [] });
    } else if (op === "ARG" && stages.length === 0) {
      const [k, v] = rest.split("=");
      args.set(k!, v ?? "");
    } else {
      assert.ok(stages.length > 0, `${op} before FROM`);
      stages.at(-1)!.instrs.push({ op, args: rest });
    }
  }
  return { stages, args };
}

describe("Dockerfile", () => {
  const { stages, args } = dockerfile();
  const runtime = stages.at(-1)!;
  const ops = (op: string): Instr[] => runtime.instrs.filter((i) => i.op === op);

  test("multi-stage; every stage on the digest-pinned Node 20 slim base; npm ci --omit=dev for what ships", () => {
    assert.ok(stages.length >= 2, "multi-stage");
    const base = args.get("NODE_IMAGE")!;
    assert.match(base, /^node:20-slim@sha256:[0-9a-f]{64}$/, "the default base is pinned by digest");
    for (const s of stages) assert.equal(s.from, base, `stage ${s.name} builds FROM the pinned base`);
    const all = stages.flatMap((s) => s.instrs);
    assert.ok(
      all.some((i) => i.op === "RUN" && /npm ci\b.*--omit=dev/.test(i.args)),
      "npm ci --omit=dev",
    );
    // What ships is the node_modules of the --omit=dev stage.
    const omitStage = stages.find((s) => s.instrs.some((i) => i.op === "RUN" && /--omit=dev/.test(i.args)))!;
    assert.ok(ops("COPY").some((c) => c.args.includes(`--from=${omitStage.name}`) && /node_modules/.test(c.args)));
  });

  test("no npm in the runtime stage: nothing installs there, and npm, npx and corepack are removed", () => {
    for (const r of ops("RUN")) assert.doesNotMatch(r.args, /\bnpm (ci|install|rebuild|run)\b|\bnpx\b(?! )/, r.args);
    const removal = ops("RUN").find((r) => /rm -rf/.test(r.args) && /node_modules\/npm\b/.test(r.args));
    assert.ok(removal, "npm is deleted from the runtime image");
    for (const p of [
      "/usr/local/lib/node_modules/npm",
      "/usr/local/lib/node_modules/corepack",
      "/usr/local/bin/npm",
      "/usr/local/bin/npx",
      "/usr/local/bin/corepack",
    ]) {
      assert.ok(removal.args.includes(p), `removes ${p}`);
    }
    assert.match(removal.args, /! command -v npm/, "the build fails if npm is still there");
  });

  test("tini is PID 1: installed in the runtime stage and the ENTRYPOINT, node is its child (exec form)", () => {
    assert.ok(
      ops("RUN").some((r) => /apt-get install[^&]*\btini\b/.test(r.args)),
      "tini installed",
    );
    assert.deepEqual(JSON.parse(ops("ENTRYPOINT").at(-1)!.args), ["/usr/bin/tini", "--"]);
    assert.equal(JSON.parse(ops("CMD").at(-1)!.args)[0], "node");
  });

  test("a build argument selects a Node 22/24 base with the @btc-vision/uwebsockets.js build; Node 20's end of life is documented", () => {
    assert.equal(args.get("UWS_PACKAGE"), "", "the default keeps package-lock.json's uWS build");
    const text = readFileSync(join(ROOT, "Dockerfile"), "utf8");
    for (const stage of stages.filter((s) => s.name === "build" || s.name === "deps")) {
      assert.ok(
        stage.instrs.some((i) => i.op === "ARG" && i.args === "UWS_PACKAGE"),
        `${stage.name} takes UWS_PACKAGE`,
      );
      assert.ok(
        stage.instrs.some(
          (i) => i.op === "RUN" && /if \[ -n "\$UWS_PACKAGE" \]; then npm install [^;]*"uWebSockets\.js@npm:\$UWS_PACKAGE"/.test(i.args),
        ),
        `${stage.name} swaps the uWS build`,
      );
    }
    assert.match(text, /--build-arg NODE_IMAGE=node:(22|24)-trixie-slim/);
    assert.match(text, /--build-arg UWS_PACKAGE=@btc-vision\/uwebsockets\.js@[0-9.]+/);
    assert.match(text, /end of life/i);
    assert.match(text, /glibc[\s#]*>= 2\.38/);
    const deps = stages.find((s) => s.name === "deps")!;
    assert.ok(
      deps.instrs.some((i) => i.op === "RUN" && /require\('uWebSockets\.js'\)/.test(i.args)),
      "the deps stage fails the build if uWS does not load",
    );
  });

  test("a non-root user, HEALTHCHECK on /health/live, STOPSIGNAL SIGTERM, bubblewrap installed", () => {
    const user = ops("USER").at(-1)?.args;
    assert.ok(user, "USER is set");
    const uid = user.split(":")[0]!;
    assert.ok(uid !== "root" && uid !== "0", `runs as ${user}`);
    assert.match(uid, /^[0-9]+$/, "numeric, so Kubernetes' runAsNonRoot can verify it");
    assert.equal(String(deployment().spec.template.spec.securityContext.runAsUser), uid, "the pod runs as the image's user");
    const hc = ops("HEALTHCHECK");
    assert.equal(hc.length, 1);
    assert.match(hc[0]!.args, /\/health\/live/);
    assert.deepEqual(
      ops("STOPSIGNAL").map((s) => s.args),
      ["SIGTERM"],
    );
    assert.ok(
      ops("RUN").some((r) => /apt-get install[^&]*\bbubblewrap\b/.test(r.args)),
      "bubblewrap in the runtime image",
    );
    assert.ok(ops("EXPOSE").some((e) => e.args === settingsConfigMap().PORT));
  });

  test("the CMD path exists in the build output, with package.json (type: module) beside it", () => {
    const cmd = ops("CMD").at(-1)!;
    const argv = JSON.parse(cmd.args) as string[];
    assert.equal(argv[0], "node", "exec form, so tini's signal reaches node");
    assert.ok(existsSync(join(ROOT, argv[1]!)), `${argv[1]} is not in the build output`);
    assert.ok(
      ops("COPY").some((c) => /\bdist\b/.test(c.args) && c.args.includes("--from=")),
      "dist comes from the build stage",
    );
    assert.ok(
      ops("COPY").some((c) => /\bpackage\.json\b/.test(c.args)),
      "package.json ships: dist is ESM by its type field",
    );
    assert.equal(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).type, "module");
  });

  test("the runtime code only needs core/, server/, workers/ and production dependencies", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const prod = new Set(Object.keys(pkg.dependencies));
    const shipped = ["core", "server", "workers"].map((d) => join(ROOT, "dist", d));
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".js") ? [join(dir, e.name)] : [],
      );
    for (const f of shipped.flatMap(walk)) {
      const src = readFileSync(f, "utf8");
      for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
        const spec = m[1] ?? m[2]!;
        if (spec.startsWith(".")) {
          const target = resolve(dirname(f), spec);
          assert.ok(
            shipped.some((s) => !relative(s, target).startsWith("..")),
            `${relative(ROOT, f)} imports ${spec}, which the image does not build`,
          );
        } else {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
          if (spec.startsWith("node:") || builtinModules.includes(name)) continue;
          assert.ok(prod.has(name), `${relative(ROOT, f)} imports ${name}, not a production dependency (npm ci --omit=dev drops it)`);
        }
      }
    }
    for (const s of ["core", "server", "workers"]) {
      assert.ok(
        stages[0]!.instrs.some((i) => i.op === "COPY" && new RegExp(`^${s} `).test(i.args)),
        `the build stage copies ${s}/`,
      );
    }
  });

  test("no secrets baked in: no secret-looking ENV/ARG, nothing secret copied, .dockerignore keeps them out", () => {
    const all = stages.flatMap((s) => s.instrs);
    for (const i of all.filter((i) => i.op === "ENV" || i.op === "ARG")) {
      assert.doesNotMatch(i.args, /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i, `${i.op} ${i.args}`);
    }
    for (const i of all.filter((i) => i.op === "COPY" || i.op === "ADD")) {
      assert.doesNotMatch(i.args, /\.env|\.pem|\.key\b|secret|\.npmrc|\s\.\s|^\.\s/, `${i.op} ${i.args}`);
    }
    assert.ok(!all.some((i) => i.op === "ADD"), "COPY, not ADD");
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8")
      .split("\n")
      .map((l) => l.trim());
    for (const must of [".env", ".env.*", ".git", "**/node_modules", "dist", "data", "**/*.pem", "**/*.db"]) {
      assert.ok(ignore.includes(must), `.dockerignore lists ${must}`);
    }
    // What the Dockerfile copies from the context is not ignored.
    for (const i of stages.flatMap((s) => s.instrs).filter((i) => i.op === "COPY" && !i.args.includes("--from="))) {
      const srcs = i.args
        .split(" ")
        .filter((a) => !a.startsWith("--"))
        .slice(0, -1);
      for (const s of srcs) {
        assert.ok(existsSync(join(ROOT, s)), `COPY ${s}: missing`);
        assert.ok(!ignore.includes(s), `COPY ${s} but .dockerignore drops it`);
      }
    }
  });
});
