/**
 * Helpers for the deployment tests: load the kustomize base, the rules, the dashboard and
 * the prometheus-adapter rule; pull metric names and label matchers out of PromQL; parse the
 * Prometheus text format. No test lives here.
 */
import { readFileSync, existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { parseAllDocuments, stringify } from "yaml";

/** Repository root (this file runs from dist/test/k8s/). */
export const ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const K8S = join(ROOT, "k8s");

/** The usage metrics (issue 4) that the dashboard's tokens and cost panels read. */
export const TOKEN_METRICS = ["tokens_input_total", "tokens_output_total", "cost_total"] as const;

/** Series that Prometheus makes itself, not the gateway. */
export const SYNTHETIC = new Set(["up"]);

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Obj = Record<string, any>;

export function readYamlDocs(path: string): Obj[] {
  const docs = parseAllDocuments(readFileSync(path, "utf8"));
  const out: Obj[] = [];
  for (const d of docs) {
    if (d.errors.length > 0) throw new Error(`${path}: ${d.errors.map((e) => e.message).join("; ")}`);
    const v = d.toJSON() as Obj | null;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

export interface Resource {
  file: string;
  obj: Obj;
}

export function kustomization(): Obj {
  return readYamlDocs(join(K8S, "kustomization.yaml"))[0]!;
}

/** Every object of the base: the listed resources plus what configMapGenerator makes. */
export function baseResources(): Resource[] {
  const k = kustomization();
  const out: Resource[] = [];
  for (const f of k.resources as string[]) for (const obj of readYamlDocs(join(K8S, f))) out.push({ file: f, obj });
  for (const g of (k.configMapGenerator ?? []) as Obj[]) {
    const data: Record<string, string> = {};
    for (const f of g.files as string[]) data[f.split("/").pop()!] = readFileSync(join(K8S, f), "utf8");
    out.push({
      file: "kustomization.yaml#configMapGenerator",
      obj: { apiVersion: "v1", kind: "ConfigMap", metadata: { name: g.name, labels: g.options?.labels ?? {} }, data },
    });
  }
  return out;
}

export function one(kind: string, name?: string): Obj {
  const all = baseResources().filter((r) => r.obj.kind === kind && (name === undefined || r.obj.metadata?.name === name));
  if (all.length !== 1) throw new Error(`expected one ${kind}${name ? ` ${name}` : ""}, found ${all.length}`);
  return all[0]!.obj;
}

export function all(kind: string): Obj[] {
  return baseResources()
    .filter((r) => r.obj.kind === kind)
    .map((r) => r.obj);
}

export function deployment(): Obj {
  return one("Deployment", "portcullis");
}
export function container(): Obj {
  return deployment().spec.template.spec.containers[0];
}
export function settingsConfigMap(): Record<string, string> {
  return one("ConfigMap", "portcullis-config").data as Record<string, string>;
}

export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function ruleGroups(): Obj[] {
  return one("PrometheusRule").spec.groups as Obj[];
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
  return JSON.parse(readFileSync(join(K8S, "grafana", "dashboard.json"), "utf8")) as Dashboard;
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
export function adapterRules(): AdapterRule[] {
  const cm = readYamlDocs(join(K8S, "prometheus-adapter", "rules.yaml"))[0]!;
  const cfg = parseAllDocuments(cm.data["config.yaml"] as string)[0]!.toJSON() as { rules: AdapterRule[] };
  return cfg.rules;
}
/** The adapter's Go template filled in the way prometheus-adapter does for one query. */
export function adapterQuery(rule: AdapterRule, series: string, labelMatchers: string, groupBy: string): string {
  return rule.metricsQuery.replaceAll("<<.Series>>", series).replaceAll("<<.LabelMatchers>>", labelMatchers).replaceAll("<<.GroupBy>>", groupBy);
}

// ------------------------------------------------------------------ PromQL (just enough)

const KEYWORDS = new Set(["and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right", "inf", "nan", "atan2"]);

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
