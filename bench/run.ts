/**
 * `npm run bench [-- --json] [-- --rounds N] [-- --quick] [-- --filter re]`
 *
 * The report's microbenchmark table on our real modules, measured with mitata. Every row
 * is measured in each of N interleaved rounds (row 1..k, row 1..k, ...), so a burst of
 * noise on this shared machine hits one sample of each row rather than one row; the table
 * gives medians over rounds. Bytes per op come from used-heap deltas between forced GCs
 * (run with --expose-gc, as `npm run bench` does). `--json` writes bench/results.json.
 */
import { writeFileSync } from "node:fs";
import { cpus, totalmem, type as osType, release } from "node:os";
import { fileURLToPath } from "node:url";
import { getHeapStatistics } from "node:v8";
import { measure } from "mitata";
import { buildRows, type Row } from "./rows.js";
import { bytes, fmt, markdownTable, median, ns, parseFlags } from "./format.js";
import { ledgerInsertRow } from "./ledger.js";
import { refreshReadme } from "./readme.js";

export const RESULTS_PATH = fileURLToPath(new URL("../../bench/results.json", import.meta.url));

const gc = (globalThis as { gc?: () => void }).gc;

/** Bytes allocated per call: heap growth over n calls between forced GCs; median of trials. */
export function bytesPerOp(fn: () => unknown, trials = 7): number {
  if (gc === undefined || fn() instanceof Promise) return NaN; // async rows: heap deltas would count pending work
  const heap = () => getHeapStatistics().used_heap_size;
  // Size n so that n calls allocate well under a young-generation semispace (no scavenge inside).
  gc();
  let h0 = heap();
  for (let i = 0; i < 64; i++) fn();
  const est = Math.max(0, (heap() - h0) / 64);
  const n = est < 8 ? 200_000 : Math.max(16, Math.min(20_000, Math.floor(1_000_000 / est)));
  const out: number[] = [];
  for (let t = 0; t < trials; t++) {
    gc();
    h0 = heap();
    for (let i = 0; i < n; i++) fn();
    const d = heap() - h0;
    if (d >= 0) out.push(d / n); // a negative delta means a GC ran anyway: drop the trial
  }
  return median(out);
}

export interface RowResult {
  id: string;
  name: string;
  report: boolean;
  ops_per_s: number;
  avg_ns: number;
  p99_ns: number;
  bytes_per_op: number;
  overhead_ns: number;
  rounds_avg_ns: number[];
}

export function summarise(
  rows: readonly Row[],
  samples: Map<string, { avg: number[]; p99: number[] }>,
  alloc: Map<string, number>,
): RowResult[] {
  const base = median(samples.get("baseline")?.avg ?? []);
  return rows.map((r) => {
    const s = samples.get(r.id)!;
    const avg = median(s.avg);
    return {
      id: r.id,
      name: r.name,
      report: r.report,
      ops_per_s: 1e9 / avg,
      avg_ns: avg,
      p99_ns: median(s.p99),
      bytes_per_op: alloc.get(r.id) ?? NaN,
      overhead_ns: r.id === "baseline" ? 0 : avg - base,
      rounds_avg_ns: s.avg,
    };
  });
}

