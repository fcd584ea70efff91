/**
 * Helpers for the deployment tests: render the kustomize base and its Components with the
 * real `kubectl kustomize`, load the rules, the dashboard and the prometheus-adapter rule;
 * the shutdown arithmetic behind terminationGracePeriodSeconds; pull metric names and label
 * matchers out of PromQL; parse the Prometheus text format. No test lives here.
 */
import { readFileSync, existsSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { join, relative } from "node:path";
import { tmpdir } from "node:os";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { parseAllDocuments, stringify } from "yaml";

/** Repository root (this file runs from dist/test/k8s/). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const K8S = join(ROOT, "k8s");
export const COMPONENTS = join(K8S, "components");
/** The example overlay (outside k8s/: kustomize refuses an overlay inside its base). */
export const OVERLAY = join(ROOT, "k8s-overlay-example");

/** The usage metrics (issue 4) that the dashboard's tokens and cost panels read. */
export const TOKEN_METRICS = ["tokens_input_total", "tokens_output_total", "cost_total"] as const;

/** Series that Prometheus makes itself, not the gateway. */
export const SYNTHETIC = new Set(["up"]);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export function readYamlDocs(path: string): Obj[] {
  return parseYamlDocs(readFileSync(path, "utf8"), path);
}
function parseYamlDocs(text: string, where: string): Obj[] {
  const docs = parseAllDocuments(text);
  const out: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${where}: ${d.errors.map((e) => e.message).join("; ")}`);
    const v = d.toJSON() as Obj | null;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

export interface Resource {
  /** kind/name, for messages. */
  file: string;
  obj: Obj;
}

export function kustomization(dir = K8S): Obj {
  return readYamlDocs(join(dir, "kustomization.yaml"))[0]!;
}

/** `kubectl kustomize DIR`: the objects, or throws with kubectl's message. */
export function kustomize(dir: string): Obj[] {
  const kubectl = which("kubectl");
  if (kubectl === null) throw new Error("kubectl is missing: it renders the kustomize base (kustomize is built in)");
  const r = spawnSync(kubectl, ["kustomize", dir], { encoding: "utf8", timeout: 60_000 });
  if (r.status !== 0) throw new Error(`kubectl kustomize ${dir} failed: ${r.stderr}`);
  return parseYamlDocs(r.stdout, `kubectl kustomize ${dir}`);
}

const rendered = new Map<string, Obj[]>();
/**
 * The base with the named Components (directories under k8s/components/), rendered
 * through a throw-away overlay the way an operator's overlay would include them.
 */
export function render(components: readonly string[] = []): Obj[] {
  const key = components.join(",");
  const hit = rendered.get(key);
  if (hit !== undefined) return hit;
  let objs: Obj[];
  if (components.length === 0) objs = kustomize(K8S);
  else {
    const dir = mkdtempSync(join(tmpdir(), "portcullis-kustomize-"));
    try {
      writeFileSync(
        join(dir, "kustomization.yaml"),
        stringify({
          apiVersion: "kustomize.config.k8s.io/v1beta1",
          kind: "Kustomization",
          resources: [relative(dir, K8S)],
          components: components.map((c) => relative(dir, join(COMPONENTS, c))),
        }),
      );
      objs = kustomize(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
  rendered.set(key, objs);
  return objs;
}

/** Every object of the rendered base (with `components`). */
export function baseResources(components: readonly string[] = []): Resource[] {
  return render(components).map((obj) => ({ file: `${obj.kind}/${obj.metadata?.name}`, obj }));
}

export function one(kind: string, name?: string, components: readonly string[] = []): Obj {
  const all = render(components).filter((o) => o.kind === kind && (name === undefined || o.metadata?.name === name));
  if (all.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${all.length}`);
  return all[0]!;
}

export function all(kind: string, components: readonly string[] = []): Obj[] {
  return render(components).filter((o) => o.kind === kind);
}

