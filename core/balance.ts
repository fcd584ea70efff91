/**
 * Several deployments of equal rank behind one route (regions, accounts), and the order a
 * request tries them in. Two questions, answered in this order:
 *
 * 1. Does the request carry a session (`x-claude-code-session-id`, else `metadata.user_id`)?
 *    Then session affinity decides, whatever the strategy: the deployments are ranked by
 *    weighted rendezvous hashing (highest random weight), so every acceptor thread and every
 *    replica computes the same order with no shared table, a session stays on its deployment
 *    while that is healthy (its prompt cache stays warm, which is worth more than a faster
 *    first byte), and when one deployment's breaker opens only its sessions move (to their
 *    second choice: call.ts skips a target whose breaker refuses).
 * 2. Otherwise the route's strategy: `weighted` (a healthy deployment drawn by weight),
 *    `least_inflight` (the healthy deployment with the fewest attempts in flight across all
 *    threads, ties drawn by weight), or `latency` (power of two choices: two healthy
 *    deployments drawn by weight, the one with the lower peak-EWMA time to first byte times
 *    its in-flight attempts + 1 wins; core/deployments.ts).
 * The chosen deployment comes first, then the others, then the route's fallbacks in order.
 *
 * Cost: everything that can be is decided at start-up. The rendezvous ranking is computed
 * once per bucket of the session hash (its top 14 bits, 16,384 buckets) into a table of
 * permutation indexes, so a session pick is a string hash and two array reads; orders are
 * frozen arrays made at start-up, so no pick allocates.
 */
import type { DeploymentState } from "./deployments.js";
import type { Target } from "./routing.js";

/** At most this many deployments per route. */
export const MAX_DEPLOYMENTS = 6;

export const STRATEGIES = ["weighted", "least_inflight", "latency"] as const;
export type Strategy = (typeof STRATEGIES)[number];
// Indexes in STRATEGIES; anything else is latency.
const WEIGHTED = 0,
  LEAST_INFLIGHT = 1;

/** What the strategies ask of the circuit breakers (core/breaker.ts `Breakers`). */
export interface Health {
  /** Not open, or open past its timeout (so a recovered deployment is tried again). */
  available(breaker: number): boolean;
}

/** 16,384 buckets: shares within ~0.4% of the weights, a few ms per route at start-up. */
const BUCKET_BITS = 14;

export interface BalancePool {
  readonly members: readonly Target[];
  readonly weights: Float64Array;
  readonly totalWeight: number;
  readonly fallbacks: readonly Target[];
  readonly strategy: Strategy;
  /** The strategy as a small integer for the pick's switch. */
  readonly mode: number;
  /** Per member: its slot in `state` and its breaker (provider index - 1). */
  readonly slots: Int32Array;
  readonly breakers: Int32Array;
  readonly state: DeploymentState;
  readonly health: Health | null;
  /** Per bucket of the session hash: the index in `orders` of that bucket's ranking. */
  readonly buckets: Uint16Array;
  readonly orders: readonly (readonly Target[])[];
  /** Orders starting at member i, the rest in config order, then the fallbacks. */
  readonly rotations: readonly (readonly Target[])[];
}

export function makePool(
  members: readonly Target[],
  weights: readonly number[],
  fallbacks: readonly Target[],
  strategy: Strategy,
  state: DeploymentState,
  health: Health | null,
): BalancePool {
  const k = members.length;
  if (k > MAX_DEPLOYMENTS) throw new RangeError(`at most ${MAX_DEPLOYMENTS} deployments`);
  const rotations = members.map((m, i) => Object.freeze([m, ...members.filter((_, j) => j !== i), ...fallbacks]));
  const seeds = members.map((m) => sessionHash(`${m.provider.name}\0${m.upstreamModel ?? ""}`));
  const { buckets, orders } = rankBuckets(members, weights, seeds, fallbacks);
  return {
    members,
    weights: Float64Array.from(weights),
    totalWeight: weights.reduce((a, b) => a + b, 0),
    fallbacks,
    strategy,
    mode: STRATEGIES.indexOf(strategy),
    slots: Int32Array.from(members, (m) => m.slot),
    breakers: Int32Array.from(members, (m) => m.provider.index - 1),
    state,
    health,
    buckets,
    orders,
    rotations,
  };
}

