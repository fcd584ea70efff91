/**
 * One request's state as the admission pipeline and the settlement see it: what the
 * server read from the request (headers, body), what each stage decided, and what the
 * reply used. Pure data, no uWS: `server/context.ts` extends it with the response, and the
 * benchmark runs the same pipeline over a bare instance. Every field is set here (stable
 * shape); stages write details of a refusal into the `err*` fields and return a number.
 */
import type { KeyEntry } from "../auth.js";
import type { Limits } from "../ratelimit.js";
import type { Route, Target } from "../routing.js";
import type { Pipeline } from "./pipeline.js";

export class RequestState {
  readonly route: number;
  readonly t0: number;
  /** The pipeline this request runs (decided by its route); settlement runs its admitted stages. */
  pipeline: Pipeline | null = null;
  /** How many stages admitted this request, in pipeline order. */
  admitted = 0;

  // What the server read (before any stage runs).
  query = "";
  clientKey = "";
  /** The caller's own provider key for pass_through_key providers (never the gateway key). */
  upstreamKey = "";
  /** -1 when absent. */
  contentLength = -1;
  contentType = "";
  /** More than one Content-Length header, with different values. */
  lengthConflict = false;
  /** Client headers forwarded upstream, as name/value pairs. */
  fwd: string[] = [];
  body: Buffer | null = null;
  parsed: Record<string, unknown> | null = null;
  /** /v1/messages/count_tokens: nothing is reserved and the count path is used. */
  count = false;

  // What the stages decided.
  key: KeyEntry | null = null;
  /** The resolved route and its targets in the order to try. */
  resolved: Route | null = null;
  targets: readonly Target[] = [];
  /** A refusal's message (null = the catalogue's), extra headers and whether to close. */
  errMessage: string | null = null;
  errHeaders: string[] | null = null;
  errClose = false;

  // Accounting, read by the settlement and the taps.
  /** The gateway's own id (unique by construction: core/request-id.ts). */
  id = "";
  /** The client's well-formed x-request-id, kept beside the id; never trusted to be unique. */
  clientRequestId: string | null = null;
  aborted = false;
  provider = 0;
  providerName = "none";
  model: string | null = null;
  status = 0;
  inputTokens = -1;
  outputTokens = -1;
  cacheCreationTokens = -1;
  cacheReadTokens = -1;
  errorCode: string | null = null;
  /** Client key's index when rate limits apply, else -1. */
  keyIndex = -1;
  /** Per-key rate limits when the key has its own (virtual keys), else null = global. */
  rateLimits: Limits | null = null;
  /** The client key's id (for the ledger); null without auth. */
  keyId: string | null = null;
  /** x-claude-code-session-id, when sent. */
  sessionId: string | null = null;
  /** metadata.user_id of the body (the developer, as Claude Code sends it), when sent; capped at 200 characters. */
  userId: string | null = null;
  /** Budget slot of a virtual key (spend is counted there), else -1. */
  budgetSlot = -1;
  /** What admission reserved (given back and settled to real usage after the reply). */
  reservedTokens = 0;
  reservedMicros = 0;
  /** Fleet mode: the day whose budget lease the reservation came from, else -1. */
  leaseDay = -1;
  /** A provider's success whose usage could not be read: settled at the reservation, not 0. */
  usageUnreadable = false;
  /** What the request is charged, priced after the reply (before the budget settles). */
  chargedTokens = 0;
  chargedMicros = 0;
  /** Write a ledger row for this request (a /v1/messages call past auth). */
  ledger = false;
  /** Answered from the response cache: 0 provider tokens; `savedTokens` is what the stored answer cost. */
  cacheHit = false;
  savedTokens = 0;

  constructor(route: number, t0: number) {
    this.route = route;
    this.t0 = t0;
  }
}
