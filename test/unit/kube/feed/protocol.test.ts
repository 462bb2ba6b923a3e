// The feed's frames as an agent checks them (every bad frame a one-line problem naming the path),
// and the store's history: what changes, what an agent resuming from a version is sent, what a
// clean stop keeps.
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ClusterIndex } from "../../../../src/kube/apiserver/cluster-index.ts";
import { parseFrame, podLabelsOf } from "../../../../src/kube/feed/protocol.ts";
import { FeedStore } from "../../../../src/kube/feed/store.ts";
import * as v from "valibot";
import { PodSchema, podInfo } from "../../../../src/kube/pod.ts";
import { apiPod as pod, put, service, slice } from "../../fixtures.ts";

/** A Deployment's pod with the labels the TCP metrics read, and a service account. */
const labelled = (name: string, ip: string, labels: Record<string, string>, serviceAccountName?: string) =>
  v.parse(PodSchema, {
    metadata: { name, namespace: "shop", labels: { "pod-template-hash": "5f6d7c8b9a", ...labels }, ownerReferences: [{ kind: "ReplicaSet", name: "web-5f6d7c8b9a", controller: true }] },
    spec: { serviceAccountName },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  });

const problem = (line: string) => {
  const parsed = parseFrame(line);
  if (parsed.ok) throw new Error(`accepted: ${line}`);
  return parsed.problem;
};

describe("frames an agent accepts", () => {
  test("each kind of frame, as the feed writes them", () => {
    const good = [
      `{"t":"hello","feed":"0123456789abcdef","snapshot":true}`,
      `{"t":"svc","k":"shop/web","ips":["10.96.0.10","fd00::a"],"ports":[80,443]}`,
      `{"t":"eps","k":"shop/web-x1","svc":"web","ips":["10.244.1.5"],"ports":[8080,-1]}`,
      `{"v":7,"t":"pod","k":"shop/web-0","ips":["10.244.1.5"],"c":3}`,
      `{"v":8,"t":"del","kind":"pod","k":"shop/web-0"}`,
      `{"t":"synced","v":8}`,
      `{"t":"ping","v":8}`,
    ];
    for (const line of good) expect(parseFrame(line).ok).toBe(true);
    expect(parseFrame(good[3]!)).toEqual({ ok: true, frame: { t: "pod", k: "shop/web-0", ips: ["10.244.1.5"], c: 3, v: 7 } });
  });

  test("bad frames: one line naming the frame, the path and what is wrong", () => {
    expect(problem("{not json")).toStartWith("not JSON: ");
    expect(problem(`[1,2]`)).toStartWith("a frame: ");
    expect(problem(`{"t":"gossip"}`)).toStartWith(`a "gossip" frame: t: `);
    expect(problem(`{"t":"hello","feed":"ZZZ","snapshot":true}`)).toBe(`a "hello" frame: feed: not a feed id`);
    expect(problem(`{"t":"pod","k":"shop/web-0","ips":["10.244.001.5"],"c":3}`)).toBe(`a "pod" frame: ips.0: not an IP address in canonical form`);
    expect(problem(`{"t":"pod","k":"shop/web-0","ips":["FD00::A"],"c":3}`)).toBe(`a "pod" frame: ips.0: not an IP address in canonical form`);
    expect(problem(`{"t":"pod","k":"web-0","ips":[],"c":3}`)).toBe(`a "pod" frame: k: not <namespace>/<name>`);
    expect(problem(`{"t":"pod","k":"shop/web-0","ips":[],"c":9}`)).toStartWith(`a "pod" frame: c: `);
    expect(problem(`{"t":"svc","k":"shop/web","ips":[],"ports":[0]}`)).toStartWith(`a "svc" frame: ports.0: `);
    expect(problem(`{"t":"svc","k":"shop/web","ips":[],"ports":[-1]}`)).toStartWith(`a "svc" frame: ports.0: `);
    expect(problem(`{"t":"eps","k":"shop/w","svc":"w","ips":[],"ports":[70000]}`)).toStartWith(`a "eps" frame: ports.0: `);
    expect(problem(`{"t":"del","kind":"node","k":"shop/web"}`)).toStartWith(`a "del" frame: kind: `);
    expect(problem(`{"t":"synced"}`)).toStartWith(`a "synced" frame: v: `);
    expect(problem(`{"t":"pod","k":"shop/web-0","ips":["10.0.0.1"],"c":3,"v":-1}`)).toStartWith(`a "pod" frame: v: `);
    for (const line of [`{"t":"svc","k":"a/b","ips":"10.0.0.1","ports":[]}`, `{"t":"pod","k":"a/b","ips":[1],"c":1}`]) {
      expect(problem(line)).not.toContain("\n");
    }
  });
});

