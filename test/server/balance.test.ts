/**
 * Several deployments behind one route with session affinity, end to end: 20 Claude Code
 * sessions through 3 deployments (each its own provider and breaker, two on one mock, the
 * third on another), then the third deployment's upstream dies and its breaker opens.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startMock, type MockHandle } from "../support/spawn-mock.js";
import { startGateway, type Gateway } from "../support/gateway.js";

const CLIENT_KEY = "sk-client-key-0123456789";
let mockA: MockHandle, mockB: MockHandle, gw: Gateway;

before(async () => {
  mockA = await startMock();
  mockB = await startMock();
  const dir = mkdtempSync(join(tmpdir(), "portcullis-balance-"));
  writeFileSync(
    join(dir, "c.json"),
    JSON.stringify({
      providers: {
        east: { type: "anthropic", base_url: `${mockA.url}/east`, api_key: "k-east-123" },
        west: { type: "anthropic", base_url: `${mockA.url}/west`, api_key: "k-west-123" },
        eu: { type: "anthropic", base_url: `${mockB.url}/eu`, api_key: "k-eu-12345" },
      },
      routes: [{ match: "claude-*", provider: "east", deployments: [{ provider: "west" }, { provider: "eu" }] }],
      api_keys: [CLIENT_KEY],
    }),
  );
  gw = await startGateway({ CONFIG_FILE: join(dir, "c.json"), CIRCUIT_BREAKER_FAILURE_THRESHOLD: "1", RETRY_MAX_ATTEMPTS: "1" });
});
after(async () => {
  await gw?.stop();
  await mockA?.stop();
  await mockB?.stop();
});

async function served(session: string): Promise<string> {
  const res = await fetch(`${gw.url}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-api-key": CLIENT_KEY, "x-claude-code-session-id": session },
    body: JSON.stringify({ model: "claude-sonnet-4-5", max_tokens: 8, messages: [{ role: "user", content: "x" }] }),
  });
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  return res.headers.get("x-portcullis-provider") ?? "";
}

test("20 sessions through 3 deployments: each stays on one; when one breaker opens, its sessions and only its sessions move", async () => {
  const sessions = Array.from({ length: 20 }, (_, i) => `5f0c${i}-session-${i}`);
  const first = new Map<string, string>();
  for (const s of sessions) first.set(s, await served(s));
  for (let round = 0; round < 2; round++)
    for (const s of sessions) assert.equal(await served(s), first.get(s), `session ${s} moved while every deployment was healthy`);
  const used = new Set(first.values());
  assert.equal(used.size, 3, `all three deployments serve sessions (${[...used].join(", ")})`);

  await mockB.stop(); // "eu" dies: its first request fails to connect and its breaker opens
  for (const s of sessions) {
    const now = await served(s);
    if (first.get(s) === "eu") assert.notEqual(now, "eu");
    else assert.equal(now, first.get(s), `session ${s} moved although its deployment is healthy`);
  }
  const cb = (await (await fetch(`${gw.url}/metrics/circuit-breakers`)).json()) as Record<string, unknown>;
  assert.match(JSON.stringify(cb), /"eu"[^}]*"state":"open"/);
});
