import { describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { cgroup2MountOf, ContainerIds, containerIdOfCgroupPath } from "../../../src/kernel/cgroups.ts";
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

test("cgroup2MountOf: the cgroup2 line of /proc/mounts, on a hybrid node and a unified one, or none", () => {
  const hybrid = [
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
  ].join("\n");
  expect(cgroup2MountOf(hybrid)).toBe("/sys/fs/cgroup/unified");
  expect(cgroup2MountOf("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")).toBe("/sys/fs/cgroup");
  expect(cgroup2MountOf("cgroup2 /mnt/my\\040cgroups cgroup2 rw 0 0\n")).toBe("/mnt/my cgroups");
  expect(cgroup2MountOf("cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n")).toBeNull();
});

describe("ContainerIds", () => {
  test("finds a directory's id by walking; at most one walk per 100 ms; an id gone is remembered as none", () => {
    const root = mkdtempSync(join(tmpdir(), "kal-cgroups-"));
    try {
      const container = join(root, "kubepods", "burstable", "pod1", ID);
      mkdirSync(container, { recursive: true });
      mkdirSync(join(root, "system.slice", "ssh.service"), { recursive: true });
      let now = 0;
      const ids = new ContainerIds(root, () => now);
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

  test("without a cgroup2 mount nothing is known and nothing walked", () => {
    const ids = new ContainerIds(null);
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
});
