import { test } from "node:test";
import assert from "node:assert/strict";
import { anthropicToOpenAIRequest, forTarget } from "../../../core/translate/anthropic-to-openai-request.js";
import { DEFAULT_MAX_TOKENS, isTranslateError, openAIToAnthropicRequest } from "../../../core/translate/openai-to-anthropic-request.js";

test("Anthropic → OpenAI request: system blocks, images, tool results (text, image, error), tools, tool_choice, stops, user", () => {
  const out = anthropicToOpenAIRequest(
    {
      model: "claude-x",
      max_tokens: 100,
      system: [
        { type: "text", text: "You are terse.", cache_control: { type: "ephemeral" } },
        { type: "text", text: "Be kind." },
      ],
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "Look", cache_control: { type: "ephemeral" } },
            { type: "image", source: { type: "base64", media_type: "image/png", data: "iVBOR" } },
            { type: "image", source: { type: "url", url: "https://example.com/a.png" } },
          ],
        },
        {
          role: "assistant",
          content: [
            { type: "thinking", thinking: "hmm", signature: "sig" },
            { type: "text", text: "Checking." },
            { type: "tool_use", id: "toolu_1", name: "shot", input: { url: "x" } },
            { type: "tool_use", id: "toolu_2", name: "fail", input: {} },
          ],
        },
        {
          role: "user",
          content: [
            {
              type: "tool_result",
              tool_use_id: "toolu_1",
              content: [
                { type: "text", text: "done" },
                { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "/9j" } },
              ],
            },
            { type: "tool_result", tool_use_id: "toolu_2", content: "boom", is_error: true },
            { type: "text", text: "And?" },
          ],
        },
      ],
      tools: [
        {
          name: "shot",
          description: "screenshot",
          input_schema: { type: "object", properties: { url: { type: "string" } } },
          cache_control: { type: "ephemeral" },
        },
        { type: "web_search_20250305", name: "web_search" },
      ],
      tool_choice: { type: "any", disable_parallel_tool_use: true },
      stop_sequences: ["END"],
      temperature: 0.5,
      top_k: 5,
      metadata: { user_id: "u-42" },
      thinking: { type: "enabled", budget_tokens: 2048 },
      context_management: { edits: [] },
      output_config: { effort: "high" },
      stream: true,
    },
    { model: "gpt-up" },
  );
  assert.deepEqual(out, {
    model: "gpt-up",
    messages: [
      { role: "system", content: "You are terse.\n\nBe kind." },
      {
        role: "user",
        content: [
          { type: "text", text: "Look" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBOR" } },
          { type: "image_url", image_url: { url: "https://example.com/a.png" } },
        ],
      },
      {
        role: "assistant",
        content: "Checking.",
        tool_calls: [
          { id: "toolu_1", type: "function", function: { name: "shot", arguments: '{"url":"x"}' } },
          { id: "toolu_2", type: "function", function: { name: "fail", arguments: "{}" } },
        ],
      },
      { role: "tool", tool_call_id: "toolu_1", content: "done" },
      { role: "tool", tool_call_id: "toolu_2", content: "Error: boom" },
      {
        role: "user",
        content: [
          { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j" } },
          { type: "text", text: "And?" },
        ],
      },
    ],
    max_completion_tokens: 100,
    temperature: 0.5,
    stop: ["END"],
    stream: true,
    stream_options: { include_usage: true },
    user: "u-42",
    tools: [
      {
        type: "function",
        function: { name: "shot", description: "screenshot", parameters: { type: "object", properties: { url: { type: "string" } } } },
      },
    ],
    tool_choice: "required",
    parallel_tool_calls: false,
  });
  const raw = JSON.stringify(out);
  for (const dropped of ["cache_control", "context_management", "output_config", "signature", "thinking", "top_k", "web_search"]) {
    assert.ok(!raw.includes(dropped), `${dropped} is not forwarded`);
  }
});

test("Anthropic → OpenAI request: a named tool_choice becomes a function choice", () => {
  const out = anthropicToOpenAIRequest(
    {
      model: "m",
      max_tokens: 5,
      messages: [{ role: "user", content: "hi" }],
      tools: [{ name: "t", input_schema: { type: "object" } }],
      tool_choice: { type: "tool", name: "t" },
    },
    { model: "m" },
  );
  assert.deepEqual(out.tool_choice, { type: "function", function: { name: "t" } });
  assert.deepEqual(out.messages, [{ role: "user", content: "hi" }]);
});

