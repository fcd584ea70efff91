/**
 * Memory back once traffic stops (server/idle-reclaim.ts): the schedule on a scripted clock
 * and heap (no GC while requests begin or are in flight, at most two per quiet period, none
 * when nothing grew), and a real gateway that, after a burst, reports in its debug log that
 * each isolate collected, shrank its young generation and trimmed malloc.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { claudeCodeRequestText } from "../../bench/fixture.js";
import {
  GROWTH_BYTES,
  type HeapNow,
  IdleReclaim,
  QUIET_MS,
  type Reclaimed,
  YOUNG_FLOOR_BYTES,
  YOUNG_SHRINK_MS,
} from "../../server/idle-reclaim.js";
import { startGateway } from "../support/gateway.js";
import { startMock } from "../support/spawn-mock.js";

const MiB = 1024 * 1024;

/** A scripted thread: tests move its counters and heap; `gc()` applies `afterGc`. */
function scripted() {
  const s = {
    begun: 0,
    inflight: 0,
    heap: { committed: 40 * MiB, used: 30 * MiB, young: 16 * MiB, external: 20 * MiB } as HeapNow,
    afterGc: (h: HeapNow): HeapNow => ({ ...h, used: 12 * MiB, external: 4 * MiB, committed: h.committed - 10 * MiB }),
    gcs: 0,
    trims: 0,
    log: [] as Reclaimed[],
  };
  const r = new IdleReclaim(
    {
      begun: () => s.begun,
      inflight: () => s.inflight,
      heap: () => s.heap,
      gc: () => {
        s.gcs++;
        s.heap = s.afterGc(s.heap);
      },
      trim: () => {
        s.trims++;
        return true;
      },
      rss: () => 100 * MiB,
    },
    QUIET_MS,
    (x) => s.log.push(x),
  );
  return { s, r };
}

/** Tick every second from `from` to `to` (ms, inclusive). */
function ticks(r: IdleReclaim, from: number, to: number, each?: (now: number) => void): void {
  for (let now = from; now <= to; now += 1000) {
    each?.(now);
    r.tick(now);
  }
}

test("no GC while requests keep beginning, however long the thread runs", () => {
  const { s, r } = scripted();
  ticks(r, 0, 600_000, () => s.begun++);
  assert.equal(s.gcs, 0);
  assert.equal(s.trims, 0);
});

test("no GC while a request is in flight (a long stream), even with no new request", () => {
  const { s, r } = scripted();
  s.inflight = 1;
  ticks(r, 0, 600_000);
  assert.equal(s.gcs, 0);
});

test("after a burst: one GC once quiet for QUIET_MS, then the young generation's GC and the trim, then nothing more while quiet", () => {
  const { s, r } = scripted();
  ticks(r, 0, 10_000, () => s.begun++); // the burst
  const end = 10_000;
  ticks(r, end + 1000, end + QUIET_MS - 1); // quiet, not long enough
  assert.equal(s.gcs, 0);
  ticks(r, end + QUIET_MS, end + QUIET_MS + 1000);
  assert.equal(s.gcs, 1, "the first GC once quiet");
  assert.equal(s.trims, 0, "no trim before the sweeping after the first GC");
  assert.deepEqual(
    s.log.map((x) => x.step),
    [1],
  );
  assert.equal(s.log[0]!.after.used, 12 * MiB);
  // The first GC left the young generation at 16 MiB; the second shrinks it.
  s.afterGc = (h) => ({ ...h, young: YOUNG_FLOOR_BYTES });
  ticks(r, end + QUIET_MS + 2000, end + QUIET_MS + 1000 + YOUNG_SHRINK_MS + 1000);
  assert.equal(s.gcs, 2);
  assert.equal(s.trims, 1);
  assert.deepEqual(
    s.log.map((x) => [x.step, x.trimmed]),
    [
      [1, false],
      [2, true],
    ],
  );
  assert.equal(s.log[1]!.after.young, YOUNG_FLOOR_BYTES);
  ticks(r, end + 20_000, end + 600_000);
  assert.equal(s.gcs, 2, "at most two per quiet period");
});

test("the second step trims without a GC when the young generation is already at its floor", () => {
  const { s, r } = scripted();
  s.afterGc = (h) => ({ ...h, used: 12 * MiB, young: YOUNG_FLOOR_BYTES });
  s.begun = 1;
  ticks(r, 0, 30_000);
  assert.equal(s.gcs, 1);
  assert.equal(s.trims, 1);
  assert.equal(s.log[1]!.gcMs, 0);
});

