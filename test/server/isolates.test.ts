/**
 * Memory: what each V8 isolate of a real gateway holds. Optional SDKs (AWS, Google, ioredis,
 * OpenTelemetry) are loaded only by a gateway configured to use them (server/lazy.ts, the
 * dynamic tracing import in server/main.ts: acceptors only record, the main thread builds spans), and the metrics render thread exists only
 * once something scraped (server/main.ts). A preload written here records, in every thread,
 * which of those packages the thread's module cache holds.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startGateway } from "../support/gateway.js";
import { until } from "../support/wait.js";

const PACKAGES = [
  "@aws-sdk/credential-provider-node",
  "@smithy/signature-v4",
  "google-auth-library",
  "ioredis",
  "@opentelemetry/sdk-trace",
];

const PRELOAD = `
const Module = require("node:module");
const wt = require("node:worker_threads");
const { renameSync, writeFileSync } = require("node:fs");
const packages = ${JSON.stringify(PACKAGES)};
const acceptor = !wt.isMainThread && wt.workerData && typeof wt.workerData === "object" && "cfg" in wt.workerData;
setInterval(() => {
  const loaded = packages.filter((p) => Object.keys(Module._cache).some((k) => k.includes("/node_modules/" + p + "/")));
  const file = process.env.LOADED_DIR + "/" + wt.threadId + ".json";
  writeFileSync(file + ".tmp", JSON.stringify({ at: Date.now(), main: wt.isMainThread, acceptor, loaded }));
  renameSync(file + ".tmp", file); // a reader never sees half a report
}, 50).unref();
`;

interface Report {
  at: number;
  main: boolean;
  acceptor: boolean;
  loaded: string[];
}

const readReports = (dir: string): Report[] =>
  readdirSync(dir)
    .filter((f) => /^\d+\.json$/.test(f))
    .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as Report);

/**
 * A 2-thread gateway with `env` and the preload; `body` runs with its reports directory, its
 * URL and the time it was listening (reports from before then may predate start-up's imports).
 */
async function withGateway<T>(env: Record<string, string>, body: (dir: string, url: string, listening: number) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-isolates-"));
  const preload = join(dir, "preload.cjs");
  writeFileSync(preload, PRELOAD);
  const gw = await startGateway({
    HTTP_THREADS: "2",
    MODEL_PROVIDER: "anthropic",
    ANTHROPIC_API_KEY: "sk-upstream-test",
    NODE_OPTIONS: `--require=${preload}`,
    LOADED_DIR: dir,
    ...env,
  });
  try {
    return await body(dir, gw.url, Date.now());
  } finally {
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The main thread's and both acceptors' reports, once all three wrote one. */
function loadedPackages(env: Record<string, string>): Promise<Report[]> {
  return withGateway(env, (dir, _url, listening) =>
    until("the main thread and both acceptors to report their loaded packages after start-up", () => {
      const reports = readReports(dir).filter((r) => (r.main || r.acceptor) && r.at > listening);
      return reports.length === 3 ? reports : undefined;
    }),
  );
}

test("a gateway without Bedrock, Vertex, tracing or Redis loads none of their SDKs in its main or acceptor threads", async () => {
  const reports = await loadedPackages({});
  for (const r of reports) assert.deepEqual(r.loaded, [], `${r.main ? "main" : "acceptor"} thread loaded ${r.loaded.join(", ")}`);
});

test("with an OTLP endpoint configured, the main thread loads the OpenTelemetry SDK (and the acceptors, which only record, do not)", async () => {
  const reports = await loadedPackages({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" });
  const acceptors = reports.filter((r) => r.acceptor);
  assert.equal(acceptors.length, 2);
  for (const r of acceptors) assert.deepEqual(r.loaded, []);
  assert.deepEqual(reports.find((r) => r.main)!.loaded, ["@opentelemetry/sdk-trace"]);
});

test("the metrics render thread starts on the first scrape: before it, the only worker besides the acceptors is the ledger's", async () => {
  await withGateway({ METRICS_ENABLED: "true" }, async (dir, url) => {
    const pool = () => readReports(dir).filter((r) => !r.main && !r.acceptor).length;
    await until("both acceptors and the ledger thread to report", () =>
      readReports(dir).filter((r) => r.acceptor).length === 2 && pool() >= 1 ? true : undefined,
    );
    assert.equal(pool(), 1);
    const r = await fetch(`${url}/metrics/prometheus`);
    assert.equal(r.status, 200);
    assert.match(await r.text(), /gateway_requests_total|process_cpu/);
    await until("the metrics render thread to report", () => (pool() === 2 ? true : undefined));
  });
});