test("OpenAI → Anthropic request: system/developer hoisted, images, tool calls and results merged into one user turn", () => {
  const out = openAIToAnthropicRequest(
    {
      model: "gpt-x",
      messages: [
        { role: "system", content: "Sys." },
        { role: "developer", content: [{ type: "text", text: "Dev." }] },
        {
          role: "user",
          content: [
            { type: "text", text: "What is this?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
            { type: "image_url", image_url: { url: "https://e.com/x.jpg" } },
          ],
        },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_1", type: "function", function: { name: "look", arguments: '{"q":1}' } },
            { id: "call_2", type: "function", function: { name: "other", arguments: "" } },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "a cat" },
        { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "ok" }] },
        { role: "user", content: "thanks" },
      ],
      tools: [
        { type: "function", function: { name: "look", description: "d", parameters: { type: "object" } } },
        { type: "function", function: { name: "other" } },
      ],
      tool_choice: "required",
      parallel_tool_calls: false,
      max_completion_tokens: 300,
      max_tokens: 10,
      stop: "STOP",
      temperature: 0.2,
      user: "u1",
      stream: true,
      stream_options: { include_usage: true },
      metadata: { a: "b" },
      response_format: { type: "json_object" },
    },
    "claude-up",
  );
  assert.deepEqual(out, {
    model: "claude-up",
    max_tokens: 300,
    messages: [
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } },
          { type: "image", source: { type: "url", url: "https://e.com/x.jpg" } },
        ],
      },
      {
        role: "assistant",
        content: [
          { type: "tool_use", id: "call_1", name: "look", input: { q: 1 } },
          { type: "tool_use", id: "call_2", name: "other", input: {} },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "call_1", content: "a cat" },
          { type: "tool_result", tool_use_id: "call_2", content: "ok" },
          { type: "text", text: "thanks" },
        ],
      },
    ],
    system: [
      { type: "text", text: "Sys." },
      { type: "text", text: "Dev." },
    ],
    temperature: 0.2,
    stop_sequences: ["STOP"],
    stream: true,
    metadata: { user_id: "u1" },
    tools: [
      { name: "look", description: "d", input_schema: { type: "object" } },
      { name: "other", input_schema: { type: "object", properties: {} } },
    ],
    tool_choice: { type: "any", disable_parallel_tool_use: true },
  });
});

test("OpenAI → Anthropic request: defaults max_tokens, maps reasoning_effort to a thinking budget below max_tokens", () => {
  const a = openAIToAnthropicRequest({ model: "g", messages: [{ role: "user", content: "hi" }] }, "c") as Record<string, unknown>;
  assert.equal(a.max_tokens, DEFAULT_MAX_TOKENS);
  const b = openAIToAnthropicRequest(
    { model: "g", messages: [{ role: "user", content: "hi" }], reasoning_effort: "high", max_tokens: 1000 },
    "c",
  ) as Record<string, unknown>;
  assert.deepEqual(b.thinking, { type: "enabled", budget_tokens: 16384 });
  assert.ok((b.max_tokens as number) > 16384);
  const c = openAIToAnthropicRequest(
    {
      model: "g",
      messages: [{ role: "user", content: "hi" }],
      tool_choice: { type: "function", function: { name: "f" } },
      tools: [{ type: "function", function: { name: "f" } }],
    },
    "c",
  ) as Record<string, unknown>;
  assert.deepEqual(c.tool_choice, { type: "tool", name: "f" });
});

test("OpenAI → Anthropic request: tool call arguments that are not a JSON object are refused naming the field", () => {
  const r = openAIToAnthropicRequest(
    {
      model: "g",
      messages: [
        { role: "user", content: "x" },
        { role: "assistant", tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }] },
      ],
    },
    "c",
  );
  assert.ok(isTranslateError(r));
  assert.equal(r.param, "messages.1.tool_calls.0.function.arguments");
  const s = openAIToAnthropicRequest(
    { model: "g", messages: [{ role: "user", content: [{ type: "input_audio", input_audio: { data: "", format: "wav" } }] }] },
    "c",
  );
  assert.ok(isTranslateError(s));
  assert.equal(s.param, "messages.0.content.0.type");
});

test("Anthropic → OpenAI request: an assistant turn of thinking only becomes empty content, not null", () => {
  const out = anthropicToOpenAIRequest(
    {
      model: "m",
      max_tokens: 5,
      messages: [
        { role: "user", content: "a" },
        { role: "assistant", content: [{ type: "thinking", thinking: "t", signature: "s" }] },
        { role: "user", content: "b" },
      ],
    },
    { model: "m" },
  );
  assert.deepEqual((out.messages as unknown[])[1], { role: "assistant", content: "" });
});

test("forTarget: sets the target's model and names the output limit the way that provider wants, keeping key order", () => {
  const req = anthropicToOpenAIRequest(
    { model: "c", max_tokens: 7, messages: [{ role: "user", content: "x" }], temperature: 0 },
    { model: "c" },
  );
  const older = forTarget(req, "qwen", "max_tokens");
  assert.deepEqual(Object.keys(older), ["model", "messages", "max_tokens", "temperature"]);
  assert.deepEqual([older.model, older.max_tokens], ["qwen", 7]);
  assert.equal(forTarget(req, "gpt", "max_completion_tokens").max_completion_tokens, 7);
  assert.equal(req.model, "c", "the shared translation is not changed");
});
