/**
 * The response cache on an acceptor thread (docs/cache.md). `intercept` runs just before a
 * request is dispatched upstream: it decides the mode (core/cache/policy.ts), computes the
 * key, asks the owner thread, and on a hit answers the client itself (the stored JSON body,
 * or the stored SSE events with their framing, `x-portcullis-cache: hit` and `age`). A hit
 * costs no provider tokens: the request settles at 0 and its ledger row says `cache_hit` with
 * the tokens it saved. On a miss it sets a CacheTap on the request and lets the call go on;
 * the upstream relay feeds the tap, which stores the answer only if it is a complete success
 * (status 200 JSON, or an SSE stream that saw message_stop and no error event) from the
 * provider the key names, and no larger than CACHE_MAX_ENTRY_BYTES.
 */
import type { CacheConfig } from "../../core/cache/config.js";
import { R_CHAT_COMPLETIONS, R_MESSAGES } from "../../core/metrics.js";
import { encodeEntry, entryBody, entryMeta, KIND_JSON, KIND_SSE } from "../../core/cache/entry.js";
import { cacheKey } from "../../core/cache/key.js";
import { C_BAD_HEADER, C_BYPASS, C_OFF, C_REFRESH, cacheMode } from "../../core/cache/policy.js";
import { CR_BYPASS, CR_HIT, CR_MISS, type CacheStats } from "../../core/cache/stats.js";
import type { Target } from "../../core/routing.js";
import type { RequestCtx } from "../context.js";
import { hasErrorEvent, hasMessageStop } from "../upstream-errors.js";
import type { CacheClient } from "./client.js";

/** What the front door read from the request (server/app.ts Incoming). */
export interface CacheIncoming {
  fwd: readonly string[];
  clientKey: string;
  upstreamKey: string;
  cacheHeader: string;
  cacheControl: string;
  query: string;
  key: { digest: Buffer; virtual: { cache?: "on" | "off" | null } | null } | null;
}

const MISS = ["x-portcullis-cache", "miss"] as const;
const BYPASS = ["x-portcullis-cache", "bypass"] as const;
const SSE_TYPE = "text/event-stream; charset=utf-8";

export class ResponseCache {
  readonly cfg: CacheConfig;
  readonly client: CacheClient;
  readonly stats: CacheStats;

  constructor(cfg: CacheConfig, client: CacheClient, stats: CacheStats) {
    this.cfg = cfg;
    this.client = client;
    this.stats = stats;
  }

  /**
   * true: the cache took the request over (it answers a hit, refuses a bad header, or calls
   * `go` after a miss); false: dispatch now (`ctx.cacheTap` is set when the answer is to be stored).
   */
  intercept(ctx: RequestCtx, inc: CacheIncoming, t: Target, parsed: Record<string, unknown>, body: Buffer, go: () => void): boolean {
    // The built-in mock costs nothing: never cached.
    if ((ctx.route !== R_MESSAGES && ctx.route !== R_CHAT_COMPLETIONS) || t.provider.type === "mock") return false;
    const mode = cacheMode({
      enabled: this.cfg.enabled,
      candidates: this.cfg.candidates,
      keySetting: inc.key?.virtual?.cache ?? null,
      header: inc.cacheHeader,
      cacheControl: inc.cacheControl,
      temperature: parsed.temperature,
    });
    if (mode === C_OFF) return false;
    if (mode === C_BAD_HEADER) {
      ctx.fail(
        "GW_ERR_REQ_CACHE_HEADER",
        `x-portcullis-cache must be use, refresh or bypass, got ${JSON.stringify(inc.cacheHeader.slice(0, 40))}`,
      );
      return true;
    }
    if (mode === C_BYPASS) {
      this.stats.count(CR_BYPASS);
      ctx.cacheHeaders = BYPASS;
      return false;
    }
    const key = cacheKey(
      {
        route: ctx.route,
        query: inc.query,
        provider: t.provider.name,
        upstreamModel: t.upstreamModel ?? (parsed.model as string),
        version: header(inc.fwd, "anthropic-version"),
        beta: header(inc.fwd, "anthropic-beta"),
        scope: this.scope(inc, t),
      },
      body,
    );
    const stream = parsed.stream === true;
    const tap = new CacheTap(this, key, t.provider.index, stream, ctx.route === R_CHAT_COMPLETIONS);
    if (mode === C_REFRESH) {
      this.stats.count(CR_MISS);
      ctx.cacheTap = tap;
      ctx.cacheHeaders = MISS;
      return false;
    }
    this.client.get(key, (entry, age) => {
      if (ctx.aborted || ctx.done) return;
      try {
        const meta = entry === null ? null : entryMeta(entry);
        if (meta !== null && meta.kind === (stream ? KIND_SSE : KIND_JSON)) {
          this.stats.count(CR_HIT);
          ctx.provider = t.provider.index;
          ctx.providerName = t.provider.name;
          // Nothing was spent: the usage is 0, and the row records what the hit saved.
          ctx.cacheHit = true;
          ctx.savedTokens = meta.input + meta.output + meta.cacheWrite + meta.cacheRead;
          ctx.inputTokens = 0;
          ctx.outputTokens = 0;
          ctx.cacheCreationTokens = 0;
          ctx.cacheReadTokens = 0;
          const a = String(age);
          if (stream) ctx.send(200, SSE_TYPE, entryBody(entry!), ["cache-control", "no-cache", "x-portcullis-cache", "hit", "age", a]);
          else ctx.send(200, "application/json", entryBody(entry!), ["x-portcullis-cache", "hit", "age", a]);
          return;
        }
        this.stats.count(CR_MISS);
        ctx.cacheTap = tap;
        ctx.cacheHeaders = MISS;
        go();
      } catch (e) {
        // A message callback: nothing may escape it.
        ctx.shared.log.error({ req_id: ctx.id, err: String((e as Error)?.stack ?? e) }, "cache lookup failed");
        ctx.fail("GW_ERR_SERVER_INTERNAL");
      }
    });
    return true;
  }

