import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, envBool, envInt, envList, envNum, envStr } from "../../core/env.js";
import { typiaPath } from "../../core/typia-path.js";
import { ConfigError as FromConfig } from "../../core/config.js";

function throwsNaming(f: () => unknown, name: string, re: RegExp): void {
  assert.throws(f, (e: unknown) => e instanceof ConfigError && e.setting === name && re.test(e.message));
}

test("one environment reader: blank is unset, values trimmed, bad values name the variable", () => {
  assert.equal(FromConfig, ConfigError, "core/config.ts re-exports the one ConfigError");
  assert.equal(envStr({ A: "  x " }, "A"), "x");
  assert.equal(envStr({ A: "   " }, "A"), null);
  assert.equal(envNum({ N: " 2.5 " }, "N", 1), 2.5);
  assert.equal(envNum({}, "N", 7), 7);
  for (const bad of ["1e3", "abc", "0x10", "1,000"]) throwsNaming(() => envNum({ N: bad }, "N", 1), "N", /expected a number/);
  assert.equal(envInt({ I: "5" }, "I", 1, 1, 10), 5);
  throwsNaming(() => envInt({ I: "11" }, "I", 1, 1, 10), "I", /from 1 to 10, got 11/);
  throwsNaming(() => envInt({ I: "1.5" }, "I", 1, 1, 10), "I", /whole number/);
  for (const t of ["true", " YES ", "On", "1"]) assert.equal(envBool({ B: t }, "B", false), true, t);
  for (const f of ["false", "no", "OFF", "0"]) assert.equal(envBool({ B: f }, "B", true), false, f);
  throwsNaming(() => envBool({ B: "maybe" }, "B", true), "B", /expected true or false, got "maybe"/);
  assert.deepEqual(envList({ L: " a, ,b ,," }, "L"), ["a", "b"]);
  assert.deepEqual(envList({}, "L"), []);
});

test("one typia path rendering: dotted, indexes and quoted keys unwrapped, root empty", () => {
  assert.equal(typiaPath("$input"), "");
  assert.equal(typiaPath("$input.port"), "port");
  assert.equal(typiaPath("$input.routes[2].fallbacks[0].provider"), "routes.2.fallbacks.0.provider");
  assert.equal(typiaPath('$input.providers["my-provider"].base_url'), "providers.my-provider.base_url");
  assert.equal(typiaPath('$input.models["a\\"b"]'), 'models.a"b');
});
