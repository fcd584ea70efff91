/**
 * USAGE_METRICS_USER_LABEL_MAX on the real gateway: per-developer series appear in
 * /metrics/prometheus for the first N metadata.user_id values, the rest as other; off by
 * default; an out-of-range value stops the start naming the setting.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { startGateway } from "../support/gateway.js";
import { loadConfig } from "../../core/config.js";
import { ConfigError } from "../../core/env.js";

async function call(url: string, user: string | null): Promise<void> {
  const r = await fetch(`${url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "claude-sonnet-4-5",
      max_tokens: 8,
      messages: [{ role: "user", content: "hi" }],
      ...(user === null ? {} : { metadata: { user_id: user } }),
    }),
  });
  assert.equal(r.status, 200);
  await r.arrayBuffer();
}

test("the first N developers get a user label, the others count as other", async () => {
  const gw = await startGateway({ MODEL_PROVIDER: "mock", USAGE_METRICS_USER_LABEL_MAX: "1" });
  try {
    await call(gw.url, "dev-a");
    await call(gw.url, "dev-a");
    await call(gw.url, "dev-b");
    await call(gw.url, null);
    const prom = await (await fetch(`${gw.url}/metrics/prometheus`)).text();
    assert.match(prom, /^gateway_user_requests_total\{user="dev-a"\} 2$/m);
    assert.match(prom, /^gateway_user_requests_total\{user="other"\} 2$/m);
    assert.doesNotMatch(prom, /dev-b/);
    assert.match(prom, /^gateway_user_tokens_total\{user="dev-a",direction="output"\} [1-9]/m);
  } finally {
    await gw.stop();
  }
});

test("off by default: no user series", async () => {
  const gw = await startGateway({ MODEL_PROVIDER: "mock" });
  try {
    await call(gw.url, "dev-a");
    assert.doesNotMatch(await (await fetch(`${gw.url}/metrics/prometheus`)).text(), /gateway_user_/);
  } finally {
    await gw.stop();
  }
});

test("a cap above 10000 is refused naming the setting", () => {
  assert.throws(
    () => loadConfig({ MODEL_PROVIDER: "mock", USAGE_METRICS_USER_LABEL_MAX: "20000" }, undefined, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === "USAGE_METRICS_USER_LABEL_MAX",
  );
});
