/**
 * One acceptor thread: a uWS app on the shared port. Talks to the main thread for
 * metrics rendering and shutdown. On drain it closes its own listen socket, refuses new
 * requests on open connections, lets the in-flight requests finish (bounded by
 * GRACEFUL_SHUTDOWN_TIMEOUT), closes every remaining socket and its upstream pools (bounded),
 * hands over its last ledger rows, flushes its log and reports; the thread then ends.
 */
import type { RenderKind } from "../workers/metrics-task.js";
import uWS, { type us_listen_socket } from "uWebSockets.js";
import { parentPort, workerData } from "node:worker_threads";
import type { GatewayConfig } from "../core/config.js";
import { G_ACTIVE, G_LOG_DROPPED, Metrics, MetricsLayout } from "../core/metrics.js";
import { Breakers, STATE_NAMES } from "../core/breaker.js";
import { Clock32, MicroClock } from "../core/clock.js";
import { RateLimiter } from "../core/ratelimit.js";
import { Shedder, verdictOf } from "../core/shedder.js";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { buildApp } from "./app.js";
import { Inflight, type Shared } from "./context.js";
import { createLogger, requestLogTap } from "./log.js";
import { Pools } from "./upstream.js";
import { deadlines } from "./deadlines.js";
import { KeyIndex } from "../core/auth.js";
import { Budgets } from "../core/budget.js";
import { entryOf, type KeyRecord } from "../core/keys.js";
import { PriceTable } from "../core/pricing.js";
import { UsageLayout, UsageMetrics } from "../core/usage-metrics.js";
import { startRecorder } from "./tracing/recorder.js";
import { UserMetrics } from "../core/user-metrics.js";
import type { AuditRow } from "../workers/ledger-task.js";
import { LedgerRing } from "../core/ledger-ring.js";
import type { AdminOp, AdminResult, KeyChange } from "./ledger.js";
import { UsageSink } from "./usage-sink.js";
import type { ProviderModels } from "../core/models.js";
import type { MessagePort } from "node:worker_threads";
import { CacheClient } from "./cache/client.js";
import { ResponseCache } from "./cache/gate.js";
import { CacheStats } from "../core/cache/stats.js";
import { KeyPools, type KeyPoolBuffers } from "../core/keypool.js";
import { buildProviders } from "../core/providers.js";
import { DeploymentState } from "../core/deployments.js";
import { heapNow, IdleReclaim, QUIET_MS, reclaimFields } from "./idle-reclaim.js";
import { mallocTrim } from "./malloc-trim.js";

export interface AcceptorData {
  cfg: GatewayConfig;
  sab: SharedArrayBuffer;
  breakerSab: SharedArrayBuffer;
  /** In flight and time to first byte per deployment (core/deployments.ts). */
  deploySab: SharedArrayBuffer;
  shedSab: SharedArrayBuffer;
  rateSab: SharedArrayBuffer;
  /** Budget counters (core/budget.ts) and token/cost counters (core/usage-metrics.ts). */
  budgetSab: SharedArrayBuffer;
  usageSab: SharedArrayBuffer;
  /** Upstream key pools' rest state and rpm/tpm buckets (core/keypool.ts). */
  keyPoolBufs: KeyPoolBuffers;
  /** Virtual keys live at start-up, with their slots. */
  keys: { record: KeyRecord; slot: number }[];
  clockBase: number;
  /** cgroup memory limit, else total memory (bytes). */
  memoryLimit: number;
  idPrefix: string;
  /** The providers' model lists known at spawn (refreshed by "models" messages). */
  models: ProviderModels[];
  port: number;
  /** METRICS_PORT as bound (a free port already picked for 0); null = health and metrics on `port`. */
  metricsPort: number | null;
  index: number;
  /** This thread's line to the response cache's owner (server/cache/owner.ts). */
  cachePort: MessagePort;
  /** This thread's ledger ring (core/ledger-ring.ts), drained by the main thread. */
  ledgerRing: SharedArrayBuffer;
}

