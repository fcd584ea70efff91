/**
 * Budgets of virtual keys (docs/budgets.md): refuse a key whose budget is used up before
 * the body is read, check its model allowlist once the model is known, and reserve the
 * worst case before dispatch. After the reply the reservation is given back and the real
 * usage charged, only for the requests these stages admitted.
 *
 * In fleet mode with leases (docs/fleet.md) the reservation comes out of what this replica
 * holds on lease; when that falls short and the fleet is not known to be out, the main thread
 * is renewing the lease: the stage answers WAIT and the server parks the request until the
 * lease covers it (server/fleet/budget-park.ts, BUDGET_LEASE_WAIT_MS). Without a wait, after
 * it, or while Redis is unreachable with BUDGET_FAIL_MODE=closed, the answer is 503
 * GW_ERR_BUDGET_UNAVAILABLE with retry-after 1, never a 429 that would claim the budget is spent.
 */
import { estimateInputTokens, LEASE_SHORT, LIMIT_NAMES, OK, type BudgetLimits, type Budgets } from "../../budget.js";
import { modelAllowed } from "../../keys.js";
import type { PriceTable } from "../../pricing.js";
import { BLOCK_LEASE_SHORT, BLOCK_UNAVAILABLE, type UsageMetrics } from "../../usage-metrics.js";
import { codeNumber, CONTINUE, WAIT } from "../codes.js";
import type { Stage } from "../pipeline.js";
import type { RequestState } from "../state.js";

const RETRY_AFTER_1 = ["retry-after", "1"];
const E_UNAVAILABLE = codeNumber("GW_ERR_BUDGET_UNAVAILABLE");
const E_EXCEEDED = codeNumber("GW_ERR_BUDGET_EXCEEDED");
const E_FORBIDDEN = codeNumber("GW_ERR_AUTH_MODEL_FORBIDDEN");

export interface BudgetDeps {
  budgets: Budgets;
  prices: PriceTable;
  usage: UsageMetrics;
  /** BUDGET_FAIL_MODE=closed: refuse budgeted keys while the ledger is down. */
  failClosed: boolean;
  /** BUDGET_LEASE_WAIT_MS > 0: a lease-short reservation answers WAIT (the server parks it) instead of 503. */
  leaseWait?: boolean;
}

/** Count spend in the key's slot; refuse a budget already used up (before reading the body). */
export function budgetStage(d: BudgetDeps): Stage {
  return {
    name: "budget",
    run(s) {
      const vk = s.key?.virtual ?? null;
      if (vk === null) return CONTINUE;
      if (!vk.budgeted) {
        s.budgetSlot = s.key!.index;
        return CONTINUE;
      }
      if (d.failClosed && !d.usage.ledgerOk()) {
        d.usage.blocked(BLOCK_UNAVAILABLE);
        s.errHeaders = RETRY_AFTER_1;
        return E_UNAVAILABLE;
      }
      const over = d.budgets.exhausted(s.key!.index, vk.budget);
      if (over !== OK) return refuse(d, s, over, vk.budget);
      s.budgetSlot = s.key!.index;
      return CONTINUE;
    },
    settle(s: RequestState) {
      if (s.budgetSlot >= 0) d.budgets.charge(s.budgetSlot, s.chargedTokens, s.chargedMicros);
    },
  };
}

/** A virtual key's model allowlist, once the route named the model. */
export const permitStage: Stage = {
  name: "permit",
  run(s) {
    const vk = s.key?.virtual ?? null;
    if (vk === null || modelAllowed(vk.models, s.model!)) return CONTINUE;
    s.errMessage = `this key may not use model ${JSON.stringify(s.model).slice(0, 200)}`;
    return E_FORBIDDEN;
  },
  settle: null,
};

/**
 * Reserve the worst case: the body's tokens at the dearer of input and cache-write prices,
 * plus max_tokens of output. Given back after the reply (the budget stage charges the real use).
 */
export function reserveStage(d: BudgetDeps): Stage {
  return {
    name: "reserve",
    run(s) {
      const vk = s.key?.virtual ?? null;
      if (vk === null || !vk.budgeted) return CONTINUE;
      const p = d.prices.lookup(s.model!);
      const inTok = estimateInputTokens(s.body!.length);
      const parsed = s.parsed!;
      const mt = parsed.max_tokens ?? parsed.max_completion_tokens; // the latter on /v1/chat/completions
      const maxTok = typeof mt === "number" && mt > 0 ? Math.ceil(mt) : 0;
      const micros = Math.ceil(inTok * (p.input > p.cacheWrite ? p.input : p.cacheWrite) + maxTok * p.output);
      const over = d.budgets.reserve(s.key!.index, vk.budget, inTok + maxTok, micros);
      if (over === LEASE_SHORT) {
        s.errMessage = "this key's budget share is being renewed from the fleet (or cannot be right now); retry shortly";
        s.errHeaders = RETRY_AFTER_1;
        // The lease is on its way: wait for it (the park counts a refusal after its bound). Not on a dead Redis.
        if (d.leaseWait === true && !d.budgets.redisDown()) return WAIT;
        d.usage.blocked(BLOCK_LEASE_SHORT);
        return E_UNAVAILABLE;
      }
      if (over !== OK) return refuse(d, s, over, vk.budget);
      s.reservedTokens = inTok + maxTok;
      s.reservedMicros = micros;
      s.leaseDay = d.budgets.leaseDay;
      return CONTINUE;
    },
    settle(s: RequestState) {
      if (s.budgetSlot >= 0 && (s.reservedTokens > 0 || s.reservedMicros > 0)) {
        d.budgets.release(s.budgetSlot, s.reservedTokens, s.reservedMicros);
        const vk = s.key?.virtual ?? null;
        if (s.leaseDay >= 0 && vk !== null)
          d.budgets.settleLease(s.budgetSlot, vk.budget, s.leaseDay, s.reservedTokens, s.reservedMicros, s.chargedTokens, s.chargedMicros);
      }
    },
  };
}

/** 429 GW_ERR_BUDGET_EXCEEDED naming the limit and when its window resets. */
function refuse(d: BudgetDeps, s: RequestState, which: number, b: BudgetLimits): number {
  d.usage.blocked(which);
  const resets = d.budgets.resetsAt(which);
  const name = LIMIT_NAMES[which]!;
  const cap =
    which === 0
      ? `${b.tokensPerDay} tokens`
      : which === 1
        ? `${b.tokensPerMonth} tokens`
        : which === 2
          ? `$${(b.microsPerDay / 1e6).toFixed(2)}`
          : `$${(b.microsPerMonth / 1e6).toFixed(2)}`;
  const at = new Date(resets).toISOString().replace(/\.\d{3}Z$/, "Z");
  const secs = Math.max(1, Math.ceil((resets - Date.now()) / 1000));
  s.errMessage = `budget exceeded: this key's ${name} limit (${cap}) is used up, counting requests in flight; it resets at ${at} (UTC)`;
  s.errHeaders = ["retry-after", String(secs), "x-should-retry", "false"];
  return E_EXCEEDED;
}
