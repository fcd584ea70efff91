/**
 * The benchmark rows: the report's table, each row calling the project's real modules
 * (bench/stack.ts builds them from a real config), plus a few rows that explain the
 * table (auth alone, the stack without validation, JSON.parse and the model scan).
 */
import { readFileSync } from "node:fs";
import { R_MESSAGES } from "../core/metrics.js";
import { mergeBuckets, quantile, snapshot } from "../core/metrics-read.js";
import renderMetrics, { type RenderTask } from "../workers/metrics-task.js";
import { RequestState } from "../core/pipeline/state.js";
import { validateMessagesRequest } from "../core/validate.js";
import { duplicateModelKey, findModelRange } from "../core/json-splice.js";
import { parseStage } from "../core/pipeline/stages/request.js";
import { presentedKey } from "../core/auth.js";
import { Budgets, L_TOKENS_DAY, L_USD_DAY, LEASE_CAP, MODE_LEASE, monthEpoch, type BudgetLimits } from "../core/budget.js";
import { CLIENT_KEY, Core } from "./stack.js";
import { MicroClock } from "../core/clock.js";
import { RateLeaseSlots, RateLimiter } from "../core/ratelimit.js";
import { Deadline, DeadlineSweep } from "../server/deadlines.js";
import { Inflight, type InflightNode } from "../server/context.js";
import { FIXTURE_PATH, smallRequest } from "./fixture.js";

export interface Row {
  id: string;
  name: string;
  /** One of the report's rows (false: an explanatory extra). */
  report: boolean;
  fn: () => unknown;
}

export interface Rows {
  rows: Row[];
  /** Report rows that could not be built, with the reason. */
  missing: { id: string; reason: string }[];
  complexBytes: number;
  /** Flush the log destination and the ledger batch (after the last row). */
  close(): void;
}

