/**
 * The settings schema against the docs: every environment variable that the start-up
 * configuration really reads (recorded while it runs, test/support/settings.ts) has a row in a
 * settings table of the README or docs/ with its default, and every setting such a table names
 * is one the gateway reads (no documented knob that does nothing).
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { settingsRead } from "../support/settings.js";

const ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** Settings table rows: the UPPER_SNAKE names in backticks in a row's first cell → the row's default cell. */
function documented(): Map<string, { file: string; dflt: string }> {
  const files = [
    "README.md",
    ...readdirSync(join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => join("docs", f)),
  ];
  const out = new Map<string, { file: string; dflt: string }>();
  for (const file of files) {
    for (const line of readFileSync(join(ROOT, file), "utf8").split("\n")) {
      const cells = /^\|(.*)\|\s*$/
        .exec(line)?.[1]!
        .split("|")
        .map((c) => c.trim());
      if (cells === undefined || cells.length < 3) continue;
      for (const m of cells[0]!.matchAll(/`([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|[A-Z]{4,})`/g)) {
        if (m[1]!.startsWith("GW_ERR_")) continue; // the error catalogue, pinned by test/core/errors.test.ts
        out.set(m[1]!, { file, dflt: cells[1]! });
      }
    }
  }
  return out;
}

test("every setting the gateway reads has a row with its default in the README or docs/", () => {
  const read = settingsRead();
  assert.ok(read.has("PORT") && read.has("WORKSPACE_ROOT") && read.has("SANDBOX_IMAGE"), "the probe reached the optional parts");
  const docs = documented();
  const missing = [...read].filter((n) => !docs.has(n)).sort();
  assert.deepEqual(missing, [], `settings read but not documented: ${missing.join(", ")}`);
  const noDefault = [...read].filter((n) => docs.get(n)!.dflt === "").sort();
  assert.deepEqual(noDefault, [], `documented without a default: ${noDefault.join(", ")}`);
});

test("every setting a settings table documents is one the gateway reads", () => {
  const read = settingsRead();
  const extra = [...documented()].filter(([n]) => !read.has(n)).map(([n, d]) => `${n} (${d.file})`);
  assert.deepEqual(extra, [], `documented but never read: ${extra.join(", ")}`);
});
