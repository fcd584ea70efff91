/**
 * One acceptor thread: a uWS app on the shared port. Talks to the main thread for
 * metrics rendering and shutdown. On drain it closes its own listen socket, lets the
 * in-flight requests finish (bounded by GRACEFUL_SHUTDOWN_TIMEOUT), closes its upstream
 * pools, flushes its log and reports; the thread then ends once uWS has no sockets left.
 */
import uWS, { type us_listen_socket } from "uWebSockets.js";
import { parentPort, workerData } from "node:worker_threads";
import type { GatewayConfig } from "../core/config.js";
import { Metrics, MetricsLayout } from "../core/metrics.js";
import { buildApp } from "./app.js";
import type { RequestCtx, Shared } from "./context.js";
import { createLogger } from "./log.js";
import { Pools } from "./upstream.js";

export interface AcceptorData {
  cfg: GatewayConfig;
  sab: SharedArrayBuffer;
  idPrefix: string;
  port: number;
  index: number;
}

export type ToMain =
  | { t: "listening"; port: number }
  | { t: "listen-failed"; port: number }
  | { t: "render"; id: number; kind: "prometheus" | "observability" }
  | { t: "drained"; forced: number };

export type ToAcceptor =
  | { t: "rendered"; id: number; ok: true; body: string }
  | { t: "rendered"; id: number; ok: false; error: string }
  | { t: "drain" };

const port = parentPort!;
const data = workerData as AcceptorData;
const cfg = data.cfg;
const { log, flush } = createLogger({ level: cfg.log_level, file: cfg.log_file });
const metrics = new Metrics(new MetricsLayout(cfg.providers.map((p) => p.name)), data.sab);
const pools = new Pools(cfg);
const shared: Shared = { metrics, log, inflight: new Set<RequestCtx>(), draining: false, onIdle: null };

let renderSeq = 0;
const renders = new Map<number, { resolve(s: string): void; reject(e: Error): void }>();
function render(kind: "prometheus" | "observability"): Promise<string> {
  const id = ++renderSeq;
  return new Promise((resolve, reject) => {
    renders.set(id, { resolve, reject });
    port.postMessage({ t: "render", id, kind } satisfies ToMain);
  });
}

const app = buildApp({ cfg, shared, pools, idPrefix: data.idPrefix + data.index.toString(36), render });
let listenSocket: us_listen_socket | null = null;

app.listen(cfg.host, data.port, (ls) => {
  if (ls === false) {
    port.postMessage({ t: "listen-failed", port: data.port } satisfies ToMain);
    return;
  }
  listenSocket = ls;
  port.postMessage({ t: "listening", port: uWS.us_socket_local_port(ls as unknown as uWS.us_socket) } satisfies ToMain);
});

function drain(): void {
  if (shared.draining) return;
  shared.draining = true;
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
    log.info({ forced }, "acceptor drained");
    pools.close().finally(() => {
      flush();
      port.postMessage({ t: "drained", forced } satisfies ToMain);
      // Let the thread end by itself once uWS closes its last (keep-alive) socket.
      port.unref();
    });
  };
  const deadline = setTimeout(() => {
    // Out of time: close what is still open; each close runs its abort handler.
    for (const ctx of [...shared.inflight]) {
      forced++;
      try {
        ctx.res.close();
      } catch {
        ctx.finish(499);
      }
    }
    done();
  }, cfg.graceful_shutdown_timeout_ms);
  shared.onIdle = done;
  log.info({ inflight: shared.inflight.size }, "draining");
  if (shared.inflight.size === 0) done();
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
    }
  } catch (e) {
    log.error({ err: String(e) }, "acceptor message failed");
  }
});