describe("the feed's store", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  test("a change is numbered; the same object again is no change; a deletion is one", () => {
    const store = new FeedStore({ id: "0123456789abcdef" });
    const sent: string[] = [];
    store.onChange = (frame) => sent.push(frame);
    put.pod(store, pod("shop", "web-0", "10.244.1.5"));
    put.pod(store, pod("shop", "web-0", "10.244.1.5"));
    put.service(store, service("shop", "web", "10.96.0.10", [{ port: 80 }, { port: 53, protocol: "UDP" }]));
    store.delete("pods", "shop/web-0");
    store.delete("pods", "shop/web-0");
    expect(sent).toEqual([
      `{"v":1,"t":"pod","k":"shop/web-0","ips":["10.244.1.5"],"c":3}`,
      `{"v":2,"t":"svc","k":"shop/web","ips":["10.96.0.10"],"ports":[80]}`,
      `{"v":3,"t":"del","kind":"pod","k":"shop/web-0"}`,
    ]);
    expect(store.seq).toBe(3);
    expect([...store.snapshot()]).toEqual([`{"t":"svc","k":"shop/web","ips":["10.96.0.10"],"ports":[80]}`]);
  });

  test("changes since a version: this history's only, and only while the log holds them all", () => {
    const store = new FeedStore({ id: "0123456789abcdef", logLimit: 4 });
    for (let i = 1; i <= 3; i++) put.pod(store, pod("ns", `p${i}`, `10.0.0.${i}`));
    expect(store.changesSince("0123456789abcdef", 1)).toEqual([
      `{"v":2,"t":"pod","k":"ns/p2","ips":["10.0.0.2"],"c":3}`,
      `{"v":3,"t":"pod","k":"ns/p3","ips":["10.0.0.3"],"c":3}`,
    ]);
    expect(store.changesSince("0123456789abcdef", 3)).toEqual([]);
    expect(store.changesSince("fedcba9876543210", 1)).toBeNull();
    expect(store.changesSince("0123456789abcdef", 4)).toBeNull();
    for (let i = 4; i <= 10; i++) put.pod(store, pod("ns", `p${i}`, `10.0.0.${i}`));
    // the oldest changes are gone: from before them, a snapshot is due
    expect(store.changesSince("0123456789abcdef", 1)).toBeNull();
    expect(store.changesSince("0123456789abcdef", 8)).toHaveLength(2);
  });

  test("a clean stop's state is read back once: same history, same version, same entries", () => {
    const dir = mkdtempSync(join(tmpdir(), "feed-store-"));
    dirs.push(dir);
    const path = join(dir, "state.json");
    const store = new FeedStore();
    put.slice(store, slice("shop", "web", "web-x1", ["10.244.1.5"], [8080, null]));
    put.pod(store, pod("shop", "web-0", "10.244.1.5"));
    store.save(path);
    const { store: back, problem } = FeedStore.load(path);
    expect(problem).toBeNull();
    expect(back?.id).toBe(store.id);
    expect(back?.seq).toBe(2);
    expect([...back!.snapshot()]).toEqual([...store.snapshot()]);
    expect(back?.changesSince(store.id, 1)).toEqual(store.changesSince(store.id, 1)!);
    expect(back?.counts).toEqual({ services: 0, endpointSlices: 1, pods: 1, podIps: 1 });
    // read once: a second start (after a crash) begins a new history
    expect(FeedStore.load(path)).toEqual({ store: null, problem: null });
  });

  test("a pod's labels for the metrics: only those that differ from their defaults are sent, all come back", () => {
    const store = new FeedStore({ id: "0123456789abcdef" });
    const plain = labelled("web-5f6d7c8b9a-k8s2p", "10.244.1.5", {});
    const full = labelled("web-5f6d7c8b9a-x1x2x", "10.244.1.6", { app: "shop-web", version: "v2", "service.istio.io/canonical-name": "web-canon" }, "web-sa");
    put.pod(store, plain);
    put.pod(store, full);
    const frames = [...store.snapshot()];
    expect(frames).toEqual([
      `{"t":"pod","k":"shop/web-5f6d7c8b9a-k8s2p","ips":["10.244.1.5"],"c":3,"w":"web"}`,
      `{"t":"pod","k":"shop/web-5f6d7c8b9a-x1x2x","ips":["10.244.1.6"],"c":3,"w":"web","cs":"web-canon","cr":"v2","app":"shop-web","sa":"web-sa"}`,
    ]);
    for (const [i, p] of [plain, full].entries()) {
      const parsed = parseFrame(frames[i]!);
      if (!parsed.ok || parsed.frame.t !== "pod") throw new Error("not a pod frame");
      const { name: _n, namespace: _ns, ...labels } = podInfo(p);
      expect(podLabelsOf(parsed.frame)).toEqual(labels);
    }
  });

  test("an agent's index fed the snapshot's frames names what the API server's objects name", () => {
    const store = new FeedStore();
    const objects = [
      () => put.service(store, service("shop", "web", "10.96.0.10", [{ port: 80 }])),
      () => put.slice(store, slice("shop", "web", "web-x1", ["10.244.1.5"], [8080])),
      () => put.pod(store, pod("shop", "web-0", "10.244.1.5")),
      () => put.pod(store, pod("kube-system", "proxy", "192.168.1.10", { hostNetwork: true })),
      () => put.pod(store, labelled("web-5f6d7c8b9a-x1x2x", "10.244.1.6", { app: "shop-web", version: "v2" }, "web-sa")),
    ];
    for (const put of objects) put();
    const fed = new ClusterIndex();
    for (const line of store.snapshot()) {
      const parsed = parseFrame(line);
      if (!parsed.ok) throw new Error(parsed.problem);
      const f = parsed.frame;
      if (f.t === "svc") fed.putService(f.k, f);
      else if (f.t === "eps") fed.putSlice(f.k, { service: f.svc, ips: f.ips, ports: f.ports });
      else if (f.t === "pod") fed.putPod(f.k, { ips: f.ips, claim: f.c, labels: podLabelsOf(f) });
    }
    const direct = new ClusterIndex();
    put.service(direct, service("shop", "web", "10.96.0.10", [{ port: 80 }]));
    put.slice(direct, slice("shop", "web", "web-x1", ["10.244.1.5"], [8080]));
    put.pod(direct, pod("shop", "web-0", "10.244.1.5"));
    put.pod(direct, pod("kube-system", "proxy", "192.168.1.10", { hostNetwork: true }));
    put.pod(direct, labelled("web-5f6d7c8b9a-x1x2x", "10.244.1.6", { app: "shop-web", version: "v2" }, "web-sa"));
    expect(fed.serviceAtClusterIp("10.96.0.10", 80)).toEqual(direct.serviceAtClusterIp("10.96.0.10", 80)!);
    expect(fed.serviceAtEndpoint("10.244.1.5", 8080)).toEqual(direct.serviceAtEndpoint("10.244.1.5", 8080)!);
    expect(fed.lookupPod("10.244.1.5")).toEqual(direct.lookupPod("10.244.1.5")!);
    expect(fed.lookupPod("10.244.1.6")).toEqual(direct.lookupPod("10.244.1.6")!);
    expect(fed.lookupPod("10.244.1.6")).toMatchObject({ workload: "web", app: "shop-web", version: "v2", serviceAccount: "web-sa" });
    expect(fed.lookupPod("192.168.1.10")).toBeUndefined();
    // the metrics' "does it still exist": a hostNetwork pod too, and the Service
    expect(fed.hasPod("kube-system/proxy")).toBe(true);
    expect(fed.hasService("shop/web")).toBe(true);
    expect(fed.counts).toEqual(direct.counts);
  });
});
