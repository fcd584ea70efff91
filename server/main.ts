/**
 * Entry point: validates settings, lays out the shared metrics buffer, starts the piscina
 * worker pool and HTTP_THREADS acceptor threads on one port, and runs graceful shutdown
 * on SIGTERM/SIGINT.
 */
import { MessageChannel, Worker } from "node:worker_threads";
import { createServer } from "node:net";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Piscina } from "piscina";
import { ConfigError, SHUTDOWN_MARGIN_MS, type GatewayConfig } from "../core/config.js";
import { createMetricsBuffer, G_DRAINING, G_SPANS_DROPPED, G_WORKERS_OK, Metrics, MetricsLayout } from "../core/metrics.js";
import { Breakers } from "../core/breaker.js";
import { DeploymentState, deploymentKeys } from "../core/deployments.js";
import { RateLimiter } from "../core/ratelimit.js";
import { readFileSync } from "node:fs";
import { totalmem } from "node:os";
import type { AcceptorData, ToAcceptor, ToMain } from "./acceptor.js";
import { loadConfigFromProcess } from "./config-load.js";
import { createLogger } from "./log.js";
import { LedgerRings } from "./ledger-rings.js";
import { Budgets } from "../core/budget.js";
import { PriceTable } from "../core/pricing.js";
import { createUsageBuffer, UsageLayout, UsageMetrics } from "../core/usage-metrics.js";
import { LedgerHub, type KeyChange } from "./ledger.js";
import { ModelLists } from "./models-fetch.js";
import { CacheOwner } from "./cache/owner.js";
import { CacheStats } from "../core/cache/stats.js";
import { KeyBus } from "./fleet/key-bus.js";
import { keyPoolBuffers, poolKeyLabels } from "../core/keypool.js";
import { RateLeases } from "./fleet/rate-lease.js";
import { MicroClock } from "../core/clock.js";
import { BudgetLeases } from "./fleet/budget-lease.js";
import { exposeGc, heapNow, IdleReclaim, QUIET_MS, reclaimFields } from "./idle-reclaim.js";

/** Young generation of each acceptor thread, MiB (V8 sizes it as three semi-spaces). */
const ACCEPTOR_YOUNG_GENERATION_MB = 16;

export interface Started {
  port: number;
  shutdown(signal: string): Promise<void>;
  /** preStop (SIGUSR2): readiness turns 503 while the listen sockets keep accepting. */
  unready(): void;
}