export function deployment(components: readonly string[] = [], name = "portcullis"): Obj {
  return one("Deployment", name, components);
}
export function container(components: readonly string[] = [], name = "portcullis"): Obj {
  return deployment(components, name).spec.template.spec.containers[0];
}
/** The ConfigMap an envFrom of `deploymentName` loads (its generated, hash-suffixed name). */
export function envConfigMap(components: readonly string[], deploymentName: string): Obj {
  const ref = container(components, deploymentName).envFrom[0].configMapRef.name as string;
  return one("ConfigMap", ref, components);
}
export function settingsConfigMap(): Record<string, string> {
  return envConfigMap([], "portcullis").data as Record<string, string>;
}
export const MONITORING = ["monitoring"] as const;
/** The provider settings of the deployment's Secret refs, as loadConfig wants them. */
export const PROVIDER_ENVS: Record<string, Record<string, string>> = {
  anthropic: { ANTHROPIC_API_KEY: "sk-ant-test-12345678" },
  "azure-anthropic": { AZURE_ANTHROPIC_API_KEY: "az-test-12345678", AZURE_ANTHROPIC_API_BASE: "https://example.azure.com/anthropic" },
  databricks: { DATABRICKS_API_KEY: "dapi-test-12345678", DATABRICKS_API_BASE: "https://example.cloud.databricks.com/serving-endpoints" },
};

// ------------------------------------------------------------------ shutdown arithmetic

/** The gateway's fixed shutdown margin beyond GRACEFUL_SHUTDOWN_TIMEOUT (the shutdown contract), from the code itself. */
export { SHUTDOWN_MARGIN_MS } from "../../core/config.js";
import { SHUTDOWN_MARGIN_MS } from "../../core/config.js";
/** Seconds between the gateway's own bound and the kubelet's SIGKILL, for scheduling noise. */
export const GRACE_SLACK_S = 5;

/** The preStop pause in seconds (`sleep N` in the exec hook, or the sleep action). */
export function preStopSeconds(c: Obj): number {
  const pre = c.lifecycle?.preStop;
  if (pre?.sleep?.seconds !== undefined) return Number(pre.sleep.seconds);
  const cmd = (pre?.exec?.command ?? []) as string[];
  const m = /\bsleep\s+([0-9]+)\b/.exec(cmd.join(" "));
  if (m === null) throw new Error(`no preStop sleep in ${JSON.stringify(pre)}`);
  return Number(m[1]);
}

/**
 * terminationGracePeriodSeconds a pod needs: the preStop pause, then the drain
 * (GRACEFUL_SHUTDOWN_TIMEOUT, the value the gateway really applies), then the keep-alive
 * close and ledger flush margin, then slack. The one place this sum is made.
 */
