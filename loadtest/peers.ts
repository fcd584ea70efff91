/**
 * `npm run loadtest -- --peers`: other gateways in the same interleaved run, so anyone can
 * check the comparison. Claude Code Router and the Portkey gateway are installed on demand
 * with npm into the run's temporary directory (never as the project's dependencies; install
 * scripts off), each configured against the same mock upstream, and measured like the
 * gateway (req/s, p50/p99, CPU ms per request of their process).
 *
 * Versions: Claude Code Router 2.0.0, the newest release that installs on Node 20; Portkey
 * 1.15.2, the newest published, which runs on Node 20. Everything listens on and talks to
 * 127.0.0.1: Portkey's server has no host setting, so a preload pins its listen address.
 * Bounded: the install (5 min) and each start (30 s) time out with a message that says why.
 */
import { spawn } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { freePort } from "../test/support/free-port.js";
import { CLIENT_KEY } from "./gateway-env.js";
import { stopper, type Proc } from "./procs.js";

export const PEER_PACKAGES = ["@musistudio/claude-code-router@2.0.0", "@portkey-ai/gateway@1.15.2"];
const INSTALL_MS = 300_000;
const START_MS = 30_000;
/** The upstream key the peers send to the mock (the mock accepts any). */
const UPSTREAM_KEY = "sk-upstream-key-123";

/** `npm install` of both peers into `dir`; throws naming the registry when npm cannot reach it. */
export async function installPeers(dir: string, log: (s: string) => void): Promise<void> {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "package.json"), '{"private":true}\n');
  log(`peers: npm install ${PEER_PACKAGES.join(" ")} into ${dir}`);
  const args = ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", ...PEER_PACKAGES];
  const child = spawn("npm", args, { cwd: dir, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), INSTALL_MS);
  const code = await new Promise<number | null>((r) => {
    child.once("exit", (c) => r(c));
    child.once("error", () => r(-1));
  });
  clearTimeout(timer);
  if (code !== 0)
    throw new Error(
      `--peers: npm could not install ${PEER_PACKAGES.join(", ")} (exit ${code}${code === null ? ", killed after 5 min" : ""}); it needs the npm registry (npm config get registry). npm said:\n${out.slice(-1500)}`,
    );
}

/** Resolves once GET `url` answers at all; fails after START_MS or when the process exits. */
async function answering(name: string, url: string, child: ReturnType<typeof spawn>, output: () => string): Promise<void> {
  const deadline = Date.now() + START_MS;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${name} exited (${child.exitCode}) before answering: ${output().slice(-1000)}`);
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      return;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`${name} did not answer ${url} within ${START_MS} ms: ${output().slice(-1000)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

function launch(name: string, args: string[], env: Record<string, string>): { child: ReturnType<typeof spawn>; output: () => string } {
  const child = spawn(process.execPath, args, { env: { PATH: process.env.PATH ?? "", ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  const keep = (d: Buffer) => {
    out = (out + d.toString()).slice(-4000);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  return { child, output: () => `${name}: ${out}` };
}

/** Claude Code Router with one Anthropic provider (the mock) as its default route and the loadtest's client key. */
export async function startCcr(dir: string, mockPort: number): Promise<Proc> {
  const home = join(dir, "ccr-home");
  mkdirSync(join(home, ".claude-code-router"), { recursive: true });
  const port = await freePort();
  writeFileSync(
    join(home, ".claude-code-router", "config.json"),
    JSON.stringify({
      PORT: port,
      HOST: "127.0.0.1",
      APIKEY: CLIENT_KEY,
      LOG: false,
      Providers: [
        {
          name: "mock",
          api_base_url: `http://127.0.0.1:${mockPort}/v1/messages`,
          api_key: UPSTREAM_KEY,
          models: ["claude-sonnet-4-5"],
          transformer: { use: ["Anthropic"] },
        },
      ],
      Router: { default: "mock,claude-sonnet-4-5" },
    }),
  );
  const cli = join(dir, "node_modules", "@musistudio", "claude-code-router", "dist", "cli.js");
  const { child, output } = launch("claude-code-router", [cli, "start"], { HOME: home });
  await answering("claude-code-router", `http://127.0.0.1:${port}/`, child, output);
  return { name: "ccr", port, child, stop: stopper(child, 5_000) };
}

/** Portkey's gateway, listening on 127.0.0.1 only; the provider and the mock's address travel as request headers. */
export async function startPortkey(dir: string): Promise<Proc> {
  const port = await freePort();
  const pin = join(dir, "listen-loopback.cjs");
  writeFileSync(
    pin,
    `const net = require("node:net");
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...a) {
  if (typeof a[0] === "number" && typeof a[1] !== "string") a.splice(1, a[1] === undefined ? 1 : 0, "127.0.0.1");
  else if (a[0] && typeof a[0] === "object" && a[0].host === undefined) a[0] = { ...a[0], host: "127.0.0.1" };
  return listen.apply(this, a);
};
`,
  );
  const server = join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js");
  // production: no UI routes and no log stream; --headless: no browser hint.
  const { child, output } = launch("portkey", [`--require=${pin}`, server, `--port=${port}`, "--headless"], { NODE_ENV: "production" });
  await answering("portkey", `http://127.0.0.1:${port}/`, child, output);
  return { name: "portkey", port, child, stop: stopper(child, 5_000) };
}

/** The request headers Portkey needs to reach the mock as an Anthropic provider. */
export function portkeyHeaders(mockPort: number): Record<string, string> {
  return {
    "content-type": "application/json",
    "anthropic-version": "2023-06-01",
    "x-portkey-provider": "anthropic",
    "x-portkey-custom-host": `http://127.0.0.1:${mockPort}/v1`,
    authorization: `Bearer ${UPSTREAM_KEY}`,
  };
}
