import { test } from "node:test";
import assert from "node:assert/strict";
import { loadConfig } from "../../../core/config.js";
import { digestKey, KeyIndex } from "../../../core/auth.js";
import { Budgets, L_TOKENS_DAY, MODE_LEASE } from "../../../core/budget.js";
import { MicroClock } from "../../../core/clock.js";
import { entryOf, type KeyRecord } from "../../../core/keys.js";
import { createMetricsBuffer, G_ACTIVE, Metrics, MetricsLayout, R_COUNT_TOKENS, R_MESSAGES } from "../../../core/metrics.js";
import { PriceTable } from "../../../core/pricing.js";
import { buildProviders } from "../../../core/providers.js";
import { RateLimiter } from "../../../core/ratelimit.js";
import { Router } from "../../../core/routing.js";
import { Shedder } from "../../../core/shedder.js";
import { BLOCK_LEASE_SHORT, createUsageBuffer, UsageLayout, UsageMetrics } from "../../../core/usage-metrics.js";
import { read64 } from "../../../core/atomic64.js";
import { buildPipelines, type PipelineDeps } from "../../../core/pipeline/build.js";
import { codeNumber, codeOf, CONTINUE, WAIT } from "../../../core/pipeline/codes.js";
import { Pipeline, type Stage } from "../../../core/pipeline/pipeline.js";
import { RequestState } from "../../../core/pipeline/state.js";

const CLIENT = "sk-client-key-000000000001";
const VIRTUAL = "sk-virtual-key-00000000001";

function setup(
  opts: {
    keys?: boolean;
    billing?: boolean;
    rpm?: number;
    virtualLimits?: KeyRecord["limits"];
    models?: string[] | null;
    leaseWait?: boolean;
  } = {},
) {
  const cfg = loadConfig(
    { MODEL_PROVIDER: "anthropic", ANTHROPIC_API_BASE: "http://127.0.0.1:9", ANTHROPIC_API_KEY: "sk-up", HTTP_THREADS: "1" },
    undefined,
    1,
  );
  const providers = buildProviders(cfg.providers);
  const layout = new MetricsLayout(providers.map((p) => p.name));
  const metrics = new Metrics(layout, createMetricsBuffer(layout));
  const keys = new KeyIndex(opts.keys === false ? [] : [CLIENT], opts.billing === true);
  const budgets = new Budgets(Budgets.bufferFor(4));
  const prices = new PriceTable(cfg.prices);
  const usage = new UsageMetrics(
    new UsageLayout(
      providers.map((p) => p.name),
      prices.labels,
    ),
    createUsageBuffer(
      new UsageLayout(
        providers.map((p) => p.name),
        prices.labels,
      ),
    ),
  );
  usage.setLedger(true, 0);
  if (opts.billing === true) {
    const digest = digestKey(VIRTUAL).toString("hex");
    keys.put(
      digest,
      entryOf(
        {
          id: "vk1",
          name: "v",
          digest,
          models: opts.models ?? null,
          limits: opts.virtualLimits ?? {},
          tools: ["*"],
          commands: null,
          created_at: "",
          revoked_at: null,
        },
        2,
        0,
        0,
      ),
    );
  }
  const taps: string[] = [];
  const deps: PipelineDeps = {
    maxBodyBytes: 1000,
    limits: { requestsPerMinute: opts.rpm ?? 0, tokensPerMinute: 0 },
    flags: { draining: false },
    shedder: new Shedder(
      new SharedArrayBuffer(4),
      0,
      { heapThreshold: 1, memoryThreshold: 1, activeThreshold: 1000, eventLoopDelayMs: 1000 },
      metrics.i32,
      G_ACTIVE,
    ),
    metrics,
    keys,
    limiter: new RateLimiter(RateLimiter.bufferFor(4), new MicroClock(Date.now())),
    router: new Router(cfg.routes, providers, cfg.defaultProvider),
    billing: opts.billing === true ? { budgets, prices, usage, failClosed: true, leaseWait: opts.leaseWait } : null,
    pricer: (s) => {
      s.chargedTokens = Math.max(0, s.inputTokens) + Math.max(0, s.outputTokens);
      s.chargedMicros = 0;
    },
    taps: [(s, status) => taps.push(`${s.id}:${status}`)],
  };
  return { pipes: buildPipelines(deps), budgets, taps, usage };
}

function request(route: number, key: string, body: object | string): RequestState {
  const s = new RequestState(route, 0);
  s.id = "req_t";
  s.clientKey = key;
  s.contentType = "application/json";
  const text = typeof body === "string" ? body : JSON.stringify(body);
  s.contentLength = Buffer.byteLength(text);
  s.body = Buffer.from(text);
  return s;
}

