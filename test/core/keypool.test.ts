import { test } from "node:test";
import assert from "node:assert/strict";

import type { ProviderConfig } from "../../core/config.js";
import {
  BAD_MS,
  keyPoolBuffers,
  KeyPools,
  keySession,
  R_RANGE,
  renderKeyPoolPrometheus,
  type KeyPool,
  type PoolKey,
} from "../../core/keypool.js";
import { prng } from "../../core/prng.js";
import { spawnSync } from "node:child_process";

const key = (label: string, o: Partial<PoolKey> = {}): PoolKey => ({ label, key: `sk-${label}-secret`, weight: 1, rpm: 0, tpm: 0, ...o });
const provider = (name: string, keys: PoolKey[] | null): ProviderConfig =>
  ({
    name,
    type: "anthropic",
    origin: "http://x",
    basePath: "",
    apiKey: keys?.[0]?.key ?? "k",
    passThroughKey: false,
    keys,
  }) as ProviderConfig;
/** A pick's `r` for a fraction of the way through the weights. */
const at = (f: number): number => Math.floor(f * R_RANGE);
const runtime = (c: ProviderConfig) => ({ config: c, adapter: { auth: (k: string) => ["x-api-key", k] } });

/** Pools over one set of buffers with a clock the test moves (ms; the limiter's µs follow it). */
function pools(configs: ProviderConfig[]) {
  let ms = 1_000;
  const bufs = keyPoolBuffers(configs);
  const clock = { now: () => ms },
    micro = { now: () => ms * 1000 };
  const make = () => new KeyPools(configs.map(runtime), bufs, clock, micro);
  return { make, bufs, advance: (d: number) => void (ms += d), now: () => ms };
}

function one(keys: PoolKey[]): { pool: KeyPool; advance(ms: number): void; now(): number; bufs: ReturnType<typeof keyPoolBuffers> } {
  const p = pools([provider("p", keys)]);
  return { pool: p.make().pool(1)!, advance: p.advance, now: p.now, bufs: p.bufs };
}

test("a provider with one key has no pool; each pool key's auth headers carry its own key", () => {
  const ks = pools([provider("single", null), provider("multi", [key("a"), key("b")])]).make();
  assert.equal(ks.pool(1), null);
  const p = ks.pool(2)!;
  assert.deepEqual(p.auth, [
    ["x-api-key", "sk-a-secret"],
    ["x-api-key", "sk-b-secret"],
  ]);
  assert.deepEqual(p.labels, ["a", "b"]);
});

test("without a session, keys are drawn by weight (20,000 draws, weights 1:2:7, seeded PRNG)", () => {
  const { pool } = one([key("a"), key("b", { weight: 2 }), key("c", { weight: 7 })]);
  const r = prng(42);
  const n = [0, 0, 0];
  for (let i = 0; i < 20_000; i++) n[pool.pick(-1, at(r()), 0, true)]!++;
  assert.ok(Math.abs(n[0]! - 2000) < 300 && Math.abs(n[1]! - 4000) < 400 && Math.abs(n[2]! - 14000) < 500, JSON.stringify(n));
});

test("a session keeps its key; sessions spread over the keys by weight", () => {
  const { pool } = one([key("a"), key("b"), key("c", { weight: 2 })]);
  const n = [0, 0, 0];
  for (let s = 0; s < 2000; s++) {
    const h = keySession(`session-${s}`);
    const k = pool.pick(h, at(Math.random()), 0, true);
    for (let again = 0; again < 3; again++) assert.equal(pool.pick(h, at(Math.random()), 0, true), k, `session ${s} moved`);
    n[k]!++;
  }
  assert.ok(Math.abs(n[0]! - 500) < 100 && Math.abs(n[1]! - 500) < 100 && Math.abs(n[2]! - 1000) < 120, JSON.stringify(n));
});

