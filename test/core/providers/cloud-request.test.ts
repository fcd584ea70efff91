import { test } from "node:test";
import assert from "node:assert/strict";
import { bedrockBody, bedrockPath, countTokensReply, mapException } from "../../../core/providers/bedrock/request.js";
import { vertexBody, vertexPath } from "../../../core/providers/vertex/request.js";
import { ConfigError, loadConfig } from "../../../core/config.js";

test("bedrock paths encode inference-profile and ARN model ids as one segment", () => {
  assert.equal(
    bedrockPath("", "us.anthropic.claude-sonnet-4-5-20250929-v1:0", true, false),
    "/model/us.anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream",
  );
  assert.equal(
    bedrockPath("/vpce", "arn:aws:bedrock:us-east-1:1:inference-profile/x", false, false),
    "/vpce/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Ainference-profile%2Fx/invoke",
  );
  assert.equal(bedrockPath("", "m", true, true), "/model/m/count-tokens");
});

test("bedrock body: version first, no model or stream, betas in anthropic_beta, policy fields removed", () => {
  const b = JSON.parse(
    bedrockBody({ model: "x", stream: true, max_tokens: 5, output_config: {}, messages: [] }, ["b1"], ["output_config"], false).toString(),
  );
  assert.deepEqual(b, { anthropic_version: "bedrock-2023-05-31", max_tokens: 5, messages: [], anthropic_beta: ["b1"] });
  assert.deepEqual(Object.keys(b)[0], "anthropic_version");
  const c = JSON.parse(bedrockBody({ model: "x", messages: [] }, [], [], true).toString()) as { input: { invokeModel: { body: string } } };
  assert.deepEqual(JSON.parse(Buffer.from(c.input.invokeModel.body, "base64").toString()), {
    anthropic_version: "bedrock-2023-05-31",
    messages: [],
    max_tokens: 1,
  });
  assert.equal(countTokensReply(Buffer.from('{"inputTokens":12}'))!.toString(), '{"input_tokens":12}');
  assert.equal(countTokensReply(Buffer.from("nope")), null);
});

test("AWS exception names map to statuses the retry policy understands", () => {
  assert.deepEqual(mapException("ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/"), {
    status: 429,
    type: "rate_limit_error",
  });
  assert.deepEqual(mapException("serviceUnavailableException"), { status: 503, type: "overloaded_error" });
  assert.deepEqual(mapException("validationException"), { status: 400, type: "invalid_request_error" });
  assert.equal(mapException("NewException"), null);
});

test("vertex paths and body", () => {
  assert.equal(
    vertexPath("", "p-1", "global", "claude-opus-4-1@20250805", true, false),
    "/v1/projects/p-1/locations/global/publishers/anthropic/models/claude-opus-4-1@20250805:streamRawPredict",
  );
  assert.equal(
    vertexPath("", "p", "us-east5", "m", true, true),
    "/v1/projects/p/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict",
  );
  assert.deepEqual(JSON.parse(vertexBody({ model: "a", stream: true, messages: [] }, "up", [], false).toString()), {
    anthropic_version: "vertex-2023-10-16",
    stream: true,
    messages: [],
  });
  assert.equal(JSON.parse(vertexBody({ model: "a", messages: [] }, "up", [], true).toString()).model, "up");
});

function failsOn(env: Record<string, string>, file: unknown, setting: string): void {
  assert.throws(
    () => loadConfig(env, file, 1),
    (e: unknown) => e instanceof ConfigError && e.setting === setting,
  );
}

test("config: bedrock endpoint from the region, bearer from AWS_BEARER_TOKEN_BEDROCK; bad entries name their setting", () => {
  const c = loadConfig({ AWS_REGION: "eu-central-1", AWS_BEARER_TOKEN_BEDROCK: "tok" }, { providers: { b: { type: "bedrock" } } }, 1);
  const b = c.providers.find((p) => p.name === "b")!;
  assert.equal(b.origin, "https://bedrock-runtime.eu-central-1.amazonaws.com");
  assert.equal(b.apiKey, "tok");
  assert.equal(
    loadConfig({}, { providers: { b: { type: "bedrock", region: "us-east-1" } } }, 1).providers.find((p) => p.name === "b")!.apiKey,
    null,
    "no key: SigV4",
  );
  failsOn({}, { providers: { b: { type: "bedrock" } } }, "CONFIG_FILE providers.b.region");
  failsOn({}, { providers: { b: { type: "bedrock", region: "US East" } } }, "CONFIG_FILE providers.b.region");
  failsOn(
    {},
    { providers: { b: { type: "bedrock", region: "us-east-1", beta_policy: { pass_betas: "all" } } } },
    "CONFIG_FILE providers.b.beta_policy.pass_betas",
  );
});

test("config: vertex needs project and location; global uses the global host; api_key is refused", () => {
  const c = loadConfig({}, { providers: { v: { type: "vertex", project_id: "p", region: "global" } } }, 1);
  assert.equal(c.providers.find((p) => p.name === "v")!.origin, "https://aiplatform.googleapis.com");
  const r = loadConfig({}, { providers: { v: { type: "vertex", project_id: "p", region: "us-east5" } } }, 1);
  assert.equal(r.providers.find((p) => p.name === "v")!.origin, "https://us-east5-aiplatform.googleapis.com");
  failsOn({}, { providers: { v: { type: "vertex", region: "us-east5" } } }, "CONFIG_FILE providers.v.project_id");
  failsOn({}, { providers: { v: { type: "vertex", project_id: "p" } } }, "CONFIG_FILE providers.v.region");
  failsOn({}, { providers: { v: { type: "vertex", project_id: "p", region: "global", api_key: "k" } } }, "CONFIG_FILE providers.v.api_key");
});
