import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ContainerIds, containerIdOfCgroupPath } from "../../../src/kernel/cgroups.ts";
import { PodIndex } from "../../../src/kube/kubelet/pod-index.ts";
import * as v from "valibot";
import { PodSchema, runtimeContainerId } from "../../../src/kube/pod.ts";
import { pod } from "../../support/kubelet-pods.ts";

const ID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

describe("containerIdOfCgroupPath", () => {
  test.each([
    ["/kubepods/burstable/pod6f0c1a2b-1111-2222-3333-444455556666/" + ID, ID],
    ["/kubepods/pod6f0c1a2b-1111-2222-3333-444455556666/" + ID, ID],
    ["/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod6f0c1a2b_1111.slice/cri-containerd-" + ID + ".scope", ID],
    ["/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/crio-" + ID + ".scope", ID],
    ["/system.slice/docker-" + ID + ".scope", ID],
    ["/docker/" + ID, ID],
    // a cgroup inside a container's is the container's
    ["/kubepods.slice/kubepods-pod1.slice/cri-containerd-" + ID + ".scope/init.scope", ID],
  ])("%s", (path, id) => {
    expect(containerIdOfCgroupPath(path)).toBe(id);
  });

  test.each([
    [""],
    ["/"],
    ["/system.slice/ssh.service"],
    ["/user.slice/user-0.slice/session-1.scope"],
    ["/kubepods/burstable/pod6f0c1a2b-1111-2222-3333-444455556666"],
    // cri-o's monitor, not the container
    ["/kubepods.slice/kubepods-pod1.slice/crio-conmon-" + ID + ".scope"],
    // not 64 hex digits
    ["/kubepods/burstable/pod1/" + ID.slice(1)],
    ["/kubepods/burstable/pod1/" + ID.toUpperCase()],
  ])("%s: none", (path) => {
    expect(containerIdOfCgroupPath(path)).toBeNull();
  });
});

describe("ContainerIds", () => {
  test("finds a directory's id by walking; at most one walk per 100 ms; an id gone is remembered as none", () => {
    const root = mkdtempSync(join(tmpdir(), "kal-cgroups-"));
    try {
      const container = join(root, "kubepods", "burstable", "pod1", ID);
      mkdirSync(container, { recursive: true });
      mkdirSync(join(root, "system.slice", "ssh.service"), { recursive: true });
      let now = 0;
      const ids = new ContainerIds([root], () => now);
      const ino = (path: string) => statSync(path).ino;
      expect(ids.containerOf(ino(container))).toBe(ID);
      expect(ids.containerOf(ino(join(root, "system.slice", "ssh.service")))).toBeNull();
      expect(ids.walks).toBe(1); // known since the first walk
      expect(ids.containerOf(0)).toBeNull();

      // a new container: not known until a walk, which waits 100 ms after the last
      const later = join(root, "kubepods", "burstable", "pod2", `cri-containerd-${ID.replace("0", "f")}.scope`);
      mkdirSync(later, { recursive: true });
      now = 50;
      expect(ids.containerOf(ino(later))).toBeNull();
      expect(ids.walks).toBe(1);
      now = 150;
      expect(ids.containerOf(ino(later))).toBe(ID.replace("0", "f"));
      expect(ids.walks).toBe(2);

      // an id below the highest one seen, and not found: gone, no more walks for it
      now = 1000;
      expect(ids.containerOf(1)).toBeNull();
      now = 2000;
      expect(ids.containerOf(1)).toBeNull();
      expect(ids.walks).toBe(3);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  test("every mount is walked: the one where the path names a container wins (a namespaced view and the node's)", () => {
    const node = mkdtempSync(join(tmpdir(), "kal-cgroups-node-"));
    try {
      const container = join(node, "kubepods", "pod1", ID);
      mkdirSync(container, { recursive: true });
      // the container's own view: its cgroup is the root of a mount of its own
      const ids = new ContainerIds([container, node], () => 0);
      expect(ids.containerOf(statSync(container).ino)).toBe(ID);
      expect(new ContainerIds([node, container], () => 0).containerOf(statSync(container).ino)).toBe(ID);
    } finally {
      rmSync(node, { recursive: true, force: true });
    }
  });

  test("without a cgroup2 mount nothing is known and nothing walked", () => {
    const ids = new ContainerIds([]);
    expect(ids.containerOf(12345)).toBeNull();
    expect(ids.walks).toBe(0);
  });
});

test("the pod list's containerStatuses name containers by their runtime id", () => {
  expect(runtimeContainerId(`containerd://${ID}`)).toBe(ID);
  expect(runtimeContainerId(`cri-o://${ID}`)).toBe(ID);
  expect(runtimeContainerId(`docker://${ID}`)).toBe(ID);
  expect(runtimeContainerId("")).toBeNull();
  expect(runtimeContainerId(null)).toBeNull();
  const index = PodIndex.fromPods([v.parse(PodSchema, pod({ name: "web-1", ip4: "10.0.0.5", containerNames: ["app"], containerIds: [ID] }))]);
  expect(index.containerName(ID)).toBe("app");
  expect(index.containerName(ID.replace("0", "f"))).toBeUndefined();
  // a sidecar declared as a restartable init container, and an ephemeral (debug) container
  const sidecar = "ab".repeat(32);
  const debug = "cd".repeat(32);
  const withSidecar = pod({ name: "web-2", ip4: "10.0.0.6" });
  const status = withSidecar.status as Record<string, unknown>;
  status.initContainerStatuses = [{ name: "istio-proxy", containerID: `containerd://${sidecar}`, ready: true, restartCount: 0 }];
  status.ephemeralContainerStatuses = [{ name: "debugger", containerID: `containerd://${debug}` }];
  const both = PodIndex.fromPods([v.parse(PodSchema, withSidecar)]);
  expect([both.containerName(sidecar), both.containerName(debug)]).toEqual(["istio-proxy", "debugger"]);
});
