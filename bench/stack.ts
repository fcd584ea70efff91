/**
 * The real core objects a request meets, built once from a real config, and the combined
 * middleware stack: everything a `POST /v1/messages` passes through in `core/`, in order,
 * on an already parsed body. The benchmark rows call these; nothing here is a copy of
 * core logic.
 */
import { loadConfig, type GatewayConfig } from "../core/config.js";
import { KeyIndex, presentedKey } from "../core/auth.js";
import { Metrics, MetricsLayout, createMetricsBuffer, R_MESSAGES, R_COUNT_TOKENS, R_HEALTH } from "../core/metrics.js";
import { RequestIds } from "../core/request-id.js";
import { Router } from "../core/routing.js";
import { authHeadersFor, buildProviders, type ProviderRuntime } from "../core/providers.js";
import { validateMessagesRequest } from "../core/validate.js";

/**
 * `Router.resolve` returns `{provider}` before issue 3's fallbacks and `{targets: [...]}`
 * after; the stack reads whichever it gets (the primary target).
 */
interface RouteAnyShape {
  readonly provider?: ProviderRuntime;
  readonly targets?: readonly { readonly provider: ProviderRuntime }[];
}

export const CLIENT_KEY = "sk-bench-client-key-0001";

/** Optional hot-path checks that exist only once their modules land (see `optional.ts`). */
export interface Check {
  name: string;
  /** Returns true when the request may proceed. */
  admit(): boolean;
  /** Called when the request finished (success). */
  done(): void;
}

export class Core {
  readonly cfg: GatewayConfig;
  readonly providers: ProviderRuntime[];
  readonly router: Router;
  readonly keys: KeyIndex;
  readonly ids: RequestIds;
  readonly layout: MetricsLayout;
  readonly sab: SharedArrayBuffer;
  readonly metrics: Metrics;
  /** Optional checks, in the order server/app.ts runs them; null when the module is absent. */
  shedder: Check | null = null;
  limiter: Check | null = null;
  breaker: Check | null = null;

  constructor() {
    this.cfg = loadConfig(
      {
        MODEL_PROVIDER: "anthropic",
        ANTHROPIC_API_BASE: "http://127.0.0.1:9",
        ANTHROPIC_API_KEY: "sk-upstream-key-123",
        GATEWAY_API_KEYS: `${CLIENT_KEY},sk-bench-client-key-0002,sk-bench-client-key-0003`,
        HTTP_THREADS: "1",
      },
      undefined,
      1,
    );
    this.providers = buildProviders(this.cfg.providers);
    this.router = new Router(this.cfg.routes, this.providers, this.cfg.defaultProvider);
    this.keys = new KeyIndex(this.cfg.apiKeys);
    this.ids = new RequestIds("bench", 0);
    this.layout = new MetricsLayout(this.providers.map((p) => p.name));
    this.sab = createMetricsBuffer(this.layout);
    this.metrics = new Metrics(this.layout, this.sab);
  }

  /** Fill the buffer like a busy gateway would, so snapshot/export rows have data. */
  populate(): void {
    const routes = [R_MESSAGES, R_COUNT_TOKENS, R_HEALTH];
    const statuses = [200, 200, 200, 400, 429, 500, 529];
    let x = 1;
    for (let i = 0; i < 20_000; i++) {
      x = (x * 1103515245 + 12345) >>> 0;
      const r = routes[x % routes.length]!;
      const p = r === R_HEALTH ? 0 : 1 + (x % this.providers.length);
      this.metrics.record(r, p, statuses[(x >>> 8) % statuses.length]!, (x >>> 4) % 3_000_000);
      if ((x & 7) === 0) this.metrics.error(r, p, (x >>> 3) % this.layout.nE);
    }
  }

  /**
   * One request through core, in the order server/app.ts runs it: request id, active
   * gauge, load shedding, auth, rate limit, validation, routing, breaker, upstream auth
   * headers, then the finished-request record. Returns a status so nothing is dead code.
   */
  stack(parsed: Record<string, unknown>, xApiKey: string, validate = true): number {
    const id = this.ids.next();
    const m = this.metrics;
    m.activeInc();
    if (this.shedder !== null && !this.shedder.admit()) return this.end(503, id);
    const key = presentedKey(xApiKey, "");
    if (key === "" || this.keys.check(key) === null) return this.end(401, id);
    if (this.limiter !== null && !this.limiter.admit()) return this.end(429, id);
    if (validate && validateMessagesRequest(parsed) !== null) return this.end(400, id);
    const route = this.router.resolve(parsed.model as string) as RouteAnyShape | null;
    if (route === null) return this.end(404, id);
    const provider = route.targets !== undefined ? route.targets[0]!.provider : route.provider!;
    if (this.breaker !== null && !this.breaker.admit()) return this.end(503, id);
    const headers = authHeadersFor(provider, null);
    if (this.breaker !== null) this.breaker.done();
    return this.end(headers.length === 2 ? 200 : 500, id, provider.index);
  }

  private end(status: number, id: string, provider = 0): number {
    this.metrics.record(R_MESSAGES, provider, status, 1234);
    this.metrics.activeDec();
    return status + (id.length & 0);
  }
}