test("a quiet period after too little growth runs no GC; a burst that grows the heap does", () => {
  const { s, r } = scripted();
  s.afterGc = (h) => ({ ...h, used: 12 * MiB, external: 4 * MiB, young: YOUNG_FLOOR_BYTES });
  s.begun = 1;
  ticks(r, 0, 30_000);
  assert.equal(s.gcs, 1, "the first quiet period (after start-up) reclaims");
  // One request that left less than GROWTH_BYTES behind.
  s.begun++;
  s.heap = { ...s.heap, used: s.heap.used + GROWTH_BYTES / 2 };
  ticks(r, 31_000, 60_000);
  assert.equal(s.gcs, 1);
  // A burst: the heap grew past GROWTH_BYTES.
  s.begun++;
  s.heap = { ...s.heap, used: s.heap.used + GROWTH_BYTES };
  ticks(r, 61_000, 90_000);
  assert.equal(s.gcs, 2);
});

test("a request between the two steps starts a new quiet period", () => {
  const { s, r } = scripted();
  s.begun = 1;
  ticks(r, 0, QUIET_MS + 1000);
  assert.equal(s.gcs, 1);
  s.begun++; // a request before the second step
  s.heap = { ...s.heap, used: s.heap.used + GROWTH_BYTES }; // and it allocated
  ticks(r, QUIET_MS + 2000, QUIET_MS + 2000 + QUIET_MS - 1000);
  assert.equal(s.gcs, 1, "not while the new period is shorter than QUIET_MS");
  assert.equal(s.trims, 0);
});

test("a quiet period cut short before the second step is finished by the next one, even without growth", () => {
  const { s, r } = scripted();
  s.begun = 1;
  ticks(r, 0, QUIET_MS + 1000);
  assert.equal(s.gcs, 1);
  s.begun++; // a small request before the second step; the heap does not grow
  ticks(r, QUIET_MS + 2000, 60_000);
  assert.deepEqual(
    s.log.map((x) => x.step),
    [1, 1, 2],
  );
  assert.equal(s.trims, 1);
});

test("after a burst, a quiet acceptor collects, shrinks its young generation to its floor and trims malloc; the main thread shrinks its own (debug log)", async () => {
  const mock = await startMock();
  const gw = await startGateway({
    HTTP_THREADS: "1",
    LOG_LEVEL: "debug",
    MODEL_PROVIDER: "anthropic",
    ANTHROPIC_API_BASE: mock.url,
    ANTHROPIC_API_KEY: "sk-upstream-test",
  });
  try {
    // A burst of Claude Code sized bodies (~100 KB each): buffers, parse trees, ledger rows.
    const body = claudeCodeRequestText();
    for (let round = 0; round < 20; round++) {
      await Promise.all(
        Array.from({ length: 10 }, async () => {
          const r = await fetch(`${gw.url}/v1/messages`, {
            method: "POST",
            headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
            body,
          });
          assert.equal(r.status, 200);
          await r.arrayBuffer();
        }),
      );
    }
    // Start-up has its own quiet period: only lines logged after the burst count.
    const burstEnd = Date.now();
    const after = (thread: number | string, step: number) =>
      gw.waitForLine(
        `thread ${thread}'s step ${step} reclaim after the burst`,
        (l) => l.msg === "idle: memory returned" && l.thread === thread && l.step === step && (l.time as number) >= burstEnd,
        30_000,
      );
    const first = await after(0, 1);
    assert.ok((first.used_after as number) < (first.used_before as number), "the GC freed garbage");
    const second = await after(0, 2);
    assert.ok((second.young_after as number) <= YOUNG_FLOOR_BYTES, `young generation ${second.young_after} bytes`);
    assert.equal(second.trimmed, true, "malloc_trim ran (glibc, nothing in flight)");
    // The main thread's work is the ledger rows; whether this burst's rows grew its heap enough to
    // reclaim again depends on timing, but its first quiet period (start-up or after the burst) always does.
    const main = await gw.waitForLine(
      "the main thread's step 2 reclaim",
      (l) => l.msg === "idle: memory returned" && l.thread === "main" && l.step === 2,
      30_000,
    );
    assert.ok((main.young_after as number) <= YOUNG_FLOOR_BYTES, `main young generation ${main.young_after} bytes`);
  } finally {
    await gw.stop();
    await mock.stop();
  }
});
