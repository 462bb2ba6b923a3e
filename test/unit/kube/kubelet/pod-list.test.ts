// The PodList schema and the index built from it, on real-shaped kubelet JSON (see
// test/support/kubelet-pods.ts): static pods, hostNetwork, dual stack, finished pods reusing an IP,
// items: null, wrong types; the conflict rules.
import { describe, expect, test } from "bun:test";
import { PodIndex } from "../../../../src/kube/kubelet/pod-index.ts";
import { checkPodList, parsePodList } from "../../../../src/kube/kubelet/pod-list.ts";
import type { Pod } from "../../../../src/kube/pod.ts";
import { busyNodePodList, pod, podList } from "../../../support/kubelet-pods.ts";

function pods(list: unknown): Pod[] {
  const result = checkPodList(list);
  if (!result.ok) throw new Error(result.problem);
  return result.pods;
}

function problem(list: unknown): string {
  const result = checkPodList(list);
  if (result.ok) throw new Error("expected the list to be refused");
  return result.problem;
}

const index = (...items: unknown[]) => PodIndex.fromPods(pods(podList(items)));

describe("the PodList schema", () => {
  test("a real-shaped list passes; only the used fields come out", () => {
    const [p] = pods(podList([pod({ name: "web-7d4b9c8f6d-x2x9q", namespace: "shop", ip4: "10.244.1.5", owner: { kind: "ReplicaSet", name: "web-7d4b9c8f6d" }, templateHash: "7d4b9c8f6d" })]));
    expect(p!.metadata.name).toBe("web-7d4b9c8f6d-x2x9q");
    expect(p!.metadata.namespace).toBe("shop");
    expect(p!.status?.podIP).toBe("10.244.1.5");
    // unknown fields (managedFields, spec.containers, conditions...) are not carried along
    expect(Object.keys(p!.metadata)).not.toContain("managedFields");
    expect(Object.keys(p!.metadata)).not.toContain("uid");
    expect(Object.keys(p!.spec ?? {})).not.toContain("containers");
  });

  test("items: null and a missing items are an empty list", () => {
    expect(pods(podList(null))).toEqual([]);
    expect(pods({ kind: "PodList", apiVersion: "v1", metadata: {} })).toEqual([]);
  });

  test("a field with the wrong type names the pod and the JSON path", () => {
    const bad = pod({ name: "db-0", namespace: "data", ip4: "10.244.1.9" }) as { status: { podIPs: unknown[] } };
    bad.status.podIPs = [{ ip: 42 }];
    expect(problem(podList([pod({ name: "ok", ip4: "10.244.1.8" }), bad]))).toBe(
      "items[1] (pod data/db-0): status.podIPs[0].ip: Invalid type: Expected string but received 42",
    );
    const badSpec = pod({ name: "web", namespace: "shop", ip4: "10.244.1.10" }) as { spec: Record<string, unknown> };
    badSpec.spec.hostNetwork = "yes";
    expect(problem(podList([badSpec]))).toStartWith("items[0] (pod shop/web): spec.hostNetwork: ");
    const badDeletion = pod({ name: "x", ip4: "10.244.1.11" }) as { metadata: Record<string, unknown> };
    badDeletion.metadata.deletionTimestamp = 7;
    expect(problem(podList([badDeletion]))).toStartWith("items[0] (pod default/x): metadata.deletionTimestamp: ");
  });

  test("an IP that is not one is an error with its path; more bad pods are counted", () => {
    const a = pod({ name: "a", ip4: "10.244.1.300" });
    const b = pod({ name: "b", ip4: "nope" });
    expect(problem(podList([a, b]))).toBe("items[0] (pod default/a): status.podIP: not an IP address (and 1 more pods)");
  });

  test("a pod without a name, a non-object item, wrong items, wrong kind, not JSON", () => {
    expect(problem(podList([{ metadata: { namespace: "x" } }]))).toStartWith("items[0] (pod x/?): metadata.name: ");
    expect(problem(podList([null]))).toStartWith("items[0] (pod ?/?): Invalid type: Expected Object but received null");
    expect(problem({ kind: "PodList", items: {} })).toStartWith("not a PodList: items: ");
    expect(problem({ kind: "Status", items: [] })).toBe('not a PodList: kind is "Status"');
    expect(problem([])).toBe("not a PodList: an array");
    expect(problem("hello")).toBe('not a PodList: Invalid type: Expected Object but received "hello"');
    const notJson = parsePodList("<html>Unauthorized</html>");
    expect(notJson.ok).toBe(false);
    expect(!notJson.ok && notJson.problem).toStartWith("not JSON: ");
  });
});

