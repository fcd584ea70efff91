/**
 * `npm run build && node --expose-gc dist/bench/keypool.js [--quick]`
 *
 * mitata rows for an upstream key pool's pick (core/keypool.ts), the per-attempt cost a
 * pool adds (target: <= 100 ns and 0 B): three keys over the real shared buffers and the
 * real clocks (Clock32 for rests, MicroClock for the rpm buckets), with a session
 * (weighted rendezvous) or without (a draw by weight), with per-key rpm charged, and with
 * the session's own key resting. Same measuring and bytes/op method as bench/run.ts.
 */
import { fileURLToPath } from "node:url";
import { measure } from "mitata";

import { Clock32, MicroClock } from "../core/clock.js";
import type { ProviderConfig } from "../core/config.js";
import { keyPoolBuffers, KeyPools, keySession, R_RANGE, type PoolKey } from "../core/keypool.js";
import { bytes, markdownTable, ns, parseFlags } from "./format.js";
import { bytesPerOp } from "./run.js";

function poolOf(keys: PoolKey[]) {
  const cfg = [{ name: "p", type: "anthropic", keys } as unknown as ProviderConfig];
  const base = Date.now();
  const pools = new KeyPools(
    cfg.map((config) => ({ config, adapter: { auth: (k: string) => ["x-api-key", k] } })),
    keyPoolBuffers(cfg),
    new Clock32(base),
    new MicroClock(base),
  );
  return pools.pool(1)!;
}

const key = (label: string, o: Partial<PoolKey> = {}): PoolKey => ({ label, key: `sk-${label}`, weight: 1, rpm: 0, tpm: 0, ...o });

export function keyPoolRows(): { id: string; name: string; fn: () => unknown }[] {
  const equal = poolOf([key("a"), key("b"), key("c")]);
  const weighted = poolOf([key("a"), key("b"), key("c", { weight: 2 })]);
  // A limit far above what the loop reaches: every pick charges the bucket and is admitted.
  const limited = poolOf([key("a", { rpm: 1e9 }), key("b", { rpm: 1e9 }), key("c", { rpm: 1e9 })]);
  const resting = poolOf([key("a"), key("b"), key("c")]);
  const ids = Array.from({ length: 64 }, (_, i) => `4f3c2a1b-0000-4000-8000-${String(i).padStart(12, "0")}`);
  const hashes = ids.map(keySession);
  // Rest the key that half the sessions call home, so those picks go to their second choice.
  resting.rest(resting.pick(hashes[0]!, 0, 0, true), 3_600_000);
  let i = 0;
  return [
    { id: "baseline", name: "baseline: read a session's hash", fn: () => hashes[i++ & 63] },
    {
      id: "pick_random",
      name: "pick without a session: draw by weight over 3 keys",
      fn: () => equal.pick(-1, (i++ * 0x9e3779b1) & (R_RANGE - 1), 0, true),
    },
    {
      id: "pick_session_equal",
      name: "pick for a session: rendezvous over 3 equal keys",
      fn: () => equal.pick(hashes[i++ & 63]!, 0, 0, true),
    },
    {
      id: "pick_session",
      name: "pick for a session: weighted rendezvous over 3 keys (1:1:2)",
      fn: () => weighted.pick(hashes[i++ & 63]!, 0, 0, true),
    },
    {
      id: "pick_session_hash",
      name: "pick for a session, its id hashed too (36 chars)",
      fn: () => weighted.pick(keySession(ids[i++ & 63]!), 0, 0, true),
    },
    { id: "pick_rpm", name: "pick for a session, each key's rpm charged (GCRA)", fn: () => limited.pick(hashes[i++ & 63]!, 0, 0, true) },
    { id: "pick_resting", name: "pick for a session, one key resting", fn: () => resting.pick(hashes[i++ & 63]!, 0, 0, true) },
  ];
}

async function main(): Promise<void> {
  const quick = parseFlags(process.argv.slice(2)).has("quick");
  const out: string[][] = [];
  let sink = 0;
  const noise = bytesPerOp(() => sink++);
  for (const row of keyPoolRows()) {
    const st = await measure(row.fn, { min_cpu_time: quick ? 100e6 : 500e6 });
    out.push([row.name, ns(st.min), ns(st.avg), ns(st.p99), bytes(Math.max(0, bytesPerOp(row.fn) - noise))]);
  }
  process.stdout.write(markdownTable(["row", "min/op", "avg/op", "p99/op", "bytes/op"], out) + "\n");
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
