/**
 * Fetches the model lists of the providers that have a models endpoint (Anthropic's
 * `GET /v1/models`), on the main thread: once at start-up, in the background, then every
 * MODELS_REFRESH_MS; each result goes to the acceptor threads (core/models.ts merges it).
 * A provider that fails keeps its last good list; failures are logged, never fatal, and
 * never touch a breaker (this is not client traffic).
 */
import type { Logger } from "pino";
import type { GatewayConfig } from "../core/config.js";
import { authHeadersFor, buildProviders, type ProviderRuntime } from "../core/providers.js";
import { MODELS_MAX_LIMIT, readModelsPage, type ModelInfo, type ProviderModels } from "../core/models.js";

export const MODELS_REFRESH_MS = 10 * 60_000;
/** Per request; a list has at most MAX_PAGES pages. */
const FETCH_TIMEOUT_MS = 5000;
const MAX_PAGES = 10;

async function fetchOne(p: ProviderRuntime, headers: readonly string[]): Promise<ModelInfo[]> {
  const out: ModelInfo[] = [];
  let after: string | null = null;
  for (let page = 0; page < MAX_PAGES; page++) {
    const url = new URL(p.origin + p.modelsPath!);
    url.searchParams.set("limit", String(MODELS_MAX_LIMIT));
    if (after !== null) url.searchParams.set("after_id", after);
    const h: Record<string, string> = { "anthropic-version": "2023-06-01", "accept-encoding": "identity" };
    for (let i = 0; i < headers.length; i += 2) h[headers[i]!] = headers[i + 1]!;
    const r = await fetch(url, { headers: h, signal: AbortSignal.timeout(FETCH_TIMEOUT_MS) });
    if (r.status !== 200) {
      await r.arrayBuffer().catch(() => undefined);
      throw new Error(`status ${r.status}`);
    }
    const pg = readModelsPage(await r.json());
    if (pg === null) throw new Error("not a models list");
    out.push(...pg.models);
    if (!pg.hasMore || pg.lastId === null || pg.lastId === after) break;
    after = pg.lastId;
  }
  return out;
}

export class ModelLists {
  private readonly providers: { p: ProviderRuntime; headers: readonly string[] }[];
  private readonly lists = new Map<string, readonly ModelInfo[]>();
  private readonly log: Logger;
  private timer: NodeJS.Timeout | null = null;

  constructor(cfg: GatewayConfig, log: Logger) {
    this.log = log;
    // A pass-through provider has no key of its own to list with.
    this.providers = buildProviders(cfg.providers)
      .filter((p) => p.modelsPath !== null && p.authHeaders !== null)
      .map((p) => ({ p, headers: authHeadersFor(p, null) }));
  }

  /** What is known now, in provider order. */
  current(): ProviderModels[] {
    return this.providers.filter(({ p }) => this.lists.has(p.name)).map(({ p }) => ({ provider: p.name, models: this.lists.get(p.name)! }));
  }

  /** Fetch every list now; `changed` gets the merged lists when any list changed. */
  async refresh(changed: (lists: ProviderModels[]) => void): Promise<void> {
    let any = false;
    await Promise.all(
      this.providers.map(async ({ p, headers }) => {
        try {
          const models = await fetchOne(p, headers);
          const before = this.lists.get(p.name);
          if (before === undefined || JSON.stringify(before) !== JSON.stringify(models)) any = true;
          this.lists.set(p.name, models);
          this.log.info({ provider: p.name, models: models.length }, "provider model list loaded");
        } catch (e) {
          this.log.warn({ provider: p.name, err: (e as Error).message }, "provider model list not loaded; keeping the last one");
        }
      }),
    );
    if (any) changed(this.current());
  }

  /** Start-up fetch (not awaited by the caller), then a refresh every MODELS_REFRESH_MS. */
  start(changed: (lists: ProviderModels[]) => void): void {
    if (this.providers.length === 0) return;
    void this.refresh(changed);
    this.timer = setInterval(() => void this.refresh(changed), MODELS_REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
