/**
 * Offline checks of the Kubernetes artifacts, rendered by the real `kubectl kustomize`: the
 * base and each optional Component render and validate against the Kubernetes OpenAPI
 * schemas (kubernetes-models); the base needs no CRD; the shutdown arithmetic, the HPA
 * without spec.replicas, the disruption budget, the spread, the second port, the
 * ServiceAccount, the hash-suffixed ConfigMap and the ledger's volume budget hold. The
 * monitoring Component is in monitoring.test.ts, the mcp-sandbox Component in
 * mcp-sandbox.test.ts, the Dockerfile in dockerfile.test.ts, the live checks in live.test.ts.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { ConfigMap, Namespace, PersistentVolumeClaim, Service, ServiceAccount } from "kubernetes-models/v1";
import { Deployment } from "kubernetes-models/apps/v1";
import { HorizontalPodAutoscaler } from "kubernetes-models/autoscaling/v2";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { settingsRead } from "../support/settings.js";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { checkServable, ConfigError, loadConfig } from "../../core/config.js";
import {
  K8S,
  COMPONENTS,
  OVERLAY,
  ADAPTER_RULES,
  kustomization,
  kustomize,
  render,
  baseResources,
  one,
  all,
  deployment,
  container,
  envConfigMap,
  settingsConfigMap,
  adapterRules,
  readYamlDocs,
  preStopSeconds,
  requiredGraceSeconds,
  SHUTDOWN_MARGIN_MS,
  PROVIDER_ENVS,
  type Obj,
} from "./support.js";

// The kubernetes-models class per apiVersion/kind; each validates against the OpenAPI schema.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const MODELS: Record<string, new (data: any) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Service": Service,
  "v1/ServiceAccount": ServiceAccount,
  "v1/Namespace": Namespace,
  "v1/PersistentVolumeClaim": PersistentVolumeClaim,
  "apps/v1/Deployment": Deployment,
  "autoscaling/v2/HorizontalPodAutoscaler": HorizontalPodAutoscaler,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
  "networking.k8s.io/v1/NetworkPolicy": NetworkPolicy,
};
const CRDS = new Set(["monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule"]);
const COMPONENT_NAMES = ["monitoring", "prometheus-adapter", "mcp-sandbox"];

const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);
/** A Kubernetes quantity in bytes (the binary and decimal suffixes the manifests use). */
const bytes = (q: string): number => {
  const m = /^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
  assert.ok(m, `quantity ${q}`);
  const mult: Record<string, number> = { "": 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
  return Number(m[1]) * mult[m[2] ?? ""]!;
};

describe("kustomize: the base, each Component and the example overlay render", () => {
  test("kubectl kustomize renders the base, each Component alone, all of them together and the overlay", () => {
    assert.ok(render().length >= 6);
    for (const c of COMPONENT_NAMES) {
      assert.equal(kustomization(join(COMPONENTS, c)).kind, "Component", `${c} is a kustomize Component`);
      assert.notDeepEqual(render([c]), render(), `${c} changes the output`);
    }
    assert.ok(render(COMPONENT_NAMES).length > render().length);
    assert.ok(kustomize(OVERLAY).length > render().length);
  });

  test("every file under k8s/ is used by the base or a Component", () => {
    const k = kustomization();
    const used = new Set<string>([
      "kustomization.yaml",
      ...(k.resources as string[]),
      ...(k.configMapGenerator as Obj[]).flatMap((g) => g.envs ?? g.files),
    ]);
    const top = readdirSync(K8S).filter((f) => f !== "components");
    assert.deepEqual(top.sort(), [...used].sort(), "a file in k8s/ the base does not use, or the reverse");
    for (const c of COMPONENT_NAMES) {
      const ck = kustomization(join(COMPONENTS, c));
      const cUsed = new Set<string>([
        "kustomization.yaml",
        ...((ck.resources ?? []) as string[]),
        ...((ck.configMapGenerator ?? []) as Obj[]).flatMap((g) => g.envs ?? g.files),
      ]);
      if (c === "prometheus-adapter") cUsed.add("adapter-rules.yaml"); // the adapter's own config, documented there
      assert.deepEqual(readdirSync(join(COMPONENTS, c)).sort(), [...cUsed].sort(), `components/${c}`);
    }
    assert.deepEqual(readdirSync(COMPONENTS).sort(), [...COMPONENT_NAMES].sort());
  });

  test("the base needs no CRD (a cluster without the Prometheus operator applies it); monitoring adds them", () => {
    assert.deepEqual(
      render().filter((o) => CRDS.has(`${o.apiVersion}/${o.kind}`)),
      [],
    );
    const kinds = render(["monitoring"]).map((o) => `${o.apiVersion}/${o.kind}`);
    for (const crd of CRDS) assert.ok(kinds.includes(crd), crd);
  });

  test("every object has a name and the app label, no namespace in the base; names are unique per kind", () => {
    const seen = new Set<string>();
    for (const { file, obj } of baseResources(COMPONENT_NAMES)) {
      assert.ok(obj.apiVersion && obj.kind && obj.metadata?.name, `${file}: apiVersion, kind, metadata.name`);
      assert.equal(obj.metadata.namespace, undefined, `${file}: a base leaves the namespace to the overlay`);
      assert.equal(obj.metadata.labels?.["app.kubernetes.io/name"], "portcullis", `${file}: label`);
      assert.ok(!seen.has(file), `duplicate ${file}`);
      seen.add(file);
    }
  });

  test("the built-in kinds validate against the Kubernetes OpenAPI schemas (kubernetes-models)", () => {
    const kinds = new Set<string>();
    for (const { file, obj } of [
      ...baseResources(COMPONENT_NAMES),
      ...kustomize(OVERLAY).map((obj) => ({ file: `overlay ${obj.kind}`, obj })),
    ]) {
      const key = `${obj.apiVersion}/${obj.kind}`;
      if (CRDS.has(key)) continue;
      const Model = MODELS[key];
      assert.ok(Model, `${file}: no schema for ${key}`);
      assert.doesNotThrow(() => new Model(obj).validate(), `${file} ${key}`);
      kinds.add(obj.kind);
    }
    assert.deepEqual([...kinds].sort(), [
      "ConfigMap",
      "Deployment",
      "HorizontalPodAutoscaler",
      "Namespace",
      "NetworkPolicy",
      "PersistentVolumeClaim",
      "PodDisruptionBudget",
      "Service",
      "ServiceAccount",
    ]);
    for (const obj of readYamlDocs(ADAPTER_RULES)) new ConfigMap(obj).validate();
  });

  test("the validator really rejects a bad manifest (control)", () => {
    const bad = structuredClone(deployment());
    bad.spec.replicas = "3";
    assert.throws(() => new Deployment(bad).validate(), /replicas/);
    const bad2 = structuredClone(deployment());
    delete bad2.spec.template.spec.containers[0].name;
    assert.throws(() => new Deployment(bad2).validate(), /name/);
  });

  test("the settings ConfigMap is generated with a hash suffix, so a settings change rolls the pods", () => {
    const name = container().envFrom[0].configMapRef.name as string;
    assert.match(name, /^portcullis-config-[a-z0-9]{10}$/);
    const dir = mkdtempSync(join(tmpdir(), "portcullis-k8s-copy-"));
    try {
      cpSync(K8S, join(dir, "k8s"), { recursive: true });
      const env = join(dir, "k8s", "config.env");
      writeFileSync(env, readFileSync(env, "utf8").replace(/^LOG_LEVEL=.*$/m, "LOG_LEVEL=debug"));
      const changed = kustomize(join(dir, "k8s"));
      const d = changed.find((o) => o.kind === "Deployment")!;
      const newName = d.spec.template.spec.containers[0].envFrom[0].configMapRef.name as string;
      assert.notEqual(newName, name, "a different pod template: the Deployment rolls");
      assert.equal(changed.find((o) => o.kind === "ConfigMap" && o.metadata.name === newName)?.data.LOG_LEVEL, "debug");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the example overlay pins the image by digest and enforces the restricted Pod Security Standard", () => {
    const objs = kustomize(OVERLAY);
    const d = objs.find((o) => o.kind === "Deployment" && o.metadata.name === "portcullis")!;
    assert.match(d.spec.template.spec.containers[0].image, /^[a-z0-9./-]+\/portcullis@sha256:[0-9a-f]{64}$/);
    const ns = objs.find((o) => o.kind === "Namespace")!;
    assert.equal(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
    for (const o of objs)
      if (o.kind !== "Namespace") assert.equal(o.metadata.namespace, ns.metadata.name, `${o.kind}/${o.metadata.name} in the namespace`);
  });
});

describe("Deployment", () => {
  const d = deployment();
  const c = container();
  const cm = settingsConfigMap();

  test("no spec.replicas (the HPA owns the count); RollingUpdate maxSurge 1, maxUnavailable 0", () => {
    assert.equal(one("HorizontalPodAutoscaler").spec.scaleTargetRef.name, d.metadata.name);
    assert.equal(d.spec.replicas, undefined, "kubectl apply -k would snap the fleet back to it");
    assert.deepEqual(d.spec.strategy, { type: "RollingUpdate", rollingUpdate: { maxSurge: 1, maxUnavailable: 0 } });
    assert.ok(matches(d.spec.selector.matchLabels, d.spec.template.metadata.labels));
  });

  test("probes on the metrics port (METRICS_PORT), which the client Service does not expose", () => {
    const ports = new Map((c.ports as Obj[]).map((p) => [p.name, p.containerPort]));
    assert.equal(String(ports.get("http")), cm.PORT);
    assert.equal(String(ports.get("metrics")), cm.METRICS_PORT);
    assert.notEqual(cm.METRICS_PORT, cm.PORT);
    assert.equal(c.startupProbe.httpGet.path, "/health/live");
    assert.equal(c.livenessProbe.httpGet.path, "/health/live");
    assert.equal(c.readinessProbe.httpGet.path, "/health/ready");
    for (const p of [c.startupProbe, c.livenessProbe, c.readinessProbe]) assert.equal(p.httpGet.port, "metrics");
    const client = one("Service", "portcullis");
    assert.deepEqual(
      (client.spec.ports as Obj[]).map((p) => [p.name, p.targetPort]),
      [["http", "http"]],
    );
    for (const s of all("Service"))
      for (const p of s.spec.ports as Obj[]) assert.notEqual(p.targetPort, "metrics", `${s.metadata.name} exposes the metrics port`);
    assert.equal(d.spec.template.metadata.annotations?.["prometheus.io/scrape"], undefined, "one scrape path: the ServiceMonitor");
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 30);
  });

  test("grace period = preStop + GRACEFUL_SHUTDOWN_TIMEOUT + shutdown margin + slack, for every Deployment", () => {
    for (const [components, name] of [
      [[], "portcullis"],
      [["mcp-sandbox"], "portcullis-mcp"],
    ] as const) {
      const dep = deployment(components, name);
      const con = container(components, name);
      const data = envConfigMap(components, name).data as Record<string, string>;
      const preStop = preStopSeconds(con);
      assert.ok(preStop >= 10 && preStop <= 15, `${name}: preStop ${preStop} s, long enough for load balancers to deregister`);
      const drainMs = loadConfig(
        { ...data, ...PROVIDER_ENVS.anthropic, WORKSPACE_ROOT: undefined },
        undefined,
        1,
      ).graceful_shutdown_timeout_ms; // what the gateway applies
      assert.equal(
        dep.spec.template.spec.terminationGracePeriodSeconds,
        requiredGraceSeconds(preStop, drainMs),
        `${name}: terminationGracePeriodSeconds`,
      );
    }
    assert.equal(Number(cm.GRACEFUL_SHUTDOWN_TIMEOUT), 300_000, "streams get 5 minutes to finish");
    assert.equal(SHUTDOWN_MARGIN_MS, 5000);
    assert.equal(d.spec.template.spec.terminationGracePeriodSeconds, 10 + 300 + 5 + 5);
  });

  test("preStop turns readiness off (SIGUSR2 to PID 1) before it sleeps, so the socket still accepts meanwhile", () => {
    const cmd = (c.lifecycle.preStop.exec.command as string[]).join(" ");
    assert.match(cmd, /^sh -c kill -USR2 1; sleep [0-9]+$/);
  });

  test("requests and limits, ephemeral storage included; the ledger cap and the alert fit the volume", () => {
    assert.deepEqual(c.resources, {
      requests: { cpu: "500m", memory: "512Mi", "ephemeral-storage": "1Gi" },
      limits: { cpu: "1000m", memory: "2Gi", "ephemeral-storage": "5Gi" },
    });
    const vols = new Map((d.spec.template.spec.volumes as Obj[]).map((v) => [v.name, v]));
    const dataName = (c.volumeMounts as Obj[]).find((m) => m.mountPath === dirname(cm.DATABASE_PATH!))!.name;
    const size = bytes(vols.get(dataName)!.emptyDir.sizeLimit);
    assert.ok(bytes(c.resources.limits["ephemeral-storage"]) > size, "the container's limit holds the ledger volume and the logs");
    assert.ok(Number(cm.LEDGER_MAX_MB) * 1024 ** 2 <= size * 0.8, "LEDGER_MAX_MB prunes well before the kubelet would evict");
    assert.equal(Number(cm.LEDGER_RETENTION_DAYS), 30);
    const alert = (one("PrometheusRule", undefined, ["monitoring"]).spec.groups as Obj[])
      .flatMap((g) => g.rules)
      .find((r: Obj) => r.alert === "PortcullisLedgerNearFull");
    assert.ok(alert, "an alert on the ledger's size");
    assert.match(alert.expr, new RegExp(`ledger_size_bytes\\{[^}]*\\}\\) / ${size} > 0\\.[0-9]+`), "divides by the volume's sizeLimit");
    assert.ok(
      Number(/> (0\.[0-9]+)/.exec(alert.expr)![1]) * size > Number(cm.LEDGER_MAX_MB) * 1024 ** 2,
      "fires only when the cap did not hold",
    );
  });

  test("restricted pod security: non-root, read-only root, no capabilities; its own ServiceAccount without a token", () => {
    const pod = d.spec.template.spec;
    assert.equal(pod.securityContext.runAsNonRoot, true);
    assert.ok(pod.securityContext.runAsUser > 0);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
    assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    assert.equal(c.securityContext.capabilities.add, undefined);
    const sa = one("ServiceAccount");
    assert.equal(pod.serviceAccountName, sa.metadata.name);
    assert.notEqual(sa.metadata.name, "default");
    assert.equal(sa.automountServiceAccountToken, false);
    assert.equal(pod.automountServiceAccountToken, false);
    const mounts = new Map((c.volumeMounts as Obj[]).map((m) => [m.mountPath, m.name]));
    const vols = new Map((pod.volumes as Obj[]).map((v) => [v.name, v]));
    for (const path of ["/tmp", "/app/data"]) assert.ok(vols.get(mounts.get(path))?.emptyDir, `${path} is an emptyDir`);
    assert.equal(dirname(cm.DATABASE_PATH!), "/app/data");
  });

  test("spread over zones and hosts, per ReplicaSet (matchLabelKeys pod-template-hash)", () => {
    const tsc = d.spec.template.spec.topologySpreadConstraints as Obj[];
    assert.deepEqual(tsc.map((t) => t.topologyKey).sort(), ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]);
    for (const t of tsc) {
      assert.deepEqual(t.matchLabelKeys, ["pod-template-hash"]);
      assert.equal(t.maxSkew, 1);
      assert.ok(matches(t.labelSelector.matchLabels, d.spec.template.metadata.labels));
    }
  });

  test("settings come from the ConfigMap, every key of which the gateway reads; secrets only through Secret refs", () => {
    assert.equal(c.envFrom.length, 1);
    // The names the start-up configuration really looks up (recorded while it runs).
    const read = settingsRead();
    const secretish = /KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL/i;
    for (const [components, name] of [
      [[], "portcullis"],
      [["mcp-sandbox"], "portcullis-mcp"],
    ] as const) {
      const data = envConfigMap(components, name).data as Record<string, string>;
      for (const key of Object.keys(data)) {
        assert.ok(read.has(key), `${name}: ConfigMap key ${key} is not a setting the gateway reads`);
        assert.doesNotMatch(key, secretish, `${key} belongs in a Secret`);
      }
      for (const e of container(components, name).env as Obj[]) {
        assert.ok(read.has(e.name), `${name}: env ${e.name} is not a setting the gateway reads`);
        assert.equal(e.value, undefined, `${name}: ${e.name} has a literal value`);
        assert.equal(e.valueFrom?.secretKeyRef?.name, "portcullis-secrets", `${name}: ${e.name} comes from the Secret`);
      }
    }
    const env = new Map((c.env as Obj[]).map((e) => [e.name, e.valueFrom.secretKeyRef]));
    assert.notEqual(env.get("GATEWAY_API_KEYS").optional, true, "client keys are required");
    assert.ok(env.has("MCP_SESSION_SECRET"), "MCP_SESSION_SECRET from the Secret");
    assert.equal(all("Secret").length, 0, "no Secret (and so no secret value) in the base");
  });

  test("the ConfigMap starts with any one provider from the Secret, and without one the start-up names the setting", () => {
    assert.equal(cm.MODEL_PROVIDER, "auto", "a fixed provider would crash-loop a deployment that uses another");
    const refs = new Set((c.env as Obj[]).map((e) => e.name));
    for (const [provider, secretEnv] of Object.entries(PROVIDER_ENVS)) {
      for (const k of Object.keys(secretEnv)) assert.ok(refs.has(k), `${k} comes from the Secret`);
      const cfg = loadConfig({ ...cm, GATEWAY_API_KEYS: "client-key-12345678", ...secretEnv }, undefined, 1);
      assert.doesNotThrow(() => checkServable(cfg), provider);
      assert.equal(cfg.defaultProvider, provider, `${provider} alone is the default`);
    }
    assert.throws(
      () => loadConfig({ ...cm, GATEWAY_API_KEYS: "client-key-12345678" }, undefined, 1),
      (e: unknown) => e instanceof ConfigError && e.setting === "ANTHROPIC_API_KEY" && /no provider is configured/.test(e.message),
    );
    assert.throws(
      () => loadConfig({ ...cm, ...PROVIDER_ENVS.anthropic, ...PROVIDER_ENVS.databricks }, undefined, 1),
      (e: unknown) =>
        e instanceof ConfigError &&
        e.setting === "MODEL_PROVIDER" &&
        /several providers are configured \(anthropic, databricks\)/.test(e.message),
    );
    assert.equal(
      loadConfig({ ...cm, ...PROVIDER_ENVS.anthropic, ...PROVIDER_ENVS.databricks, MODEL_PROVIDER: "databricks" }, undefined, 1)
        .defaultProvider,
      "databricks",
    );
  });
});

describe("Services, HPA, PDB", () => {
  const pods = deployment().spec.template.metadata.labels as Record<string, string>;
  const portNames = new Set((container().ports as Obj[]).map((p) => p.name));

  test("every Service selects pods by a named port the pods have", () => {
    for (const s of all("Service", COMPONENT_NAMES)) {
      const sel = s.spec.selector as Record<string, string>;
      const target = all("Deployment", COMPONENT_NAMES).find((dd) => matches(sel, dd.spec.template.metadata.labels));
      assert.ok(target, `${s.metadata.name} selects a Deployment's pods`);
      const names = new Set((target.spec.template.spec.containers[0].ports as Obj[]).map((p) => p.name));
      for (const p of s.spec.ports as Obj[]) assert.ok(names.has(p.targetPort), `${s.metadata.name} targetPort ${p.targetPort}`);
    }
    assert.ok(portNames.has("http") && portNames.has("metrics"));
  });

  test("the base HPA scales on CPU only: no memory target, no metric that needs an adapter", () => {
    const h = one("HorizontalPodAutoscaler");
    assert.equal(h.apiVersion, "autoscaling/v2");
    assert.deepEqual(h.spec.scaleTargetRef, { apiVersion: "apps/v1", kind: "Deployment", name: deployment().metadata.name });
    assert.equal(h.spec.minReplicas, 3);
    assert.ok(h.spec.maxReplicas > h.spec.minReplicas);
    assert.deepEqual(h.spec.metrics, [
      { type: "Resource", resource: { name: "cpu", target: { type: "Utilization", averageUtilization: 70 } } },
    ]);
    for (const dir of ["scaleUp", "scaleDown"]) {
      const b = h.spec.behavior[dir];
      assert.ok(b.policies.length > 0 && typeof b.stabilizationWindowSeconds === "number", dir);
    }
    assert.ok(h.spec.behavior.scaleDown.stabilizationWindowSeconds > h.spec.behavior.scaleUp.stabilizationWindowSeconds);
  });

  test("the prometheus-adapter Component adds the Pods metric that its adapter rule serves", () => {
    const h = one("HorizontalPodAutoscaler", undefined, ["prometheus-adapter"]);
    const m = h.spec.metrics as Obj[];
    assert.equal(m[0].resource.name, "cpu", "CPU stays");
    const podsMetric = m.find((x) => x.type === "Pods");
    assert.equal(podsMetric?.pods.metric.name, "http_requests_per_second");
    assert.equal(podsMetric.pods.target.type, "AverageValue");
    assert.deepEqual(
      adapterRules().map((r) => r.name.as),
      ["http_requests_per_second"],
    );
    assert.ok(
      !render(["prometheus-adapter"]).some((o) => o.metadata.name === "prometheus-adapter-portcullis"),
      "the adapter's own config is not applied with the gateway",
    );
  });

  test("PDB: maxUnavailable 1 with unhealthyPodEvictionPolicy AlwaysAllow, on the gateway pods", () => {
    const p = one("PodDisruptionBudget");
    assert.ok(matches(p.spec.selector.matchLabels, pods));
    assert.equal(p.spec.maxUnavailable, 1);
    assert.equal(p.spec.minAvailable, undefined);
    assert.equal(p.spec.unhealthyPodEvictionPolicy, "AlwaysAllow");
  });
});
