/**
 * Who is calling and how fast: the client key (static or virtual) and its per-minute
 * rate limits. Requests are charged at admission; tokens are charged after the reply, by
 * this stage's settlement, for exactly the requests it admitted.
 */
import type { KeyIndex } from "../../auth.js";
import { RJ_RATE_REQUESTS, RJ_RATE_TOKENS, R_CHAT_COMPLETIONS, R_MESSAGES, type Metrics } from "../../metrics.js";
import type { Limits, RateLimiter } from "../../ratelimit.js";
import { codeNumber, CONTINUE } from "../codes.js";
import type { Stage } from "../pipeline.js";
import type { RequestState } from "../state.js";

const E_MISSING = codeNumber("GW_ERR_AUTH_MISSING_KEY");
const E_INVALID = codeNumber("GW_ERR_AUTH_INVALID_KEY");
const E_RATE = codeNumber("GW_ERR_RATE_LIMITED");

/**
 * The client key (`s.clientKey`, read by the server from x-api-key or Authorization).
 * Present whenever keys can exist; a KeyIndex with no keys (and no admin API) admits all.
 */
export function authenticateStage(keys: KeyIndex): Stage {
  return {
    name: "authenticate",
    run(s) {
      if (!keys.enabled) return CONTINUE;
      if (s.clientKey === "") return E_MISSING;
      const k = keys.check(s.clientKey);
      if (k === null) return E_INVALID;
      s.key = k;
      s.keyId = k.id;
      if (s.route === R_MESSAGES || s.route === R_CHAT_COMPLETIONS) s.ledger = true;
      return CONTINUE;
    },
    settle: null,
  };
}

/** Per-key requests and tokens per minute (core/ratelimit.ts); a virtual key's own limits win. */
export function rateLimitStage(limiter: RateLimiter, limits: Limits, metrics: Metrics): Stage {
  const global = limits.requestsPerMinute > 0 || limits.tokensPerMinute > 0;
  return {
    name: "rate-limit",
    run(s) {
      const k = s.key;
      if (k === null) return CONTINUE;
      const kl = k.virtual?.rate ?? limits;
      if (kl === limits && !global) return CONTINUE;
      const v = limiter.admit(k.index, kl);
      if (!v.ok) {
        metrics.rejected(v.limit === "tokens" ? RJ_RATE_TOKENS : RJ_RATE_REQUESTS);
        s.errMessage = `${v.limit} per minute limit exceeded for this key`;
        s.errHeaders = rateHeaders(v.limit!, v.retryAfterMs, v.resetMs, kl);
        return E_RATE;
      }
      s.keyIndex = k.index;
      if (kl !== limits) s.rateLimits = kl;
      return CONTINUE;
    },
    settle(s: RequestState) {
      if (s.keyIndex < 0 || (s.inputTokens <= 0 && s.outputTokens <= 0)) return;
      limiter.chargeTokens(s.keyIndex, s.rateLimits ?? limits, Math.max(0, s.inputTokens) + Math.max(0, s.outputTokens));
    },
  };
}

/** 429 headers the SDKs understand: retry-after plus anthropic-ratelimit-*. */
function rateHeaders(limit: "requests" | "tokens", retryAfterMs: number, resetMs: number, l: Limits): string[] {
  const perMinute = limit === "requests" ? l.requestsPerMinute : l.tokensPerMinute;
  return [
    "retry-after",
    String(Math.max(1, Math.ceil(retryAfterMs / 1000))),
    `anthropic-ratelimit-${limit}-limit`,
    String(perMinute),
    `anthropic-ratelimit-${limit}-remaining`,
    "0",
    `anthropic-ratelimit-${limit}-reset`,
    new Date(Date.now() + Math.max(0, resetMs)).toISOString().replace(/\.\d{3}Z$/, "Z"),
  ];
}
