/**
 * The fleet overlay (k8s-overlay-fleet/, docs/fleet.md), offline like the base: it renders with
 * the real `kubectl kustomize`, its Deployment and NetworkPolicy validate against the Kubernetes
 * OpenAPI schemas (kubernetes-models), the database and Redis URLs come from a Secret (they
 * carry passwords), and the NetworkPolicy opens exactly the ports docs/fleet.md names.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { Deployment } from "kubernetes-models/apps/v1";
import { NetworkPolicy } from "kubernetes-models/networking.k8s.io/v1";
import { ROOT, kustomize, type Obj } from "./support.js";

const objs = kustomize(join(ROOT, "k8s-overlay-fleet"));
const dep = objs.find((o) => o.kind === "Deployment" && o.metadata.name === "portcullis")!;
const np = objs.find((o) => o.kind === "NetworkPolicy")!;

test("the fleet overlay renders, and its Deployment and NetworkPolicy validate against the OpenAPI schemas", () => {
  assert.ok(dep && np);
  new Deployment(dep as never).validate();
  new NetworkPolicy(np as never).validate();
  for (const o of objs) assert.equal(o.metadata.namespace ?? "portcullis", "portcullis", `${o.kind}/${o.metadata.name}`);
});

test("DATABASE_URL and REDIS_URL come from the portcullis-fleet Secret, never from the ConfigMap", () => {
  const env = dep.spec.template.spec.containers[0].env as Obj[];
  for (const name of ["DATABASE_URL", "REDIS_URL"]) {
    const e = env.find((x) => x.name === name);
    assert.deepEqual(e?.valueFrom, { secretKeyRef: { name: "portcullis-fleet", key: name } }, name);
  }
  const cm = objs.find((o) => o.kind === "ConfigMap")!;
  assert.ok(!("DATABASE_URL" in (cm.data ?? {})) && !("REDIS_URL" in (cm.data ?? {})));
  // The base's Secret references are still there.
  assert.ok(env.some((x) => x.name === "GATEWAY_API_KEYS"));
});

test("the NetworkPolicy admits http from the ingress namespace and metrics from monitoring, and egress only to DNS, Redis, PostgreSQL and public HTTPS", () => {
  assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
  assert.deepEqual(np.spec.podSelector.matchLabels, dep.spec.selector.matchLabels);
  const ingress = (np.spec.ingress as Obj[]).map((r) => [
    r.from[0].namespaceSelector.matchLabels["kubernetes.io/metadata.name"],
    r.ports.map((p: Obj) => p.port),
  ]);
  assert.deepEqual(ingress, [
    ["ingress-nginx", ["http"]],
    ["monitoring", ["metrics"]],
  ]);
  const ports = (np.spec.egress as Obj[]).flatMap((r) => r.ports.map((p: Obj) => `${p.protocol}/${p.port}`)).sort();
  assert.deepEqual(ports, ["TCP/443", "TCP/53", "TCP/5432", "TCP/6379", "UDP/53"]);
  const https = (np.spec.egress as Obj[]).find((r) => r.ports.some((p: Obj) => p.port === 443))!;
  assert.ok(https.to[0].ipBlock.except.includes("10.0.0.0/8"), "443 does not reach private addresses");
});
