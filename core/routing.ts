/**
 * Model routing: exact names first (one Map lookup), then the longest matching prefix,
 * then the default provider. Decided at start-up into a table; no allocation per call.
 */
import type { RouteConfig } from "./config.js";
import type { ProviderRuntime } from "./providers.js";
import { makePool, orderForSession, orderWithoutSession, sessionHash, type BalancePool, type Health } from "./balance.js";
import { DeploymentState, deploymentKey, deploymentKeys } from "./deployments.js";

export interface Target {
  readonly provider: ProviderRuntime;
  /** Model name to send upstream, or null to send the client's unchanged. */
  readonly upstreamModel: string | null;
  /** Its slot in the shared per-deployment state (in flight, time to first byte): core/deployments.ts. */
  readonly slot: number;
}

/** The primary target first, then the fallbacks in order. */
export interface Route {
  readonly targets: readonly Target[];
  /** Several deployments of equal rank (core/balance.ts); null = the targets' order is fixed. */
  readonly pool: BalancePool | null;
}

/**
 * The order to try a route's targets in: per session (affinity), else by the route's strategy
 * when it has deployments. `t0`: the request's arrival (performance.now()), the strategies' clock.
 */
export function targetsFor(route: Route, session: string, t0: number): readonly Target[] {
  const p = route.pool;
  if (p === null) return route.targets;
  return session === "" ? orderWithoutSession(p, p.state.at(t0)) : orderForSession(p, sessionHash(session));
}

/** The shared per-deployment state and the breakers the strategies consult (absent: a private state, no breakers). */
export interface Balancing {
  state: DeploymentState;
  health: Health | null;
}

export class Router {
  private readonly exact = new Map<string, Route>();
  private readonly prefixes: { prefix: string; route: Route }[] = [];
  private readonly fallback: Route | null;
  /** Model names that `GET /v1/models` lists: the exact routes. */
  readonly listed: readonly string[];

  constructor(
    routes: readonly RouteConfig[],
    providers: readonly ProviderRuntime[],
    defaultProvider: string | null,
    balancing: Balancing | null = null,
  ) {
    const byName = new Map(providers.map((p) => [p.name, p]));
    const keys = deploymentKeys(routes, defaultProvider);
    const slotOf = new Map(keys.map((k, i) => [k, i]));
    const state = balancing?.state ?? new DeploymentState(DeploymentState.bufferFor(keys.length));
    const health = balancing?.health ?? null;
    for (const r of routes) {
      const mk = (t: { provider: string; model: string | null }): Target =>
        Object.freeze({ provider: byName.get(t.provider)!, upstreamModel: t.model, slot: slotOf.get(deploymentKey(t.provider, t.model))! });
      const deps = r.deployments ?? [];
      const members = [mk(r), ...deps.map(mk)];
      const fallbacks = r.fallbacks.map(mk);
      const weights = [r.weight ?? 1, ...deps.map((d) => d.weight)];
      const pool = deps.length === 0 ? null : makePool(members, weights, fallbacks, r.strategy ?? "weighted", state, health);
      const route: Route = Object.freeze({ targets: Object.freeze([...members, ...fallbacks]), pool });
      if (r.prefix) this.prefixes.push({ prefix: r.match, route });
      else if (!this.exact.has(r.match)) this.exact.set(r.match, route);
    }
    this.prefixes.sort((a, b) => b.prefix.length - a.prefix.length);
    this.fallback =
      defaultProvider === null
        ? null
        : Object.freeze({
            targets: Object.freeze([
              Object.freeze({
                provider: byName.get(defaultProvider)!,
                upstreamModel: null,
                slot: slotOf.get(deploymentKey(defaultProvider, null))!,
              }),
            ]),
            pool: null,
          });
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
