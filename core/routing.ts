/**
 * Model routing: exact names first (one Map lookup), then the longest matching prefix,
 * then the default provider. Decided at start-up into a table; no allocation per call.
 */
import type { RouteConfig } from "./config.js";
import type { ProviderRuntime } from "./providers.js";

export interface Target {
  readonly provider: ProviderRuntime;
  /** Model name to send upstream, or null to send the client's unchanged. */
  readonly upstreamModel: string | null;
}

/** The primary target first, then the fallbacks in order. */
export interface Route {
  readonly targets: readonly Target[];
}

export class Router {
  private readonly exact = new Map<string, Route>();
  private readonly prefixes: { prefix: string; route: Route }[] = [];
  private readonly fallback: Route | null;
  /** Model names that `GET /v1/models` lists: the exact routes. */
  readonly listed: readonly string[];

  constructor(routes: readonly RouteConfig[], providers: readonly ProviderRuntime[], defaultProvider: string | null) {
    const byName = new Map(providers.map((p) => [p.name, p]));
    for (const r of routes) {
      const targets = [r, ...r.fallbacks].map((t) => Object.freeze({ provider: byName.get(t.provider)!, upstreamModel: t.model }));
      const route: Route = Object.freeze({ targets: Object.freeze(targets) });
      if (r.prefix) this.prefixes.push({ prefix: r.match, route });
      else if (!this.exact.has(r.match)) this.exact.set(r.match, route);
    }
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    this.fallback =
      defaultProvider === null ? null : Object.freeze({ targets: Object.freeze([Object.freeze({ provider: byName.get(defaultProvider)!, upstreamModel: null })]) });
    this.listed = Object.freeze([...this.exact.keys()]);
  }

  resolve(model: string): Route | null {
    const r = this.exact.get(model);
    if (r !== undefined) return r;
    const ps = this.prefixes;
    for (let i = 0; i < ps.length; i++) {
      if (model.startsWith(ps[i]!.prefix)) return ps[i]!.route;
    }
    return this.fallback;
  }
}
