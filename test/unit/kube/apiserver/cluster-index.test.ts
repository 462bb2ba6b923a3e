// The cluster index: ClusterIP:port and exact endpoint IP:port → Service, pod IPs, updates and deletes.
import { describe, expect, test } from "bun:test";
import { ClusterIndex } from "../../../../src/kube/apiserver/cluster-index.ts";
import { apiPod as pod, put, service, slice } from "../../fixtures.ts";

describe("ClusterIndex", () => {
  test("ClusterIP:port → service hostname with the cluster domain; UDP ports and headless services are not indexed", () => {
    const index = new ClusterIndex("corp.example");
    put.service(index, service("shop", "web", "10.96.0.10", [{ port: 80 }, { port: 53, protocol: "UDP" }]));
    put.service(index, service("shop", "headless", "None", [{ port: 80 }]));
    expect(index.serviceAtClusterIp("10.96.0.10", 80)).toEqual({ name: "web", namespace: "shop", host: "web.shop.svc.corp.example" });
    expect(index.serviceAtClusterIp("10.96.0.10", 81)).toBeUndefined();
    expect(index.serviceAtClusterIp("10.96.0.10", 53)).toBeUndefined();
    expect(index.counts.services).toBe(2);
  });

  test("a modified service moves; a deleted one is gone", () => {
    const index = new ClusterIndex();
    put.service(index, service("a", "s", "10.96.0.1", [{ port: 80 }]));
    put.service(index, service("a", "s", "10.96.0.2", [{ port: 8080 }]));
    expect(index.serviceAtClusterIp("10.96.0.1", 80)).toBeUndefined();
    expect(index.serviceAtClusterIp("10.96.0.2", 8080)?.host).toBe("s.a.svc.cluster.local");
    index.deleteService("a/s");
    expect(index.serviceAtClusterIp("10.96.0.2", 8080)).toBeUndefined();
  });

  test("endpoints: exactly the listed address and port (not a guess by target port)", () => {
    const index = new ClusterIndex();
    put.slice(index, slice("shop", "web", "web-abc", ["10.244.1.5", "10.244.2.7"], [8080]));
    put.slice(index, slice("shop", "admin", "admin-xyz", ["10.244.1.5"], [9090]));
    expect(index.serviceAtEndpoint("10.244.1.5", 8080)?.name).toBe("web");
    expect(index.serviceAtEndpoint("10.244.1.5", 9090)?.name).toBe("admin");
    expect(index.serviceAtEndpoint("10.244.1.5", 7000)).toBeUndefined();
    expect(index.serviceAtEndpoint("10.244.9.9", 8080)).toBeUndefined();
    expect([...index.endpointAddresses({ name: "web", namespace: "shop", host: "" })]).toEqual(["10.244.1.5", "10.244.2.7"]);
    // a slice update drops addresses it no longer lists
    put.slice(index, slice("shop", "web", "web-abc", ["10.244.2.7"], [8080]));
    expect(index.serviceAtEndpoint("10.244.1.5", 8080)).toBeUndefined();
    expect(index.serviceAtEndpoint("10.244.2.7", 8080)?.name).toBe("web");
    index.deleteSlice("shop/web-abc");
    expect(index.serviceAtEndpoint("10.244.2.7", 8080)).toBeUndefined();
    expect(index.counts.endpointSlices).toBe(1);
  });

  test("two slices of one service, a port without a number stands for every port", () => {
    const index = new ClusterIndex();
    put.slice(index, slice("ns", "big", "big-1", ["10.0.0.1"], [80]));
    put.slice(index, slice("ns", "big", "big-2", ["10.0.0.2"], [80]));
    put.slice(index, slice("ns", "any", "any-1", ["10.0.0.3"], [null]));
    expect(index.serviceAtEndpoint("10.0.0.2", 80)?.name).toBe("big");
    expect(index.serviceAtEndpoint("10.0.0.3", 12345)?.name).toBe("any");
    index.deleteSlice("ns/big-1");
    expect(index.serviceAtEndpoint("10.0.0.2", 80)?.name).toBe("big");
  });

  test("a slice without the service-name label is ignored", () => {
    const index = new ClusterIndex();
    const s = slice("ns", "x", "orphan", ["10.0.0.1"], [80]);
    s.metadata.labels = {};
    put.slice(index, s);
    expect(index.serviceAtEndpoint("10.0.0.1", 80)).toBeUndefined();
  });

  test("pods: remote pods by IP; hostNetwork, finished and replaced pods follow the kubelet rules", () => {
    const index = new ClusterIndex();
    put.pod(index, pod("a", "old", "10.244.3.3", { phase: "Succeeded" }));
    put.pod(index, pod("a", "going", "10.244.3.4", { deleting: true }));
    put.pod(index, pod("a", "new", "10.244.3.4"));
    put.pod(index, pod("kube-system", "proxy", "192.168.1.10", { hostNetwork: true }));
    expect(index.lookupPod("10.244.3.3")).toBeUndefined();
    expect(index.lookupPod("10.244.3.4")?.name).toBe("new");
    expect(index.lookupPod("192.168.1.10")).toBeUndefined();
    index.deletePod("a/new");
    expect(index.lookupPod("10.244.3.4")?.name).toBe("going");
    index.deletePod("a/going");
    expect(index.lookupPod("10.244.3.4")).toBeUndefined();
    expect(index.counts).toEqual({ services: 0, endpointSlices: 0, pods: 0, podIps: 0 });
  });
});