export type ToMain =
  | { t: "listening"; port: number; metricsPort: number | null }
  | { t: "listen-failed"; port: number }
  | { t: "render"; id: number; kind: RenderKind }
  | { t: "drained"; forced: number }
  | { t: "audit"; audit: AuditRow[] }
  /** The ledger ring is past half full: drain it now rather than at the next tick. */
  | { t: "rows-ready" }
  | { t: "admin"; id: number; op: AdminOp }
  | { t: "keys-applied"; seq: number }
  /** Finished traced requests (server/tracing/record.ts); spans are built on the main thread. */
  | { t: "spans"; batch: unknown[] };

export type ToAcceptor =
  | { t: "rendered"; id: number; ok: true; body: string }
  | { t: "rendered"; id: number; ok: false; error: string }
  | { t: "drain" }
  | { t: "admin-result"; id: number; result: AdminResult }
  | { t: "keys"; seq: number; change: KeyChange }
  | { t: "models"; lists: ProviderModels[] };

const port = parentPort!;
const data = workerData as AcceptorData;
const cfg = data.cfg;
const metrics = new Metrics(
  new MetricsLayout(
    cfg.providers.map((p) => p.name),
    cfg.usage_metrics_user_label_max,
  ),
  data.sab,
);
const logger = createLogger({ level: cfg.log_level, file: cfg.log_file }, () => void Atomics.add(metrics.i32, G_LOG_DROPPED, 1));
const { log } = logger;
const pools = new Pools(cfg);
// OpenTelemetry (docs/tracing.md): only with an OTLP endpoint; otherwise nothing subscribes to the publish points.
// This thread only records; the main thread builds and exports the spans.
const tracing =
  cfg.tracing === null ? null : startRecorder(cfg.tracing, (batch) => port.postMessage({ t: "spans", batch } satisfies ToMain));
const clock = new Clock32(data.clockBase);
const breakers = new Breakers(
  data.breakerSab,
  {
    failureThreshold: cfg.circuit_breaker_failure_threshold,
    timeoutMs: cfg.circuit_breaker_timeout_ms,
    successThreshold: cfg.circuit_breaker_success_threshold,
    halfOpenProbes: cfg.circuit_breaker_half_open_probes,
  },
  clock,
);
breakers.onTransition = (b, from, to) => {
  log.warn({ provider: cfg.providers[b]?.name, from: STATE_NAMES[from], to: STATE_NAMES[to] }, "circuit breaker transition");
};
const shedSettings = {
  heapThreshold: cfg.load_shedding_heap_threshold,
  memoryThreshold: cfg.load_shedding_memory_threshold,
  activeThreshold: cfg.load_shedding_active_requests_threshold,
  eventLoopDelayMs: cfg.load_shedding_event_loop_delay_ms,
};
const shedder = new Shedder(data.shedSab, data.index, shedSettings, metrics.i32, G_ACTIVE);
const limiter = new RateLimiter(data.rateSab, new MicroClock(data.clockBase));
deadlines.onError = (e) => log.error({ err: String((e as Error)?.stack ?? e) }, "deadline expiry failed");
const shared: Shared = {
  metrics,
  log,
  inflight: new Inflight(),
  draining: false,
  onIdle: null,
  begun: 0,
  usage: null,
  plain: null,
};

// Virtual keys, budgets, prices and the ledger rows (docs/budgets.md).
const keyIndex = new KeyIndex(cfg.apiKeys, cfg.admin_api_key !== null);
function applyKeys(c: KeyChange): void {
  for (const id of c.remove) keyIndex.remove(id);
  for (const p of c.put)
    keyIndex.put(p.record.digest, entryOf(p.record, p.slot, cfg.rate_limit_requests_per_minute, cfg.rate_limit_tokens_per_minute));
}
applyKeys({ put: data.keys, remove: [] });
const prices = new PriceTable(cfg.prices);
const budgets = new Budgets(data.budgetSab);
const usageMetrics = new UsageMetrics(
  new UsageLayout(
    cfg.providers.map((p) => p.name),
    prices.labels,
  ),
  data.usageSab,
);
const sink = new UsageSink(
  log,
  usageMetrics,
  prices,
  {
    ring: new LedgerRing(data.ledgerRing),
    drainSoon: () => port.postMessage({ t: "rows-ready" } satisfies ToMain),
    audit: (audit) => port.postMessage({ t: "audit", audit } satisfies ToMain),
  },
  cfg.ledger_batch_ms,
  cfg.ledger_batch_rows,
  cfg.usage_metrics_user_label_max > 0 ? new UserMetrics(metrics.u32, metrics.layout.user) : null,
);
shared.usage = sink;
let adminSeq = 0;
const adminCalls = new Map<number, (r: AdminResult) => void>();
function admin(op: AdminOp): Promise<AdminResult> {
  const id = ++adminSeq;
  return new Promise((resolve) => {
    adminCalls.set(id, resolve);
    port.postMessage({ t: "admin", id, op } satisfies ToMain);
  });
}