export async function start(cfg: GatewayConfig): Promise<Started> {
  const { log, flush, settle } = createLogger({ level: cfg.log_level, file: cfg.log_file });
  const providerNames = cfg.providers.map((p) => p.name);
  const layout = new MetricsLayout(providerNames, cfg.usage_metrics_user_label_max);
  const sab = createMetricsBuffer(layout);
  const metrics = new Metrics(layout, sab);
  const startedAt = Date.now();
  const idPrefix = randomBytes(6).toString("base64url").replace(/[-_]/g, "x");
  const breakerSab = Breakers.bufferFor(cfg.providers.length);
  const deployKeys = deploymentKeys(cfg.routes, cfg.defaultProvider);
  const deploySab = DeploymentState.bufferFor(deployKeys.length);
  const shedSab = new SharedArrayBuffer(Math.max(1, cfg.http_threads) * 4);
  // Static keys take slots 0..n-1, virtual keys the next MAX_KEYS (rate limits and budgets).
  const rateSab = RateLimiter.bufferFor(LedgerHub.slots(cfg));
  const budgetSab = Budgets.bufferFor(LedgerHub.slots(cfg));
  const keyPoolBufs = keyPoolBuffers(cfg.providers);
  const keyLabels = poolKeyLabels(cfg.providers);
  const usageLayout = new UsageLayout(providerNames, new PriceTable(cfg.prices).labels);
  const usageSab = createUsageBuffer(usageLayout);
  const ledger = new LedgerHub(cfg, log, new UsageMetrics(usageLayout, usageSab), new Budgets(budgetSab));
  // Each acceptor's ledger rows arrive through a ring in shared memory (server/ledger-rings.ts).
  // The rows counted are the main thread's work under load (its idle reclaim watches them).
  let ledgerRows = 0;
  const rings = new LedgerRings(
    {
      add: (rows) => {
        ledgerRows += rows.length;
        ledger.add(rows);
      },
      lost: (n) => ledger.lost(n),
    },
    cfg.ledger_batch_ms,
  );
  let liveKeys: Awaited<ReturnType<LedgerHub["init"]>>;
  try {
    liveKeys = await ledger.init();
  } catch (e) {
    await ledger.close();
    flush();
    throw e;
  }
  // Fleet mode with Redis: rate limits leased from fleet-wide buckets (docs/fleet.md), else per replica.
  const rateLeases = ledger.fleet && cfg.cache.redisUrl !== null ? new RateLeases(cfg, rateSab, new MicroClock(startedAt), log) : null;
  rateLeases?.apply({ put: liveKeys, remove: [] });
  let keySeq = 0;
  const keyAcks = new Map<number, { left: number; done(): void }>();
  ledger.broadcast = (change: KeyChange) => {
    rateLeases?.apply(change);
    const seq = ++keySeq;
    return new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        keyAcks.delete(seq);
        log.warn({ seq }, "not every acceptor acknowledged a key change in time");
        resolve();
      }, 5000);
      keyAcks.set(seq, { left: acceptors.length, done: () => (clearTimeout(t), resolve()) });
      for (const w of acceptors) w.postMessage({ t: "keys", seq, change } satisfies ToAcceptor);
    });
  };
  // Fleet mode with Redis: key changes pushed to every replica at once (else the KEY_SYNC_MS reconcile alone).
  const keyBus = ledger.fleet && cfg.cache.redisUrl !== null ? new KeyBus(cfg.cache.redisUrl, () => void ledger.syncKeys(), log) : null;
  if (keyBus !== null) ledger.announce = () => keyBus.announce();
  // Fleet mode with Redis: budgets hold across the fleet on leases (else per replica, as on one box).
  const leases =
    ledger.fleet && cfg.cache.redisUrl !== null
      ? new BudgetLeases(
          {
            url: cfg.cache.redisUrl,
            periodMs: cfg.budget_lease_ms,
            idleMs: cfg.budget_lease_idle_ms,
            share: cfg.budget_lease_share,
            failClosed: cfg.budget_fail_mode === "closed",
            ledgerBatchMs: cfg.ledger_batch_ms,
          },
          new Budgets(budgetSab),
          new UsageMetrics(usageLayout, usageSab),
          () => ledger.budgetKeys(),
          (from) => ledger.spendSince(from),
          (mark) => ledger.recordBudgetBoot(mark),
          log,
        )
      : null;
  leases?.start();
  const memoryLimit = memoryLimitBytes();
  const cache = new CacheOwner(cfg.cache, new CacheStats(metrics.u32, layout.cacheOff), log);
  const modelLists = new ModelLists(cfg, log);
  // OpenTelemetry (docs/tracing.md): spans are built and exported here, from the acceptors' records.
  const tracing =
    cfg.tracing === null
      ? null
      : // Loaded only when configured: the OpenTelemetry SDK costs an isolate a few MiB (docs/performance.md).
        (await import("./tracing/otel.js")).startTracing(
          cfg.tracing,
          (n) => void Atomics.add(metrics.i32, G_SPANS_DROPPED, n),
          (msg) => log.warn({ component: "otel" }, msg),
        );

  // The metrics render thread (/metrics/*, the dashboard) starts on the first scrape and ends
  // after a minute without one: an isolate costs ~10 MB that an unscraped gateway need not
  // pay. "async" atomics let an idle piscina thread run its timers (V8's memory reducer
  // among them) instead of blocking in Atomics.wait (docs/performance.md, "Memory").
  const pool = new Piscina({
    filename: fileURLToPath(new URL("../workers/metrics-task.js", import.meta.url)),
    minThreads: 0,
    maxThreads: 1,
    idleTimeout: 60_000,
    atomics: "async",
  });
  metrics.setFlag(G_WORKERS_OK, 1);
  pool.on("error", (e: unknown) => {
    metrics.setFlag(G_WORKERS_OK, 0);
    log.error({ err: String(e) }, "worker pool error");
  });

  // Memory back once traffic stops (server/idle-reclaim.ts): this thread's GC, and the flag that
  // gives every thread started from here on (the acceptors) V8's gc extension.
  const mainGc = exposeGc();
  const reclaim =
    mainGc === null
      ? null
      : new IdleReclaim(
          {
            begun: () => ledgerRows,
            inflight: () => ledger.queued(),
            heap: heapNow,
            gc: mainGc,
            trim: () => false, // the acceptors trim
            rss: () => process.memoryUsage.rss(),
          },
          QUIET_MS,
          (r) => log.debug({ thread: "main", ...reclaimFields(r) }, "idle: memory returned"),
        );
  const reclaimTimer = reclaim === null ? null : setInterval(() => reclaim.tick(performance.now()), 500);
  reclaimTimer?.unref();
  const acceptors: Worker[] = [];
  const exited: Promise<number>[] = [];
  const acceptorUrl = new URL("./acceptor.js", import.meta.url);

  let metricsPort: number | null = null;
  function spawn(index: number, port: number): Promise<number> {
    const line = new MessageChannel();
    cache.attach(line.port1);
    // A smaller young generation than V8's default (16 MiB against up to 48): the 2-thread
    // gateway's RSS after load is ~40 MB lower for ~3 points more GC time; 6 MiB saved a little
    // more memory but doubled GC time (measurements in docs/performance.md).
    const resourceLimits = { maxYoungGenerationSizeMb: ACCEPTOR_YOUNG_GENERATION_MB };
    const w = new Worker(acceptorUrl, {
      resourceLimits,
      workerData: {
        cfg,
        sab,
        breakerSab,
        deploySab,
        shedSab,
        rateSab,
        budgetSab,
        usageSab,
        keyPoolBufs,
        keys: liveKeys,
        clockBase: startedAt,
        memoryLimit,
        idPrefix,
        models: modelLists.current(),
        port,
        metricsPort,
        index,
        cachePort: line.port2,
        ledgerRing: rings.create(),
      } satisfies AcceptorData,
      transferList: [line.port2],
    });
    acceptors.push(w);
    exited.push(new Promise((r) => w.once("exit", r)));
    return new Promise((resolve, reject) => {
      w.on("error", (e) => {
        log.error({ err: String(e?.stack ?? e), index }, "acceptor thread crashed");
        reject(e);
      });
      w.on("message", (m: ToMain) => {
        if (m.t === "listening") {
          metricsPort = m.metricsPort;
          resolve(m.port);
        } else if (m.t === "listen-failed") reject(new Error(`cannot listen on ${cfg.host}:${m.port}`));
        else if (m.t === "rows-ready") rings.drain();
        else if (m.t === "audit") ledger.add([], m.audit);
        else if (m.t === "spans") tracing?.accept(m.batch);
        else if (m.t === "admin") {
          ledger.admin(m.op).then(
            (result) => w.postMessage({ t: "admin-result", id: m.id, result } satisfies ToAcceptor),
            () =>
              w.postMessage({ t: "admin-result", id: m.id, result: { ok: false, code: "GW_ERR_LEDGER_UNAVAILABLE" } } satisfies ToAcceptor),
          );
        } else if (m.t === "keys-applied") {
          const a = keyAcks.get(m.seq);
          if (a !== undefined && --a.left === 0) {
            keyAcks.delete(m.seq);
            a.done();
          }
        } else if (m.t === "render") {
          pool
            .run({
              kind: m.kind,
              sab,
              breakerSab,
              deploySab,
              deployKeys,
              providers: providerNames,
              startedAt,
              usageSab,
              rateSab,
              models: usageLayout.models,
              mcp: cfg.mcp !== null,
              redis: cfg.cache.redisUrl !== null,
              userSlots: cfg.usage_metrics_user_label_max,
              keyPoolState: keyPoolBufs.state,
              keyLabels,
            })
            .then(
              (body: string) => w.postMessage({ t: "rendered", id: m.id, ok: true, body } satisfies ToAcceptor),
              (e: unknown) => w.postMessage({ t: "rendered", id: m.id, ok: false, error: String(e) } satisfies ToAcceptor),
            );
        }
      });
    });
  }

  // PORT=0 means any free port: pick one first, so that every thread binds the same one
  // (uSockets cannot share an ephemeral bind between SO_REUSEPORT listeners).
  const wanted = cfg.port === 0 ? await freePort(cfg.host) : cfg.port;
  metricsPort = cfg.metrics_port === 0 ? await freePort(cfg.host) : cfg.metrics_port;
  let port: number;
  try {
    port = await spawn(0, wanted);
    await Promise.all(Array.from({ length: cfg.http_threads - 1 }, (_, i) => spawn(i + 1, port)));
  } catch (e) {
    // A thread that did listen must close its socket before the process may exit.
    metrics.setFlag(G_DRAINING, 1);
    for (const w of acceptors) w.postMessage({ t: "drain" } satisfies ToAcceptor);
    await Promise.all(exited);
    await pool.destroy();
    await ledger.close();
    await cache.close();
    await keyBus?.close();
    await rateLeases?.close(0);
    await tracing?.shutdown().catch(() => undefined);
    await within(leases?.close() ?? Promise.resolve(), 2000);
    flush();
    throw e;
  }
  log.info(
    {
      host: cfg.host,
      port,
      metrics_port: metricsPort,
      threads: cfg.http_threads,
      providers: providerNames,
      default_provider: cfg.defaultProvider,
    },
    "listening",
  );
  // Upstream model lists for GET /v1/models: fetched in the background, then refreshed
  // (after this returns: the first fetch() loads undici, which takes a moment).
  setImmediate(() =>
    modelLists.start((lists) => {
      for (const w of acceptors) w.postMessage({ t: "models", lists } satisfies ToAcceptor);
    }),
  );

  let stopping: Promise<void> | null = null;
  /**
   * Bounded end to end: threads drain for up to GRACEFUL_SHUTDOWN_TIMEOUT (then their
   * requests are cut), and everything after that (pool close, thread exit, ledger flush,
   * closes) shares SHUTDOWN_MARGIN_MS. A thread that will not exit is terminated; rows
   * still unwritten at the end are logged, not waited for.
   */
  function shutdown(signal: string): Promise<void> {
    if (stopping !== null) return stopping;
    stopping = (async () => {
      const end = Date.now() + cfg.graceful_shutdown_timeout_ms + SHUTDOWN_MARGIN_MS;
      const left = (reserve: number) => Math.max(0, end - reserve - Date.now());
      log.info({ signal, timeout_ms: cfg.graceful_shutdown_timeout_ms, margin_ms: SHUTDOWN_MARGIN_MS }, "shutting down");
      metrics.setFlag(G_DRAINING, 1);
      modelLists.stop();
      if (reclaimTimer !== null) clearInterval(reclaimTimer);
      // A thread that dies instead of reporting counts as drained: shutdown must not hang on it.
      const drained = acceptors.map((w, i) =>
        Promise.race([
          new Promise<void>((r) => w.on("message", (m: ToMain) => m.t === "drained" && r())),
          exited[i]!.then(() => undefined),
        ]),
      );
      for (const w of acceptors) w.postMessage({ t: "drain" } satisfies ToAcceptor);
      if ((await within(Promise.all(drained), left(3500))) === TIMED_OUT) log.error({}, "an acceptor thread did not drain in time");
      // A drained thread has closed its sockets and ends by itself; one that does not is stopped.
      if ((await within(Promise.all(exited), left(3000))) === TIMED_OUT) {
        log.error({}, "an acceptor thread did not exit in time; terminating it");
        await within(Promise.all(acceptors.map((w) => w.terminate())), left(2500));
      }
      // No request holds a reservation now: give the unused budget leases back to the fleet (bounded: Redis may be dead).
      if (leases !== null && (await within(leases.close(), Math.min(1500, left(1500)))) === TIMED_OUT)
        log.warn({}, "fleet budgets: leases not returned at shutdown (Redis did not answer); they lapse with their window");
      // Every acceptor wrote its last rows (and sent its audit records) before "drained": write them, bounded.
      rings.close();
      const rows = await within(ledger.flush(left(1000)), left(900));
      if (rows === TIMED_OUT || rows > 0)
        log.error({ rows: rows === TIMED_OUT ? "write in progress" : rows }, "ledger rows not written at shutdown");
      // Unused rate-limit leases go back to the fleet (bounded: a dead Redis is not waited for).
      await within(
        Promise.all([
          ledger.close(),
          cache.close(),
          keyBus?.close(),
          rateLeases?.close(Math.min(500, left(500))),
          tracing?.shutdown().catch(() => undefined),
        ]),
        left(400),
      );
      await within(pool.destroy(), left(100));
      log.info({}, "stopped");
      await settle(Math.min(500, left(0)));
    })();
    return stopping;
  }
  function unready(): void {
    if (metrics.flag(G_DRAINING) === 1) return;
    metrics.setFlag(G_DRAINING, 1);
    log.info({}, "not ready: stop requested, still accepting until SIGTERM");
  }
  return { port, shutdown, unready };
}