/**
 * FNV-1a over the session id two UTF-16 code units at a time (half the loop of one at a
 * time), then murmur3's finaliser so the top bits, which pick the bucket, are well mixed.
 * Signed 32 bits: an unsigned value above 2^31 would be boxed into a heap number.
 */
export function sessionHash(s: string): number {
  const n = s.length;
  let h = 0x811c9dc5,
    i = 0;
  for (; i + 1 < n; i += 2) h = Math.imul(h ^ (s.charCodeAt(i) | (s.charCodeAt(i + 1) << 16)), 0x01000193);
  if (i < n) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return fmix(h ^ n);
}

function fmix(x: number): number {
  x ^= x >>> 16;
  x = Math.imul(x, 0x85ebca6b);
  x ^= x >>> 13;
  x = Math.imul(x, 0xc2b2ae35);
  return x ^ (x >>> 16);
}

/** A uniform unsigned 32-bit value per (bucket, member). */
export function mix(h: number, seed: number): number {
  return fmix(h ^ Math.imul(seed, 0x9e3779b1)) >>> 0;
}

/**
 * The rendezvous ranking of every bucket: members by w / -ln(u) descending (u uniform per
 * bucket and member), which puts a member first in a share of buckets equal to its share of
 * the weight, and keeps every other member's buckets where they are when one is removed.
 */
function rankBuckets(
  members: readonly Target[],
  weights: readonly number[],
  seeds: readonly number[],
  fallbacks: readonly Target[],
): { buckets: Uint16Array; orders: (readonly Target[])[] } {
  const k = members.length;
  const buckets = new Uint16Array(1 << BUCKET_BITS);
  const orders: (readonly Target[])[] = [];
  const byCode = new Map<number, number>();
  const scores = new Float64Array(k);
  const rank = new Uint8Array(k);
  for (let b = 0; b < buckets.length; b++) {
    for (let i = 0; i < k; i++) {
      scores[i] = weights[i]! / -Math.log((mix(b, seeds[i]!) + 0.5) / 4294967296);
      rank[i] = i;
    }
    // Selection sort of k <= 6 indexes by score, descending; the code names the permutation.
    let code = 0;
    for (let a = 0; a < k; a++) {
      let best = a;
      for (let c = a + 1; c < k; c++) if (scores[rank[c]!]! > scores[rank[best]!]!) best = c;
      const t = rank[a]!;
      rank[a] = rank[best]!;
      rank[best] = t;
      code = code * 8 + rank[a]!;
    }
    let o = byCode.get(code);
    if (o === undefined) {
      o = orders.length;
      byCode.set(code, o);
      orders.push(Object.freeze([...Array.from(rank, (i) => members[i]!), ...fallbacks]));
    }
    buckets[b] = o;
  }
  return { buckets, orders };
}

/** The session's order: deployments by weighted rendezvous rank, then the fallbacks. */
export function orderForSession(p: BalancePool, hash: number): readonly Target[] {
  return p.orders[p.buckets[hash >>> (32 - BUCKET_BITS)]!]!;
}

/** 2^31: the draws below are integers in [0, R_RANGE), so none is boxed on its way into a pick. */
export const R_RANGE = 2147483648;
let seed = (Math.random() * R_RANGE) | 0 || 1;

/** 31 random bits (xorshift32, seeded from Math.random): plenty to spread requests. */
function rand31(): number {
  let x = seed;
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  seed = x;
  return x & 0x7fffffff;
}

