/**
 * Request shapers for the providers that do not take Anthropic's request as is (Bedrock,
 * Vertex, and first-wave providers given a beta_policy): for one attempt, the path, headers
 * and body to send, and the reply decorator (server/providers/reply.ts). Built once per
 * acceptor thread from the provider table; the credential refreshers they own run on
 * unref'd timers, off the request path. The beta/field policy
 * is applied here, and what it drops is counted in provider_policy_dropped_total and logged
 * once per value (per thread), not per request.
 */
import type { Dispatcher } from "undici";
import type { IncomingHttpHeaders } from "node:http";
import type { Logger } from "pino";
import { applyPolicy, isPassThrough, type PolicyResult } from "../../core/beta-policy.js";
import { authHeadersFor } from "../../core/providers.js";
import { spliceModel } from "../../core/json-splice.js";
import { estimateInputTokens } from "../../core/budget.js";
import { PK_BETA, PK_FIELD, type Metrics } from "../../core/metrics.js";
import type { ProviderRuntime } from "../../core/providers.js";
import { awsErrorMessage, bedrockBody, bedrockPath, countTokensReply, mapException } from "../../core/providers/bedrock/request.js";
import { googleErrorMessage, vertexBody, vertexPath } from "../../core/providers/vertex/request.js";
import { AwsCredentials, BedrockSigner } from "./aws-auth.js";
import { GcpTokens } from "./gcp-auth.js";
import { anthropicError, genericError, isAnthropicError, ProviderReply, type ReplyShape } from "./reply.js";

export interface ShapeInput {
  /** The client's body as received, and parsed. */
  raw: Buffer;
  parsed: Record<string, unknown>;
  /** Client headers forwarded as received (flat list), the query string and the client's key. */
  fwd: readonly string[];
  query: string;
  clientKey: string;
  /** The model to ask the provider for (the route's, or the client's). */
  model: string;
  /** The client's anthropic-beta header, as received ("" if none). */
  betaHeader: string;
  count: boolean;
  requestId: string;
  /** The auth headers of the attempt's pool key (core/keypool.ts); null = the provider's own. */
  auth?: readonly string[] | null;
}

export interface Prepared {
  path: string;
  /** Flat [name, value, ...] list. */
  headers: string[];
  body: Buffer;
  wrap: (h: Dispatcher.DispatchHandler) => Dispatcher.DispatchHandler;
}

export interface Shaper {
  prepare(inp: ShapeInput): Prepared | Promise<Prepared>;
}

const MAX_LOGGED = 1024;

