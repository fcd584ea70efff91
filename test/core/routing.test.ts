import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig, type RouteConfig } from "../../core/config.js";
import { authHeadersFor, buildProviders, type ProviderRuntime } from "../../core/providers.js";
import { Router } from "../../core/routing.js";

/** Providers and a router built the way the server does: from loadConfig. */
function setup(file: unknown, env: Record<string, string> = {}) {
  const cfg = loadConfig(env, file, 1);
  const providers = buildProviders(cfg.providers);
  return { cfg, providers, router: new Router(cfg.routes, providers, cfg.defaultProvider) };
}

function byName(ps: readonly ProviderRuntime[], name: string): ProviderRuntime {
  const p = ps.find((x) => x.name === name);
  assert.ok(p, `provider ${name}`);
  return p;
}

const PROVIDERS = {
  a: { type: "anthropic", api_key: "key-a" },
  b: { type: "anthropic", base_url: "https://b.example.com", api_key: "key-b" },
  c: { type: "anthropic", base_url: "https://c.example.com", api_key: "key-c" },
  d: { type: "anthropic", base_url: "https://d.example.com", api_key: "key-d" },
};

test("an exact route beats a prefix route, whatever the order in the file", () => {
  const { router } = setup({
    providers: PROVIDERS,
    routes: [
      { match: "claude-*", provider: "a" },
      { match: "claude-opus-4", provider: "b", model: "opus-upstream" },
    ],
  });
  const r = router.resolve("claude-opus-4");
  assert.equal(r?.targets[0]!.provider.name, "b");
  assert.equal(r?.targets[0]!.upstreamModel, "opus-upstream");
  assert.equal(router.resolve("claude-opus-4-1")?.targets[0]!.provider.name, "a", "exact means exact, not prefix");
  assert.equal(router.resolve("claude-opus-4-1")?.targets[0]!.upstreamModel, null, "no model rewrite on that route");
});

test("the longest matching prefix wins, whatever the order in the file", () => {
  const { router } = setup({
    providers: PROVIDERS,
    routes: [
      { match: "claude-*", provider: "a" },
      { match: "claude-sonnet-4-5*", provider: "c" },
      { match: "claude-sonnet-*", provider: "b" },
    ],
  });
  assert.equal(router.resolve("claude-sonnet-4-5-20250929")?.targets[0]!.provider.name, "c");
  assert.equal(router.resolve("claude-sonnet-4-20250514")?.targets[0]!.provider.name, "b");
  assert.equal(router.resolve("claude-haiku-4-5")?.targets[0]!.provider.name, "a");
  assert.equal(router.resolve("gpt-4o"), null, "no match and no default");
  assert.equal(router.resolve("Claude-sonnet-4"), null, "matching is case-sensitive");
});

test("the first of two identical exact routes is kept; only exact routes are listed", () => {
  const { router } = setup({
    providers: PROVIDERS,
    routes: [
      { match: "m1", provider: "a" },
      { match: "m1", provider: "b" },
      { match: "m2", provider: "c" },
      { match: "claude-*", provider: "d" },
    ],
  });
  assert.equal(router.resolve("m1")?.targets[0]!.provider.name, "a");
  assert.deepEqual(router.listed, ["m1", "m2"]);
});

test("a model with no route goes to the default provider, unchanged", () => {
  const { router } = setup({ providers: PROVIDERS, routes: [{ match: "claude-*", provider: "a" }], default_provider: "d" });
  const r = router.resolve("some-other-model");
  assert.equal(r?.targets[0]!.provider.name, "d");
  assert.equal(r?.targets[0]!.upstreamModel, null);
  assert.equal(router.resolve("claude-x")?.targets[0]!.provider.name, "a", "routes still win over the default");
});

test("null when nothing matches and there is no default", () => {
  const { router } = setup({ providers: PROVIDERS, routes: [{ match: "claude-*", provider: "a" }] });
  assert.equal(router.resolve(""), null);
  assert.equal(router.resolve("claude"), null, "the prefix is `claude-`, not `claude`");
});

test("a bare `*` route catches everything, ahead of the default provider", () => {
  const { router } = setup({ providers: PROVIDERS, routes: [{ match: "*", provider: "c" }], default_provider: "d" });
  assert.equal(router.resolve("anything")?.targets[0]!.provider.name, "c");
});

test("Router straight from RouteConfig values", () => {
  const providers = buildProviders([
    { name: "x", type: "anthropic", origin: "https://x", basePath: "", apiKey: "k", passThroughKey: false },
  ]);
  const routes: RouteConfig[] = [{ match: "foo", prefix: true, provider: "x", model: "bar", fallbacks: [] }];
  const router = new Router(routes, providers, null);
  assert.equal(router.resolve("foobar")?.targets[0]!.upstreamModel, "bar");
  assert.equal(router.resolve("fo"), null);
});