/** A request without a session: the route's strategy, at `now` (Clock32 ms) for `latency`. */
export function orderWithoutSession(p: BalancePool, now: number): readonly Target[] {
  if (p.mode === WEIGHTED) return orderForWeighted(p, rand31());
  if (p.mode === LEAST_INFLIGHT) return orderForLeastInflight(p, rand31());
  return orderForLatency(p, rand31(), rand31(), now);
}

/** A deployment drawn by weight among all (`r` uniform in [0, R_RANGE)), the others after it. */
export function orderForRandom(p: BalancePool, r: number): readonly Target[] {
  let x = (r / R_RANGE) * p.totalWeight;
  const w = p.weights;
  for (let i = 0; i < w.length; i++) {
    x -= w[i]!;
    if (x < 0) return p.rotations[i]!;
  }
  return p.rotations[w.length - 1]!;
}

function healthy(p: BalancePool, i: number): boolean {
  return p.health === null || p.health.available(p.breakers[i]!);
}

/**
 * `weighted`: a deployment drawn by weight among those whose breaker is not open, so an open
 * deployment's share spreads over the others by weight rather than all onto the next one.
 */
export function orderForWeighted(p: BalancePool, r: number): readonly Target[] {
  const w = p.weights,
    k = w.length;
  let mask = 0,
    total = 0;
  for (let i = 0; i < k; i++) {
    if (!healthy(p, i)) continue;
    mask |= 1 << i;
    total += w[i]!;
  }
  return mask === 0 ? orderForRandom(p, r) : p.rotations[draw(w, mask, total, r)]!;
}

/** In flight per member for one pick (-1 = its breaker is open); one thread runs one pick at a time. */
const load = new Int32Array(MAX_DEPLOYMENTS);

/** `least_inflight`: the healthy deployment with the fewest attempts in flight; ties drawn by weight with `r` (in [0, R_RANGE)). */
export function orderForLeastInflight(p: BalancePool, r: number): readonly Target[] {
  const w = p.weights,
    k = w.length;
  let min = 0x7fffffff,
    tied = 0;
  for (let i = 0; i < k; i++) {
    if (!healthy(p, i)) {
      load[i] = -1;
      continue;
    }
    const n = p.state.inflight(p.slots[i]!);
    load[i] = n;
    if (n < min) {
      min = n;
      tied = w[i]!;
    } else if (n === min) tied += w[i]!;
  }
  if (tied === 0) return orderForRandom(p, r); // every breaker open: call.ts walks the order and the fallbacks
  let x = (r / R_RANGE) * tied,
    last = 0;
  for (let i = 0; i < k; i++) {
    if (load[i] !== min) continue;
    last = i;
    x -= w[i]!;
    if (x < 0) break;
  }
  return p.rotations[last]!;
}

/** Member drawn by weight among the bits of `mask` (total weight `total`). */
function draw(w: Float64Array, mask: number, total: number, r: number): number {
  let x = (r / R_RANGE) * total,
    last = 0;
  for (let i = 0; i < w.length; i++) {
    if ((mask & (1 << i)) === 0) continue;
    last = i;
    x -= w[i]!;
    if (x < 0) return i;
  }
  return last;
}

/**
 * `latency`: power of two choices. Two different healthy deployments drawn by weight (`r1`,
 * `r2`, in [0, R_RANGE)); the one expected to answer sooner (core/deployments.ts `cost`) wins,
 * the first on a tie.
 */
export function orderForLatency(p: BalancePool, r1: number, r2: number, now: number): readonly Target[] {
  const w = p.weights,
    k = w.length;
  let mask = 0,
    total = 0;
  for (let i = 0; i < k; i++) {
    if (!healthy(p, i)) continue;
    mask |= 1 << i;
    total += w[i]!;
  }
  if (mask === 0) return orderForRandom(p, r1);
  const a = draw(w, mask, total, r1);
  const rest = mask & ~(1 << a);
  if (rest === 0) return p.rotations[a]!;
  const b = draw(w, rest, total - w[a]!, r2);
  return p.state.sooner(p.slots[b]!, p.slots[a]!, now) ? p.rotations[b]! : p.rotations[a]!;
}