test("a rested key is not picked until its rest has passed; only its sessions move, and they come back", () => {
  const { pool, advance } = one([key("a"), key("b"), key("c")]);
  const sessions = Array.from({ length: 60 }, (_, i) => keySession(`s${i}`));
  const home = sessions.map((h) => pool.pick(h, at(0), 0, true));
  pool.rest(1, 2000);
  for (let t = 0; t < 2; t++) {
    sessions.forEach((h, i) => {
      const k = pool.pick(h, at(0), 0, true);
      if (home[i] === 1) assert.notEqual(k, 1, "a session of the resting key moved");
      else assert.equal(k, home[i], "a session of a healthy key stayed");
    });
    for (let i = 0; i < 200; i++) assert.notEqual(pool.pick(-1, at(i / 200), 0, true), 1);
    advance(999);
  }
  advance(2); // 2,000 ms after the rest began
  sessions.forEach((h, i) => assert.equal(pool.pick(h, at(0), 0, true), home[i], "back on its own key"));
});

test("a shorter rest never shortens a longer one; every rest is counted", () => {
  const { pool, advance, bufs } = one([key("a"), key("b")]);
  pool.rest(0, 5000);
  pool.rest(0, 100);
  advance(200);
  assert.equal(pool.pick(-1, at(0), 0, true), 1, "still resting after the shorter rest would have ended");
  assert.match(
    renderKeyPoolPrometheus(
      bufs.state,
      [
        { provider: "p", key: "a" },
        { provider: "p", key: "b" },
      ],
      1200,
    ),
    /upstream_key_rested_total\{provider="p",key="a"\} 2\n/,
  );
});

test("every key resting: no key, and waitMs is the soonest return (refused by this request or not)", () => {
  const { pool, advance } = one([key("a"), key("b"), key("c")]);
  pool.rest(0, 3000);
  pool.rest(1, 1500);
  pool.rest(2, 9000);
  advance(500);
  assert.equal(pool.pick(-1, at(0.3), 0, true), -1);
  assert.equal(pool.waitMs, 1000);
  assert.equal(pool.pick(-1, at(0.3), 0b111, true), -1);
  assert.equal(pool.waitMs, 1000, "keys this request saw refuse still say when they come back");
  advance(1000);
  assert.equal(pool.pick(-1, at(0.3), 0, true), 1);
});

test("keys this request saw refuse are skipped (the mask), and with all refused nothing is left and no wait is promised", () => {
  const { pool } = one([key("a"), key("b"), key("c")]);
  for (let i = 0; i < 50; i++) assert.equal(pool.pick(-1, at(i / 50), 0b101, true), 1);
  assert.equal(pool.pick(keySession("x"), at(0), 0b111, true), -1);
  assert.equal(pool.waitMs, 0);
});

test("per-key rpm spreads the load: the preferred key's minute allowance used up, the next key serves", () => {
  const { pool, advance } = one([key("a", { weight: 1000, rpm: 3 }), key("b")]);
  const got = Array.from({ length: 6 }, () => pool.pick(-1, at(0), 0, true));
  assert.deepEqual(got, [0, 0, 0, 1, 1, 1]);
  advance(20_000); // one request's worth of a's allowance (60 s / 3)
  assert.equal(pool.pick(-1, at(0), 0, true), 0);
  assert.equal(pool.pick(-1, at(0), 0, false), 0, "an uncharged pick (count_tokens) does not use the allowance");
});

test("every key at its rpm: no key, and waitMs is when the first has room", () => {
  const { pool } = one([key("a", { rpm: 1 }), key("b", { rpm: 2 })]);
  pool.pick(-1, at(0), 0, true);
  pool.pick(-1, at(0.9), 0, true);
  pool.pick(-1, at(0.9), 0, true);
  assert.equal(pool.pick(-1, at(0.5), 0, true), -1);
  assert.equal(pool.waitMs, 30_000);
});