export async function buildRows(): Promise<Rows> {
  const core = new Core();
  core.populate();

  const small = smallRequest();
  const smallText = JSON.stringify(small);
  const smallBuf = Buffer.from(smallText);
  const complexText = readFileSync(FIXTURE_PATH, "utf8");
  const complexBuf = Buffer.from(complexText);
  const complex = JSON.parse(complexText) as Record<string, unknown>;
  if (validateMessagesRequest(small) !== null || validateMessagesRequest(complex) !== null)
    throw new Error("bench fixtures must be valid requests");
  if (core.stack(smallBuf, CLIENT_KEY) !== 200) throw new Error("the combined stack must admit the small request");
  if (core.stack(complexBuf, CLIENT_KEY) !== 200) throw new Error("the combined stack must admit the complex request");
  if (core.stack(smallBuf, "sk-wrong") !== 400) throw new Error("the combined stack must refuse a wrong key");
  // The complex body as current Claude Code sends it: its Task tool has a "model" property,
  // so "model" occurs twice and the duplicate check walks the top level.
  const nestedText = JSON.stringify(withTaskModel(complex));
  const nestedBuf = Buffer.from(nestedText);
  const parsing = new RequestState(R_MESSAGES, 0);
  const parse = (body: Buffer) => {
    parsing.body = body;
    return parseStage.run(parsing);
  };
  if (parse(complexBuf) !== 0 || parse(nestedBuf) !== 0) throw new Error("the parse stage must admit the complex bodies");

  const m = core.metrics;
  const layout = core.layout;
  const scrape: RenderTask = {
    kind: "prometheus",
    sab: core.sab,
    breakerSab: core.breakerSab,
    providers: core.providers.map((p) => p.name),
    startedAt: Date.now(),
    usageSab: core.usageSab,
    models: core.usageLayout.models,
  };
  if (!(await renderMetrics(scrape)).includes("http_requests_total")) throw new Error("the scrape must render the request counters");
  // A finished request as the taps see it.
  const finished = new RequestState(R_MESSAGES, 0);
  Object.assign(finished, {
    id: core.ids.next(),
    model: "claude-sonnet-4-5",
    provider: 1,
    providerName: "anthropic",
    inputTokens: 12,
    outputTokens: 30,
    keyId: "static-0",
    ledger: true,
    chargedMicros: 486,
  });
  const logTap = core.logTap;
  // A request's two deadlines (body read, upstream call), on a sweep as the server keeps them
  // (a long-lived node ahead, as under load), and as the timers they replaced.
  const sweep = new DeadlineSweep();
  const longLived = new Nothing();
  sweep.add(longLived, performance.now() + 3_600_000);
  const bodyRead = new Nothing(),
    call = new Nothing();
  const noop = () => {};
  // The thread's in-flight requests: ~40 others held, one request added and deleted (server/context.ts).
  class Req implements InflightNode<Req> {
    inPrev: Req | null = null;
    inNext: Req | null = null;
  }
  const list = new Inflight<Req>(),
    set = new Set<Req>();
  for (let i = 0; i < 40; i++) {
    list.add(new Req());
    set.add(new Req());
  }
  const one = new Req();
  const limits = { requestsPerMinute: 1_000_000_000, tokensPerMinute: 1_000_000_000 };
  // Fleet mode's admission: the same check with requests spent from a local lease (server/fleet/rate-lease.ts).
  const leaseSab = RateLimiter.bufferFor(1);
  const leased = new RateLimiter(leaseSab, new MicroClock(Date.now()));
  const leaseSlots = new RateLeaseSlots(leaseSab, new MicroClock(Date.now()));
  leaseSlots.setMode(0, true);
  leaseSlots.grant(0, 2 ** 30);
  let us = 0;

  const rows: Row[] = [
    { id: "baseline", name: "baseline (no-op)", report: true, fn: () => {} },
    {
      id: "metrics_record",
      name: "metrics collection (counter + histogram)",
      report: true,
      fn: () => m.record(R_MESSAGES, 1, 200, (us = (us + 7919) % 4_000_000)),
    },
    {
      id: "metrics_snapshot",
      name: "metrics snapshot (SAB → p50/p95/p99)",
      report: true,
      fn: () => {
        const s = snapshot(layout, core.sab);
        const b = mergeBuckets(s.histograms, layout.nB);
        return quantile(b, 0.5) + quantile(b, 0.95) + quantile(b, 0.99);
      },
    },
    {
      id: "prometheus",
      name: "Prometheus export (full scrape: snapshot, usage metrics, prom-client registry)",
      report: true,
      fn: () => renderMetrics(scrape),
    },
    { id: "shedder", name: "load-shedding check", report: true, fn: () => core.shedder.check() },
    {
      id: "breaker",
      name: "circuit breaker (closed): admit + success",
      report: true,
      fn: () => core.breakers.recordSuccess(0, core.breakers.admit(0)),
    },
    { id: "ratelimit", name: "extra: rate-limit check (requests + tokens)", report: false, fn: () => core.limiter.admit(0, limits) },
    {
      id: "ratelimit_lease",
      name: "extra: rate-limit check, fleet lease (requests from a local lease + tokens)",
      report: false,
      fn: () => leased.admit(0, limits),
    },
    { id: "validate_simple", name: "input validation, simple (1 message)", report: true, fn: () => validateMessagesRequest(small) },
    {
      id: "validate_complex",
      name: `input validation, complex (${Math.round(complexBuf.length / 1024)} KB Claude Code body)`,
      report: true,
      fn: () => validateMessagesRequest(complex),
    },
    { id: "request_id", name: "request-id generation", report: true, fn: () => core.ids.next() },
    {
      id: "stack",
      name: "combined middleware stack (the server's pipeline on a small body, log line and ledger row included)",
      report: true,
      fn: () => core.stack(smallBuf, CLIENT_KEY),
    },
    // Explanatory extras.
    {
      id: "stack_no_validation",
      name: "extra: combined stack minus validation",
      report: false,
      fn: () => core.stack(smallBuf, CLIENT_KEY, core.noValidation),
    },
    { id: "stack_complex", name: "extra: combined stack on the complex body", report: false, fn: () => core.stack(complexBuf, CLIENT_KEY) },
    {
      id: "log_line",
      name: "extra: the request log line (through the log destination to /dev/null)",
      report: false,
      fn: () => logTap(finished, 200, 1234),
    },
    {
      id: "ledger_row",
      name: "extra: the ledger row into the thread's ring (its drain, on the main thread in the server, amortised in)",
      report: false,
      fn: () => core.sink.record(finished, 200, 1234),
    },
    {
      id: "auth",
      name: "extra: auth (presentedKey + KeyIndex.check)",
      report: false,
      fn: () => core.keys.check(presentedKey(CLIENT_KEY, "")),
    },
    {
      id: "json_parse_small",
      name: "extra: JSON.parse small body (server, before validation)",
      report: false,
      fn: () => JSON.parse(smallBuf.toString("utf8")),
    },
    { id: "json_parse_complex", name: "extra: JSON.parse complex body", report: false, fn: () => JSON.parse(complexBuf.toString("utf8")) },
    {
      id: "model_scan_small",
      name: "extra: findModelRange small body (scan, no parse)",
      report: false,
      fn: () => findModelRange(smallBuf),
    },
    { id: "model_scan_complex", name: "extra: findModelRange complex body", report: false, fn: () => findModelRange(complexBuf) },
    {
      id: "parse_stage_small",
      name: "extra: parse stage, small body (toString, JSON.parse, duplicate-model check)",
      report: false,
      fn: () => parse(smallBuf),
    },
    { id: "parse_stage_complex", name: "extra: parse stage, complex body", report: false, fn: () => parse(complexBuf) },
    {
      id: "model_dup_complex",
      name: "extra: duplicate-model check, complex body (one literal model)",
      report: false,
      fn: () => duplicateModelKey(complexText, complexBuf),
    },
    {
      id: "model_dup_nested",
      name: "extra: duplicate-model check, complex body with a Task tool model property (top level walked)",
      report: false,
      fn: () => duplicateModelKey(nestedText, nestedBuf),
    },
    {
      id: "deadlines_sweep",
      name: "extra: a request's two deadlines on the thread's sweep (add + remove, twice)",
      report: false,
      fn: () => {
        const now = performance.now();
        sweep.add(bodyRead, now + 30_000);
        sweep.remove(bodyRead);
        sweep.add(call, now + 600_000);
        sweep.remove(call);
      },
    },
    {
      id: "inflight_list",
      name: "extra: a request into and out of the thread's in-flight list (40 others held)",
      report: false,
      fn: () => {
        list.add(one);
        list.delete(one);
      },
    },
    {
      id: "inflight_set",
      name: "extra: the same with the Set it replaced",
      report: false,
      fn: () => {
        set.add(one);
        set.delete(one);
      },
    },
    {
      id: "deadlines_timers",
      name: "extra: the same as two setTimeout + clearTimeout pairs (before the sweep)",
      report: false,
      fn: () => {
        clearTimeout(setTimeout(noop, 30_000));
        const t = setTimeout(noop, 600_000);
        t.unref();
        clearTimeout(t);
      },
    },
  ];
  rows.push(...budgetRows());
  return { rows, missing: [], complexBytes: complexBuf.length, close: () => core.close() };
}

