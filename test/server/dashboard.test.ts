/**
 * The admin dashboard in a real browser: Debian's Chromium driven by playwright-core,
 * against the real gateway and the real mock upstream in their own processes, with a real
 * SQLite ledger. The page's numbers are checked against /metrics/observability and
 * /admin/usage; a key created in the page works with the Anthropic SDK until it is revoked
 * in the page; a breaker opened with the mock's faults shows as open.
 *
 * With DASHBOARD_SCREENSHOTS=<dir> the main views are also saved there (docs/ holds them).
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Anthropic from "@anthropic-ai/sdk";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const ADMIN = "adm-" + "dashboard-0123456789";
const STATIC_KEY = "gw-static-key-dashboard-1";
const SHOTS = process.env.DASHBOARD_SCREENSHOTS;
const BOUND = 15_000;

let mock: MockHandle;
let gw: Gateway;
let browser: BrowserContext;
let page: Page;
let profile: string;
/** Errors the page logged: a CSP violation or a script error would show here. */
const consoleErrors: string[] = [];

async function call(prompt: string, key = STATIC_KEY, extra: Record<string, unknown> = {}, session = ""): Promise<Response> {
  const headers: Record<string, string> = { "content-type": "application/json", "x-api-key": key };
  if (session !== "") headers["x-claude-code-session-id"] = session;
  return fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers,
    body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: prompt }], ...extra }),
  });
}

