/**
 * HTTP/2 to the upstreams that offer it (`UPSTREAM_HTTP2=auto`): one h2 connection carries
 * many streams, so thousands of long SSE streams need a few upstream sockets instead of one
 * each (docs/performance.md "HTTP/2 to the upstream"). Off by default: undici 7.30 ends every
 * stream in flight on a connection that gets a graceful GOAWAY (nodejs/undici#5089), and an h2
 * request costs about twice the CPU of an HTTP/1.1 one.
 *
 * Undici negotiates h2 by ALPN over TLS only (cleartext h2c would need prior knowledge, which
 * nothing here can know), so `http:` origins stay HTTP/1.1. Undici's pool, left alone, would
 * not multiplex, and this module changes three things, per connection once it knows:
 * - `pipelining: 1` (right for HTTP/1.1: one request per connection) caps the requests a client
 *   runs at once; an h2 connection gets min(`UPSTREAM_HTTP2_STREAMS`, the server's
 *   SETTINGS_MAX_CONCURRENT_STREAMS) once the server's SETTINGS arrive, and the pool opens
 *   another connection when one carries that many. Streams above the server's limit would be
 *   refused (REFUSED_STREAM) or wait in nghttp2's queue, a hidden queue again.
 * - an h2 session runs one non-idempotent request (every POST) at a time. Requests are marked
 *   idempotent, which in undici only lifts that rule (undici retries nothing on its own; the
 *   gateway's retries are server/call.ts's). Over HTTP/1.1 the mark changes nothing: such a
 *   client still runs one request at a time.
 * - undici counts a connection still in its handshake as busy, so a burst opens one connection
 *   per request. The pool's first connection is therefore a probe: requests that arrive before
 *   its handshake and SETTINGS wait for them (milliseconds; at most the connect timeout), then
 *   go out multiplexed if it negotiated h2, or each on its own connection as before if not (or
 *   if it failed). Once the origin is known to speak h2, a new connection takes its share of
 *   requests while it connects.
 */
import { createRequire } from "node:module";
import type { ClientHttp2Session, Settings } from "node:http2";
import { Client, Pool, type Dispatcher, type buildConnector } from "undici";
import type { GatewayConfig } from "../core/config.js";

/** Where undici keeps a client's h2 session (undici is pinned; test/server/upstream-h2.test.ts breaks if this moves). */
const kHTTP2Session = (createRequire(import.meta.url)("undici/lib/core/symbols.js") as { kHTTP2Session: symbol }).kHTTP2Session;

/** What one pool has learnt about its origin. */
interface Origin {
  /** null until a connection has negotiated (and, for h2, received the server's SETTINGS). */
  h2: boolean | null;
  /** Streams per h2 connection: min(UPSTREAM_HTTP2_STREAMS, the server's limit). */
  cap: number;
}

type Held = [Dispatcher.DispatchOptions, Dispatcher.DispatchHandler];

/** A client whose requests may share an h2 session. */
class MultiplexClient extends Client {
  constructor(
    url: URL,
    opts: Client.Options,
    private readonly origin: Origin,
  ) {
    super(url, opts);
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    opts.idempotent = true; // the options object is the attempt's own (server/upstream.ts dispatchAttempt)
    if (super.dispatch(opts, handler)) return true;
    // Busy by undici's measure, which includes "still connecting": to an origin known to
    // speak h2, a connection takes up to its share of requests while it connects.
    return this.origin.h2 === true && !this.closed && !this.destroyed && this.stats.size < this.origin.cap;
  }

  /**
   * Undici defers some drains to a microtask; with the requests taken above, such a drain can
   * land after the connection was filled again, and the pool would queue a request on a full
   * connection behind a whole stream. A drain while full is dropped: the next one comes when a
   * stream ends.
   */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "drain" && this.origin.h2 === true && this.stats.size >= this.origin.cap) return false;
    return (super.emit as (e: string | symbol, ...a: unknown[]) => boolean).call(this, event, ...args);
  }
}

/** A pool that may speak h2; its first connection is the probe (see the header). */
class Http2Pool extends Pool {
  /** Requests waiting for the probe (null: no probe running). */
  private held: Held[] | null = null;
  constructor(
    url: string,
    opts: Pool.Options,
    private readonly origin: Origin,
  ) {
    super(url, opts);
  }

  override dispatch(opts: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    if (this.origin.h2 !== null) return super.dispatch(opts, handler);
    if (this.held !== null) {
      this.held.push([opts, handler]);
      return true;
    }
    this.held = [];
    return super.dispatch(opts, handler); // opens the probe connection
  }

  /** The probe has its answer (h2 with SETTINGS, HTTP/1.1, or a failure): what waited goes out. */
  release(): void {
    const held = this.held;
    this.held = null;
    if (held !== null) for (const [o, h] of held) super.dispatch(o, h);
  }

  override close(): Promise<void>;
  override close(callback: () => void): void;
  override close(callback?: () => void): Promise<void> | void {
    this.release(); // a closing pool refuses them (UND_ERR_CLOSED: local, never the provider's fault)
    return callback === undefined ? super.close() : super.close(callback);
  }
}

/** The pool for one upstream origin: able to speak HTTP/2 when the setting and the origin allow it. */
export function upstreamPool(cfg: GatewayConfig, url: string, options: Pool.Options): Pool {
  if (cfg.upstream_http2 === "off" || !url.startsWith("https:")) return new Pool(url, options);
  const streams = cfg.upstream_http2_streams;
  const origin: Origin = { h2: null, cap: streams };
  // After undici's own reaction (a deferred drain) has run, so the pool sees the freed capacity.
  const release = (): void => queueMicrotask(() => pool.release());
  /** Once `client`'s handshake picked a protocol: its request cap, and the probe's answer. */
  const negotiated = (client: Client, h2: boolean): void => {
    client.pipelining = 1; // h2 too, until the server says how many streams it takes
    // No session where undici kept it: one stream at a time, correct but not multiplexed (the test catches it).
    const session = h2 ? (client as unknown as Record<symbol, ClientHttp2Session | undefined>)[kHTTP2Session] : undefined;
    if (session === undefined) {
      origin.h2 = false;
      return release();
    }
    session.on("remoteSettings", (s: Settings) => {
      origin.cap = Math.max(1, Math.min(streams, s.maxConcurrentStreams ?? streams));
      origin.h2 = true;
      client.pipelining = origin.cap;
      release();
    });
    session.once("close", release);
  };
  const pool: Http2Pool = new Http2Pool(
    url,
    {
      ...options,
      allowH2: true,
      maxConcurrentStreams: streams,
      factory: (o, opts) => {
        const connect = (opts as Client.Options).connect as buildConnector.connector;
        const client: Client = new MultiplexClient(
          o as URL,
          {
            ...(opts as Client.Options),
            connect: (co, cb) =>
              connect(co, (...args) => {
                cb(...args); // undici sets the connection up (the h2 session, for h2)
                if (args[1] === null || client.destroyed) return release();
                negotiated(client, (args[1] as { alpnProtocol?: string | false }).alpnProtocol === "h2");
              }),
          },
          origin,
        );
        return client;
      },
    },
    origin,
  );
  return pool;
}