  /**
   * Whose entries these are: the client's gateway key (its SHA-256 digest: unlike a static key's
   * positional id, it stays the same across restarts, reordered GATEWAY_API_KEYS and replicas
   * sharing Redis), else the key it presented.
   * A provider that takes the caller's own key always scopes by that key, even with
   * CACHE_SCOPE=shared: a cached answer must never stand in for the provider's own auth check.
   */
  private scope(inc: CacheIncoming, t: Target): string {
    const own = inc.key !== null ? "d:" + inc.key.digest.toString("base64") : "k:" + inc.clientKey;
    const pass = t.provider.authHeaders === null ? "|u:" + (inc.upstreamKey !== "" ? inc.upstreamKey : inc.clientKey) : "";
    return (this.cfg.scope === "shared" ? "" : own) + pass;
  }
}

function header(fwd: readonly string[], name: string): string {
  for (let i = 0; i < fwd.length; i += 2) if (fwd[i] === name) return fwd[i + 1]!;
  return "";
}

const OPENAI_DONE = Buffer.from("data: [DONE]");
const OPENAI_ERROR = Buffer.from('data: {"error"');

/**
 * Collects one answer on its way to the client and stores it if it ends as a complete success.
 * The stream's format is the client's: Anthropic events on /v1/messages (complete at
 * message_stop, spoilt by `event: error`), OpenAI chunks on /v1/chat/completions (complete at
 * `data: [DONE]`, spoilt by an error chunk).
 */
export class CacheTap {
  private readonly cache: ResponseCache;
  private readonly key: string;
  private readonly provider: number;
  private readonly stream: boolean;
  private readonly openai: boolean;
  private chunks: Buffer[] = [];
  private bytes = 0;
  /** Too large, or an error event went by: nothing will be stored. */
  private spoilt = false;
  private stopped = false;

  constructor(cache: ResponseCache, key: string, provider: number, stream: boolean, openai: boolean) {
    this.cache = cache;
    this.key = key;
    this.provider = provider;
    this.stream = stream;
    this.openai = openai;
  }

  /** Whole SSE events as relayed to the client. */
  chunk(b: Buffer | string): void {
    if (typeof b === "string") b = Buffer.from(b);
    if (this.spoilt) return;
    this.bytes += b.byteLength;
    if (this.bytes > this.cache.cfg.maxEntryBytes || (this.openai ? b.includes(OPENAI_ERROR) : hasErrorEvent(b))) return this.spoil();
    if (this.openai ? b.includes(OPENAI_DONE) : hasMessageStop(b)) this.stopped = true;
    this.chunks.push(Buffer.from(b)); // a copy: the relay's buffers are not ours to keep
  }

  private spoil(): void {
    this.spoilt = true;
    this.chunks = [];
  }

  /** A JSON answer sent to the client. */
  json(ctx: RequestCtx, status: number, body: Uint8Array): void {
    if (this.stream || status !== 200 || body.byteLength > this.cache.cfg.maxEntryBytes) return;
    this.store(ctx, KIND_JSON, [body], body.byteLength);
  }

  /** The stream ended normally (after its last events, `tail`, if any). */
  sseEnded(ctx: RequestCtx, tail: Buffer | string | null): void {
    if (tail !== null && tail.length > 0) this.chunk(tail);
    if (!this.stream || this.spoilt || !this.stopped) return;
    this.store(ctx, KIND_SSE, this.chunks, this.bytes);
    this.chunks = [];
  }

  private store(ctx: RequestCtx, kind: number, parts: readonly Uint8Array[], bytes: number): void {
    // A fallback's answer is not the answer of the provider this key names.
    if (ctx.provider !== this.provider || ctx.aborted) return;
    const entry = encodeEntry(
      {
        kind,
        storedAt: 0,
        input: ctx.inputTokens,
        output: ctx.outputTokens,
        cacheWrite: ctx.cacheCreationTokens,
        cacheRead: ctx.cacheReadTokens,
      },
      parts,
      bytes,
    );
    this.cache.client.put(this.key, entry);
  }
}
