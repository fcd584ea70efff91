import { test } from "node:test";
import assert from "node:assert/strict";
import { ModelCatalog, parseModelsQuery, readModelsPage, type ModelsQuery } from "../../core/models.js";
import { Router } from "../../core/routing.js";
import { buildProviders } from "../../core/providers.js";
import { loadConfig } from "../../core/config.js";

const cfg = loadConfig(
  { ANTHROPIC_API_KEY: "sk-upstream-models-1", DATABRICKS_API_BASE: "https://db.example", DATABRICKS_API_KEY: "dapi-x-models-1" },
  {
    routes: [
      { match: "alias", provider: "anthropic", model: "claude-b" },
      { match: "fast", provider: "databricks" },
      { match: "db-*", provider: "databricks" },
      { match: "renamed-*", provider: "anthropic", model: "claude-a" },
    ],
    default_provider: "anthropic",
  },
  1,
);
const router = new Router(cfg.routes, buildProviders(cfg.providers), cfg.defaultProvider);
const upstream = [
  { id: "claude-a", display_name: "Claude A", created_at: "2025-02-01T00:00:00Z" },
  { id: "claude-b", display_name: "Claude B", created_at: "2025-01-01T00:00:00Z" },
  { id: "fast", display_name: "Fast (upstream)", created_at: "2025-03-01T00:00:00Z" },
  { id: "db-x", display_name: "routed elsewhere", created_at: "2025-03-01T00:00:00Z" },
  { id: "renamed-q", display_name: "renamed by a route", created_at: "2025-03-01T00:00:00Z" },
];

function pageOf(c: ModelCatalog, q: Partial<ModelsQuery>) {
  return JSON.parse(c.page({ limit: 20, afterId: null, beforeId: null, ...q })) as {
    object: string;
    data: Record<string, unknown>[];
    has_more: boolean;
    first_id: string | null;
    last_id: string | null;
  };
}

test("lists routed names first, then the upstream's models that route to it unchanged, de-duplicated", () => {
  const c = new ModelCatalog(router, router.listed, [
    { provider: "anthropic", models: upstream },
    { provider: "anthropic", models: [upstream[0]!] },
  ]);
  const p = pageOf(c, {});
  assert.deepEqual(
    p.data.map((m) => m.id),
    ["alias", "fast", "claude-a", "claude-b"],
  );
  assert.equal(p.object, "list");
  assert.equal(p.has_more, false);
  assert.equal(p.first_id, "alias");
  assert.equal(p.last_id, "claude-b");
  // Both SDKs' fields on each item; a routed name described by a provider takes its details.
  assert.deepEqual(p.data[1], {
    type: "model",
    id: "fast",
    display_name: "Fast (upstream)",
    created_at: "2025-03-01T00:00:00Z",
    object: "model",
    created: 1740787200,
    owned_by: "databricks",
  });
  assert.deepEqual(p.data[0], {
    type: "model",
    id: "alias",
    display_name: "alias",
    created_at: "1970-01-01T00:00:00Z",
    object: "model",
    created: 0,
    owned_by: "anthropic",
  });
  assert.equal(c.get("claude-b"), JSON.stringify(p.data[3]));
  assert.equal(c.get("db-x"), null, "a name routed to another provider is not this provider's to list");
});

test("pages with limit, after_id and before_id as Anthropic documents", () => {
  const many = Array.from({ length: 7 }, (_, i) => ({ id: `claude-${i}`, display_name: `m${i}`, created_at: "2025-01-01T00:00:00Z" }));
  const c = new ModelCatalog(new Router([], buildProviders(cfg.providers), "anthropic"), [], [{ provider: "anthropic", models: many }]);
  const p1 = pageOf(c, { limit: 3 });
  assert.deepEqual(
    [p1.data.map((m) => m.id), p1.has_more, p1.first_id, p1.last_id],
    [["claude-0", "claude-1", "claude-2"], true, "claude-0", "claude-2"],
  );
  const p2 = pageOf(c, { limit: 3, afterId: "claude-2" });
  assert.deepEqual([p2.data.map((m) => m.id), p2.has_more], [["claude-3", "claude-4", "claude-5"], true]);
  const p3 = pageOf(c, { limit: 3, afterId: "claude-5" });
  assert.deepEqual([p3.data.map((m) => m.id), p3.has_more, p3.last_id], [["claude-6"], false, "claude-6"]);
  const b1 = pageOf(c, { limit: 2, beforeId: "claude-3" });
  assert.deepEqual([b1.data.map((m) => m.id), b1.has_more], [["claude-1", "claude-2"], true]);
  const b2 = pageOf(c, { limit: 5, beforeId: "claude-3" });
  assert.deepEqual([b2.data.map((m) => m.id), b2.has_more], [["claude-0", "claude-1", "claude-2"], false]);
  const gone = pageOf(c, { afterId: "no-such-model" });
  assert.deepEqual([gone.data, gone.has_more, gone.first_id, gone.last_id], [[], false, null, null]);
});

test("the query is checked: limit 1-1000, not both after_id and before_id", () => {
  assert.deepEqual(parseModelsQuery(""), { limit: 20, afterId: null, beforeId: null });
  assert.deepEqual(parseModelsQuery("limit=1000&after_id=claude-x"), { limit: 1000, afterId: "claude-x", beforeId: null });
  for (const bad of ["limit=0", "limit=1001", "limit=abc", "limit=2.5", "limit=-1"])
    assert.match(String(parseModelsQuery(bad)), /^limit: expected an integer from 1 to 1000/, bad);
  assert.match(String(parseModelsQuery("after_id=a&before_id=b")), /cannot be used together/);
});

test("an upstream page is read leniently and junk is refused", () => {
  assert.equal(readModelsPage({ nope: 1 }), null);
  assert.equal(readModelsPage(null), null);
  const r = readModelsPage({
    data: [{ id: "a" }, { id: 5 }, "x", { id: "b", display_name: "B", created_at: "not a date" }],
    has_more: true,
  });
  assert.deepEqual(r, {
    models: [
      { id: "a", display_name: "a", created_at: "1970-01-01T00:00:00Z" },
      { id: "b", display_name: "B", created_at: "1970-01-01T00:00:00Z" },
    ],
    hasMore: true,
    lastId: "b",
  });
});