const MSG = { model: "claude-sonnet-4-5", max_tokens: 100, messages: [{ role: "user", content: "hi" }] };

test("the stages are decided at start-up: a gateway without keys or budgets has no such stages", () => {
  const open = setup({ keys: false });
  assert.deepEqual(open.pipes.messages.names(), ["framing", "draining", "shed", "content-type", "length", "parse", "validate", "route"]);
  const billed = setup({ billing: true });
  assert.deepEqual(billed.pipes.messages.names(), [
    "framing",
    "draining",
    "shed",
    "authenticate",
    "rate-limit",
    "budget",
    "content-type",
    "length",
    "parse",
    "validate",
    "route",
    "permit",
    "reserve",
  ]);
  assert.ok(!billed.pipes.countTokens.names().includes("reserve"), "count_tokens reserves nothing");
  assert.deepEqual(billed.pipes.plain.names(), []);
});

test("a request admitted by every stage carries its model and targets; a bad one gets its catalogue error", () => {
  const { pipes } = setup();
  const ok = request(R_MESSAGES, CLIENT, MSG);
  assert.equal(pipes.messages.runHead(ok), CONTINUE);
  assert.equal(pipes.messages.runBody(ok), CONTINUE);
  assert.equal(ok.model, "claude-sonnet-4-5");
  assert.equal(ok.targets[0]!.provider.name, "anthropic");
  assert.equal(ok.admitted, pipes.messages.names().length);

  const noKey = request(R_MESSAGES, "", MSG);
  assert.equal(codeOf(pipes.messages.runHead(noKey)), "GW_ERR_AUTH_MISSING_KEY");
  const badJson = request(R_MESSAGES, CLIENT, "{");
  assert.equal(pipes.messages.runHead(badJson), CONTINUE);
  assert.equal(codeOf(pipes.messages.runBody(badJson)), "GW_ERR_REQ_INVALID_JSON");
  assert.match(badJson.errMessage!, /not valid JSON/);
  const twoModels = request(
    R_MESSAGES,
    CLIENT,
    '{"model":"a","model":"claude-sonnet-4-5","max_tokens":1,"messages":[{"role":"user","content":"x"}]}',
  );
  pipes.messages.runHead(twoModels);
  assert.equal(codeOf(pipes.messages.runBody(twoModels)), "GW_ERR_REQ_VALIDATION");
  const big = request(R_MESSAGES, CLIENT, MSG);
  big.contentLength = 5000;
  assert.equal(codeOf(pipes.messages.runHead(big)), "GW_ERR_REQ_BODY_TOO_LARGE");
  const text = request(R_MESSAGES, CLIENT, MSG);
  text.contentType = "text/plain";
  assert.equal(codeOf(pipes.messages.runHead(text)), "GW_ERR_REQ_CONTENT_TYPE");
  assert.equal(text.errMessage, 'content-type must be application/json, got "text/plain"');
  assert.equal(text.ledger, true, "a refusal past auth on /v1/messages still gets its ledger row");
});

test("a rate-limited request gets 429 headers the SDKs read", () => {
  const { pipes } = setup({ rpm: 1 });
  assert.equal(pipes.messages.runHead(request(R_MESSAGES, CLIENT, MSG)), CONTINUE);
  const s = request(R_MESSAGES, CLIENT, MSG);
  assert.equal(codeOf(pipes.messages.runHead(s)), "GW_ERR_RATE_LIMITED");
  assert.equal(s.errMessage, "requests per minute limit exceeded for this key");
  assert.equal(s.errHeaders![0], "retry-after");
  assert.ok(s.errHeaders!.includes("anthropic-ratelimit-requests-limit"));
});

test("settlement runs in reverse over exactly the stages that admitted, and the taps run for every request", () => {
  const log: string[] = [];
  const stage = (name: string, result: number): Stage => ({
    name,
    run: () => (log.push(`run ${name}`), result),
    settle: () => log.push(`settle ${name}`),
  });
  const refused = codeNumber("GW_ERR_RATE_LIMITED");
  const p = new Pipeline([stage("a", CONTINUE), stage("b", CONTINUE)], [stage("c", refused), stage("d", CONTINUE)], null, [
    () => log.push("tap"),
  ]);
  const s = new RequestState(R_MESSAGES, 0);
  assert.equal(p.runHead(s), CONTINUE);
  assert.equal(p.runBody(s), refused);
  p.finish(s, 429, 1);
  assert.deepEqual(log, ["run a", "run b", "run c", "settle b", "settle a", "tap"], "c refused, so neither c nor d settles");
});

