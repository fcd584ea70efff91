import { test, describe } from "node:test";
import assert from "node:assert/strict";

import { isJsonContentType, validateCountTokensRequest, validateMessagesRequest } from "../../core/validate.js";

type Json = any; // eslint-disable-line @typescript-eslint/no-explicit-any

const minimal = (): Json => ({
  model: "claude-sonnet-4-5",
  max_tokens: 1024,
  messages: [{ role: "user", content: "Hello" }],
});

const schema = (props: Record<string, unknown>, required: string[]): Json => ({
  type: "object",
  properties: props,
  required,
  additionalProperties: false,
  $schema: "http://json-schema.org/draft-07/schema#",
});

/** A request shaped like what Claude Code sends mid-session. */
const claudeCodeLike = (): Json => ({
  model: "claude-opus-4-1-20250805",
  max_tokens: 32000,
  stream: true,
  temperature: 1,
  metadata: { user_id: "user_abc_account_123_session_456" },
  system: [
    {
      type: "text",
      text: "You are Claude Code, Anthropic's official CLI for Claude.",
      cache_control: { type: "ephemeral" },
    },
    {
      type: "text",
      text: "You are an interactive CLI tool that helps users with software engineering tasks.",
      cache_control: { type: "ephemeral", ttl: "1h" },
    },
  ],
  tools: [
    {
      name: "Bash",
      description: "Executes a given bash command",
      input_schema: schema(
        {
          command: { type: "string", description: "The command to execute" },
          timeout: { type: "number" },
        },
        ["command"],
      ),
    },
    {
      name: "Read",
      description: "Reads a file from the local filesystem.",
      input_schema: schema({ file_path: { type: "string" }, offset: { type: "number" }, limit: { type: "number" } }, ["file_path"]),
    },
    {
      name: "TodoWrite",
      description: "Update the todo list",
      input_schema: schema(
        {
          todos: {
            type: "array",
            items: {
              type: "object",
              properties: {
                content: { type: "string", minLength: 1 },
                status: { type: "string", enum: ["pending", "in_progress", "completed"] },
              },
              required: ["content", "status"],
            },
          },
        },
        ["todos"],
      ),
      cache_control: { type: "ephemeral" },
    },
    { type: "web_search_20250305", name: "web_search", max_uses: 5 },
  ],
  tool_choice: { type: "auto" },
  thinking: { type: "enabled", budget_tokens: 31999 },
  context_management: { edits: [{ type: "clear_thinking_20251015", keep: "all" }] },
  output_config: { effort: "high" },
  service_tier: "auto",
  messages: [
    {
      role: "user",
      content: [
        { type: "text", text: "<system-reminder>context</system-reminder>" },
        { type: "text", text: "List the files", cache_control: { type: "ephemeral" } },
      ],
    },
    {
      role: "assistant",
      content: [
        { type: "thinking", thinking: "I should run ls.", signature: "EqQBCkYIBxgCKkA..." },
        { type: "redacted_thinking", data: "EmwKAhgBEgy3va3pzix..." },
        { type: "text", text: "Let me list them." },
        { type: "tool_use", id: "toolu_01", name: "Bash", input: { command: "ls" } },
      ],
    },
    {
      role: "user",
      content: [
        {
          type: "tool_result",
          tool_use_id: "toolu_01",
          content: [
            { type: "text", text: "a.ts\nb.ts" },
            { type: "search_result", source: "x", title: "t", content: [] },
          ],
          is_error: false,
        },
        { type: "tool_result", tool_use_id: "toolu_00", content: "plain string result" },
        { type: "tool_result", tool_use_id: "toolu_0x" },
      ],
    },
    {
      role: "assistant",
      content: [
        // Unknown block types must pass, even with fields that collide with
        // known block types' fields (id/name/input, tool_use_id, content).
        {
          type: "server_tool_use",
          id: "srvtoolu_01",
          name: "web_search",
          input: { query: "typia" },
        },
        {
          type: "web_search_tool_result",
          tool_use_id: "srvtoolu_01",
          content: [{ type: "web_search_result", url: "https://typia.io", title: "typia" }],
        },
        { type: "mcp_tool_use", id: 42, name: null, input: "not an object" },
        { type: "text", text: "Found it." },
      ],
    },
    { role: "system", content: "A mid-conversation system turn (beta)." },
    {
      role: "user",
      content: [
        {
          type: "image",
          source: { type: "base64", media_type: "image/png", data: "iVBORw0KGgo=" },
        },
        { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
        { type: "image", source: { type: "file", file_id: "file_01" } },
        {
          type: "document",
          source: { type: "base64", media_type: "application/pdf", data: "JVBERi0=" },
          title: "Spec",
          context: "the spec",
          citations: { enabled: true },
          cache_control: { type: "ephemeral" },
        },
        { type: "document", source: { type: "text", media_type: "text/plain", data: "hello" } },
        {
          type: "document",
          source: { type: "content", content: [{ type: "text", text: "chunk" }] },
        },
        { type: "document", source: { type: "url", url: "https://example.com/a.pdf" } },
        { type: "container_upload", file_id: "file_02" },
        { type: "text", text: "What now?" },
      ],
    },
  ],
});

/** Asserts the request is rejected with a message starting with `path: `. */
function rejects(body: unknown, path: string, extra?: RegExp, fn = validateMessagesRequest): string {
  const msg = fn(body);
  assert.notEqual(msg, null, `expected a failure at ${path}`);
  assert.ok(msg!.startsWith(path + ": "), `expected path "${path}", got: ${msg}`);
  assert.ok(msg!.length < 300, `message too long: ${msg}`);
  assert.ok(!msg!.includes("$input"), msg!);
  if (extra) assert.match(msg!, extra);
  return msg!;
}

const withMessages = (...messages: Json[]): Json => ({ ...minimal(), messages });

describe("validateMessagesRequest: valid", () => {
  test("minimal request", () => {
    assert.equal(validateMessagesRequest(minimal()), null);
  });

  test("Claude-Code-like request with unknown fields and block types", () => {
    assert.equal(validateMessagesRequest(claudeCodeLike()), null);
  });

  test("unknown block types pass, known ones are strict", () => {
    const unknownTypes = [
      "server_tool_use",
      "web_search_tool_result",
      "search_result",
      "container_upload",
      "mcp_tool_use",
      "mcp_tool_result",
      "tool_reference",
      "textual", // near-miss of a known name is still unknown
      "",
    ];
    for (const type of unknownTypes) {
      const body = withMessages({
        role: "user",
        content: [{ type, id: 1, text: 2, tool_use_id: 3, thinking: 4, data: 5, source: 6 }],
      });
      assert.equal(validateMessagesRequest(body), null, type);
    }
    for (const type of ["text", "image", "document", "tool_use", "tool_result", "thinking", "redacted_thinking"]) {
      const msg = validateMessagesRequest(withMessages({ role: "user", content: [{ type }] }));
      assert.match(msg ?? "", /^messages\.0\.content\.0\.[a-z_]+: expected /, type);
    }
  });

  test("system turn, system as string, tool_choice variants, thinking variants", () => {
    const ok: Json[] = [
      withMessages({ role: "system", content: "be brief" }, { role: "user", content: "hi" }),
      { ...minimal(), system: "You are helpful." },
      { ...minimal(), tool_choice: { type: "any", disable_parallel_tool_use: true } },
      { ...minimal(), tool_choice: { type: "none" } },
      { ...minimal(), tool_choice: { type: "tool", name: "Bash" } },
      { ...minimal(), thinking: { type: "disabled" } },
      { ...minimal(), thinking: { type: "adaptive", display: "omitted" } },
      { ...minimal(), thinking: { type: "between_tools" } },
      { ...minimal(), metadata: { user_id: null } },
      { ...minimal(), metadata: {} },
      { ...minimal(), top_k: 0, top_p: 0.9, temperature: 0, stop_sequences: ["\n\nHuman:"] },
      { ...minimal(), tools: [{ type: "custom", name: "x", input_schema: { type: "object" } }] },
      { ...minimal(), tools: [{ type: "bash_20250124", name: "bash" }] },
      { ...minimal(), tools: [{ type: "mcp_toolset", mcp_server_name: "srv" }] },
      { ...minimal(), tools: [{ type: "computer_toolset_20260801" }] },
      { ...minimal(), container: "c_1", mcp_servers: [{ type: "url", url: "x", name: "n" }] },
      withMessages({ role: "user", content: [] }),
      withMessages({
        role: "user",
        content: [{ type: "text", text: "x", citations: null, cache_control: null }],
      }),
    ];
    for (const body of ok) assert.equal(validateMessagesRequest(body), null, JSON.stringify(body));
  });
});

describe("validateMessagesRequest: invalid", () => {
  test("model", () => {
    const b = minimal();
    delete b.model;
    rejects(b, "model", /got missing$/);
    rejects({ ...minimal(), model: 42 }, "model", /expected a non-empty string, got 42$/);
    rejects({ ...minimal(), model: "" }, "model");
    rejects({ ...minimal(), model: "m".repeat(257) }, "model", /expected at most 256 bytes, got 257 bytes$/);
    rejects({ ...minimal(), model: "é".repeat(129) }, "model", /got 258 bytes$/);
    assert.equal(validateMessagesRequest({ ...minimal(), model: "é".repeat(128) }), null);
  });

  test("content type", () => {
    for (const ok of ["application/json", "Application/JSON", "application/json; charset=utf-8", " application/json ;x=y"])
      assert.ok(isJsonContentType(ok), ok);
    for (const bad of [
      "",
      "text/plain",
      "application/jsonx",
      "application/json-seq",
      "multipart/form-data",
      "application/x-www-form-urlencoded",
    ])
      assert.ok(!isJsonContentType(bad), bad);
  });

  test("max_tokens", () => {
    for (const v of [0, -1, 1.5, "10", null, 2 ** 40]) {
      rejects({ ...minimal(), max_tokens: v }, "max_tokens", /expected a positive integer/);
    }
    assert.equal(validateMessagesRequest({ ...minimal(), max_tokens: -5 }), "max_tokens: expected a positive integer, got -5");
    const b = minimal();
    delete b.max_tokens;
    rejects(b, "max_tokens", /got missing$/);
  });

  test("messages not an array / bad entries", () => {
    rejects({ ...minimal(), messages: "hi" }, "messages", /array/);
    rejects({ ...minimal(), messages: { 0: "x" } }, "messages", /got an object$/);
    rejects(withMessages(null), "messages.0", /got null$/);
    rejects(withMessages({ role: "user" }), "messages.0.content", /got missing$/);
    rejects(withMessages({ role: "user", content: 5 }), "messages.0.content");
    rejects(withMessages({ role: "user", content: ["text"] }), "messages.0.content.0");
    rejects(withMessages({ role: "user", content: [{ text: "x" }] }), "messages.0.content.0.type");
  });

  test("bad role", () => {
    const msg = validateMessagesRequest(withMessages({ role: "user", content: "a" }, { role: "bot", content: "b" }));
    assert.equal(msg, 'messages.1.role: expected "user" | "assistant" | "system", got "bot"');
  });

  test("content blocks with the wrong shape", () => {
    rejects(
      withMessages({ role: "user", content: [{ type: "text", text: "ok" }, { type: "text" }] }),
      "messages.0.content.1.text",
      /expected a string, got missing$/,
    );
    rejects(withMessages({ role: "assistant", content: [{ type: "tool_use", name: "Bash", input: {} }] }), "messages.0.content.0.id");
    rejects(
      withMessages({
        role: "assistant",
        content: [{ type: "tool_use", id: "t", name: "Bash", input: ["ls"] }],
      }),
      "messages.0.content.0.input",
      /expected an object, got an array$/,
    );
    rejects(withMessages({ role: "assistant", content: [{ type: "thinking", thinking: "hmm" }] }), "messages.0.content.0.signature");
    rejects(withMessages({ role: "assistant", content: [{ type: "redacted_thinking" }] }), "messages.0.content.0.data");
    rejects(withMessages({ role: "user", content: [{ type: "tool_result", content: "x" }] }), "messages.0.content.0.tool_use_id");
    rejects(
      withMessages({
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "t", is_error: "yes" }],
      }),
      "messages.0.content.0.is_error",
    );
    rejects(
      withMessages({
        role: "user",
        content: [{ type: "tool_result", tool_use_id: "t", content: [{ type: "text", text: 1 }] }],
      }),
      "messages.0.content.0.content.0.text",
    );
    rejects(
      withMessages({ role: "user", content: [{ type: "image", source: { type: "svg" } }] }),
      "messages.0.content.0.source.type",
      /expected "base64" \| "url" \| "file", got "svg"$/,
    );
    rejects(
      withMessages({
        role: "user",
        content: [{ type: "image", source: { type: "base64", media_type: "image/png" } }],
      }),
      "messages.0.content.0.source.data",
    );
    rejects(withMessages({ role: "user", content: [{ type: "document", source: { type: "url" } }] }), "messages.0.content.0.source.url");
    rejects(
      withMessages({
        role: "user",
        content: [{ type: "text", text: "x", cache_control: { type: "persistent" } }],
      }),
      "messages.0.content.0.cache_control.type",
    );
  });

  test("sampling parameters", () => {
    rejects({ ...minimal(), temperature: 2 }, "temperature", /between 0 and 1, got 2$/);
    rejects({ ...minimal(), temperature: "0.5" }, "temperature");
    rejects({ ...minimal(), top_p: -0.1 }, "top_p");
    rejects({ ...minimal(), top_k: -1 }, "top_k", /non-negative integer, got -1$/);
    rejects({ ...minimal(), top_k: 2.5 }, "top_k");
    rejects({ ...minimal(), stop_sequences: ["a", 1] }, "stop_sequences.1", /got 1$/);
    rejects({ ...minimal(), stop_sequences: "STOP" }, "stop_sequences");
    rejects({ ...minimal(), stream: "true" }, "stream");
  });

  test("system, metadata", () => {
    rejects({ ...minimal(), system: 5 }, "system");
    rejects({ ...minimal(), system: [{ type: "text" }] }, "system.0.text");
    rejects({ ...minimal(), system: [{ type: "image", source: {} }] }, "system.0.type");
    rejects({ ...minimal(), metadata: { user_id: 5 } }, "metadata.user_id");
    rejects({ ...minimal(), metadata: "u" }, "metadata");
  });

  test("tools", () => {
    const s = { type: "object", properties: {} };
    rejects({ ...minimal(), tools: [{ description: "d", input_schema: s }] }, "tools.0.name", /got missing$/);
    rejects(
      {
        ...minimal(),
        tools: [
          { name: "ok", input_schema: s },
          { name: "", input_schema: s },
        ],
      },
      "tools.1.name",
    );
    rejects({ ...minimal(), tools: [{ name: 7, input_schema: s }] }, "tools.0.name");
    rejects({ ...minimal(), tools: [{ type: "web_search_20250305" }] }, "tools.0.name");
    rejects({ ...minimal(), tools: [{ name: "x" }] }, "tools.0.input_schema");
    rejects({ ...minimal(), tools: [{ name: "x", input_schema: "{}" }] }, "tools.0.input_schema");
    rejects({ ...minimal(), tools: ["Bash"] }, "tools.0");
    rejects({ ...minimal(), tools: { name: "x" } }, "tools");
  });

  test("tool_choice", () => {
    assert.equal(
      validateMessagesRequest({ ...minimal(), tool_choice: { type: "required" } }),
      'tool_choice.type: expected "auto" | "any" | "none" | "tool", got "required"',
    );
    rejects({ ...minimal(), tool_choice: { type: "tool" } }, "tool_choice.name");
    rejects({ ...minimal(), tool_choice: "auto" }, "tool_choice");
    rejects({ ...minimal(), tool_choice: { type: "auto", disable_parallel_tool_use: "yes" } }, "tool_choice.disable_parallel_tool_use");
  });

  test("thinking", () => {
    rejects({ ...minimal(), thinking: { type: "enabled" } }, "thinking.budget_tokens");
    rejects({ ...minimal(), thinking: { type: "enabled", budget_tokens: 1000 } }, "thinking.budget_tokens", />= 1024, got 1000$/);
    rejects({ ...minimal(), thinking: {} }, "thinking.type");
    rejects({ ...minimal(), thinking: true }, "thinking");
  });

  test("body not an object", () => {
    for (const body of [null, undefined, [], [minimal()], "{}", 42, true]) {
      assert.equal(validateMessagesRequest(body), "body: expected a JSON object");
    }
  });

  test("reports only the first error, values are shortened", () => {
    const msg = validateMessagesRequest({ max_tokens: -1, model: 1, messages: 2 })!;
    assert.equal(msg.split(": expected").length, 2, msg);
    const long = validateMessagesRequest(withMessages({ role: "x".repeat(1000), content: "" }))!;
    assert.ok(long.length < 200, long);
    assert.match(long, /got "x+\.\.\."$/);
  });

  test("never throws on junk", () => {
    let deep: Json = {};
    for (let i = 0; i < 10000; i++) deep = { type: "text", text: deep, content: [deep] };
    let deepArr: Json = [];
    for (let i = 0; i < 10000; i++) deepArr = [deepArr];
    const throwing = Object.defineProperty({}, "model", {
      enumerable: true,
      get() {
        throw new Error("boom");
      },
    });
    const junk: unknown[] = [
      deep,
      deepArr,
      { model: deep, max_tokens: deepArr, messages: deep },
      withMessages(deep),
      withMessages({ role: "user", content: [deep] }),
      withMessages({ role: "user", content: deepArr }),
      { ...minimal(), tools: [deep], tool_choice: deep, thinking: deep, metadata: deep },
      { ...minimal(), system: deepArr },
      Object.create(null),
      { __proto__: { model: "x" } },
      { ...minimal(), max_tokens: NaN },
      { ...minimal(), max_tokens: Infinity },
      { ...minimal(), max_tokens: 10n },
      { ...minimal(), model: Symbol("x") },
      { ...minimal(), model: () => 1 },
      throwing,
      new Date(),
      new Map(),
    ];
    for (const body of junk) {
      const a = validateMessagesRequest(body);
      const b = validateCountTokensRequest(body);
      assert.equal(typeof a, "string");
      assert.equal(typeof b, "string");
    }
    // random structural junk
    let seed = 1;
    const rnd = () => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff;
    const values = (d: number): unknown => {
      const r = rnd();
      if (d > 4 || r < 0.3) return [null, 0, -1, 1.5, "", "text", true, [], {}][Math.floor(rnd() * 9)];
      if (r < 0.6) return Array.from({ length: Math.floor(rnd() * 3) }, () => values(d + 1));
      const keys = ["type", "text", "role", "content", "model", "max_tokens", "messages", "tools", "id", "name", "input"];
      const o: Record<string, unknown> = {};
      for (let i = 0; i < 4; i++) o[keys[Math.floor(rnd() * keys.length)]!] = values(d + 1);
      return o;
    };
    for (let i = 0; i < 3000; i++) {
      const body = rnd() < 0.5 ? values(0) : { ...minimal(), messages: [values(1)], tools: rnd() < 0.5 ? [values(2)] : undefined };
      const r = validateMessagesRequest(body);
      assert.ok(r === null || typeof r === "string");
    }
  });
});

describe("validateCountTokensRequest", () => {
  test("valid without max_tokens", () => {
    const b = minimal();
    delete b.max_tokens;
    assert.equal(validateCountTokensRequest(b), null);
    const cc = claudeCodeLike();
    delete cc.max_tokens;
    delete cc.stream;
    assert.equal(validateCountTokensRequest(cc), null);
  });

  test("still validates what is present", () => {
    const b = minimal();
    delete b.max_tokens;
    rejects({ ...b, model: 1 }, "model", undefined, validateCountTokensRequest);
    rejects({ ...b, max_tokens: 0 }, "max_tokens", undefined, validateCountTokensRequest);
    rejects(
      { ...b, messages: [{ role: "user", content: [{ type: "tool_use" }] }] },
      "messages.0.content.0.id",
      undefined,
      validateCountTokensRequest,
    );
    assert.equal(validateCountTokensRequest([]), "body: expected a JSON object");
  });
});