async function admin(path: string): Promise<any> {
  const r = await fetch(`${gw.url}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(r.status, 200, path);
  return r.json();
}

async function signIn(p: Page, key = ADMIN): Promise<void> {
  await p.goto(`${gw.url}/dashboard`);
  await p.getByLabel("Admin API key").fill(key);
  await p.getByRole("button", { name: "Sign in" }).click();
}

before(async () => {
  mock = await startMock();
  gw = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-dashboard-1",
    MODEL_PROVIDER: "anthropic",
    ADMIN_API_KEY: ADMIN,
    GATEWAY_API_KEYS: STATIC_KEY,
    LEDGER_BATCH_MS: "20",
    RETRY_MAX_ATTEMPTS: "1",
    CIRCUIT_BREAKER_FAILURE_THRESHOLD: "3",
    CIRCUIT_BREAKER_TIMEOUT: "600000",
  });
  profile = mkdtempSync(join(tmpdir(), "portcullis-chromium-"));
  // A fresh profile directory (--user-data-dir) per run.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    timeout: 60_000,
    viewport: { width: 1280, height: 1000 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("console", (m) => {
    if (m.type() === "error") consoleErrors.push(m.text());
  });
  page.on("pageerror", (e) => consoleErrors.push(String(e)));
  page.setDefaultTimeout(BOUND);
});

after(async () => {
  await browser?.close();
  await gw?.stop();
  await mock?.stop();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe("dashboard", () => {
  test("the page is served with a strict CSP, and its data needs the admin key", async () => {
    const r = await fetch(`${gw.url}/dashboard`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-security-policy")!, /script-src 'self';/);
    assert.doesNotMatch(await r.text(), /adm-/);
    assert.equal((await fetch(`${gw.url}/dashboard/data`)).status, 401);
    assert.equal((await fetch(`${gw.url}/dashboard/data`, { headers: { authorization: "Bearer wrong" } })).status, 401);
    assert.equal((await fetch(`${gw.url}/dashboard/static/../../main.js`)).status, 404);
  });

  test("a wrong key is refused in the page; the right one signs in and stays out of the URL", async () => {
    await signIn(page, "not-the-admin-key");
    await page.getByRole("alert").filter({ hasText: "refused" }).waitFor();
    assert.equal(await page.locator("#app").isVisible(), false);
    await signIn(page);
    await page.locator("#overview").waitFor();
    assert.ok(!page.url().includes(ADMIN), page.url());
    assert.equal(await page.evaluate("sessionStorage.getItem('portcullis.adminKey')"), ADMIN);
  });

  test("after known traffic the page's latency and usage match /metrics/observability and /admin/usage", async () => {
    for (let i = 0; i < 6; i++)
      assert.equal((await call(`hello ${i}`, STATIC_KEY, { metadata: { user_id: "dev-alice" } }, "session-42")).status, 200);
    const row = page.locator('#latency tr[data-provider="anthropic"]');
    await row.locator('[data-k="count"]', { hasText: /^6$/ }).waitFor();
    const obs = JSON.parse(await (await fetch(`${gw.url}/metrics/observability`)).text());
    const want = obs.recent_latency.window_1m.by_provider.anthropic;
    assert.equal(want.total.count, 6);
    const shown = async (k: string) => Number((await row.locator(`[data-k="${k}"]`).textContent())!.replace(/,/g, ""));
    const close = (a: number, b: number) => Math.abs(a - b) <= 0.0011 + b * 1e-9;
    for (const [k, v] of [
      ["p50", want.total.p50_ms],
      ["p95", want.total.p95_ms],
      ["p99", want.total.p99_ms],
      ["ttfb_p50", want.upstream_ttfb.p50_ms],
      ["overhead_p50", want.overhead.p50_ms],
    ] as const) {
      assert.ok(close(await shown(k), v), `${k}: page ${await shown(k)} vs observability ${v}`);
    }
    assert.ok(want.overhead.p50_ms < want.total.p50_ms, "the gateway's own time is part of the total");

    // Usage: the ledger rows are batched; refresh until the page has them, then compare.
    await page.locator("#usage").scrollIntoViewIfNeeded();
    const modelRow = page.locator("#top-models tbody tr", { hasText: "claude-sonnet-4-5" });
    for (const deadline = Date.now() + BOUND; ; ) {
      await page.getByRole("button", { name: "Refresh" }).click();
      if ((await modelRow.count()) > 0 && (await modelRow.locator('[data-k="requests"]').textContent()) === "6") break;
      assert.ok(Date.now() < deadline, "the usage table to show 6 requests");
      await page.waitForResponse((r) => r.url().includes("/admin/usage"));
    }
    const fresh = await admin("/admin/usage?group_by=model&from=2000-01-01");
    const m = fresh.data.find((d: { model: string }) => d.model === "claude-sonnet-4-5");
    assert.equal(m.requests, 6);
    assert.equal(Number(await modelRow.locator('[data-k="cost"]').textContent()), Math.round(m.cost_usd * 1e6) / 1e6);
    await page.locator("#top-users tbody tr", { hasText: "dev-alice" }).locator('[data-k="requests"]', { hasText: /^6$/ }).waitFor();
    await page.locator("#top-sessions tbody tr", { hasText: "session-42" }).locator('[data-k="requests"]', { hasText: /^6$/ }).waitFor();
    if (SHOTS !== undefined) {
      // After the hour's tokens and cost have been fetched again (every 5 refreshes).
      await page.locator("#stat-tokens-in", { hasText: /^[1-9]/ }).waitFor();
      await page.locator("#overview").screenshot({ path: join(SHOTS, "dashboard-overview.png") });
      await page.locator("#usage").screenshot({ path: join(SHOTS, "dashboard-usage.png") });
    }
  });

  test("a key created in the page works with the SDK until it is revoked in the page", async () => {
    await page.getByLabel("Name", { exact: true }).fill("browser-made");
    await page.getByLabel("USD per day").fill("5");
    await page.getByRole("button", { name: "Create" }).click();
    await page.locator("#secret", { hasText: /^sk-pc-/ }).waitFor();
    const secret = (await page.locator("#secret").textContent())!;
    assert.match(secret, /^sk-pc-/);
    const row = page.locator("#keys-table tbody tr", { hasText: "browser-made" });
    await row.waitFor();
    const sdk = new Anthropic({ baseURL: gw.url, apiKey: secret, maxRetries: 0 });
    const msg = await sdk.messages.create({
      model: "claude-sonnet-4-5",
      max_tokens: 16,
      messages: [{ role: "user", content: "from the sdk" }],
    });
    assert.equal(msg.type, "message");
    await page.getByRole("button", { name: "I have copied it" }).click();
    assert.equal(await page.locator("#secret").textContent(), "", "the secret is gone from the page");
    if (SHOTS !== undefined) await page.locator("#keys").screenshot({ path: join(SHOTS, "dashboard-keys.png") });
    page.once("dialog", (d) => void d.accept());
    await row.getByRole("button", { name: "Revoke key browser-made" }).click();
    await row.getByText("revoked").waitFor();
    await assert.rejects(
      sdk.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages: [{ role: "user", content: "again" }] }),
      (e: unknown) => e instanceof Anthropic.AuthenticationError && e.status === 401,
    );
  });

  test("a breaker opened by upstream failures shows as open, in words as well as colour", async () => {
    const breaker = page.locator('#breakers tr[data-provider="anthropic"] td.state');
    assert.equal(await breaker.getAttribute("data-state"), "closed");
    const q = await fetch(`${mock.url}/__mock/faults`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ faults: ["status:500", "status:500", "status:500"] }),
    });
    assert.equal(q.status, 200);
    for (let i = 0; i < 3; i++) await (await call(`fail ${i}`)).arrayBuffer();
    await page.locator('#breakers tr[data-provider="anthropic"] td[data-state="open"]').waitFor();
    assert.match((await breaker.textContent())!, /open/);
    assert.equal((await call("refused")).status, 503);
    await page.locator("#stat-circuit-open", { hasText: /^[1-9]/ }).waitFor();
  });

  test("keyboard only: the sort buttons and sign-out are reachable and work", async () => {
    const nameHeader = page.locator("#keys-table th").first();
    await page.locator('#keys-table button[data-sort="name"]').focus();
    await page.keyboard.press("Enter");
    assert.equal(await nameHeader.getAttribute("aria-sort"), "descending");
    await page.locator("#logout").focus();
    await page.keyboard.press("Enter");
    await page.getByLabel("Admin API key").waitFor();
    assert.equal(await page.evaluate("sessionStorage.getItem('portcullis.adminKey')"), null);
  });

  test("the page ran without a script error or a CSP violation", () => {
    // The refused sign-in's 401 is logged by Chromium as a failed resource; nothing else may be.
    const other = consoleErrors.filter((e) => !/status of 401/.test(e));
    assert.deepEqual(other, []);
  });
});

test("without ADMIN_API_KEY there is no dashboard", async () => {
  const plain = await startGateway({
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-dashboard-1",
    MODEL_PROVIDER: "anthropic",
  });
  try {
    assert.equal((await fetch(`${plain.url}/dashboard`)).status, 404);
    assert.equal((await fetch(`${plain.url}/dashboard/data`)).status, 404);
  } finally {
    await plain.stop();
  }
});
