import { test } from "node:test";
import assert from "node:assert/strict";
import { applyPolicy, compilePolicy, isPassThrough } from "../../core/beta-policy.js";

const CLAUDE_CODE =
  "claude-code-20250219, oauth-2025-04-20,interleaved-thinking-2025-05-14,fine-grained-tool-streaming-2025-05-14,context-management-2025-06-27,advanced-tool-use-2025-11-20,prompt-caching-scope-2026-01-05";

test("bedrock defaults: cloud betas pass, first-party-only ones drop, advanced-tool-use is renamed", () => {
  const r = applyPolicy(compilePolicy("bedrock", undefined), CLAUDE_CODE, {});
  assert.deepEqual(r.betas, [
    "interleaved-thinking-2025-05-14",
    "fine-grained-tool-streaming-2025-05-14",
    "context-management-2025-06-27",
    "tool-search-tool-2025-10-19",
  ]);
  assert.deepEqual(r.droppedBetas, ["claude-code-20250219", "oauth-2025-04-20", "prompt-caching-scope-2026-01-05"]);
});

test("fields follow their beta: context_management stays with its beta, output_config goes without effort", () => {
  const body = { context_management: {}, output_config: { effort: "high" }, thinking: {} };
  const p = compilePolicy("vertex", undefined);
  assert.deepEqual(applyPolicy(p, "context-management-2025-06-27", body).droppedFields, ["output_config"]);
  assert.deepEqual(applyPolicy(p, "effort-2025-11-24", body).droppedFields, ["context_management"]);
  assert.deepEqual(applyPolicy(p, "", { thinking: {} }).droppedFields, [], "fields not in the body are not reported");
});

test("first-wave providers pass everything by default", () => {
  const p = compilePolicy("anthropic", undefined);
  assert.ok(isPassThrough(p));
  const r = applyPolicy(p, CLAUDE_CODE, { context_management: {} });
  assert.equal(r.betas.length, 7);
  assert.deepEqual(r.droppedBetas, []);
  assert.deepEqual(r.droppedFields, []);
});

test("a config override replaces the default per key: pass all but a dropped one, remove a field, rename", () => {
  const p = compilePolicy("bedrock", {
    pass_betas: ["*"],
    drop_betas: ["oauth-2025-04-20"],
    drop_fields: ["metadata"],
    rename_betas: { "a-1": "b-1" },
  });
  const r = applyPolicy(p, "oauth-2025-04-20,claude-code-20250219,a-1,b-1", { metadata: {}, context_management: {} });
  assert.deepEqual(r.betas, ["claude-code-20250219", "b-1"], "renamed and deduplicated");
  assert.deepEqual(r.droppedBetas, ["oauth-2025-04-20"]);
  assert.deepEqual(r.droppedFields, ["metadata", "context_management"], "fields_need_beta still comes from the defaults");
  assert.equal(isPassThrough(p), false);
});