// The shedder's sampler: one cached verdict per thread, refreshed on a timer.
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();
let lastVerdict = 0;
const sampler = setInterval(() => {
  const h = getHeapStatistics();
  const v = verdictOf(shedSettings, {
    heapUsed: h.used_heap_size,
    heapLimit: h.heap_size_limit,
    rss: process.memoryUsage.rss(),
    memoryLimit: data.memoryLimit,
    eventLoopDelayMs: loopDelay.percentile(99) / 1e6,
  });
  loopDelay.reset();
  shedder.publish(v);
  if (v !== lastVerdict) log.warn({ verdict: v, previous: lastVerdict }, v === 0 ? "load shedding stopped" : "load shedding started");
  lastVerdict = v;
}, cfg.load_shedding_check_interval_ms);
sampler.unref();

// Memory back once traffic stops (server/idle-reclaim.ts): V8's gc extension, which main.ts turns on
// before the acceptors start. Without it (it did not take) the thread keeps what V8 leaves it.
const fullGc = (globalThis as { gc?: () => void }).gc;
const reclaim =
  typeof fullGc !== "function"
    ? null
    : new IdleReclaim(
        {
          begun: () => shared.begun,
          inflight: () => shared.inflight.size,
          heap: heapNow,
          gc: () => fullGc(),
          // The trim locks each arena in turn: only while no thread has a request in flight.
          trim: () => {
            const trim = Atomics.load(metrics.i32, G_ACTIVE) === 0 ? mallocTrim() : null;
            return trim !== null && trim() >= 0;
          },
          rss: () => process.memoryUsage.rss(),
        },
        QUIET_MS,
        (r) => log.debug({ thread: data.index, ...reclaimFields(r) }, "idle: memory returned"),
      );
const reclaimTimer = reclaim === null ? null : setInterval(() => reclaim.tick(performance.now()), 500);
reclaimTimer?.unref();

let renderSeq = 0;
const renders = new Map<number, { resolve(s: string): void; reject(e: Error): void }>();
function render(kind: RenderKind): Promise<string> {
  const id = ++renderSeq;
  return new Promise((resolve, reject) => {
    renders.set(id, { resolve, reject });
    port.postMessage({ t: "render", id, kind } satisfies ToMain);
  });
}

const modelLists = { lists: data.models as readonly ProviderModels[] };
const opsApp = data.metricsPort === null ? undefined : uWS.App();
const app = buildApp({
  cfg,
  shared,
  pools,
  idPrefix: data.idPrefix,
  threadIndex: data.index,
  breakers,
  deployments: new DeploymentState(data.deploySab, data.clockBase),
  shedder,
  limiter,
  render,
  billing: { keys: keyIndex, budgets, prices, usage: usageMetrics, admin },
  models: modelLists,
  ops: opsApp,
  requestLog: requestLogTap(logger),
  keyPools: new KeyPools(buildProviders(cfg.providers), data.keyPoolBufs, clock, new MicroClock(data.clockBase)),
  cache: new ResponseCache(cfg.cache, new CacheClient(data.cachePort), new CacheStats(metrics.u32, metrics.layout.cacheOff)),
});
let listenSocket: us_listen_socket | null = null;
// Open until the drain is over, so the kubelet still reads readiness 503 and liveness while streams finish.
let opsSocket: us_listen_socket | null = null;
const localPort = (ls: us_listen_socket): number => uWS.us_socket_local_port(ls as unknown as uWS.us_socket);

