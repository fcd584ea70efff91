/** How the mock reads a prompt: the user's own words, and the documented ways to ask for a tool. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { promptText, schemaProblems, toolAsk } from "../../core/mock-intent.js";

const READ = {
  name: "Read",
  input_schema: { type: "object", properties: { file_path: { type: "string" }, limit: { type: "number" } }, required: ["file_path"] },
};
const BASH = {
  name: "Bash",
  input_schema: { type: "object", properties: { command: { type: "string" }, timeout: { type: "number" } }, required: ["command"] },
};

test("promptText keeps the user's words and drops injected blocks, closed or not", () => {
  assert.equal(promptText("hi"), "hi");
  assert.equal(
    promptText([
      { type: "text", text: "<system-reminder>\nctx\n</system-reminder>" },
      { type: "image", source: {} },
      { type: "text", text: "fix the bug <local-command-stdout>noise</local-command-stdout>" },
      { type: "text", text: "and test it<system-reminder>never closed" },
    ]),
    "fix the bug\nand test it",
  );
  assert.equal(promptText([{ type: "text", text: "<user-prompt-submit-hook>x</user-prompt-submit-hook>" }]), "");
});

test("toolAsk reads each documented phrasing; the value loses quotes and a final full stop", () => {
  const tools = [READ, BASH];
  const cases: [string, { name: string; input: Record<string, unknown> }][] = [
    ["use the Read tool on README.md.", { name: "Read", input: { file_path: "README.md" } }],
    ["Please use the read tool on 'docs/a b.md' and tell me", { name: "Read", input: { file_path: "docs/a b.md" } }],
    ["use the Bash tool to run `npm test -- --watch`", { name: "Bash", input: { command: "npm test -- --watch" } }],
    ["use the Bash tool to git status\nthen summarise", { name: "Bash", input: { command: "git status" } }],
    ['use the Read tool with {"file_path":"x.ts","limit":20}', { name: "Read", input: { file_path: "x.ts", limit: 20 } }],
  ];
  for (const [prompt, call] of cases) assert.deepEqual(toolAsk(prompt, tools), { ok: true, call }, prompt);
  assert.equal(toolAsk("read README.md please", tools), null, "no documented phrasing, no tool");
  assert.equal(toolAsk("use the Read tool on a.txt", [])?.ok, false);
});

test("schemaProblems names missing, mistyped, unknown and out-of-enum arguments", () => {
  const schema = {
    type: "object",
    additionalProperties: false,
    properties: { n: { type: "integer" }, mode: { type: "string", enum: ["a", "b"] }, s: { type: "string" } },
    required: ["s"],
  };
  assert.deepEqual(schemaProblems({ s: "x", n: 2, mode: "a" }, schema), []);
  assert.deepEqual(schemaProblems({ n: 2.5, mode: "c", extra: 1 }, schema), [
    "the required parameter `s` is missing",
    "`n` must be of type integer",
    "`mode` must be one of a, b",
    "`extra` is not a parameter of this tool",
  ]);
});
