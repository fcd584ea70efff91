/**
 * Memory: optional SDKs (AWS, Google, ioredis, OpenTelemetry) are loaded only by a gateway
 * that is configured to use them (server/lazy.ts, the dynamic tracing import in
 * server/acceptor.ts). A preload written here records, in every thread of a real gateway,
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
const { writeFileSync } = require("node:fs");
const packages = ${JSON.stringify(PACKAGES)};
const acceptor = !wt.isMainThread && wt.workerData && typeof wt.workerData === "object" && "cfg" in wt.workerData;
setInterval(() => {
  const loaded = packages.filter((p) => Object.keys(Module._cache).some((k) => k.includes("/node_modules/" + p + "/")));
  writeFileSync(process.env.LOADED_DIR + "/" + wt.threadId + ".json", JSON.stringify({ main: wt.isMainThread, acceptor, loaded }));
}, 50).unref();
`;

interface Report {
  main: boolean;
  acceptor: boolean;
  loaded: string[];
}

/** Starts a 2-thread gateway with `env`; resolves with the main thread's and both acceptors' reports. */
async function loadedPackages(env: Record<string, string>): Promise<Report[]> {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-lazy-"));
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
    return await until("the main thread and both acceptors to report their loaded packages", () => {
      const reports = readdirSync(dir)
        .filter((f) => /^\d+\.json$/.test(f))
        .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")) as Report)
        .filter((r) => r.main || r.acceptor);
      return reports.length === 3 ? reports : undefined;
    });
  } finally {
    await gw.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

test("a gateway without Bedrock, Vertex, tracing or Redis loads none of their SDKs in its main or acceptor threads", async () => {
  const reports = await loadedPackages({});
  for (const r of reports) assert.deepEqual(r.loaded, [], `${r.main ? "main" : "acceptor"} thread loaded ${r.loaded.join(", ")}`);
});

test("with an OTLP endpoint configured, each acceptor loads the OpenTelemetry SDK (and the main thread does not)", async () => {
  const reports = await loadedPackages({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:9" });
  const acceptors = reports.filter((r) => r.acceptor);
  assert.equal(acceptors.length, 2);
  for (const r of acceptors) assert.deepEqual(r.loaded, ["@opentelemetry/sdk-trace"]);
  assert.deepEqual(reports.find((r) => r.main)!.loaded, []);
});
