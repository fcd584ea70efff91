/**
 * Deterministic request bodies for the benchmarks and load tests.
 *
 * `claudeCodeRequest()` builds a Claude-Code-sized /v1/messages body (~100 KB): 12 tools
 * with JSON Schemas, system blocks with cache_control, thinking enabled and a 40-turn
 * history with tool_use, tool_result and thinking blocks. It uses a seeded PRNG only, so
 * the output is byte-identical on every run; `node dist/bench/fixture.js --write`
 * regenerates bench/fixtures/claude-code-request.json (committed), and a test checks the
 * committed file matches.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { prng } from "../core/prng.js";

const WORDS = (
  "the a function returns value file test build error module import export const let type interface " +
  "request response stream token model cache buffer parse validate route provider upstream gateway " +
  "metrics histogram counter latency thread worker socket header body json schema tool result " +
  "thinking signature message assistant user system content block index delta stop reason usage " +
  "refactor rename extract inline check lint format commit branch merge diff patch line column path"
).split(" ");

function words(rnd: () => number, n: number): string {
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(WORDS[Math.floor(rnd() * WORDS.length)]!);
  return out.join(" ");
}

function code(rnd: () => number, lines: number): string {
  const out: string[] = [];
  for (let i = 0; i < lines; i++) {
    const w = WORDS[Math.floor(rnd() * WORDS.length)]!;
    out.push(`${String(i + 1).padStart(4)}\t  const ${w}${i} = ${w}(${JSON.stringify(words(rnd, 2))}); // ${words(rnd, 4)}`);
  }
  return out.join("\n");
}

const TOOL_NAMES = ["Task", "Bash", "Glob", "Grep", "LS", "Read", "Edit", "MultiEdit", "Write", "NotebookEdit", "WebFetch", "TodoWrite"];

function tool(rnd: () => number, name: string): Record<string, unknown> {
  const props: Record<string, unknown> = {};
  const nProps = 3 + Math.floor(rnd() * 4);
  const required: string[] = [];
  for (let i = 0; i < nProps; i++) {
    const p = `${WORDS[Math.floor(rnd() * WORDS.length)]}_${i}`;
    const kind = i % 4;
    props[p] =
      kind === 0
        ? { type: "string", description: words(rnd, 14) }
        : kind === 1
          ? { type: "number", description: words(rnd, 10), minimum: 0 }
          : kind === 2
            ? { type: "boolean", description: words(rnd, 8), default: false }
            : {
                type: "array",
                description: words(rnd, 10),
                items: {
                  type: "object",
                  properties: { id: { type: "string" }, status: { type: "string", enum: ["pending", "in_progress", "completed"] } },
                  required: ["id"],
                  additionalProperties: false,
                },
              };
    if (i < 2) required.push(p);
  }
  return {
    name,
    description: words(rnd, 120),
    input_schema: {
      type: "object",
      properties: props,
      required,
      additionalProperties: false,
      $schema: "http://json-schema.org/draft-07/schema#",
    },
  };
}

export function claudeCodeRequest(): Record<string, unknown> {
  const rnd = prng(0x5eed);
  const tools = TOOL_NAMES.map((n) => tool(rnd, n));
  tools[tools.length - 1]!.cache_control = { type: "ephemeral" };
  const system = [
    { type: "text", text: "You are Claude Code, Anthropic's official CLI for Claude.", cache_control: { type: "ephemeral" } },
    { type: "text", text: words(rnd, 1400), cache_control: { type: "ephemeral" } },
  ];
  const messages: Record<string, unknown>[] = [];
  messages.push({
    role: "user",
    content: [
      { type: "text", text: "<system-reminder>" + words(rnd, 200) + "</system-reminder>" },
      { type: "text", text: words(rnd, 30) },
    ],
  });
  // 40 turns after the first user message: 20 assistant (thinking + text + tool_use) and 20 user (tool_result).
  for (let t = 0; t < 20; t++) {
    const id = `toolu_01${String(t).padStart(4, "0")}${Math.floor(rnd() * 1e9).toString(36)}`;
    const name = TOOL_NAMES[t % TOOL_NAMES.length]!;
    messages.push({
      role: "assistant",
      content: [
        {
          type: "thinking",
          thinking: words(rnd, 60),
          signature:
            "Eq" +
            Math.floor(rnd() * 1e12)
              .toString(36)
              .repeat(12) +
            "==",
        },
        { type: "text", text: words(rnd, 25) },
        { type: "tool_use", id, name, input: { file_path: `/work/src/${WORDS[t % WORDS.length]}.ts`, pattern: words(rnd, 3), limit: 200 } },
      ],
    });
    const result: Record<string, unknown> = { type: "tool_result", tool_use_id: id, content: code(rnd, 32) };
    if (t === 19) result.cache_control = { type: "ephemeral" };
    messages.push({ role: "user", content: t % 5 === 4 ? [result, { type: "text", text: words(rnd, 12) }] : [result] });
  }
  return {
    model: "claude-sonnet-4-5",
    max_tokens: 32000,
    thinking: { type: "enabled", budget_tokens: 10000 },
    system,
    tools,
    tool_choice: { type: "auto" },
    metadata: { user_id: "user_bench_0000" },
    messages,
    stream: false,
  };
}

/** The one-message request of the "simple" rows and the small load-test body. */
export function smallRequest(): Record<string, unknown> {
  return { model: "claude-sonnet-4-5", max_tokens: 64, messages: [{ role: "user", content: "Hello, world" }] };
}

export const FIXTURE_PATH = fileURLToPath(new URL("../../bench/fixtures/claude-code-request.json", import.meta.url));

export function claudeCodeRequestText(): string {
  return JSON.stringify(claudeCodeRequest()) + "\n";
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1] && process.argv.includes("--write")) {
  const text = claudeCodeRequestText();
  writeFileSync(FIXTURE_PATH, text);
  process.stdout.write(`wrote ${FIXTURE_PATH} (${text.length} bytes)\n`);
}