test("tpm: a key whose tokens are in debt is skipped until the debt is paid", () => {
  const { pool, advance } = one([key("a", { weight: 1000, tpm: 1000 }), key("b")]);
  assert.equal(pool.pick(-1, at(0), 0, true), 0);
  pool.chargeTokens(0, 1500); // 500 past the minute's allowance: 30 s of debt
  assert.equal(pool.pick(-1, at(0), 0, true), 1);
  advance(30_001);
  assert.equal(pool.pick(-1, at(0), 0, true), 0);
});

test("a 401 key: set aside (one caller told to log it), used again only when no good key is left, cleared by a success", () => {
  const { pool, advance } = one([key("a"), key("b")]);
  assert.equal(pool.markBad(0), true);
  assert.equal(pool.markBad(0), false, "already bad: logged once");
  for (let i = 0; i < 50; i++) assert.equal(pool.pick(keySession(`s${i}`), at(i / 50), 0, true), 1);
  pool.rest(1, 1000);
  assert.equal(pool.pick(-1, at(0.9), 0, true), 0, "the bad key rather than nothing");
  assert.equal(pool.pick(-1, at(0.9), 0b01, true), -1, "but not twice in one request");
  pool.served(0);
  advance(1000);
  const n = [0, 0];
  for (let i = 0; i < 100; i++) n[pool.pick(-1, at(i / 100), 0, true)]!++;
  assert.ok(n[0]! > 30, `served again after a success: ${JSON.stringify(n)}`);
  assert.equal(pool.markBad(1), true);
  for (let i = 0; i < 50; i++) assert.equal(pool.pick(-1, at(i / 50), 0, true), 0);
  advance(BAD_MS);
  assert.equal(pool.pick(-1, at(0.99), 0, true), 1, "a bad mark lapses after BAD_MS");
});

test("two threads' pools over the same buffers see one rest and one rpm bucket", () => {
  const p = pools([provider("other", [key("x"), key("y")]), provider("p", [key("a", { rpm: 1 }), key("b")])]);
  const t1 = p.make().pool(2)!,
    t2 = p.make().pool(2)!;
  t1.rest(1, 5000);
  assert.equal(t2.pick(-1, at(0.99), 0, true), 0);
  assert.equal(t1.pick(-1, at(0.99), 0, true), -1, "a's one request a minute was used by the other thread");
  assert.equal(p.make().pool(1)!.pick(-1, at(0.99), 0, true), 1, "another provider's keys are apart");
});

test("the metrics: per key rested and bad counts, per provider the keys resting and bad now; no key value; promtool accepts them", () => {
  const p = pools([provider("east", [key("K_A"), key("K_B")]), provider("west", [key("api_keys.0")])]);
  const ks = p.make();
  ks.pool(1)!.rest(1, 1000);
  ks.pool(2)!.markBad(0);
  const labels = [
    { provider: "east", key: "K_A" },
    { provider: "east", key: "K_B" },
    { provider: "west", key: "api_keys.0" },
  ];
  const text = renderKeyPoolPrometheus(p.bufs.state, labels, p.now());
  assert.match(text, /^upstream_key_rested_total\{provider="east",key="K_B"\} 1$/m);
  assert.match(text, /^upstream_key_rested_total\{provider="east",key="K_A"\} 0$/m);
  assert.match(text, /^upstream_key_bad_total\{provider="west",key="api_keys.0"\} 1$/m);
  assert.match(text, /^upstream_keys_resting\{provider="east"\} 1$/m);
  assert.match(text, /^upstream_keys_bad\{provider="west"\} 1$/m);
  assert.doesNotMatch(text, /secret/);
  const lint = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 60_000 });
  assert.equal(lint.error, undefined, "promtool runs (npm test installs it)");
  assert.equal(lint.status, 0, `${lint.stdout}${lint.stderr}`);
  assert.match(renderKeyPoolPrometheus(p.bufs.state, labels, p.now() + 1000), /^upstream_keys_resting\{provider="east"\} 0$/m);
  assert.equal(renderKeyPoolPrometheus(p.bufs.state, [], p.now()), "");
});
