import { test } from "node:test";
import assert from "node:assert/strict";
import {
  makePool,
  orderForLatency,
  orderForLeastInflight,
  orderForRandom,
  orderForSession,
  orderForWeighted,
  R_RANGE,
  sessionHash,
  type Health,
  type Strategy,
} from "../../core/balance.js";
import { DeploymentState } from "../../core/deployments.js";
import { prng } from "../../core/prng.js";
import type { Target } from "../../core/routing.js";

const t = (name: string, slot: number): Target => ({
  provider: { name, index: slot + 1 } as Target["provider"],
  upstreamModel: null,
  slot,
});
const A = t("a", 0),
  B = t("b", 1),
  C = t("c", 2),
  FB = t("fallback", 3);
const state = () => new DeploymentState(DeploymentState.bufferFor(4));
const pool = (
  members: Target[],
  weights: number[],
  fallbacks: Target[] = [],
  strategy: Strategy = "weighted",
  s = state(),
  h: Health | null = null,
) => makePool(members, weights, fallbacks, strategy, s, h);
/** Breakers stand-in: the named providers are open. */
const openBreakers = (...names: string[]): Health => ({
  available: (b) => !names.some((n) => [A, B, C].find((x) => x.provider.name === n)!.slot === b),
});
/** Draws as the picks take them: integers in [0, R_RANGE). */
const R = (f: number) => Math.floor(f * R_RANGE);
const ints = (seed: number) => {
  const f = prng(seed);
  return () => R(f());
};
const names = (o: readonly Target[]) => o.map((x) => x.provider.name).join(",");

test("a session always gets the same order, every deployment once, the fallbacks last", () => {
  const p = pool([A, B, C], [1, 1, 1], [FB]);
  for (let s = 0; s < 50; s++) {
    const h = sessionHash(`session-${s}`);
    const o = orderForSession(p, h);
    assert.equal(orderForSession(p, h), o, "the same array each time: nothing allocated per pick");
    assert.deepEqual([...o.slice(0, 3)].map((x) => x.provider.name).sort(), ["a", "b", "c"]);
    assert.equal(o[3], FB);
  }
});

test("sessions spread by weight (2,000 sessions, weights 1:1:2)", () => {
  const p = pool([A, B, C], [1, 1, 2]);
  const n = { a: 0, b: 0, c: 0 } as Record<string, number>;
  for (let s = 0; s < 2000; s++) n[orderForSession(p, sessionHash(`s-${s}`))[0]!.provider.name]!++;
  assert.ok(Math.abs(n.a! - 500) < 100 && Math.abs(n.b! - 500) < 100 && Math.abs(n.c! - 1000) < 120, JSON.stringify(n));
});

