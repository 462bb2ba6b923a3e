// What the pod model tells about a pod besides its name: its workload (from its controller, as
// docs/kubernetes.md derives it) and Istio's canonical service and revision, app and version, from
// its labels with Istio's fallbacks.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { podInfo, PodSchema, workloadName } from "../../../src/kube/pod.ts";
import { pod } from "../../support/kubelet-pods.ts";

const parse = (object: unknown) => v.parse(PodSchema, object);
const owned = (name: string, kind: string, owner: string, labels: Record<string, string> = {}) =>
  parse({ metadata: { name, namespace: "shop", labels, ownerReferences: [{ apiVersion: "apps/v1", kind, name: owner, uid: "u", controller: true }] } });

describe("workloadName", () => {
  test("a Deployment's pod: its ReplicaSet's name without the pod-template-hash", () => {
    expect(workloadName(owned("web-7d4b9c8f6d-x2x9q", "ReplicaSet", "web-7d4b9c8f6d", { "pod-template-hash": "7d4b9c8f6d" }))).toBe("web");
    // a ReplicaSet of its own (no hash label, or one its name does not end in) is the workload
    expect(workloadName(owned("rs-abcde", "ReplicaSet", "rs"))).toBe("rs");
    expect(workloadName(owned("rs-abcde", "ReplicaSet", "rs", { "pod-template-hash": "zzz" }))).toBe("rs");
  });

  test("a CronJob's pod: its Job's name without the 8 to 10 digits of the schedule", () => {
    expect(workloadName(owned("backup-28955160-q2w3e", "Job", "backup-28955160"))).toBe("backup");
    expect(workloadName(owned("x-1234567890-q2w3e", "Job", "x-1234567890"))).toBe("x");
    expect(workloadName(owned("migrate-1234567-abc", "Job", "migrate-1234567"))).toBe("migrate-1234567"); // 7 digits: a Job of its own
    expect(workloadName(owned("migrate-abc", "Job", "migrate"))).toBe("migrate");
  });

  test("StatefulSet, DaemonSet and others by their own name; no controller: the pod itself", () => {
    expect(workloadName(owned("db-0", "StatefulSet", "db"))).toBe("db");
    expect(workloadName(owned("kube-proxy-x7k2p", "DaemonSet", "kube-proxy"))).toBe("kube-proxy");
    expect(workloadName(owned("p", "ReplicationController", "legacy"))).toBe("legacy");
    expect(workloadName(parse({ metadata: { name: "standalone" } }))).toBe("standalone");
    // an owner that is not the controller does not count
    const notController = parse({ metadata: { name: "p", ownerReferences: [{ kind: "ConfigMap", name: "c", controller: false }] } });
    expect(workloadName(notController)).toBe("p");
  });
});

describe("podInfo", () => {
  test("canonical service and revision: Istio's labels, then app.kubernetes.io/*, then app and version, then the workload and latest", () => {
    const info = (labels: Record<string, string>) => podInfo(owned("web-7d4b9c8f6d-x2x9q", "ReplicaSet", "web-7d4b9c8f6d", { "pod-template-hash": "7d4b9c8f6d", ...labels }));
    expect(info({})).toMatchObject({ workload: "web", canonicalService: "web", canonicalRevision: "latest", app: "web", version: "latest" });
    expect(info({ app: "shop-web", version: "v2" })).toMatchObject({ canonicalService: "shop-web", canonicalRevision: "v2", app: "shop-web", version: "v2" });
    expect(info({ app: "a", "app.kubernetes.io/name": "k-a", version: "v", "app.kubernetes.io/version": "k-v" })).toMatchObject({
      canonicalService: "k-a",
      canonicalRevision: "k-v",
      app: "a",
      version: "v",
    });
    expect(
      info({ app: "a", "service.istio.io/canonical-name": "c-a", "service.istio.io/canonical-revision": "c-v", "app.kubernetes.io/name": "k-a" }),
    ).toMatchObject({ canonicalService: "c-a", canonicalRevision: "c-v", app: "a", version: "c-v" });
  });

  test("the service account from spec.serviceAccountName; none: null", () => {
    expect(podInfo(parse({ metadata: { name: "p" }, spec: { serviceAccountName: "billing" } })).serviceAccount).toBe("billing");
    expect(podInfo(parse({ metadata: { name: "p" } })).serviceAccount).toBeNull();
    expect(podInfo(parse({ metadata: { name: "p" }, spec: { serviceAccountName: "" } })).serviceAccount).toBeNull();
  });

  test("a real-shaped kubelet pod", () => {
    const object = pod({ name: "db-0", namespace: "data", ip4: "10.244.1.9", owner: { kind: "StatefulSet", name: "db" } });
    expect(podInfo(parse(object))).toEqual({
      name: "db-0",
      namespace: "data",
      workload: "db",
      canonicalService: "db",
      canonicalRevision: "latest",
      app: "db",
      version: "latest",
      serviceAccount: "default",
    });
  });

  test("labels and owners of the wrong type are errors naming the path", () => {
    const labels = v.safeParse(PodSchema, { metadata: { name: "p", labels: { app: 1 } } });
    expect(labels.success).toBe(false);
    expect(v.getDotPath(labels.issues![0])).toBe("metadata.labels.app");
    const owner = v.safeParse(PodSchema, { metadata: { name: "p", ownerReferences: [{ kind: "Job" }] } });
    expect(v.getDotPath(owner.issues![0])).toBe("metadata.ownerReferences.0.name");
  });
});
