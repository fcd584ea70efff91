import { test } from "node:test";
import assert from "node:assert/strict";
import { DECAY_MS, DeploymentState, decay, deploymentKeys, renderInflightPrometheus } from "../../core/deployments.js";
import { loadConfig } from "../../core/config.js";

const fresh = () => new DeploymentState(DeploymentState.bufferFor(2));

test("peak-EWMA: a slower answer is taken at once, faster ones pull it down gradually", () => {
  const s = fresh();
  assert.equal(s.ewma(0, 0), 0, "never measured");
  s.observe(0, 100_000, 0);
  assert.equal(s.ewma(0, 0), 100_000);
  s.observe(0, 900_000, 50); // a new peak, 50 ms later
  assert.equal(s.ewma(0, 50), 900_000);
  // A fast answer 1 s later moves the average by 1 - exp(-1/10) ≈ 9.5% of the way, not all of it.
  s.observe(0, 100_000, 1050);
  const after = s.ewma(0, 1050);
  const w = Math.exp(-1000 / DECAY_MS);
  assert.ok(Math.abs(after - (900_000 * w + 100_000 * (1 - w))) < 900_000 * 0.01, String(after));
  assert.ok(after > 800_000);
});

test("peak-EWMA: with no answers it decays toward 0 with time (halves in DECAY_MS·ln 2), and then looks unmeasured", () => {
  const s = fresh();
  s.observe(1, 2_000_000, 10_000);
  const half = s.ewma(1, 10_000 + Math.round(DECAY_MS * Math.LN2));
  assert.ok(Math.abs(half - 1_000_000) < 20_000, String(half));
  assert.equal(s.ewma(1, 10_000 + 30 * DECAY_MS), 0);
  assert.equal(s.cost(1, 10_000 + 30 * DECAY_MS), 0, "idle and decayed away: tried like a new deployment");
  assert.equal(s.ewma(1, 5_000), 2_000_000, "a time before the stamp (another thread's later stamp) does not decay");
});

test("the decay table follows exp(-t / DECAY_MS) within 1%", () => {
  for (const ms of [0, 1, 77, 500, 1000, 5000, 10_000, 33_333, 100_000]) {
    const want = Math.exp(-ms / DECAY_MS);
    assert.ok(Math.abs(decay(ms) - want) <= want * 0.01 + 1e-12, `${ms} ms: ${decay(ms)} vs ${want}`);
  }
});

test("in flight: enter and leave are counted across threads' views of one buffer; cost grows with it", () => {
  const sab = DeploymentState.bufferFor(2);
  const a = new DeploymentState(sab),
    b = new DeploymentState(sab);
  a.observe(0, 100_000, 0);
  const idle = a.cost(0, 0);
  a.enter(0);
  b.enter(0);
  assert.equal(b.inflight(0), 2);
  assert.equal(a.cost(0, 0), idle * 3);
  a.leave(0);
  b.leave(0);
  assert.equal(a.inflight(0), 0);
  assert.equal(a.inflight(1), 0);
});

test("slots: every route target and fallback once, in config order; the gauge names provider and deployment", () => {
  const cfg = loadConfig(
    {},
    {
      providers: { a: { type: "anthropic", api_key: "k-aaaaaaa" }, b: { type: "anthropic", api_key: "k-bbbbbbb" } },
      routes: [
        { match: "m1", provider: "a", model: "x", deployments: [{ provider: "b", model: "x" }], fallbacks: [{ provider: "b" }] },
        { match: "m2", provider: "b", model: "x" },
      ],
      default_provider: "a",
    },
    1,
  );
  const keys = deploymentKeys(cfg.routes, cfg.defaultProvider);
  assert.deepEqual(keys, ["a\0x", "b\0x", "b\0", "a\0"]);
  const sab = DeploymentState.bufferFor(keys.length);
  new DeploymentState(sab).enter(1);
  const text = renderInflightPrometheus(sab, keys);
  assert.match(text, /^# TYPE upstream_inflight gauge$/m);
  assert.match(text, /^upstream_inflight\{provider="b",deployment="b\/x"\} 1$/m);
  assert.match(text, /^upstream_inflight\{provider="b",deployment="b"\} 0$/m);
  assert.equal(text.match(/^upstream_inflight\{/gm)!.length, 4);
});

test("cost: unmeasured and idle is 0; unmeasured and busy is above any measured cost, and fewer in flight is cheaper", () => {
  const s = new DeploymentState(DeploymentState.bufferFor(3));
  assert.equal(s.cost(0, 0), 0);
  s.enter(0);
  s.enter(1);
  s.enter(1);
  s.observe(2, 600_000_000, 0); // 10 minutes to a first byte
  for (let i = 0; i < 1000; i++) s.enter(2);
  assert.ok(s.sooner(2, 0, 0), "a measured deployment, however slow and busy, beats one still awaiting its first answer");
  assert.ok(s.sooner(0, 1, 0), "one request out beats two");
  assert.ok(!s.sooner(1, 0, 0));
});