/** Counts every drop, logs each (provider, kind, value) the first time this thread sees it. */
export class PolicyReporter {
  private readonly seen = new Set<string>();
  constructor(
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {}

  report(p: ProviderRuntime, r: PolicyResult): void {
    for (const b of r.droppedBetas) this.one(p, PK_BETA, "beta", b);
    for (const f of r.droppedFields) this.one(p, PK_FIELD, "field", f);
  }

  private one(p: ProviderRuntime, kind: number, kindName: string, value: string): void {
    this.metrics.policyDropped(p.index, kind);
    const key = `${p.index}\0${kindName}\0${value}`;
    if (this.seen.has(key) || this.seen.size >= MAX_LOGGED) return;
    this.seen.add(key);
    this.log.warn(
      { provider: p.name, kind: kindName, value: value.slice(0, 100) },
      "dropped by the provider's beta/field policy (logged once)",
    );
  }
}

function headerStr(h: IncomingHttpHeaders, name: string): string {
  const v = h[name];
  return typeof v === "string" ? v : Array.isArray(v) ? (v[0] ?? "") : "";
}

/** AWS errors (`x-amzn-errortype` + `{"message"}`) in Anthropic's shape, with the mapped status. */
function bedrockError(status: number, headers: IncomingHttpHeaders, body: Buffer, requestId: string): { status: number; body: Buffer } {
  if (isAnthropicError(body)) return { status, body };
  const name = headerStr(headers, "x-amzn-errortype");
  const m = name === "" ? null : mapException(name);
  const msg = awsErrorMessage(body) || name.split(":")[0] || `the provider answered ${status}`;
  if (m === null) return genericError(status, msg, requestId);
  return { status: m.status, body: anthropicError(m.type, msg, requestId) };
}
const BEDROCK_STREAM: ReplyShape = { eventStream: true, rewriteOk: null, errorBody: bedrockError };

/**
 * CountTokens: `{"inputTokens"}` becomes `{"input_tokens"}`. For a model Bedrock cannot count
 * for ("doesn't support counting tokens"), the answer is a local estimate from the body size,
 * marked `"estimate":"local"`, so Claude Code's context accounting keeps working.
 */
function bedrockCountShape(estimate: number): ReplyShape {
  return {
    eventStream: false,
    rewriteOk: countTokensReply,
    errorBody(status, headers, body, requestId) {
      if (status === 400 && /support/i.test(awsErrorMessage(body)) && /count/i.test(awsErrorMessage(body))) {
        return { status: 200, body: Buffer.from(`{"input_tokens":${estimate},"estimate":"local"}`) };
      }
      return bedrockError(status, headers, body, requestId);
    },
  };
}

const VERTEX_SHAPE: ReplyShape = {
  eventStream: false,
  rewriteOk: null,
  errorBody(status, _headers, body, requestId) {
    if (isAnthropicError(body)) return { status, body };
    return genericError(status, googleErrorMessage(body) || `the provider answered ${status}`, requestId);
  },
};

function bedrockShaper(p: ProviderRuntime, reporter: PolicyReporter, log: Logger): Shaper {
  const c = p.config;
  const bearer = c.apiKey;
  const creds = bearer === null ? new AwsCredentials(p.name, log) : null;
  const signer = creds === null ? null : new BedrockSigner(p.origin, c.region!, creds);
  return {
    prepare(inp) {
      const r = applyPolicy(p.policy, inp.betaHeader, inp.parsed);
      reporter.report(p, r);
      const stream = !inp.count && inp.parsed.stream === true;
      const path = bedrockPath(c.basePath, inp.model, stream, inp.count);
      const body = bedrockBody(inp.parsed, r.betas, r.droppedFields, inp.count);
      const accept = stream ? "application/vnd.amazon.eventstream" : "application/json";
      const shape = inp.count ? bedrockCountShape(estimateInputTokens(inp.raw.length)) : BEDROCK_STREAM;
      const wrap = (h: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler => new ProviderReply(h, shape, inp.requestId);
      if (signer === null) {
        const auth = inp.auth ?? ["authorization", `Bearer ${bearer}`];
        return {
          path,
          body,
          wrap,
          headers: ["content-type", "application/json", "accept", accept, "x-request-id", inp.requestId, ...auth],
        };
      }
      return signer.sign(path, { "content-type": "application/json", accept }, body).then((h) => {
        const headers: string[] = ["x-request-id", inp.requestId];
        for (const k in h) if (k !== "host") headers.push(k, h[k]!);
        return { path, body, wrap, headers };
      });
    },
  };
}

function vertexShaper(p: ProviderRuntime, reporter: PolicyReporter, log: Logger): Shaper {
  const c = p.config;
  const tokens = new GcpTokens(p.name, c.credentialsFile ?? null, log);
  const wrap =
    (id: string) =>
    (h: Dispatcher.DispatchHandler): Dispatcher.DispatchHandler =>
      new ProviderReply(h, VERTEX_SHAPE, id);
  const build = (inp: ShapeInput, token: string): Prepared => {
    const r = applyPolicy(p.policy, inp.betaHeader, inp.parsed);
    reporter.report(p, r);
    const stream = !inp.count && inp.parsed.stream === true;
    const headers = ["content-type", "application/json", "x-request-id", inp.requestId, "authorization", `Bearer ${token}`];
    if (r.betas.length > 0) headers.push("anthropic-beta", r.betas.join(","));
    return {
      path: vertexPath(c.basePath, c.projectId!, c.region!, inp.model, stream, inp.count),
      body: vertexBody(inp.parsed, inp.model, r.droppedFields, inp.count),
      headers,
      wrap: wrap(inp.requestId),
    };
  };
  return {
    prepare(inp) {
      const t = tokens.current();
      return t !== null ? build(inp, t) : tokens.get().then((tok) => build(inp, tok));
    },
  };
}

/**
 * A first-wave provider (anthropic, azure-anthropic, databricks) with a beta_policy in the
 * config: the same request as without one, but with the anthropic-beta header filtered and
 * the policy's fields removed (only then is the body re-serialised).
 */
function policyShaper(p: ProviderRuntime, reporter: PolicyReporter): Shaper {
  return {
    prepare(inp) {
      const r = applyPolicy(p.policy, inp.betaHeader, inp.parsed);
      reporter.report(p, r);
      const headers = ["content-type", "application/json", "x-request-id", inp.requestId];
      for (let i = 0; i < inp.fwd.length; i += 2) if (inp.fwd[i] !== "anthropic-beta") headers.push(inp.fwd[i]!, inp.fwd[i + 1]!);
      if (r.betas.length > 0) headers.push("anthropic-beta", r.betas.join(","));
      const auth = inp.auth ?? authHeadersFor(p, inp.clientKey === "" ? null : inp.clientKey);
      for (let i = 0; i < auth.length; i++) headers.push(auth[i]!);
      let body: Buffer;
      if (r.droppedFields.length > 0) {
        const out: Record<string, unknown> = {};
        for (const k in inp.parsed) if (!r.droppedFields.includes(k)) out[k] = inp.parsed[k];
        out.model = inp.model;
        body = Buffer.from(JSON.stringify(out));
      } else body = inp.model !== inp.parsed.model ? spliceModel(inp.raw, inp.parsed, inp.model) : inp.raw;
      const path = (inp.count ? p.countTokensPath : p.messagesPath) + (inp.query === "" ? "" : "?" + inp.query);
      return { path, headers, body, wrap: (h) => h };
    },
  };
}

/** One shaper per provider index (null where the provider takes Anthropic's request as is). */
export function buildShapers(providers: readonly ProviderRuntime[], metrics: Metrics, log: Logger): (Shaper | null)[] {
  const reporter = new PolicyReporter(metrics, log);
  const out: (Shaper | null)[] = [null];
  for (const p of providers) {
    if (p.type === "bedrock") out[p.index] = bedrockShaper(p, reporter, log);
    else if (p.type === "vertex") out[p.index] = vertexShaper(p, reporter, log);
    else if (p.type !== "mock" && !isPassThrough(p.policy)) out[p.index] = policyShaper(p, reporter);
    else out[p.index] = null;
  }
  return out;
}
