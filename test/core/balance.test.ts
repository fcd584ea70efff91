import { test } from "node:test";
import assert from "node:assert/strict";
import { makePool, orderForRandom, orderForSession, sessionHash } from "../../core/balance.js";
import type { Target } from "../../core/routing.js";

const t = (name: string): Target => ({ provider: { name } as Target["provider"], upstreamModel: null });
const A = t("a"),
  B = t("b"),
  C = t("c"),
  FB = t("fallback");

test("a session always gets the same order, every deployment once, the fallbacks last", () => {
  const p = makePool([A, B, C], [1, 1, 1], [FB]);
  for (let s = 0; s < 50; s++) {
    const h = sessionHash(`session-${s}`);
    const o = orderForSession(p, h);
    assert.equal(orderForSession(p, h), o, "memoised: the same array, no allocation");
    assert.deepEqual([...o.slice(0, 3)].map((x) => x.provider.name).sort(), ["a", "b", "c"]);
    assert.equal(o[3], FB);
  }
});

test("sessions spread by weight (2,000 sessions, weights 1:1:2)", () => {
  const p = makePool([A, B, C], [1, 1, 2], []);
  const n = { a: 0, b: 0, c: 0 } as Record<string, number>;
  for (let s = 0; s < 2000; s++) n[orderForSession(p, sessionHash(`s-${s}`))[0]!.provider.name]!++;
  assert.ok(Math.abs(n.a! - 500) < 100 && Math.abs(n.b! - 500) < 100 && Math.abs(n.c! - 1000) < 120, JSON.stringify(n));
});

test("without a deployment, only its sessions move, each to its own second choice", () => {
  const full = makePool([A, B, C], [1, 1, 1], []);
  const noB = makePool([A, C], [1, 1], []);
  // Rendezvous ranks members independently, so dropping B keeps everyone else's first choice.
  let moved = 0;
  for (let s = 0; s < 300; s++) {
    const h = sessionHash(`x-${s}`);
    const before = orderForSession(full, h);
    const after = orderForSession(noB, h);
    if (before[0] === B) {
      moved++;
      assert.equal(after[0], before[1]);
    } else assert.equal(after[0], before[0]);
  }
  assert.ok(moved > 50, "some sessions were on B");
});

test("random picks follow the weights and put the others after", () => {
  const p = makePool([A, B], [3, 1], [FB]);
  assert.deepEqual(orderForRandom(p, 0.1), [A, B, FB]);
  assert.deepEqual(orderForRandom(p, 0.9), [B, A, FB]);
  assert.deepEqual(orderForRandom(p, 0.7499), [A, B, FB]);
});

test("config: deployments name known providers and the route keeps its first-wave shape without them", async () => {
  const { loadConfig, ConfigError } = await import("../../core/config.js");
  const file = (deployments: unknown) => ({
    providers: { a: { type: "anthropic", api_key: "k-aaaaaaa" }, b: { type: "anthropic", api_key: "k-bbbbbbb" } },
    routes: [{ match: "m", provider: "a", deployments }],
  });
  const c = loadConfig({}, file([{ provider: "b", weight: 2 }]), 1);
  assert.deepEqual(c.routes[0]!.deployments, [{ provider: "b", model: null, weight: 2 }]);
  assert.throws(
    () => loadConfig({}, file([{ provider: "nope" }]), 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "CONFIG_FILE routes.0.deployments.0.provider",
  );
  assert.throws(
    () => loadConfig({}, file([{ provider: "b", weight: 0 }]), 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "CONFIG_FILE routes.0.deployments.0.weight",
  );
  assert.equal(
    "deployments" in loadConfig({}, { providers: file([]).providers, routes: [{ match: "m", provider: "a" }] }, 1).routes[0]!,
    false,
  );
});

test("the equal-weights fast path ranks exactly like the weighted formula", () => {
  const fast = makePool([A, B, C], [1, 1, 1], []);
  const slow = { ...fast, equalWeights: false, orders: new Map() };
  for (let s = 0; s < 500; s++) {
    const h = sessionHash(`eq-${s}`);
    assert.deepEqual(orderForSession(fast, h), orderForSession(slow, h));
  }
});