export function table(results: readonly RowResult[]): string {
  return markdownTable(
    ["row", "ops/s", "avg/op", "p99/op", "bytes/op", "overhead vs baseline"],
    results.map((r) => [
      r.name,
      fmt(r.ops_per_s),
      ns(r.avg_ns),
      ns(r.p99_ns),
      bytes(r.bytes_per_op),
      r.id === "baseline" || !Number.isFinite(r.overhead_ns) ? "—" : `+${ns(r.overhead_ns)}`,
    ]),
  );
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2));
  const quick = flags.has("quick");
  const rounds = Number(flags.get("rounds") ?? (quick ? 1 : 3));
  const filter = new RegExp(flags.get("filter") ?? ".");
  const minCpuNs = quick ? 100e6 : 500e6;
  if (gc === undefined) process.stderr.write("bench: run with --expose-gc (npm run bench does) to get bytes/op\n");

  const built = await buildRows();
  const rows = built.rows.filter((r) => r.id === "baseline" || filter.test(r.id));
  const samples = new Map(rows.map((r) => [r.id, { avg: [] as number[], p99: [] as number[] }]));
  const t0 = Date.now();
  for (let round = 0; round < rounds; round++) {
    for (const r of rows) {
      // mitata samples are batch averages for fast functions; p99 is over those samples.
      const st = await measure(r.fn, { min_cpu_time: minCpuNs });
      samples.get(r.id)!.avg.push(st.avg);
      samples.get(r.id)!.p99.push(st.p99);
    }
    process.stderr.write(`bench: round ${round + 1}/${rounds} done (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  }
  // The no-op's figure is the measuring loop's own noise (OSR, feedback): subtract it.
  const raw = new Map(rows.map((r) => [r.id, bytesPerOp(r.fn)]));
  const noise = raw.get("baseline") ?? 0;
  const alloc = new Map([...raw].map(([k, v]) => [k, Math.max(0, v - noise)]));
  const results = summarise(rows, samples, alloc);
  built.close();
  if (filter.test("ledger_insert")) results.push(await ledgerInsertRow(rounds));

  const machine = {
    cpu: cpus()[0]?.model ?? "unknown",
    cores: cpus().length,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    os: `${osType()} ${release()}`,
    node: process.version,
  };
  const stack = results.find((r) => r.id === "stack");
  const stackNoVal = results.find((r) => r.id === "stack_no_validation");
  const complex = results.find((r) => r.id === "validate_complex");
  const targets = [
    { target: "combined stack ≤ 1 µs/op", value: stack ? ns(stack.avg_ns) : "—", met: stack ? stack.avg_ns <= 1000 : null },
    {
      target: "combined stack allocates 0 B/op apart from validation",
      value: stackNoVal ? bytes(stackNoVal.bytes_per_op) + " (stack minus validation)" : "—",
      met: stackNoVal ? stackNoVal.bytes_per_op < 8 : null,
    },
    { target: "complex validation ≤ 1 ms", value: complex ? ns(complex.avg_ns) : "—", met: complex ? complex.avg_ns <= 1e6 : null },
  ];

  const out: string[] = [];
  out.push(`## Microbenchmarks (mitata, median of ${rounds} interleaved round${rounds === 1 ? "" : "s"})`, "");
  out.push(`${machine.cpu}, ${machine.cores} cores, Node ${machine.node}, ${machine.os}`, "");
  out.push(table(results), "");
  if (built.missing.length > 0) out.push(`Missing report rows: ${built.missing.map((m) => `${m.id} (${m.reason})`).join("; ")}`, "");
  out.push(
    markdownTable(
      ["target", "measured", "met"],
      targets.map((t) => [t.target, t.value, t.met === null ? "—" : t.met ? "yes" : "**no**"]),
    ),
    "",
  );
  out.push(
    `Report's claim for the combined stack: 7.1 µs/op (140K ops/s); measured here: ${stack ? `${ns(stack.avg_ns)} (${fmt(stack.ops_per_s)} ops/s), ${fmt(7100 / stack.avg_ns)}× faster` : "—"}.`,
  );
  process.stdout.write(out.join("\n") + "\n");

  if (flags.has("json")) {
    writeFileSync(
      RESULTS_PATH,
      JSON.stringify(
        {
          generated_at: new Date().toISOString(),
          machine,
          rounds,
          complex_body_bytes: built.complexBytes,
          rows: results,
          missing: built.missing,
          targets,
        },
        null,
        2,
      ) + "\n",
    );
    process.stderr.write(`bench: wrote ${RESULTS_PATH}\n`);
    refreshReadme();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    process.exit(1);
  });
}
