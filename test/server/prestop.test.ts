/**
 * The Kubernetes preStop contract (k8s/deployment.yaml): SIGUSR2 turns /health/ready to 503
 * while the listen sockets keep accepting new connections and serving, so load balancers
 * deregister the pod before SIGTERM starts the drain; the later SIGTERM still drains and
 * exits 0. Health is read on METRICS_PORT, as the kubelet does.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { startGateway, type Gateway } from "../support/gateway.js";

let gw: Gateway;
let ops: string;

/** Resolves when the gateway logs a line containing `msg`; fails after 10 s. */
async function logged(msg: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!gw.lines.some((l) => l.includes(`"msg":"${msg}"`))) {
    if (Date.now() > end) assert.fail(`no "${msg}" log line within 10 s:\n${gw.lines.slice(-5).join("\n")}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
const body = JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "hi" }] });
// A fresh connection per call: what a client that has not yet seen the endpoint removal opens.
const call = () =>
  fetch(`${gw.url}/v1/messages`, { method: "POST", headers: { "content-type": "application/json", connection: "close" }, body });

before(async () => {
  gw = await startGateway({ MODEL_PROVIDER: "mock", METRICS_PORT: "0" });
  ops = `http://127.0.0.1:${(JSON.parse(gw.lines.find((l) => l.includes('"msg":"listening"'))!) as { metrics_port: number }).metrics_port}`;
});
after(async () => {
  await gw?.stop();
});

test("SIGUSR2: readiness 503 and liveness 200 on the metrics port, while new client connections are still served", async () => {
  const before = await fetch(`${ops}/health/ready`);
  assert.equal(before.status, 200, "ready before the preStop");
  await before.arrayBuffer();
  gw.proc.kill("SIGUSR2");
  await logged("not ready: stop requested, still accepting until SIGTERM");
  const ready = await fetch(`${ops}/health/ready`);
  assert.equal(ready.status, 503);
  const j = (await ready.json()) as { status: string; components: { draining: { ok: boolean } } };
  assert.equal(j.status, "not_ready");
  assert.equal(j.components.draining.ok, false);
  const live = await fetch(`${ops}/health/live`);
  assert.equal(live.status, 200, "liveness stays up: the kubelet must not restart the pod");
  await live.arrayBuffer();
  for (let i = 0; i < 3; i++) {
    const r = await call();
    assert.equal(r.status, 200, "the listen socket still accepts and serves");
    assert.equal(((await r.json()) as { type: string }).type, "message");
  }
  assert.equal(gw.proc.exitCode, null, "SIGUSR2 does not stop the process");
});

test("then SIGTERM drains and exits 0", async () => {
  assert.equal(await gw.stop("SIGTERM"), 0);
});