function listenOps(clientPort: number): void {
  if (opsApp === undefined) {
    port.postMessage({ t: "listening", port: clientPort, metricsPort: null } satisfies ToMain);
    return;
  }
  opsApp.listen(cfg.host, data.metricsPort!, (ls) => {
    if (ls === false) {
      port.postMessage({ t: "listen-failed", port: data.metricsPort! } satisfies ToMain);
      return;
    }
    opsSocket = ls;
    port.postMessage({ t: "listening", port: clientPort, metricsPort: localPort(ls) } satisfies ToMain);
  });
}

app.listen(cfg.host, data.port, (ls) => {
  if (ls === false) {
    port.postMessage({ t: "listen-failed", port: data.port } satisfies ToMain);
    return;
  }
  listenSocket = ls;
  listenOps(localPort(ls));
});

/** How long closing the upstream pools may take once no request is in flight. */
const POOL_CLOSE_MS = 1000;
/** How long the log's last lines may take to reach their destination at the end (then written synchronously). */
const LOG_SETTLE_MS = 500;

function drain(): void {
  if (shared.draining) return;
  // From here admitPost answers 503 + connection: close (server/app.ts).
  shared.draining = true;
  clearInterval(sampler);
  if (reclaimTimer !== null) clearInterval(reclaimTimer);
  loopDelay.disable();
  if (listenSocket !== null) {
    uWS.us_listen_socket_close(listenSocket);
    listenSocket = null;
  }
  let forced = 0;
  let finished = false;
  const done = () => {
    if (finished) return;
    finished = true;
    clearTimeout(deadline);
    if (opsSocket !== null) {
      uWS.us_listen_socket_close(opsSocket);
      opsSocket = null;
    }
    shared.onIdle = null;
    log.info({ forced }, "acceptor drained");
    // Nothing is in flight: close every socket left, idle keep-alives included (they
    // would hold the thread for uWS's idle timeout), then the pools, bounded.
    // uWS 20.30 has App.close() (all sockets, listen sockets included); its typings lag.
    (app as typeof app & { close(): void }).close();
    if (opsApp !== undefined) (opsApp as typeof opsApp & { close(): void }).close();
    let poolTimer: NodeJS.Timeout | undefined;
    const bound = new Promise<void>((r) => (poolTimer = setTimeout(r, POOL_CLOSE_MS)));
    const closing = Promise.all([pools.close().catch(() => undefined), tracing?.shutdown().catch(() => undefined)]);
    Promise.race([closing, bound]).finally(() => {
      clearTimeout(poolTimer);
      // Every finished request's row goes to the main thread before "drained"; the log's last lines are written first.
      sink.flush();
      void logger.settle(LOG_SETTLE_MS).then(() => {
        port.postMessage({ t: "drained", forced } satisfies ToMain);
        port.unref();
      });
    });
  };
  const deadline = setTimeout(() => {
    // Out of time: close what is still open; each close runs its abort handler.
    for (const ctx of shared.inflight.toArray()) {
      forced++;
      try {
        ctx.res.close();
      } catch {
        ctx.finish(499);
      }
    }
    done();
  }, cfg.graceful_shutdown_timeout_ms);
  // The last request may finish inside a uWS callback: close the sockets after it returns.
  shared.onIdle = () => setImmediate(done);
  log.info({ inflight: shared.inflight.size }, "draining");
  if (shared.inflight.size === 0) setImmediate(done);
}

port.on("message", (m: ToAcceptor) => {
  try {
    if (m.t === "rendered") {
      const r = renders.get(m.id);
      if (r === undefined) return;
      renders.delete(m.id);
      if (m.ok) r.resolve(m.body);
      else r.reject(new Error(m.error));
    } else if (m.t === "drain") {
      drain();
    } else if (m.t === "keys") {
      applyKeys(m.change);
      port.postMessage({ t: "keys-applied", seq: m.seq } satisfies ToMain);
    } else if (m.t === "models") {
      modelLists.lists = m.lists;
    } else if (m.t === "admin-result") {
      const r = adminCalls.get(m.id);
      if (r === undefined) return;
      adminCalls.delete(m.id);
      r(m.result);
    }
  } catch (e) {
    log.error({ err: String(e) }, "acceptor message failed");
  }
});