export function requiredGraceSeconds(preStopS: number, gracefulShutdownMs: number): number {
  return preStopS + Math.ceil((gracefulShutdownMs + SHUTDOWN_MARGIN_MS) / 1000) + GRACE_SLACK_S;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function ruleGroups(): Obj[] {
  return one("PrometheusRule", undefined, MONITORING).spec.groups as Obj[];
}
export function alertRules(): AlertRule[] {
  return ruleGroups().flatMap((g) => (g.rules as Obj[]).filter((r) => r.alert !== undefined)) as AlertRule[];
}
/** The rule groups as a plain Prometheus rule file. */
export function ruleFileText(): string {
  return stringify({ groups: ruleGroups() });
}

/** Split "<value> <op> <threshold>" at its last top-level comparison. */
export function splitComparison(expr: string): { value: string; op: string; threshold: number } {
  const m = /^([\s\S]*?)\s*(==|!=|>=|<=|>|<)\s*([0-9.eE+-]+)\s*$/.exec(expr.trim());
  if (!m) throw new Error(`not "<value> <op> <number>": ${expr}`);
  return { value: m[1]!.trim(), op: m[2]!, threshold: Number(m[3]) };
}

export interface Dashboard {
  title: string;
  panels: Obj[];
  templating: { list: Obj[] };
}
export function dashboard(): Dashboard {
  return JSON.parse(readFileSync(join(COMPONENTS, "monitoring", "dashboard.json"), "utf8")) as Dashboard;
}
/** Every PromQL expression of the dashboard: panel targets and template variable queries. */
export function dashboardExprs(): { where: string; expr: string }[] {
  const d = dashboard();
  const out: { where: string; expr: string }[] = [];
  for (const p of d.panels) for (const t of p.targets ?? []) out.push({ where: `panel "${p.title}" ${t.refId}`, expr: t.expr });
  for (const v of d.templating.list) {
    if (v.type !== "query") continue;
    const q = typeof v.query === "string" ? v.query : v.query.query;
    const m = /^label_values\(([\s\S]*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$/.exec(q);
    out.push({ where: `variable ${v.name}`, expr: m ? m[1]! : q });
  }
  return out;
}
/** Grafana's macros and variables replaced by what Grafana would send. */
export function grafanaToPromQL(expr: string): string {
  return expr.replaceAll("$__rate_interval", "1m").replaceAll("$__interval", "15s").replaceAll("$namespace", ".*");
}

export interface AdapterRule {
  seriesQuery: string;
  name: { matches: string; as: string };
  metricsQuery: string;
}
export const ADAPTER_RULES = join(COMPONENTS, "prometheus-adapter", "adapter-rules.yaml");
export function adapterRules(): AdapterRule[] {
  const cm = readYamlDocs(ADAPTER_RULES)[0]!;
  const cfg = parseAllDocuments(cm.data["config.yaml"] as string)[0]!.toJSON() as { rules: AdapterRule[] };
  return cfg.rules;
}
/** The adapter's Go template filled in the way prometheus-adapter does for one query. */
export function adapterQuery(rule: AdapterRule, series: string, labelMatchers: string, groupBy: string): string {
  return rule.metricsQuery
    .replaceAll("<<.Series>>", series)
    .replaceAll("<<.LabelMatchers>>", labelMatchers)
    .replaceAll("<<.GroupBy>>", groupBy);
}

// ------------------------------------------------------------------ PromQL (just enough)

const KEYWORDS = new Set([
  "and",
  "or",
  "unless",
  "bool",
  "offset",
  "by",
  "without",
  "on",
  "ignoring",
  "group_left",
  "group_right",
  "inf",
  "nan",
  "atan2",
]);

function stripStrings(expr: string): string {
  return expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
}

/** Metric names an expression reads (identifiers that are not functions, keywords or labels). */
export function metricNames(expr: string): Set<string> {
  let e = stripStrings(expr);
  e = e.replace(/\{[^}]*\}/g, " ");
  e = e.replace(/\[[^\]]*\]/g, " ");
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
  e = e.replace(/\$[a-zA-Z_][a-zA-Z0-9_]*/g, " ");
  e = e.replace(/(?<![A-Za-z0-9_:])[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?/g, " ");
  const out = new Set<string>();
  for (const m of e.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = e.slice(m.index! + m[0].length).trimStart();
    if (rest.startsWith("(")) continue; // a function
    if (KEYWORDS.has(m[0].toLowerCase())) continue;
    out.add(m[0]);
  }
  return out;
}

export interface Matcher {
  label: string;
  op: "=" | "!=" | "=~" | "!~";
  value: string;
}
/** `metric{...}` selectors with their matchers. */
export function selectors(expr: string): { metric: string; matchers: Matcher[] }[] {
  const out: { metric: string; matchers: Matcher[] }[] = [];
  for (const m of expr.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    const matchers: Matcher[] = [];
    for (const mm of m[2]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      matchers.push({ label: mm[1]!, op: mm[2] as Matcher["op"], value: mm[3]! });
    }
    out.push({ metric: m[1]!, matchers });
  }
  return out;
}
/** "a|b|c" as literals when the regex is a plain alternation of names, else null. */
export function alternation(re: string): string[] | null {
  return /^[a-zA-Z0-9_]+(\|[a-zA-Z0-9_]+)*$/.test(re) ? re.split("|") : null;
}

// ------------------------------------------------------------------ exposition format

export interface Exposition {
  /** Sample name (with _bucket/_sum/_count) → label sets. */
  samples: Map<string, Record<string, string>[]>;
  /** Family name → TYPE. */
  types: Map<string, string>;
}
export function parseExposition(text: string): Exposition {
  const samples = new Map<string, Record<string, string>[]>();
  const types = new Map<string, string>();
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      types.set(name!, type!);
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+/.exec(line);
    if (!m) throw new Error(`bad exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    if (!samples.has(m[1]!)) samples.set(m[1]!, []);
    samples.get(m[1]!)!.push(labels);
  }
  return { samples, types };
}

/** Labels Prometheus attaches to every target (job, instance) or Kubernetes SD adds. */
export const TARGET_LABELS = new Set(["job", "instance", "namespace", "pod", "service", "endpoint", "container", "le"]);

// ------------------------------------------------------------------ processes

export function which(cmd: string): string | null {
  const r = spawnSync("sh", ["-c", `command -v ${cmd}`], { encoding: "utf8" });
  const p = r.stdout.trim();
  return r.status === 0 && p !== "" && existsSync(p) ? p : null;
}
