/**
 * `npm run build && node dist/bench/cache.js`
 *
 * What the response cache (docs/cache.md) costs, with mitata:
 *  - computing the key for the 103 KB Claude Code body (bench/fixtures/claude-code-request.json):
 *    SHA-256 over the body and the route/provider/model/version/beta/scope parts, against the
 *    JSON.parse of the same body that the front door already does on every request;
 *  - one lookup on the owner thread (server/cache/owner.ts) from another thread, through the
 *    same MessagePort + CacheClient the acceptors use, for a 2 KB JSON entry and a 50-event SSE
 *    entry, against a bare postMessage round trip and against a lookup in the same thread (the
 *    lower bound a SharedArrayBuffer arena could reach). This is the measurement behind the
 *    choice of one owner thread.
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker, isMainThread, workerData, type MessagePort } from "node:worker_threads";
import { bench, group, run } from "mitata";
import { pino } from "pino";
import { cacheKey } from "../core/cache/key.js";
import { loadCacheConfig } from "../core/cache/config.js";
import { CACHE_SLOTS, CacheStats } from "../core/cache/stats.js";
import { encodeEntry, KIND_JSON, KIND_SSE } from "../core/cache/entry.js";
import { ByteLru } from "../core/cache/lru.js";
import { mockStreamFrames } from "../core/mock-reply.js";
import { CacheOwner } from "../server/cache/owner.js";
import { CacheClient } from "../server/cache/client.js";

const json = Buffer.from(
  JSON.stringify({
    id: "msg_1",
    type: "message",
    role: "assistant",
    model: "claude-sonnet-4-5",
    content: [{ type: "text", text: "word ".repeat(380) }],
    stop_reason: "end_turn",
    usage: { input_tokens: 25000, output_tokens: 400 },
  }),
);
const frames = mockStreamFrames({ model: "claude-sonnet-4-5", messages: [{ role: "user", content: "x" }] }, "msg_1", 50).map((f) =>
  Buffer.from(f),
);
const sseBytes = frames.reduce((a, f) => a + f.length, 0);
const entry = (kind: number) =>
  kind === KIND_JSON
    ? encodeEntry({ kind, storedAt: 0, input: 25000, output: 400, cacheWrite: 0, cacheRead: 0 }, [json], json.length)
    : encodeEntry({ kind, storedAt: 0, input: 25000, output: 400, cacheWrite: 0, cacheRead: 0 }, frames, sseBytes);

if (!isMainThread) {
  // The owner thread: the main thread's role in the gateway.
  const { port, echo } = workerData as { port: MessagePort; echo: MessagePort };
  const owner = new CacheOwner(
    loadCacheConfig({}),
    new CacheStats(new Uint32Array(new SharedArrayBuffer(CACHE_SLOTS * 4)), 0),
    pino({ level: "silent" }),
  );
  owner.attach(port);
  port.ref();
  echo.on("message", (m: number) => echo.postMessage(m));
} else {
  const body = readFileSync(fileURLToPath(new URL("../../bench/fixtures/claude-code-request.json", import.meta.url)));
  const parts = {
    route: 0,
    query: "beta=true",
    provider: "anthropic",
    upstreamModel: "claude-sonnet-4-5-20250929",
    version: "2023-06-01",
    beta: "claude-code-20250219,interleaved-thinking-2025-05-14",
    scope: "id:key_0123456789ab",
  };
  process.stdout.write(
    `body ${body.length} bytes; JSON entry ${json.length} bytes; SSE entry ${sseBytes} bytes in ${frames.length} events\n`,
  );

  group("per request: the cache key of the 103 KB Claude Code body", () => {
    bench("baseline: JSON.parse of the body (done on every request already)", () => JSON.parse(body.toString("utf8")));
    bench("cacheKey: SHA-256 over the parts and the body", () => cacheKey(parts, body));
  });

  const line = new MessageChannel();
  const echo = new MessageChannel();
  const worker = new Worker(new URL(import.meta.url), {
    workerData: { port: line.port2, echo: echo.port2 },
    transferList: [line.port2, echo.port2],
  });
  const client = new CacheClient(line.port1);
  line.port1.ref();
  client.put("json", entry(KIND_JSON));
  client.put("sse", entry(KIND_SSE));
  const get = (key: string) => new Promise<void>((r) => client.get(key, () => r()));
  let echoWait: (() => void) | null = null;
  echo.port1.on("message", () => echoWait!());
  const ping = () => new Promise<void>((r) => ((echoWait = r), echo.port1.postMessage(1)));
  const local = new ByteLru(64 * 1024 * 1024);
  local.set("json", entry(KIND_JSON), Number.MAX_SAFE_INTEGER);
  await get("json"); // the puts are in

  group("per hit: a lookup on the owner thread", () => {
    bench("baseline: bare postMessage round trip to another thread", ping);
    bench("owner-thread lookup, 2 KB JSON entry", () => get("json"));
    bench(`owner-thread lookup, 50-event SSE entry (${Math.round(sseBytes / 1024)} KB)`, () => get("sse"));
    bench("same-thread LRU lookup (an arena's lower bound)", () => local.get("json", 0));
  });

  await run();
  await worker.terminate();
  line.port1.close();
  echo.port1.close();
}