test("a budgeted key: the reservation is given back and the real usage charged; a refusal settles nothing", () => {
  const { pipes, budgets, taps } = setup({ billing: true, virtualLimits: { tokens_per_day: 10_000 } });
  const s = request(R_MESSAGES, VIRTUAL, MSG);
  assert.equal(pipes.messages.runHead(s), CONTINUE);
  assert.equal(pipes.messages.runBody(s), CONTINUE);
  assert.ok(s.reservedTokens > 100, "max_tokens plus the body's estimate");
  assert.equal(budgets.spend(2).reservedTokens, s.reservedTokens);
  s.inputTokens = 7;
  s.outputTokens = 5;
  pipes.messages.finish(s, 200, 1);
  assert.equal(budgets.spend(2).reservedTokens, 0, "the reservation is released");
  assert.equal(budgets.spend(2).dayTokens, 12, "the real usage is charged");
  assert.deepEqual(taps, ["req_t:200"]);

  const huge = request(R_MESSAGES, VIRTUAL, { ...MSG, max_tokens: 1_000_000 });
  pipes.messages.runHead(huge);
  assert.equal(codeOf(pipes.messages.runBody(huge)), "GW_ERR_BUDGET_EXCEEDED");
  assert.match(huge.errMessage!, /tokens_per_day limit \(10000 tokens\)/);
  pipes.messages.finish(huge, 429, 1);
  assert.equal(budgets.spend(2).reservedTokens, 0, "nothing reserved, nothing released");
  assert.equal(budgets.spend(2).dayTokens, 12);
});

test("a virtual key's model allowlist is checked once the route named the model", () => {
  const { pipes } = setup({ billing: true, models: ["claude-haiku-*"] });
  const s = request(R_COUNT_TOKENS, VIRTUAL, { model: "claude-sonnet-4-5", messages: [{ role: "user", content: "hi" }] });
  assert.equal(pipes.countTokens.runHead(s), CONTINUE);
  assert.equal(codeOf(pipes.countTokens.runBody(s)), "GW_ERR_AUTH_MODEL_FORBIDDEN");
});

test("fleet leases: a lease-short reservation answers WAIT with leaseWait, resumes at the reserve stage once granted, and is a 503 without it or on a dead Redis", () => {
  const day = Math.floor(Date.now() / 86_400_000);
  const d = new Date();
  const month = (d.getUTCFullYear() - 1970) * 12 + d.getUTCMonth();
  const { pipes, budgets, usage } = setup({ billing: true, virtualLimits: { tokens_per_day: 10_000 }, leaseWait: true });
  budgets.setMode(MODE_LEASE);
  budgets.openWindow(2, day, month);
  const s = request(R_MESSAGES, VIRTUAL, MSG);
  assert.equal(pipes.messages.runHead(s), CONTINUE);
  assert.equal(pipes.messages.runBody(s), WAIT, "nothing on lease yet: wait for it");
  const before = s.admitted;
  assert.equal(budgets.takeNeed(2).need, true, "the main thread is asked for more");
  assert.equal(budgets.spend(2).reservedTokens, 0, "a waiting request holds no reservation");
  assert.equal(pipes.messages.resumeBody(s), WAIT, "still short");
  budgets.grant(2, L_TOKENS_DAY, 5000);
  assert.equal(pipes.messages.resumeBody(s), CONTINUE, "the grant covers it");
  assert.equal(s.admitted, before + 1, "only the reserve stage ran again");
  assert.equal(budgets.spend(2).reservedTokens, s.reservedTokens);
  pipes.messages.finish(s, 200, 1);
  assert.equal(budgets.spend(2).reservedTokens, 0);
  const shortBlocks = () => read64(usage.u32, usage.layout.blocksOff + BLOCK_LEASE_SHORT * 2);
  assert.equal(shortBlocks(), 0, "a wait is not a refusal");

  budgets.setRedisDown(true);
  const dead = request(R_MESSAGES, VIRTUAL, { ...MSG, max_tokens: 9_000 });
  pipes.messages.runHead(dead);
  assert.equal(codeOf(pipes.messages.runBody(dead)), "GW_ERR_BUDGET_UNAVAILABLE", "Redis known unreachable: no wait");
  assert.deepEqual(dead.errHeaders, ["retry-after", "1"]);
  assert.equal(shortBlocks(), 1);

  const off = setup({ billing: true, virtualLimits: { tokens_per_day: 10_000 } });
  off.budgets.setMode(MODE_LEASE);
  off.budgets.openWindow(2, day, month);
  const now = request(R_MESSAGES, VIRTUAL, MSG);
  off.pipes.messages.runHead(now);
  assert.equal(codeOf(off.pipes.messages.runBody(now)), "GW_ERR_BUDGET_UNAVAILABLE", "BUDGET_LEASE_WAIT_MS=0: the 503 at once");
});