test("without a deployment, only its sessions move, each to its own second choice", () => {
  const full = pool([A, B, C], [1, 1, 1]);
  const noB = pool([A, C], [1, 1]);
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

test("the bucket table ranks every bucket exactly as weighted rendezvous computed directly", () => {
  const p = pool([A, B, C], [1, 3, 2], [FB]);
  // The reference: the same hashes, scores w / -ln(u) computed per call.
  const fmix = (x: number) => {
    x ^= x >>> 16;
    x = Math.imul(x, 0x85ebca6b);
    x ^= x >>> 13;
    x = Math.imul(x, 0xc2b2ae35);
    return (x ^ (x >>> 16)) >>> 0;
  };
  const seeds = [A, B, C].map((m) => sessionHash(`${m.provider.name}\0`));
  const weights = [1, 3, 2];
  const direct = (bucket: number) =>
    [0, 1, 2]
      .map((i) => ({ i, score: weights[i]! / -Math.log((fmix(bucket ^ Math.imul(seeds[i]!, 0x9e3779b1)) + 0.5) / 4294967296) }))
      .sort((x, y) => y.score - x.score)
      .map((x) => [A, B, C][x.i]!.provider.name);
  for (let s = 0; s < 3000; s++) {
    const h = sessionHash(`ref-${s}`);
    assert.equal(names(orderForSession(p, h)), [...direct(h >>> 18), "fallback"].join(","), `session ref-${s}`);
  }
});

test("the session hash reads every character: ids that differ anywhere, or only in length, hash apart", () => {
  const base = "4f3c2a1b-0000-4000-8000-000000000000";
  const seen = new Set([sessionHash(base)]);
  for (let i = 0; i < base.length; i++) {
    const v = base.slice(0, i) + (base[i] === "0" ? "1" : "0") + base.slice(i + 1);
    seen.add(sessionHash(v));
  }
  seen.add(sessionHash(base + "0"));
  seen.add(sessionHash(base.slice(0, -1)));
  assert.equal(seen.size, base.length + 3);
});

test("weighted: a draw follows the weights and puts the others after", () => {
  const p = pool([A, B], [3, 1], [FB]);
  assert.deepEqual(orderForRandom(p, R(0.1)), [A, B, FB]);
  assert.deepEqual(orderForRandom(p, R(0.9)), [B, A, FB]);
  assert.deepEqual(orderForRandom(p, R(0.7499)), [A, B, FB]);
});

test("weighted: an open breaker's share spreads over the others by weight, not onto the next one", () => {
  const p = pool([A, B, C], [1, 1, 2], [FB], "weighted", state(), openBreakers("a"));
  const rand = ints(3);
  const n = { a: 0, b: 0, c: 0 } as Record<string, number>;
  for (let i = 0; i < 3000; i++) n[orderForWeighted(p, rand())[0]!.provider.name]!++;
  assert.equal(n.a, 0);
  assert.ok(Math.abs(n.c! / 3000 - 2 / 3) < 0.04, JSON.stringify(n));
  const none = pool([A, B, C], [1, 1, 2], [FB], "weighted", state(), openBreakers("a", "b", "c"));
  assert.deepEqual(orderForWeighted(none, R(0.1)), [A, B, C, FB], "all open: a plain draw, call.ts walks on to the fallbacks");
});

test("least_inflight: the least loaded deployment first; ties drawn by weight; an open breaker is passed over", () => {
  const s = state();
  const p = pool([A, B, C], [1, 1, 2], [FB], "least_inflight", s);
  for (let i = 0; i < 3; i++) s.enter(A.slot);
  s.enter(B.slot);
  for (let i = 0; i < 2; i++) s.enter(C.slot);
  const rand = ints(7);
  for (let i = 0; i < 20; i++) assert.deepEqual(orderForLeastInflight(p, rand()), [B, A, C, FB]);
  s.enter(B.slot); // B 2, C 2: a tie, drawn by weight 1:2
  const n = { b: 0, c: 0 } as Record<string, number>;
  for (let i = 0; i < 3000; i++) n[orderForLeastInflight(p, rand())[0]!.provider.name]!++;
  assert.ok(Math.abs(n.c! / 3000 - 2 / 3) < 0.04, JSON.stringify(n));
  s.leave(A.slot);
  s.leave(A.slot);
  s.leave(A.slot); // A is idle now, but its breaker is open
  const q = pool([A, B, C], [1, 1, 2], [FB], "least_inflight", s, openBreakers("a"));
  for (let i = 0; i < 50; i++) assert.notEqual(orderForLeastInflight(q, rand())[0], A);
  assert.equal(orderForLeastInflight(pool([A, B, C], [1, 1, 2], [FB], "least_inflight", s, openBreakers("a", "b", "c")), R(0.1))[0], A);
});

test("latency: the faster deployment wins most picks; a slow one is probed again once its average has decayed", () => {
  const s = state();
  const p = pool([A, B, C], [1, 1, 1], [FB], "latency", s);
  const rand = ints(42);
  const count = (now: number, n: number) => {
    const c = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (let i = 0; i < n; i++) c[orderForLatency(p, rand(), rand(), now)[0]!.provider.name]!++;
    return c;
  };
  // Nothing measured: every deployment is tried.
  const fresh = count(1000, 300);
  assert.ok(fresh.a! > 50 && fresh.b! > 50 && fresh.c! > 50, JSON.stringify(fresh));
  s.observe(A.slot, 4_000_000, 1000); // a: 4 s to first byte
  s.observe(B.slot, 300_000, 1000);
  s.observe(C.slot, 350_000, 1000);
  const measured = count(1000, 300);
  assert.equal(measured.a, 0, `the slowest loses every pair it is drawn into: ${JSON.stringify(measured)}`);
  assert.ok(measured.b! > 0 && measured.c! > 0, JSON.stringify(measured));
  // Load counts: with 15 requests in flight on b and c each, a (idle) costs less.
  for (let i = 0; i < 15; i++) {
    s.enter(B.slot);
    s.enter(C.slot);
  }
  assert.ok(count(1000, 100).a! > 0, "a busy fast deployment loses to an idle slow one");
  for (let i = 0; i < 15; i++) {
    s.leave(B.slot);
    s.leave(C.slot);
  }
  // A minute later b and c were measured again, a was not: a's 4 s has decayed below them.
  s.observe(B.slot, 300_000, 61_000);
  s.observe(C.slot, 350_000, 61_000);
  const later = count(61_000, 300);
  assert.ok(later.a! > 50, `a is tried again: ${JSON.stringify(later)}`);
});

test("latency: an unmeasured deployment is tried at once when idle, and not piled onto while its first answer is awaited", () => {
  const s = state();
  const p = pool([A, B], [1, 1], [], "latency", s);
  s.observe(A.slot, 200_000, 0);
  assert.deepEqual(orderForLatency(p, R(0.1), R(0.5), 0), [B, A], "B, never measured and idle, beats A");
  assert.deepEqual(orderForLatency(p, R(0.9), R(0.5), 0), [B, A]);
  s.enter(B.slot);
  assert.deepEqual(orderForLatency(p, R(0.9), R(0.5), 0), [A, B], "B has a request out and no answer yet");
});

test("latency: only one healthy deployment takes it; none healthy falls back to a weighted draw", () => {
  const s = state();
  s.observe(B.slot, 100_000, 0);
  s.observe(C.slot, 100_000, 0);
  const p = pool([A, B, C], [1, 1, 1], [FB], "latency", s, openBreakers("b", "c"));
  for (const r of [0.01, 0.5, 0.99]) assert.deepEqual(orderForLatency(p, R(r), R(0.3), 0), [A, B, C, FB]);
  const none = pool([A, B, C], [1, 1, 1], [FB], "latency", s, openBreakers("a", "b", "c"));
  assert.deepEqual(orderForLatency(none, R(0.99), R(0.3), 0), [C, A, B, FB]);
});

test("config: deployments name known providers; strategy is one of three; a plain route keeps its first-wave shape", async () => {
  const { loadConfig, ConfigError } = await import("../../core/config.js");
  const file = (deployments: unknown, extra: Record<string, unknown> = {}) => ({
    providers: { a: { type: "anthropic", api_key: "k-aaaaaaa" }, b: { type: "anthropic", api_key: "k-bbbbbbb" } },
    routes: [{ match: "m", provider: "a", deployments, ...extra }],
  });
  const c = loadConfig({}, file([{ provider: "b", weight: 2 }]), 1);
  assert.deepEqual(c.routes[0]!.deployments, [{ provider: "b", model: null, weight: 2 }]);
  assert.equal("strategy" in c.routes[0]!, false, "no strategy given: weighted, and no key");
  for (const strategy of ["weighted", "least_inflight", "latency"])
    assert.equal(loadConfig({}, file([{ provider: "b" }], { strategy }), 1).routes[0]!.strategy, strategy);
  assert.throws(
    () => loadConfig({}, file([{ provider: "b" }], { strategy: "round_robin" }), 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "CONFIG_FILE routes.0.strategy" && /least_inflight/.test(e.message),
  );
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