const TIMED_OUT = Symbol("timed out");

/** `p`, or TIMED_OUT after `ms` (the timer never outlives the race). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | typeof TIMED_OUT> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<typeof TIMED_OUT>((r) => (t = setTimeout(r, ms, TIMED_OUT)))]);
  } finally {
    clearTimeout(t);
  }
}

/** The cgroup (v2, then v1) memory limit when there is one, else the machine's memory. */
function memoryLimitBytes(): number {
  for (const f of ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]) {
    try {
      const v = readFileSync(f, "utf8").trim();
      const n = Number(v);
      // "max", or v1's "no limit" (a huge number), mean unlimited.
      if (v !== "max" && Number.isFinite(n) && n > 0 && n < totalmem()) return n;
    } catch {
      // not this cgroup version
    }
  }
  return totalmem();
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, host, () => {
      const a = srv.address();
      srv.close(() => (typeof a === "object" && a !== null ? resolve(a.port) : reject(new Error("no port"))));
    });
  });
}

/** Run as a program: exit 1 on bad settings, exit 0 after a graceful shutdown. */
export async function main(): Promise<void> {
  let cfg: GatewayConfig;
  try {
    cfg = loadConfigFromProcess();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`portcullis: invalid setting ${e.message}\n`);
      process.exit(1);
    }
    throw e;
  }
  let s: Started | null = null;
  let early: string | null = null;
  let backstopArmed = false;
  const onSignal = (sig: string) => {
    // The backstop of the shutdown contract: whatever hangs, the process is gone in time.
    if (!backstopArmed) {
      backstopArmed = true;
      setTimeout(() => {
        process.stderr.write(`portcullis: shutdown exceeded ${cfg.graceful_shutdown_timeout_ms + SHUTDOWN_MARGIN_MS} ms; exiting\n`);
        process.exit(1);
      }, cfg.graceful_shutdown_timeout_ms + SHUTDOWN_MARGIN_MS).unref();
    }
    if (s === null) {
      early ??= sig; // still starting: shut down once started
      return;
    }
    s.shutdown(sig).then(
      () => process.exit(0),
      (e) => {
        process.stderr.write(`portcullis: shutdown failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  };
  // Installed before start-up: the acceptor threads serve as soon as they listen, and a
  // signal before the handler exists would kill the process with its streams and rows.
  // Repeated signals (a supervisor and a terminal both sending one) must not kill the
  // drain: shutdown is idempotent, and the deadline bounds it.
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  // Kubernetes preStop sends this first (k8s/deployment.yaml), so load balancers deregister the pod before SIGTERM.
  process.on("SIGUSR2", () => s?.unready()); // before start-up: its default action would kill the process
  try {
    s = await start(cfg);
  } catch (e) {
    process.stderr.write(`portcullis: failed to start: ${(e as Error).message}\n`);
    process.exit(1);
  }
  if (early !== null) onSignal(early);
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) void main();
