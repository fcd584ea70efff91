/**
 * The monitoring Component, offline: the ServiceMonitor and PrometheusRule carry the fields
 * their CRDs require, the job label the ServiceMonitor produces is the one every rule, panel
 * and the adapter rule select, `promtool check rules` passes, and the Grafana dashboard has
 * the panels of SPEC.md. A real Prometheus evaluates the rules in prometheus.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import {
  ROOT,
  MONITORING,
  one,
  all,
  container,
  settingsConfigMap,
  alertRules,
  ruleFileText,
  splitComparison,
  selectors,
  dashboard,
  dashboardExprs,
  adapterRules,
  which,
  type Obj,
} from "./support.js";

const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/; // the operator's Duration pattern
const seconds = (d: string): number => {
  let s = 0;
  for (const m of d.matchAll(/([0-9]+)(ms|y|w|d|h|m|s)/g))
    s += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[m[2] as "s"];
  return s;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("CRDs (checked by hand: required fields and types)", () => {
  test("ServiceMonitor: selector and endpoints, scraping /metrics/prometheus on the metrics Service", () => {
    const sm = one("ServiceMonitor", undefined, MONITORING);
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(typeof sm.spec, "object", "spec is required");
    assert.equal(typeof sm.spec.selector, "object", "spec.selector is required");
    assert.ok(Array.isArray(sm.spec.endpoints) && sm.spec.endpoints.length > 0);
    const svc = all("Service", MONITORING).find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    assert.ok(svc, "the selector matches a Service");
    assert.equal(
      all("Service", MONITORING).filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels)).length,
      1,
      "exactly one (no double scrape)",
    );
    for (const ep of sm.spec.endpoints as Obj[]) {
      assert.equal(typeof ep.port, "string");
      assert.ok(
        (svc.spec.ports as Obj[]).some((p) => p.name === ep.port),
        `endpoint port ${ep.port} is a port of ${svc.metadata.name}`,
      );
      assert.equal(ep.path, "/metrics/prometheus");
      assert.ok(["http", "https"].includes(ep.scheme ?? "http"));
      for (const k of ["interval", "scrapeTimeout"]) if (ep[k] !== undefined) assert.match(ep[k], DURATION, k);
      assert.ok(seconds(ep.scrapeTimeout) <= seconds(ep.interval), "scrapeTimeout <= interval");
    }
    // The Service reaches the pods' metrics port (METRICS_PORT), not the client port.
    for (const p of svc.spec.ports as Obj[]) assert.equal(p.targetPort, "metrics");
    assert.ok(
      (container().ports as Obj[]).some((p) => p.name === "metrics" && String(p.containerPort) === settingsConfigMap().METRICS_PORT),
    );
  });

  test("the job label the ServiceMonitor produces is the one every rule, panel and the adapter rule select", () => {
    const sm = one("ServiceMonitor", undefined, MONITORING);
    const svc = all("Service", MONITORING).find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels))!;
    // prometheus-operator: job = the value of the Service label named by jobLabel (else the Service name).
    const job = sm.spec.jobLabel ? svc.metadata.labels[sm.spec.jobLabel] : svc.metadata.name;
    assert.equal(typeof job, "string");
    const exprs = [
      ...alertRules().map((r) => ({ where: `alert ${r.alert}`, expr: r.expr })),
      ...dashboardExprs(),
      ...adapterRules().flatMap((r) => [{ where: "adapter seriesQuery", expr: r.seriesQuery }]),
    ];
    let checked = 0;
    for (const { where, expr } of exprs) {
      for (const sel of selectors(expr)) {
        const jm = sel.matchers.filter((m) => m.label === "job");
        if (where.startsWith("alert") || where.startsWith("adapter"))
          assert.equal(jm.length, 1, `${where}: ${sel.metric} is scoped to a job`);
        for (const m of jm) {
          assert.equal(m.op, "=", `${where}: job matcher`);
          assert.equal(m.value, job, `${where}: ${sel.metric}{job="${m.value}"} but the ServiceMonitor makes job="${job}"`);
          checked++;
        }
      }
    }
    assert.ok(checked >= alertRules().length + 1, `job matchers checked: ${checked}`);
    // No second scrape path (annotations) that would give the same series another job name.
    assert.deepEqual(
      all("Deployment", MONITORING).map((d) => d.spec.template.metadata.annotations?.["prometheus.io/scrape"]),
      [undefined],
    );
  });

  test("PrometheusRule: groups with unique names; each rule is an alert or a record with an expr", () => {
    const pr = one("PrometheusRule", undefined, MONITORING);
    assert.equal(pr.apiVersion, "monitoring.coreos.com/v1");
    assert.ok(Array.isArray(pr.spec.groups) && pr.spec.groups.length > 0, "spec.groups");
    const names = new Set<string>();
    for (const g of pr.spec.groups as Obj[]) {
      assert.equal(typeof g.name, "string", "group name is required");
      assert.ok(!names.has(g.name), `duplicate group ${g.name}`);
      names.add(g.name);
      assert.ok(Array.isArray(g.rules), "group rules");
      for (const r of g.rules as Obj[]) {
        assert.ok((r.alert === undefined) !== (r.record === undefined), "exactly one of alert and record");
        assert.ok(typeof r.expr === "string" || typeof r.expr === "number", "expr is required");
        if (r.for !== undefined) assert.match(r.for, DURATION);
        for (const m of [r.labels, r.annotations]) if (m) for (const v of Object.values(m)) assert.equal(typeof v, "string");
        if (r.alert) assert.match(r.alert, /^[a-zA-Z_][a-zA-Z0-9_]*$/);
      }
    }
  });

  test("the six alerts of SPEC.md and the ledger's volume alert, with their thresholds and durations", () => {
    const byName = new Map(alertRules().map((r) => [r.alert, r]));
    const want: [string, string, number, string][] = [
      ["PortcullisHighErrorRate", ">", 0.05, "5m"],
      ["PortcullisCircuitBreakerOpen", "==", 1, "1m"],
      ["PortcullisHighMemory", ">", 0.8, "5m"],
      ["PortcullisLoadShedding", ">", 10, "5m"],
      ["PortcullisHighLatencyP95", ">", 2, "10m"],
      ["PortcullisInstanceDown", "==", 0, "1m"],
      ["PortcullisLedgerNearFull", ">", 0.85, "10m"],
    ];
    assert.deepEqual([...byName.keys()].sort(), want.map((w) => w[0]).sort());
    for (const [name, op, threshold, dur] of want) {
      const r = byName.get(name)!;
      const s = splitComparison(r.expr);
      assert.equal(s.op, op, name);
      assert.equal(s.threshold, threshold, name);
      assert.equal(r.for, dur, name);
      assert.ok(["warning", "critical"].includes(r.labels?.severity ?? ""), `${name} severity`);
      assert.ok(r.annotations?.summary && r.annotations.runbook_url, `${name} summary and runbook`);
      const anchor = r.annotations.runbook_url.split("#")[1]!;
      assert.ok(anchorsOf("docs/operations.md").has(anchor), `${name}: runbook anchor #${anchor} exists in docs/operations.md`);
      assert.match(r.expr, /job="portcullis"/, `${name} is scoped to the gateway's job`);
    }
    assert.match(byName.get("PortcullisLoadShedding")!.expr, /rate\(http_requests_rejected_total\{[^}]*\}\[5m\]\)/);
    assert.match(byName.get("PortcullisHighLatencyP95")!.expr, /histogram_quantile\(0\.95,/);
    assert.match(byName.get("PortcullisHighMemory")!.expr, new RegExp(String(2 * 1024 ** 3)), "the 2Gi limit");
  });

  test("promtool check rules passes on the rule groups", () => {
    const promtool = which("promtool");
    assert.ok(promtool, "promtool is missing: apt-get install prometheus (.ci/run does)");
    const dir = mkdtempSync(join(tmpdir(), "portcullis-rules-"));
    const f = join(dir, "rules.yml");
    writeFileSync(f, ruleFileText());
    const r = spawnSync(promtool, ["check", "rules", f], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, new RegExp(`SUCCESS: ${alertRules().length} rules found`));
    assert.equal(alertRules().length, 7);
    // And promtool is not a rubber stamp.
    writeFileSync(f, ruleFileText().replace("histogram_quantile(0.95,", "histogram_quantile(0.95"));
    assert.notEqual(spawnSync(promtool, ["check", "rules", f], { encoding: "utf8" }).status, 0);
  });
});

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(join(ROOT, file), "utf8");
  const out = new Set<string>();
  for (const m of text.matchAll(/^#+\s+(.+)$/gm)) {
    out.add(
      m[1]!
        .trim()
        .toLowerCase()
        .replace(/[^a-z0-9 _-]/g, "")
        .replace(/ /g, "-"),
    );
  }
  return out;
}

describe("Grafana dashboard", () => {
  const d = dashboard();
  test("the seven panels of SPEC.md, each with a Prometheus query on the datasource variable", () => {
    const titles = d.panels.map((p) => p.title as string);
    const want = [/request rate/i, /error rate/i, /p50.*p95.*p99/i, /breaker/i, /memory/i, /tokens in.*out/i, /cost/i];
    assert.equal(d.panels.length, 7);
    for (const w of want) assert.equal(titles.filter((t) => w.test(t)).length, 1, `one panel matching ${w}`);
    const ids = new Set<number>();
    for (const p of d.panels) {
      assert.ok(!ids.has(p.id), "unique panel ids");
      ids.add(p.id);
      assert.ok(p.gridPos && p.gridPos.w > 0 && p.gridPos.h > 0);
      assert.ok(p.targets.length > 0);
      for (const t of p.targets as Obj[]) {
        assert.equal(typeof t.expr, "string");
        assert.equal(t.datasource.uid, "${datasource}");
      }
    }
    const latency = d.panels.find((p) => /p95/.test(p.title))!;
    assert.deepEqual(
      (latency.targets as Obj[]).map((t) => /histogram_quantile\(([0-9.]+),/.exec(t.expr)?.[1]),
      ["0.5", "0.95", "0.99"],
    );
    assert.ok(d.templating.list.some((v) => v.name === "datasource" && v.type === "datasource" && v.query === "prometheus"));
  });
  test("no two panels overlap", () => {
    const cells = new Set<string>();
    for (const p of d.panels) {
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          assert.ok(!cells.has(`${x},${y}`), `panel "${p.title}" overlaps`);
          cells.add(`${x},${y}`);
        }
      assert.ok(p.gridPos.x + p.gridPos.w <= 24);
    }
    assert.ok(dashboardExprs().length >= 7);
  });
  test("the generated dashboard ConfigMap carries the Grafana sidecar label", () => {
    const cm = one("ConfigMap", "portcullis-grafana-dashboard", MONITORING);
    assert.equal(cm.metadata.labels.grafana_dashboard, "1");
    assert.deepEqual(JSON.parse(cm.data["dashboard.json"]), d);
  });
});
