// Mutation testing of core/ (run on demand: `npm run mutate`, never by `npm test` or CI).
// StrykerJS 9 with its command runner: the mutated tree is built once (tsc with the typia
// transform), then each mutant runs the node:test unit tests of its module. Scope one or
// more modules with MUTATE=breaker,retry npm run mutate. Scores are in docs/testing.md.
const MODULES = {
  breaker: ["breaker", "breaker-threads"],
  ratelimit: ["ratelimit", "ratelimit-threads"],
  budget: ["budget", "budget-threads"],
  shedder: ["shedder"],
  retry: ["retry"],
  clock: ["clock", "breaker", "ratelimit"],
  atomic64: ["atomic64", "budget", "metrics"],
};

const picked = (process.env.MUTATE ?? Object.keys(MODULES).join(","))
  .split(",")
  .map((m) => m.trim())
  .filter((m) => m !== "");
for (const m of picked) if (!(m in MODULES)) throw new Error(`MUTATE: unknown module "${m}" (one of ${Object.keys(MODULES).join(", ")})`);
const tests = [...new Set(picked.flatMap((m) => MODULES[m]))].map((t) => `dist/test/core/${t}.test.js`);

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  testRunner: "command",
  commandRunner: { command: `node --test --test-concurrency=1 ${tests.join(" ")}` },
  buildCommand: "tsc -p tsconfig.json",
  mutate: picked.map((m) => `core/${m}.ts`),
  disableTypeChecks: "core/**/*.ts",
  coverageAnalysis: "off",
  concurrency: Number(process.env.MUTATE_CONCURRENCY ?? 2),
  timeoutMS: 3000,
  ignorePatterns: ["dist", "data", "reports", "bench/results.json"],
  reporters: ["clear-text", "progress", "json"],
  jsonReporter: { fileName: "reports/mutation/mutation.json" },
  thresholds: { high: 90, low: 85, break: null },
  cleanTempDir: "always",
};
