/**
 * `npm run loadtest:ablate` (loadtest/ablate.ts): a bad flag stops it before anything
 * starts, and a short real run measures every variant and the ceiling with answers that
 * were all 2xx, its CPU split over the threads.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type AblationRow, VARIANTS } from "../../loadtest/ablate.js";

const script = fileURLToPath(new URL("../../loadtest/ablate.js", import.meta.url));

for (const [args, message] of [
  [["--rate", "0"], /--rate must be a positive integer/],
  [["--rounds", "x"], /--rounds must be a positive integer/],
  [["--bogus", "1"], /unknown flag --bogus/],
] as const) {
  test(`ablate refuses ${args.join(" ")} before starting anything`, () => {
    const r = spawnSync(process.execPath, [script, ...args], { encoding: "utf8", timeout: 20_000 });
    assert.equal(r.status, 1);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, "", "no table was printed");
  });
}

test("a short ablation run measures the ceiling and every variant, all answers 2xx, CPU split by thread", () => {
  const dir = mkdtempSync(join(tmpdir(), "portcullis-ablate-test-"));
  try {
    const json = join(dir, "ablation.json");
    const r = spawnSync(
      process.execPath,
      [script, "--duration", "1", "--rounds", "1", "--warmup", "0", "--connections", "4", "--rate", "200", "--json", json],
      {
        encoding: "utf8",
        timeout: 120_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const out = JSON.parse(readFileSync(json, "utf8")) as { rows: AblationRow[]; rate: number };
    assert.equal(out.rate, 200);
    assert.deepEqual(
      out.rows.map((x) => x.name),
      ["ceiling", ...VARIANTS.map((v) => v.name)],
    );
    for (const row of out.rows) {
      assert.equal(row.non_2xx, 0, `${row.name}: every answer 2xx`);
      assert.ok(row.req_per_s > 0, `${row.name}: requests were measured`);
      const parts = row.acceptors_us_per_req + row.main_us_per_req + row.other_threads_us_per_req;
      assert.ok(
        Math.abs(parts - row.cpu_us_per_req) <= 0.3,
        `${row.name}: the threads add up to the whole (${parts} vs ${row.cpu_us_per_req})`,
      );
    }
    for (const v of VARIANTS) assert.match(r.stdout, new RegExp(`^\\| ${v.name} \\|`, "m"), `the table has a row for ${v.name}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
