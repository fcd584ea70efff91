/**
 * What `GET /v1/models` lists: every model name the gateway can serve. That is the exact
 * route names, plus each provider's own list (fetched from upstreams that have a models
 * endpoint; the built-in mock's fixed list) for the names that route to that provider.
 * Merged, de-duplicated (first wins), and paged the way Anthropic documents it (`limit`,
 * `after_id`, `before_id`; `has_more`, `first_id`, `last_id`). Each item carries both
 * Anthropic's fields and OpenAI's, and the page carries `object: "list"`, so both SDKs'
 * `models.list()` read it. Pure: the fetching is in server/models-fetch.ts.
 */
import type { Router } from "./routing.js";

/** A model as a provider lists it. */
export interface ModelInfo {
  readonly id: string;
  readonly display_name: string;
  readonly created_at: string;
}

/** One provider's list (by provider name). */
export interface ProviderModels {
  readonly provider: string;
  readonly models: readonly ModelInfo[];
}

export interface ModelsQuery {
  limit: number;
  afterId: string | null;
  beforeId: string | null;
}

/** Anthropic's bounds for `limit`. */
export const MODELS_DEFAULT_LIMIT = 20;
export const MODELS_MAX_LIMIT = 1000;
/** For names the gateway routes but no provider describes. */
const UNDATED = "1970-01-01T00:00:00Z";

/** The `limit`, `after_id`, `before_id` of a query string; a string is the error message. */
export function parseModelsQuery(query: string): ModelsQuery | string {
  const q = new URLSearchParams(query);
  const out: ModelsQuery = { limit: MODELS_DEFAULT_LIMIT, afterId: q.get("after_id"), beforeId: q.get("before_id") };
  const l = q.get("limit");
  if (l !== null) {
    if (!/^\d{1,4}$/.test(l) || Number(l) < 1 || Number(l) > MODELS_MAX_LIMIT)
      return `limit: expected an integer from 1 to ${MODELS_MAX_LIMIT}, got ${JSON.stringify(l.slice(0, 20))}`;
    out.limit = Number(l);
  }
  if (out.afterId !== null && out.beforeId !== null) return "after_id and before_id cannot be used together";
  return out;
}

/**
 * A provider's `GET /v1/models` page, read leniently: items without a string `id` are
 * skipped, missing fields get defaults. Null when the body is not a models page.
 */
export function readModelsPage(body: unknown): { models: ModelInfo[]; hasMore: boolean; lastId: string | null } | null {
  if (typeof body !== "object" || body === null || !Array.isArray((body as { data?: unknown }).data)) return null;
  const models: ModelInfo[] = [];
  for (const m of (body as { data: unknown[] }).data) {
    if (typeof m !== "object" || m === null) continue;
    const { id, display_name, created_at } = m as Record<string, unknown>;
    if (typeof id !== "string" || id === "" || id.length > 256) continue;
    models.push({
      id,
      display_name: typeof display_name === "string" ? display_name : id,
      created_at: typeof created_at === "string" && !Number.isNaN(Date.parse(created_at)) ? created_at : UNDATED,
    });
  }
  const b = body as { has_more?: unknown; last_id?: unknown };
  return {
    models,
    hasMore: b.has_more === true,
    lastId: typeof b.last_id === "string" ? b.last_id : (models[models.length - 1]?.id ?? null),
  };
}

interface Item {
  type: "model";
  id: string;
  display_name: string;
  created_at: string;
  object: "model";
  created: number;
  owned_by: string;
}

export class ModelCatalog {
  private readonly router: Router;
  private readonly routed: readonly string[];
  private items: Item[] = [];
  private byId = new Map<string, number>();

  /** `routed`: the exact route names, listed first. */
  constructor(router: Router, routed: readonly string[], lists: readonly ProviderModels[] = []) {
    this.router = router;
    this.routed = routed;
    this.update(lists);
  }

  /** Replace the providers' lists (start-up, then each refresh). */
  update(lists: readonly ProviderModels[]): void {
    const known = new Map<string, ModelInfo>();
    for (const l of lists) for (const m of l.models) if (!known.has(m.id)) known.set(m.id, m);
    const items: Item[] = [];
    const byId = new Map<string, number>();
    const add = (m: ModelInfo, owner: string) => {
      if (byId.has(m.id)) return;
      byId.set(m.id, items.length);
      const t = Date.parse(m.created_at);
      items.push({
        type: "model",
        id: m.id,
        display_name: m.display_name,
        created_at: m.created_at,
        object: "model",
        created: Number.isNaN(t) ? 0 : Math.floor(t / 1000),
        owned_by: owner,
      });
    };
    for (const id of this.routed) {
      const owner = this.router.resolve(id)?.targets[0]!.provider.name ?? "portcullis";
      add(known.get(id) ?? { id, display_name: id, created_at: UNDATED }, owner);
    }
    for (const l of lists) {
      for (const m of l.models) {
        // Listed only when this provider is where the name goes (sent unchanged).
        const t = this.router.resolve(m.id)?.targets[0];
        if (t !== undefined && t.provider.name === l.provider && t.upstreamModel === null) add(m, l.provider);
      }
    }
    this.items = items;
    this.byId = byId;
  }

  get size(): number {
    return this.items.length;
  }

  /** One model by id, as JSON, or null. */
  get(id: string): string | null {
    const i = this.byId.get(id);
    return i === undefined ? null : JSON.stringify(this.items[i]);
  }

  /** One page as JSON. An id that is not (or no longer) listed gives an empty page. */
  page(q: ModelsQuery): string {
    const all = this.items;
    let start = 0;
    let end = Math.min(all.length, q.limit);
    if (q.afterId !== null) {
      const i = this.byId.get(q.afterId);
      start = i === undefined ? all.length : i + 1;
      end = Math.min(all.length, start + q.limit);
    } else if (q.beforeId !== null) {
      const i = this.byId.get(q.beforeId);
      end = i === undefined ? 0 : i;
      start = Math.max(0, end - q.limit);
    }
    const data = all.slice(start, end);
    const hasMore = q.beforeId !== null ? start > 0 : end < all.length;
    return JSON.stringify({
      object: "list",
      data,
      has_more: hasMore,
      first_id: data[0]?.id ?? null,
      last_id: data[data.length - 1]?.id ?? null,
    });
  }
}