/**
 * A budgeted request's admission and settlement on one box (limit - spend) and in fleet mode
 * (out of the Redis lease this replica holds, docs/fleet.md): same kind of work, Atomics only.
 */
function budgetRows(): Row[] {
  const l: BudgetLimits = { tokensPerDay: 1e12, tokensPerMonth: 0, microsPerDay: 1e12, microsPerMonth: 0 };
  const box = new Budgets(Budgets.bufferFor(1));
  const fleet = new Budgets(Budgets.bufferFor(1));
  fleet.setMode(MODE_LEASE);
  const now = Date.now();
  fleet.openWindow(0, Math.floor(now / 86_400_000), monthEpoch(now));
  fleet.grant(0, L_TOKENS_DAY, LEASE_CAP);
  fleet.grant(0, L_USD_DAY, LEASE_CAP);
  return [
    { id: "budget_check_box", name: "extra: budget pre-body check, one box (2 limits)", report: false, fn: () => box.exhausted(0, l) },
    {
      id: "budget_check_fleet",
      name: "extra: budget pre-body check, fleet lease (2 limits)",
      report: false,
      fn: () => fleet.exhausted(0, l),
    },
    {
      id: "budget_settle_box",
      name: "extra: budget reserve + settle, one box (2 limits)",
      report: false,
      fn: () => {
        box.reserve(0, l, 100, 1000);
        box.release(0, 100, 1000);
        box.charge(0, 50, 500);
      },
    },
    {
      id: "budget_settle_fleet",
      name: "extra: budget reserve + settle, fleet lease (2 limits)",
      report: false,
      fn: () => {
        fleet.reserve(0, l, 100, 1000);
        fleet.release(0, 100, 1000);
        fleet.settleLease(0, l, fleet.leaseDay, 100, 1000, 0, 0); // the whole reservation back: the lease never runs dry
        fleet.charge(0, 50, 500);
      },
    },
  ];
}

/** The body with a "model" property in its first tool's schema (Claude Code's Task tool has one). */
function withTaskModel(body: Record<string, unknown>): Record<string, unknown> {
  const [task, ...rest] = body.tools as { input_schema: { properties: Record<string, unknown> } }[];
  const properties = { ...task!.input_schema.properties, model: { type: "string", enum: ["sonnet", "opus", "haiku"] } };
  return { ...body, tools: [{ ...task, input_schema: { ...task!.input_schema, properties } }, ...rest] };
}

/** A deadline that does nothing when it expires (the rows remove it first). */
class Nothing extends Deadline {
  expire(): void {}
}
