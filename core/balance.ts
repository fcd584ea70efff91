/**
 * Several deployments of equal rank behind one route (regions, accounts), and session
 * affinity that keeps the upstream prompt cache warm. A request that carries a session
 * (`x-claude-code-session-id`, else `metadata.user_id`) is ranked over the deployments by
 * weighted rendezvous hashing (highest random weight): every acceptor thread and every
 * replica computes the same order with no shared table, a session stays on its deployment
 * for as long as that deployment is healthy, and when one deployment's breaker opens only
 * its sessions move (to their second choice: call.ts skips a target whose breaker refuses).
 * Requests without a session go to a weighted random deployment.
 *
 * Orders are arrays of targets (deployments, then the route's fallbacks), memoised per
 * permutation, so after warm-up a pick allocates nothing.
 */
import type { Target } from "./routing.js";

/** At most this many deployments per route (the memo holds at most MAX! orders). */
export const MAX_DEPLOYMENTS = 6;

export interface BalancePool {
  readonly members: readonly Target[];
  readonly weights: readonly number[];
  /** Per member, a hash of its identity (provider and model): the ranking survives config reordering and removals. */
  readonly seeds: readonly number[];
  readonly fallbacks: readonly Target[];
  /** Orders by permutation code (session ranking). */
  readonly orders: Map<number, readonly Target[]>;
  /** orders starting at member i, the rest in config order (random picks). */
  readonly rotations: readonly (readonly Target[])[];
  readonly totalWeight: number;
  /** Every weight equal: rank by the hash itself (same order, no logarithm). */
  readonly equalWeights: boolean;
}

export function makePool(members: readonly Target[], weights: readonly number[], fallbacks: readonly Target[]): BalancePool {
  const rotations = members.map((m, i) => Object.freeze([m, ...members.filter((_, j) => j !== i), ...fallbacks]));
  const seeds = members.map((m) => sessionHash(`${m.provider.name}\0${m.upstreamModel ?? ""}`));
  return {
    members,
    weights,
    seeds,
    fallbacks,
    orders: new Map(),
    rotations,
    totalWeight: weights.reduce((a, b) => a + b, 0),
    equalWeights: weights.every((w) => w === weights[0]),
  };
}

/** FNV-1a over the UTF-16 code units of a session id. */
export function sessionHash(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** murmur3's finaliser over the session hash and a member's seed: a uniform 32-bit value. */
export function mix(h: number, seed: number): number {
  let x = (h ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  x ^= x >>> 16;
  return x >>> 0;
}

const scores = new Float64Array(MAX_DEPLOYMENTS);
const rank = new Uint8Array(MAX_DEPLOYMENTS);

/** The session's order: deployments by weighted rendezvous score, then the fallbacks. */
export function orderForSession(p: BalancePool, hash: number): readonly Target[] {
  const k = p.members.length;
  for (let i = 0; i < k; i++) {
    const x = mix(hash, p.seeds[i]!);
    // w / -ln(u) is increasing in u, so with equal weights u alone ranks the same.
    scores[i] = p.equalWeights ? x : p.weights[i]! / -Math.log((x + 0.5) / 4294967296);
    rank[i] = i;
  }
  // Selection sort of k <= 6 indexes by score, descending; the code is the permutation.
  let code = 0;
  for (let a = 0; a < k; a++) {
    let best = a;
    for (let b = a + 1; b < k; b++) if (scores[rank[b]!]! > scores[rank[best]!]!) best = b;
    const t = rank[a]!;
    rank[a] = rank[best]!;
    rank[best] = t;
    code = code * 8 + rank[a]!;
  }
  let o = p.orders.get(code);
  if (o === undefined) {
    const arr: Target[] = [];
    for (let a = 0; a < k; a++) arr.push(p.members[rank[a]!]!);
    o = Object.freeze([...arr, ...p.fallbacks]);
    p.orders.set(code, o);
  }
  return o;
}

/** A request without a session: a deployment drawn by weight (`r` uniform in [0, 1)), the others after it. */
export function orderForRandom(p: BalancePool, r: number): readonly Target[] {
  let x = r * p.totalWeight;
  const w = p.weights;
  for (let i = 0; i < w.length; i++) {
    x -= w[i]!;
    if (x < 0) return p.rotations[i]!;
  }
  return p.rotations[w.length - 1]!;
}
