/**
 * The pipelines of one acceptor thread, decided once at start-up: which stages exist
 * depends on the config (no keys: no authentication; no billing: no budget stages), so a
 * disabled feature costs nothing per request. One pipeline per route kind; the routes
 * without admission (health, metrics, models, MCP, admin) get `plain`, which only prices
 * and runs the taps.
 */
import type { KeyIndex } from "../auth.js";
import type { Metrics } from "../metrics.js";
import type { Limits, RateLimiter } from "../ratelimit.js";
import type { Router } from "../routing.js";
import type { Shedder } from "../shedder.js";
import { validateCountTokensRequest, validateMessagesRequest } from "../validate.js";
import { validateChatRequest } from "../translate/validate-openai.js";
import { Pipeline, type Pricer, type Stage, type Tap } from "./pipeline.js";
import { authenticateStage, rateLimitStage } from "./stages/access.js";
import { budgetStage, permitStage, reserveStage, type BudgetDeps } from "./stages/budget.js";
import { contentTypeStage, drainingStage, framingStage, lengthStage, shedStage } from "./stages/gate.js";
import { parseStage, routeStage, validateStage } from "./stages/request.js";

export interface PipelineDeps {
  maxBodyBytes: number;
  limits: Limits;
  /** The thread's draining flag, read per request. */
  flags: { readonly draining: boolean };
  shedder: Shedder;
  metrics: Metrics;
  keys: KeyIndex;
  limiter: RateLimiter;
  router: Router;
  /** Budgets of virtual keys; null = no admin API, no budget stages. */
  billing: BudgetDeps | null;
  /** Prices the reply's usage before settlement (server/usage-sink.ts); null = off. */
  pricer: Pricer | null;
  /** After settlement, for every request: ledger row, log line (in this order). */
  taps: readonly Tap[];
}

export interface Pipelines {
  messages: Pipeline;
  chat: Pipeline;
  countTokens: Pipeline;
  plain: Pipeline;
}

export function buildPipelines(d: PipelineDeps): Pipelines {
  const auth = d.keys.enabled || d.billing !== null;
  const rated = auth && (d.billing !== null || d.limits.requestsPerMinute > 0 || d.limits.tokensPerMinute > 0);
  const draining = drainingStage(d.flags);
  const shed = shedStage(d.shedder, d.metrics);
  const access: Stage[] = [];
  if (auth) access.push(authenticateStage(d.keys));
  if (rated) access.push(rateLimitStage(d.limiter, d.limits, d.metrics));
  if (auth && d.billing !== null) access.push(budgetStage(d.billing));
  const length = lengthStage(d.maxBodyBytes);
  const route = routeStage(d.router);
  const make = (ledger: boolean, validate: (p: unknown) => string | null, reserve: boolean): Pipeline => {
    const head = [framingStage, draining, shed, ...access, contentTypeStage(ledger), length];
    const body = [parseStage, validateStage(validate), route];
    if (auth && d.billing !== null) {
      body.push(permitStage);
      if (reserve) body.push(reserveStage(d.billing));
    }
    return new Pipeline(head, body, d.pricer, d.taps);
  };
  return {
    messages: make(true, validateMessagesRequest, true),
    chat: make(true, validateChatRequest, true),
    countTokens: make(false, validateCountTokensRequest, false),
    plain: new Pipeline([], [], d.pricer, d.taps),
  };
}