test("anthropic: /v1/messages under the base, x-api-key", () => {
  const { providers } = setup({ providers: { a: { type: "anthropic", api_key: "sk-a" } } });
  const p = byName(providers, "a");
  assert.equal(p.origin, "https://api.anthropic.com");
  assert.equal(p.messagesPath, "/v1/messages");
  assert.equal(p.countTokensPath, "/v1/messages/count_tokens");
  assert.deepEqual(authHeadersFor(p, "client-key"), ["x-api-key", "sk-a"], "the configured key, not the client's");
});

test("azure-anthropic: base path + /v1/messages, api-key and x-api-key", () => {
  const { providers } = setup({
    providers: { az: { type: "azure-anthropic", base_url: "https://res.services.ai.azure.com/anthropic/", api_key: "az-k" } },
  });
  const p = byName(providers, "az");
  assert.equal(p.origin, "https://res.services.ai.azure.com");
  assert.equal(p.messagesPath, "/anthropic/v1/messages");
  assert.equal(p.countTokensPath, "/anthropic/v1/messages/count_tokens");
  const h = authHeadersFor(p, null);
  assert.equal(h.length % 2, 0);
  const pairs = new Map<string, string>();
  for (let i = 0; i < h.length; i += 2) pairs.set(h[i]!, h[i + 1]!);
  assert.deepEqual(Object.fromEntries(pairs), { "api-key": "az-k", "x-api-key": "az-k" });
});

test("databricks: /serving-endpoints/anthropic/v1/messages, Authorization: Bearer", () => {
  const { providers } = setup({}, { DATABRICKS_API_BASE: "https://adb-1.azuredatabricks.net", DATABRICKS_API_KEY: "dapi-1" });
  const p = byName(providers, "databricks");
  assert.equal(p.origin, "https://adb-1.azuredatabricks.net");
  assert.equal(p.messagesPath, "/serving-endpoints/anthropic/v1/messages");
  assert.equal(p.countTokensPath, "/serving-endpoints/anthropic/v1/messages/count_tokens");
  assert.deepEqual(authHeadersFor(p, "client"), ["authorization", "Bearer dapi-1"]);
});

test("databricks keeps a base path in front of its serving-endpoints path", () => {
  const { providers } = setup({}, { DATABRICKS_API_BASE: "https://h.example.com/gw", DATABRICKS_API_KEY: "k" });
  assert.equal(byName(providers, "databricks").messagesPath, "/gw/serving-endpoints/anthropic/v1/messages");
});

test("pass-through providers forward the client's key in their own header style", () => {
  const { providers } = setup({
    providers: {
      pa: { type: "anthropic", pass_through_key: true },
      pz: { type: "azure-anthropic", base_url: "https://az.example.com/anthropic", pass_through_key: true },
      pd: { type: "databricks", base_url: "https://dbx.example.com", pass_through_key: true, api_key: "ignored" },
    },
  });
  const pa = byName(providers, "pa");
  assert.equal(pa.authHeaders, null);
  assert.deepEqual(authHeadersFor(pa, "client-1"), ["x-api-key", "client-1"]);
  assert.deepEqual([...authHeadersFor(byName(providers, "pz"), "client-2")].sort(), ["api-key", "client-2", "client-2", "x-api-key"]);
  assert.deepEqual(
    authHeadersFor(byName(providers, "pd"), "client-3"),
    ["authorization", "Bearer client-3"],
    "pass-through wins over api_key",
  );
  assert.deepEqual(authHeadersFor(pa, null), [], "no client key: no auth header");
});

test("mock has no origin and sends no auth; provider indexes start at 1", () => {
  const { providers } = setup({ providers: PROVIDERS });
  const m = byName(providers, "mock");
  assert.equal(m.origin, "");
  assert.deepEqual(authHeadersFor(m, "client"), []);
  assert.deepEqual(
    providers.map((p) => p.index),
    providers.map((_, i) => i + 1),
    "0 is reserved for 'none' in metrics",
  );
});

test("a route's fallbacks follow its primary, in order, with their own model names", () => {
  const { router } = setup({
    providers: PROVIDERS,
    routes: [{ match: "claude-*", provider: "a", fallbacks: [{ provider: "b", model: "b-model" }, { provider: "c" }] }],
  });
  const r = router.resolve("claude-x")!;
  assert.deepEqual(
    r.targets.map((t) => [t.provider.name, t.upstreamModel]),
    [
      ["a", null],
      ["b", "b-model"],
      ["c", null],
    ],
  );
});
