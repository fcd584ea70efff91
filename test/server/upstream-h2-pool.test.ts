/**
 * The h2-capable pool (server/upstream-h2.ts `upstreamPool`) on its own, against the HTTP/2
 * stream upstream in its own process: many long streams arriving close together must all be
 * open upstream at once, on as few connections as the per-connection cap allows; none may wait
 * in a connection's queue behind another stream.
 */
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { request } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Pool } from "undici";
import type { GatewayConfig } from "../../core/config.js";
import { startPortPrinter, type Proc } from "../../loadtest/procs.js";
import { selfSignedCert } from "../../loadtest/tls-cert.js";
import { upstreamPool } from "../../server/upstream-h2.js";

const UPSTREAM = fileURLToPath(new URL("../../loadtest/stream-upstream-h2.js", import.meta.url));
let dir: string;
let ca: Buffer;
let up: Proc;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), "portcullis-h2pool-"));
  const c = selfSignedCert(dir);
  ca = readFileSync(c.cert);
  // Streams of 6 events 500 ms apart: 3 s each, far longer than the arrivals take.
  up = await startPortPrinter("h2-upstream", UPSTREAM, [
    "--cert",
    c.cert,
    "--key",
    c.key,
    "--port",
    "0",
    "--events",
    "6",
    "--interval",
    "500",
  ]);
});

after(async () => {
  await up?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function stats(): Promise<{ sessions: number; max_open: number; requests: { h2: number } }> {
  return new Promise((resolve, reject) => {
    request({ host: "127.0.0.1", port: up.port, path: "/stats", ca }, (res) => {
      let d = "";
      res.on("data", (c: string) => (d += c));
      res.on("end", () => resolve(JSON.parse(d)));
    })
      .on("error", reject)
      .end();
  });
}

const cfg = { upstream_http2: "auto", upstream_http2_streams: 100 } as GatewayConfig;
const body = JSON.stringify({ model: "claude-pool-slow", max_tokens: 8, stream: true, messages: [{ role: "user", content: "hi" }] });

test("1,000 long streams arriving over ~100 ms are all open upstream at once, on ceil(1000 / 100) h2 connections", async () => {
  const pool: Pool = upstreamPool(cfg, `https://127.0.0.1:${up.port}`, { connections: 8192, pipelining: 1, connect: { ca } });
  try {
    const texts = await Promise.all(
      Array.from({ length: 1000 }, async (_, i) => {
        await new Promise((r) => setTimeout(r, i / 10));
        const r = await pool.request({ path: "/v1/messages", method: "POST", headers: { "content-type": "application/json" }, body });
        assert.equal(r.statusCode, 200);
        return r.body.text();
      }),
    );
    for (const t of texts) assert.ok(t.includes('data: {"type":"message_stop"}'), t.slice(-200));
    const s = await stats();
    assert.equal(s.requests.h2, 1000);
    assert.equal(s.max_open, 1000, "every stream open at once: none waited behind another on a full connection");
    assert.equal(s.sessions, 10);
  } finally {
    await pool.close();
  }
});
