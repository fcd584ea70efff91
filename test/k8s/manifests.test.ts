/**
 * Offline checks of the deployment artifacts: the kustomize base validates against the
 * Kubernetes OpenAPI schemas (kubernetes-models), the ServiceMonitor and PrometheusRule carry
 * the fields their CRDs require, `promtool check rules` passes, the Deployment has the shape
 * SPEC.md asks for, and the Dockerfile builds a non-root image with no secrets in it.
 * The live checks (metric names, probe paths) are in live.test.ts, the real Prometheus in
 * prometheus.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve, dirname, relative } from "node:path";
import { spawnSync } from "node:child_process";
import { builtinModules } from "node:module";
import { ConfigMap, Service } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { settingsRead } from "../support/settings.js";
import {
  ROOT,
  K8S,
  kustomization,
  baseResources,
  one,
  all,
  deployment,
  container,
  settingsConfigMap,
  alertRules,
  ruleFileText,
  splitComparison,
  dashboard,
  dashboardExprs,
  adapterRules,
  readYamlDocs,
  which,
  type Obj,
} from "./support.js";

// The kubernetes-models class per apiVersion/kind; each validates against the OpenAPI schema.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "apps/v1/Deployment": Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};
const CRDS = new Set(["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]);

const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/; // the operator's Duration pattern
const seconds = (d: string): number => {
  let s = 0;
  for (const m of d.matchAll(/([0-9]+)(ms|y|w|d|h|m|s)/g)) s += Number(m[1]) * { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 }[m[2] as "s"];
  return s;
};
const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("kustomize base", () => {
  test("every resource file exists, parses, and every manifest in k8s/ is in the base", () => {
    const k = kustomization();
    assert.equal(k.apiVersion, "kustomize.config.k8s.io/v1beta1");
    assert.equal(k.kind, "Kustomization");
    const listed = new Set(k.resources as string[]);
    for (const f of listed) assert.ok(existsSync(join(K8S, f)), `${f} listed but missing`);
    const onDisk = readdirSync(K8S).filter((f) => /\.ya?ml$/.test(f) && f !== "kustomization.yaml");
    assert.deepEqual(onDisk.sort(), [...listed].sort(), "a manifest in k8s/ that the base does not list, or the reverse");
    for (const g of k.configMapGenerator as Obj[]) for (const f of g.files) assert.ok(existsSync(join(K8S, f)), f);
    assert.ok(
      (k.images as Obj[]).some((i) => i.name === container().image),
      "the images transformer names the container's image",
    );
  });

  test("every object has apiVersion, kind, a name and the app label; names are unique per kind", () => {
    const seen = new Set<string>();
    for (const { file, obj } of baseResources()) {
      assert.ok(obj.apiVersion && obj.kind && obj.metadata?.name, `${file}: apiVersion, kind, metadata.name`);
      assert.equal(obj.metadata.namespace, undefined, `${file}: a base leaves the namespace to the overlay`);
      if (!file.includes("#")) assert.equal(obj.metadata.labels?.["app.kubernetes.io/name"], "portcullis", `${file} ${obj.kind}: label`);
      const id = `${obj.kind}/${obj.metadata.name}`;
      assert.ok(!seen.has(id), `duplicate ${id}`);
      seen.add(id);
    }
  });

  test("the built-in kinds validate against the Kubernetes OpenAPI schemas (kubernetes-models)", () => {
    const kinds = new Set<string>();
    for (const { file, obj } of baseResources()) {
      const key = `${obj.apiVersion}/${obj.kind}`;
      if (CRDS.has(key)) continue;
      const Model = MODELS[key];
      assert.ok(Model, `${file}: no schema for ${key}`);
      assert.doesNotThrow(() => new Model(obj).validate(), `${file} ${key} ${obj.metadata.name}`);
      kinds.add(obj.kind);
    }
    assert.deepEqual([...kinds].sort(), ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]);
    // The adapter's ConfigMap is not in the base but must be valid too.
    for (const obj of readYamlDocs(join(K8S, "prometheus-adapter", "rules.yaml"))) new ConfigMap(obj).validate();
  });

  test("the validator really rejects a bad manifest (control)", () => {
    const bad = structuredClone(deployment());
    bad.spec.replicas = "3";
    assert.throws(() => new Deployment(bad).validate(), /replicas/);
    const bad2 = structuredClone(deployment());
    delete bad2.spec.template.spec.containers[0].name;
    assert.throws(() => new Deployment(bad2).validate(), /name/);
  });
});

describe("Deployment", () => {
  const d = deployment();
  const c = container();
  const cm = settingsConfigMap();

  test("3 replicas, RollingUpdate with maxSurge 1 and maxUnavailable 0; the selector matches the pods", () => {
    assert.equal(d.spec.replicas, 3);
    assert.deepEqual(d.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    assert.ok(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels));
  });

  test("startup, liveness (/health/live) and readiness (/health/ready) probes on the http port", () => {
    assert.equal(c.startupProbe.httpGet.path, "/health/live");
    assert.equal(c.livenessProbe.httpGet.path, "/health/live");
    assert.equal(c.readinessProbe.httpGet.path, "/health/ready");
    const http = (c.ports as Obj[]).find((p) => p.name === "http");
    assert.ok(http, "a container port named http");
    for (const p of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.ok(p.httpGet.port === "http" || p.httpGet.port === http.containerPort);
    assert.equal(String(http.containerPort), cm.PORT, "containerPort is the PORT the ConfigMap sets");
    // Startup gets long enough to load config and start the threads; liveness never kills a slow start.
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 30);
  });

  test("a preStop sleep, and terminationGracePeriodSeconds > preStop + GRACEFUL_SHUTDOWN_TIMEOUT", () => {
    const cmd = c.lifecycle.preStop.exec?.command as string[] | undefined;
    const sleep = c.lifecycle.preStop.sleep?.seconds ?? (cmd?.[0] === "sleep" ? Number(cmd[1]) : NaN);
    assert.ok(sleep >= 1, "preStop sleeps");
    const shutdownS = Number(cm.GRACEFUL_SHUTDOWN_TIMEOUT) / 1000;
    assert.equal(shutdownS, 30);
    assert.ok(d.spec.template.spec.terminationGracePeriodSeconds > sleep + shutdownS, "the kubelet would SIGKILL mid-drain");
  });

  test("the resources of SPEC.md: requests 500m/512Mi, limits 1000m/2Gi", () => {
    assert.deepEqual(c.resources, { requests: { cpu: "500m", memory: "512Mi" }, limits: { cpu: "1000m", memory: "2Gi" } });
  });

  test("runAsNonRoot, read-only root, no capabilities, no privilege escalation; emptyDirs for SQLite and /tmp", () => {
    const pod = d.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(pod.securityContext.runAsUser > 0);
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    assert.equal(c.securityContext.capabilities.add, undefined);
    assert.notEqual(c.securityContext.privileged, true);
    const mounts = new Map((c.volumeMounts as Obj[]).map((m) => [m.mountPath, m.name]));
    const vols = new Map((pod.volumes as Obj[]).map((v) => [v.name, v]));
    for (const path of ["/tmp", "/app/data"]) {
      const name = mounts.get(path);
      assert.ok(name, `${path} is mounted`);
      assert.ok(vols.get(name)?.emptyDir, `${path} is an emptyDir`);
    }
    // The SQLite ledger is on the data emptyDir; without DATABASE_PATH it would be ./data from WORKDIR /app.
    assert.equal(dirname(settingsConfigMap().DATABASE_PATH ?? "/app/data/x"), "/app/data");
    assert.match(readFileSync(join(ROOT, "Dockerfile"), "utf8"), /^WORKDIR \/app$/m);
  });

  test("settings come from the ConfigMap, every key of which the gateway reads; secrets only through Secret refs", () => {
    assert.deepEqual(c.envFrom, [{ configMapRef: { name: "portcullis-config" } }]);
    // The names the start-up configuration really looks up (recorded while it runs).
    const read = settingsRead();
    for (const key of Object.keys(cm)) assert.ok(read.has(key), `ConfigMap key ${key} is not a setting the gateway reads`);
    const secretish = /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i;
    for (const key of Object.keys(cm)) assert.doesNotMatch(key, secretish, `${key} belongs in a Secret`);
    for (const e of c.env as Obj[]) {
      assert.ok(read.has(e.name), `env ${e.name} is not a setting the gateway reads`);
      if (secretish.test(e.name)) {
        assert.equal(e.value, undefined, `${e.name} has a literal value`);
        assert.equal(e.valueFrom?.secretKeyRef?.name, "portcullis-secrets", `${e.name} comes from the Secret`);
      }
    }
    assert.ok((c.env as Obj[]).some((e) => e.name === "GATEWAY_API_KEYS" && e.valueFrom.secretKeyRef.optional !== true), "client keys are required");
    assert.equal(all("Secret").length, 0, "no Secret (and so no secret value) in the base");
  });

  test("Prometheus scrape annotations agree with the port and the ServiceMonitor path", () => {
    const a = d.spec.template.metadata.annotations;
    assert.equal(a["prometheus.io/scrape"], "true");
    assert.equal(a["prometheus.io/port"], cm.PORT);
    assert.equal(a["prometheus.io/path"], one("ServiceMonitor").spec.endpoints[0].path);
  });
});

describe("Services, HPA, PDB", () => {
  const pods = deployment().spec.template.metadata.labels as Record<string, string>;
  const portNames = new Set((container().ports as Obj[]).map((p) => p.name));

  test("an http Service and a metrics Service, both selecting the gateway pods by named port", () => {
    const svcs = all("Service");
    const names = svcs.flatMap((s) => (s.spec.ports as Obj[]).map((p) => p.name)).sort();
    assert.deepEqual(names, ["http", "metrics"]);
    for (const s of svcs) {
      assert.ok(matches(s.spec.selector, pods), `${s.metadata.name} selects the pods`);
      for (const p of s.spec.ports as Obj[]) assert.ok(portNames.has(p.targetPort), `${s.metadata.name} targetPort ${p.targetPort}`);
    }
  });

  test("autoscaling/v2 HPA on CPU, memory and the Pods metric http_requests_per_second, with behaviour", () => {
    const h = one("HorizontalPodAutoscaler");
    assert.equal(h.apiVersion, "autoscaling/v2");
    assert.deepEqual(h.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: deployment().metadata.name });
    assert.equal(h.spec.minReplicas, deployment().spec.replicas, "the HPA does not scale below the Deployment's 3");
    assert.ok(h.spec.maxReplicas > h.spec.minReplicas);
    const m = h.spec.metrics as Obj[];
    assert.ok(m.some((x) => x.type === "Resource" && x.resource.name === "cpu" && x.resource.target.type === "Utilization"));
    assert.ok(m.some((x) => x.type === "Resource" && x.resource.name === "memory"));
    const pods = m.find((x) => x.type === "Pods");
    assert.equal(pods?.pods.metric.name, "http_requests_per_second");
    assert.equal(pods.pods.target.type, "AverageValue");
    assert.deepEqual(
      adapterRules().map((r) => r.name.as),
      ["http_requests_per_second"],
      "the prometheus-adapter rule serves the metric the HPA asks for",
    );
    for (const dir of ["scaleUp", "scaleDown"]) {
      const b = h.spec.behavior[dir];
      assert.ok(b.policies.length > 0 && typeof b.stabilizationWindowSeconds === "number", dir);
    }
    assert.ok(h.spec.behavior.scaleDown.stabilizationWindowSeconds > h.spec.behavior.scaleUp.stabilizationWindowSeconds);
  });

  test("a PodDisruptionBudget on the gateway pods that lets a drain proceed", () => {
    const p = one("PodDisruptionBudget");
    assert.ok(matches(p.spec.selector.matchLabels, pods));
    assert.ok(p.spec.minAvailable < deployment().spec.replicas, "minAvailable below replicas, or no node could ever drain");
  });
});

describe("CRDs (checked by hand: required fields and types)", () => {
  test("ServiceMonitor: selector and endpoints, scraping /metrics/prometheus on the metrics Service", () => {
    const sm = one("ServiceMonitor");
    assert.equal(sm.apiVersion, "monitoring.coreos.com/v1");
    assert.equal(typeof sm.spec, "object", "spec is required");
    assert.equal(typeof sm.spec.selector, "object", "spec.selector is required");
    assert.ok(Array.isArray(sm.spec.endpoints) && sm.spec.endpoints.length > 0);
    const svc = all("Service").find((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels));
    assert.ok(svc, "the selector matches a Service");
    assert.equal(all("Service").filter((s) => matches(sm.spec.selector.matchLabels, s.metadata.labels)).length, 1, "exactly one (no double scrape)");
    for (const ep of sm.spec.endpoints as Obj[]) {
      assert.equal(typeof ep.port, "string");
      assert.ok((svc.spec.ports as Obj[]).some((p) => p.name === ep.port), `endpoint port ${ep.port} is a port of ${svc.metadata.name}`);
      assert.equal(ep.path, "/metrics/prometheus");
      assert.ok(["http", "https"].includes(ep.scheme ?? "http"));
      for (const k of ["interval", "scrapeTimeout"]) if (ep[k] !== undefined) assert.match(ep[k], DURATION, k);
      assert.ok(seconds(ep.scrapeTimeout) <= seconds(ep.interval), "scrapeTimeout <= interval");
    }
    // The rules select job="portcullis": jobLabel names the Service label that gives that job.
    assert.equal(svc.metadata.labels[sm.spec.jobLabel], "portcullis");
  });

  test("PrometheusRule: groups with unique names; each rule is an alert or a record with an expr", () => {
    const pr = one("PrometheusRule");
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

  test("the six alerts of SPEC.md, with its thresholds and durations", () => {
    const byName = new Map(alertRules().map((r) => [r.alert, r]));
    const want: [string, string, number, string][] = [
      ["PortcullisHighErrorRate", ">", 0.05, "5m"],
      ["PortcullisCircuitBreakerOpen", "==", 1, "1m"],
      ["PortcullisHighMemory", ">", 0.8, "5m"],
      ["PortcullisLoadShedding", ">", 10, "5m"],
      ["PortcullisHighLatencyP95", ">", 2, "10m"],
      ["PortcullisInstanceDown", "==", 0, "1m"],
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
    assert.match(r.stdout, /SUCCESS: 6 rules found/);
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
    const cm = one("ConfigMap", "portcullis-grafana-dashboard");
    assert.equal(cm.metadata.labels.grafana_dashboard, "1");
    assert.deepEqual(JSON.parse(cm.data["dashboard.json"]), d);
  });
});

// ------------------------------------------------------------------ Dockerfile

interface Instr {
  op: string;
  args: string;
}
function dockerfile(): { stages: { from: string; name?: string; instrs: Instr[] }[]; args: Map<string, string> } {
  const text = readFileSync(join(ROOT, "Dockerfile"), "utf8").replace(/\\\n/g, " ");
  const stages: { from: string; name?: string; instrs: Instr[] }[] = [];
  const args = new Map<string, string>();
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z]+)\s+([\s\S]*)$/.exec(line);
    assert.ok(m, `bad Dockerfile line: ${line}`);
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, " ").trim();
    if (op === "FROM") {
      const fm = /^(?:--platform=\S+ )?(\S+)(?: AS (\S+))?$/i.exec(rest)!;
      const from = fm[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a, b) => args.get(a ?? b) ?? "");
      stages.push({ from, name: fm[2], instrs: [] });
    } else if (op === "ARG" && stages.length === 0) {
      const [k, v] = rest.split("=");
      args.set(k!, v ?? "");
    } else {
      assert.ok(stages.length > 0, `${op} before FROM`);
      stages.at(-1)!.instrs.push({ op, args: rest });
    }
  }
  return { stages, args };
}

describe("Dockerfile", () => {
  const { stages } = dockerfile();
  const runtime = stages.at(-1)!;
  const ops = (op: string): Instr[] => runtime.instrs.filter((i) => i.op === op);

  test("multi-stage, a node:20-slim runtime, npm ci --omit=dev for what ships", () => {
    assert.ok(stages.length >= 2, "multi-stage");
    assert.equal(runtime.from, "node:20-slim");
    const all = stages.flatMap((s) => s.instrs);
    assert.ok(all.some((i) => i.op === "RUN" && /npm ci\b.*--omit=dev/.test(i.args)), "npm ci --omit=dev");
    // What ships is the node_modules of the --omit=dev stage.
    const omitStage = stages.find((s) => s.instrs.some((i) => i.op === "RUN" && /--omit=dev/.test(i.args)))!;
    assert.ok(ops("COPY").some((c) => c.args.includes(`--from=${omitStage.name}`) && /node_modules/.test(c.args)));
    // No dev tooling in the runtime stage itself.
    assert.ok(!ops("RUN").some((r) => /npm (ci|install)/.test(r.args)));
  });

  test("a non-root user, HEALTHCHECK on /health/live, STOPSIGNAL SIGTERM, bubblewrap installed", () => {
    const user = ops("USER").at(-1)?.args;
    assert.ok(user, "USER is set");
    const uid = user.split(":")[0]!;
    assert.ok(uid !== "root" && uid !== "0", `runs as ${user}`);
    assert.match(uid, /^[0-9]+$/, "numeric, so Kubernetes' runAsNonRoot can verify it");
    assert.equal(String(deployment().spec.template.spec.securityContext.runAsUser), uid, "the pod runs as the image's user");
    const hc = ops("HEALTHCHECK");
    assert.equal(hc.length, 1);
    assert.match(hc[0]!.args, /\/health\/live/);
    assert.deepEqual(ops("STOPSIGNAL").map((s) => s.args), ["SIGTERM"]);
    assert.ok(ops("RUN").some((r) => /apt-get install[^&]*\bbubblewrap\b/.test(r.args)), "bubblewrap in the runtime image");
    assert.ok(ops("EXPOSE").some((e) => e.args === settingsConfigMap().PORT));
  });

  test("the CMD path exists in the build output, with package.json (type: module) beside it", () => {
    const cmd = ops("CMD").at(-1)!;
    const argv = JSON.parse(cmd.args) as string[];
    assert.equal(argv[0], "node", "exec form, so the signal reaches node");
    assert.ok(existsSync(join(ROOT, argv[1]!)), `${argv[1]} is not in the build output`);
    assert.ok(ops("COPY").some((c) => /\bdist\b/.test(c.args) && c.args.includes("--from=")), "dist comes from the build stage");
    assert.ok(ops("COPY").some((c) => /\bpackage\.json\b/.test(c.args)), "package.json ships: dist is ESM by its type field");
    assert.equal(JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")).type, "module");
  });

  test("the runtime code only needs core/, server/, workers/ and production dependencies", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8"));
    const prod = new Set(Object.keys(pkg.dependencies));
    const shipped = ["core", "server", "workers"].map((d) => join(ROOT, "dist", d));
    const walk = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : e.name.endsWith(".js") ? [join(dir, e.name)] : []));
    for (const f of shipped.flatMap(walk)) {
      const src = readFileSync(f, "utf8");
      for (const m of src.matchAll(/(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
        const spec = m[1] ?? m[2]!;
        if (spec.startsWith(".")) {
          const target = resolve(dirname(f), spec);
          assert.ok(shipped.some((s) => !relative(s, target).startsWith("..")), `${relative(ROOT, f)} imports ${spec}, which the image does not build`);
        } else {
          const name = spec.startsWith("@") ? spec.split("/").slice(0, 2).join("/") : spec.split("/")[0]!;
          if (spec.startsWith("node:") || builtinModules.includes(name)) continue;
          assert.ok(prod.has(name), `${relative(ROOT, f)} imports ${name}, not a production dependency (npm ci --omit=dev drops it)`);
        }
      }
    }
    for (const s of ["core", "server", "workers"]) {
      assert.ok(stages[0]!.instrs.some((i) => i.op === "COPY" && new RegExp(`^${s} `).test(i.args)), `the build stage copies ${s}/`);
    }
  });

  test("no secrets baked in: no secret-looking ENV/ARG, nothing secret copied, .dockerignore keeps them out", () => {
    const all = stages.flatMap((s) => s.instrs);
    for (const i of all.filter((i) => i.op === "ENV" || i.op === "ARG")) {
      assert.doesNotMatch(i.args, /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i, `${i.op} ${i.args}`);
    }
    for (const i of all.filter((i) => i.op === "COPY" || i.op === "ADD")) {
      assert.doesNotMatch(i.args, /\.env|\.pem|\.key\b|secret|\.npmrc|\s\.\s|^\.\s/, `${i.op} ${i.args}`);
    }
    assert.ok(!all.some((i) => i.op === "ADD"), "COPY, not ADD");
    const ignore = readFileSync(join(ROOT, ".dockerignore"), "utf8").split("\n").map((l) => l.trim());
    for (const must of [".env", ".env.*", ".git", "**/node_modules", "dist", "data", "**/*.pem", "**/*.db"]) {
      assert.ok(ignore.includes(must), `.dockerignore lists ${must}`);
    }
    // What the Dockerfile copies from the context is not ignored.
    for (const i of stages.flatMap((s) => s.instrs).filter((i) => i.op === "COPY" && !i.args.includes("--from="))) {
      const srcs = i.args.split(" ").filter((a) => !a.startsWith("--")).slice(0, -1);
      for (const s of srcs) {
        assert.ok(existsSync(join(ROOT, s)), `COPY ${s}: missing`);
        assert.ok(!ignore.includes(s), `COPY ${s} but .dockerignore drops it`);
      }
    }
  });
});
