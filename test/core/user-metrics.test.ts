/**
 * The per-developer metric label (core/user-metrics.ts): off by default, capped at the
 * configured number of distinct ids with the rest as "other", ids kept byte for byte (and
 * escaped in the exposition), no id lost or doubled when threads race to claim slots.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { Worker } from "node:worker_threads";
import { createMetricsBuffer, MetricsLayout } from "../../core/metrics.js";
import { renderUserPrometheus, UserMetrics, userSnapshot } from "../../core/user-metrics.js";

function fresh(slots: number) {
  const layout = new MetricsLayout(["mock"], slots);
  const sab = createMetricsBuffer(layout);
  const u32 = new Uint32Array(sab);
  return { layout, sab, u32, users: new UserMetrics(u32, layout.user) };
}

test("off by default: no slots, nothing recorded, nothing rendered", () => {
  const { layout, u32, users } = fresh(0);
  assert.equal(layout.user.totalU32, 0);
  users.record("dev-a", 10, 20, 30);
  assert.deepEqual(userSnapshot(u32, layout.user), []);
  assert.equal(renderUserPrometheus(u32, layout.user), "");
});

test("the first N distinct ids get their own series; later ids and requests without one are other", () => {
  const { layout, u32, users } = fresh(2);
  users.record("dev-a", 10, 20, 1_500);
  users.record("dev-b", 1, 2, 3);
  users.record("dev-a", 5, 5, 500);
  users.record("dev-c", 7, 7, 7); // over the cap
  users.record(null, 1, 1, 1);
  const rows = userSnapshot(u32, layout.user).sort((a, b) => a.user.localeCompare(b.user));
  assert.deepEqual(rows, [
    { user: "dev-a", requests: 2, input_tokens: 15, output_tokens: 25, cost_usd: 0.002 },
    { user: "dev-b", requests: 1, input_tokens: 1, output_tokens: 2, cost_usd: 0.000003 },
    { user: "other", requests: 2, input_tokens: 8, output_tokens: 8, cost_usd: 0.000008 },
  ]);
});

test("ids are kept as UTF-8 (up to 128 bytes) and escaped in a valid exposition", () => {
  const { layout, u32, users } = fresh(4);
  const odd = 'user_"quoted"\\back\nslash_é';
  users.record(odd, 1, 1, 1);
  users.record("x".repeat(300), 1, 1, 1);
  const rows = userSnapshot(u32, layout.user);
  assert.ok(rows.some((r) => r.user === odd));
  assert.ok(
    rows.some((r) => r.user === "x".repeat(128)),
    "long ids are cut at 128 bytes",
  );
  const text = renderUserPrometheus(u32, layout.user);
  assert.match(text, /gateway_user_requests_total\{user="user_\\"quoted\\"\\\\back\\nslash_é"\} 1/);
  const r = spawnSync("promtool", ["check", "metrics"], { input: text, encoding: "utf8", timeout: 60_000 });
  assert.equal(r.error, undefined, "promtool runs (npm test installs it)");
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
});

test("threads racing on the same ids claim one slot per id and lose no request", async () => {
  const { layout, sab, u32 } = fresh(8);
  const url = new URL("../../core/user-metrics.js", import.meta.url).href;
  const murl = new URL("../../core/metrics.js", import.meta.url).href;
  const per = 5_000,
    threads = 4;
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    Promise.all([import(workerData.url), import(workerData.murl)]).then(([{ UserMetrics }, { MetricsLayout }]) => {
      const layout = new MetricsLayout(["mock"], 8);
      const u = new UserMetrics(new Uint32Array(workerData.sab), layout.user);
      for (let i = 0; i < workerData.per; i++) u.record("dev-" + (i % 5), 1, 0, 0);
      parentPort.postMessage("done");
    });
  `;
  const ws = Array.from({ length: threads }, () => new Worker(code, { eval: true, workerData: { url, murl, sab, per } }));
  await Promise.all(
    ws.map(
      (w) =>
        new Promise<void>((res, rej) => {
          w.once("message", () => res());
          w.once("error", rej);
        }),
    ),
  );
  await Promise.all(ws.map((w) => w.terminate()));
  const rows = userSnapshot(u32, layout.user);
  assert.deepEqual(rows.map((r) => r.user).sort(), ["dev-0", "dev-1", "dev-2", "dev-3", "dev-4"]);
  for (const r of rows) assert.equal(r.requests, (per / 5) * threads, r.user);
});
