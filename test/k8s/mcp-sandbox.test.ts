/**
 * The mcp-sandbox Component, rendered by `kubectl kustomize`: a second Deployment of the
 * gateway with only /mcp configured and no provider key anywhere in its environment, under a
 * gVisor RuntimeClass with the restricted securityContext, a ReadWriteOnce workspace, and a
 * NetworkPolicy that leaves its commands no network. Its configuration starts the gateway.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { checkServable, loadConfig } from "../../core/config.js";
import { COMPONENTS, PROVIDER_ENVS, container, deployment, envConfigMap, one, type Obj } from "./support.js";

const matches = (selector: Record<string, string>, labels: Record<string, string>): boolean =>
  Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("the mcp-sandbox Component", () => {
  const C = ["mcp-sandbox"];
  const d = deployment(C, "portcullis-mcp");
  const c = container(C, "portcullis-mcp");
  const data = envConfigMap(C, "portcullis-mcp").data as Record<string, string>;

  test("a separate Deployment with only /mcp configured and no provider key anywhere in its environment", () => {
    assert.ok(data.WORKSPACE_ROOT, "the MCP tools are on");
    for (const k of Object.keys(PROVIDER_ENVS).flatMap((p) => Object.keys(PROVIDER_ENVS[p]!))) {
      assert.equal(data[k], undefined, k);
      assert.ok(!(c.env as Obj[]).some((e) => e.name === k), `${k} not in the MCP pod`);
    }
    assert.deepEqual((c.env as Obj[]).map((e) => e.name).sort(), ["GATEWAY_API_KEYS", "MCP_SESSION_SECRET"]);
    assert.notEqual(
      (c.env as Obj[]).find((e) => e.name === "MCP_SESSION_SECRET")!.valueFrom.secretKeyRef.optional,
      true,
      "sessions must survive restarts",
    );
    const ws = mkdtempSync(join(tmpdir(), "portcullis-ws-"));
    try {
      const cfg = loadConfig(
        {
          ...data,
          WORKSPACE_ROOT: ws,
          GATEWAY_API_KEYS: "client-key-12345678",
          MCP_SESSION_SECRET: "s".repeat(32),
          PATH: process.env.PATH,
        },
        undefined,
        1,
      );
      assert.ok(cfg.mcp !== null);
      assert.doesNotThrow(() => checkServable(cfg), "an MCP-only gateway starts without a provider");
    } finally {
      rmSync(ws, { recursive: true, force: true });
    }
  });

  test("its own runtime class, the restricted securityContext, a workspace volume, and no network for its commands", () => {
    const pod = d.spec.template.spec;
    assert.equal(pod.runtimeClassName, "gvisor");
    assert.equal(pod.automountServiceAccountToken, false);
    assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault");
    assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
    assert.equal(c.securityContext.allowPrivilegeEscalation, false);
    assert.equal(d.spec.replicas, 1);
    assert.equal(d.spec.strategy.type, "Recreate", "one writer on the ReadWriteOnce workspace");
    const wsMount = (c.volumeMounts as Obj[]).find((m) => m.mountPath === data.WORKSPACE_ROOT)!;
    const vol = (pod.volumes as Obj[]).find((v) => v.name === wsMount.name)!;
    assert.equal(one("PersistentVolumeClaim", vol.persistentVolumeClaim.claimName, C).spec.accessModes[0], "ReadWriteOnce");
    const np = one("NetworkPolicy", undefined, C);
    assert.ok(matches(np.spec.podSelector.matchLabels, d.spec.template.metadata.labels));
    assert.ok(!matches(np.spec.podSelector.matchLabels, deployment().spec.template.metadata.labels), "not the gateway pods");
    assert.deepEqual(np.spec.policyTypes, ["Ingress", "Egress"]);
    assert.deepEqual(np.spec.egress, []);
    assert.equal(one("Service", "portcullis-mcp", C).spec.ports.length, 1);
    assert.ok(existsSync(join(COMPONENTS, "mcp-sandbox", "mcp.env")));
  });
});