describe("the pod index", () => {
  test("both families, from podIPs and from podIP alone", () => {
    const idx = index(
      pod({ name: "dual", namespace: "a", ip4: "10.244.1.5", ip6: "fd00:10:244::5" }),
      pod({ name: "old-kubelet", namespace: "b", ip4: "10.244.1.6", podIpOnly: true }),
      pod({ name: "v6only", namespace: "c", ip6: "FD00:10:244:0::7" }),
    );
    expect(idx.lookup("10.244.1.5")?.name).toBe("dual");
    expect(idx.lookup("fd00:10:244::5")?.name).toBe("dual");
    expect(idx.lookup("10.244.1.6")).toMatchObject({ name: "old-kubelet", namespace: "b" });
    expect(idx.lookup("fd00:10:244::7")?.name).toBe("v6only");
    expect(idx.size).toBe(4);
    expect(idx.podCount).toBe(3);
  });

  test("each entry carries the pod's name and namespace, and what the workload metrics say of it", () => {
    const idx = index(pod({ name: "web-7d4b9c8f6d-x2x9q", namespace: "shop", ip4: "10.244.1.5", uid: "u-1", owner: { kind: "ReplicaSet", name: "web-7d4b9c8f6d" }, templateHash: "7d4b9c8f6d" }));
    expect(idx.lookup("10.244.1.5")).toEqual({
      name: "web-7d4b9c8f6d-x2x9q",
      namespace: "shop",
      workload: "web",
      // the fixture's app label is its ReplicaSet's name
      canonicalService: "web-7d4b9c8f6d",
      canonicalRevision: "latest",
      app: "web-7d4b9c8f6d",
      version: "latest",
      serviceAccount: "default",
    });
  });

  test("hostNetwork pods are never indexed; their IP and every hostIP are the node's", () => {
    const idx = index(
      pod({ name: "kube-proxy-x", namespace: "kube-system", hostNetwork: true, hostIP: "172.18.0.3" }),
      pod({ name: "etcd", namespace: "kube-system", hostNetwork: true, staticPod: true, hostIP: "172.18.0.3" }),
      pod({ name: "app", ip4: "10.244.1.5", hostIP: "172.18.0.3" }),
    );
    expect(idx.lookup("172.18.0.3")).toBeUndefined();
    expect(idx.isNodeAddress("172.18.0.3")).toBe(true);
    expect(idx.isNodeAddress("10.244.1.5")).toBe(false);
    expect(idx.isNodeAddress("127.0.0.1")).toBe(true);
    expect(idx.isNodeAddress("::1")).toBe(true);
    expect(idx.size).toBe(1);
  });

  test("a finished pod never wins its old IP, even alone; a running new pod takes it", () => {
    const done = pod({ name: "job-28955160-abcde", ip4: "10.244.1.7", phase: "Succeeded", owner: { kind: "Job", name: "job-28955160" } });
    const failed = pod({ name: "crashed", ip4: "10.244.1.8", phase: "Failed" });
    const fresh = pod({ name: "fresh", ip4: "10.244.1.7" });
    expect(index(done, failed).size).toBe(0);
    expect(index(done, fresh).lookup("10.244.1.7")?.name).toBe("fresh");
    expect(index(fresh, done).lookup("10.244.1.7")?.name).toBe("fresh");
  });

  test("a running pod without deletionTimestamp beats a pending one and one being deleted", () => {
    const leaving = pod({ name: "leaving", ip4: "10.244.1.9", deletionTimestamp: "2025-04-24T09:00:00Z" });
    const pending = pod({ name: "pending", ip4: "10.244.1.9", phase: "Pending" });
    const running = pod({ name: "running", ip4: "10.244.1.9" });
    for (const order of [[leaving, pending, running], [running, pending, leaving], [pending, running, leaving]]) {
      expect(index(...order).lookup("10.244.1.9")?.name).toBe("running");
    }
    expect(index(leaving, pending).lookup("10.244.1.9")?.name).toBe("pending");
    expect(index(leaving).lookup("10.244.1.9")?.name).toBe("leaving");
    // a tie keeps the first one listed
    expect(index(pod({ name: "first", ip4: "10.244.1.9" }), pod({ name: "second", ip4: "10.244.1.9" })).lookup("10.244.1.9")?.name).toBe("first");
  });

  test("rebuilt from scratch: a pod missing from the next list is gone", () => {
    const a = index(pod({ name: "a", ip4: "10.244.1.5" }));
    const b = index(pod({ name: "b", ip4: "10.244.1.6" }));
    expect(a.lookup("10.244.1.5")?.name).toBe("a");
    expect(b.lookup("10.244.1.5")).toBeUndefined();
  });

  test("a busy node's 1,000 pods: every pod IP of both families, one pod behind each", () => {
    const idx = PodIndex.fromPods(pods(busyNodePodList(1000)));
    expect(idx.podCount).toBe(1000);
    expect(idx.size).toBe(1869); // every pod IP but those of hostNetwork and finished pods
    expect(idx.lookup("10.244.0.2")).toBeDefined();
    expect(idx.lookup("fd00:10:244::2")).toEqual(idx.lookup("10.244.0.2")!);
  });
});
