// dst.service and dst.addr from the API server's view: ClusterIP and exact endpoint resolution,
// the backend learned from the INBOUND line of the same connection, remote pods' names, and the
// kubelet winning for local pods.
import { describe, expect, test } from "bun:test";
import { Enricher, type NameSource } from "../../../src/accesslog/enrich.ts";
import { ipv4Number } from "../../../src/address.ts";
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import { ClusterIndex } from "../../../src/kube/apiserver/cluster-index.ts";
import { PodIndex } from "../../../src/kube/kubelet/pod-index.ts";
import { checkPodList } from "../../../src/kube/kubelet/pod-list.ts";
import { pod as kubeletPod, podList } from "../../support/kubelet-pods.ts";
import { apiPod as pod, bareInfo, MS, put, record, service, slice } from "../fixtures.ts";

const CLIENT_IP = "10.244.1.2";
const BACKEND_IP = "10.244.1.3";
const REMOTE_IP = "10.244.2.9";
const CLUSTER_IP = "10.96.0.50";
const T0 = 100_000 * MS;

/** A kubelet list that knows the local pods (client, backend), already refreshed. */
function kubelet(local = [
  { name: "client-0", namespace: "shop", ip4: CLIENT_IP },
  { name: "web-0", namespace: "shop", ip4: BACKEND_IP },
]): NameSource {
  const list = checkPodList(podList(local.map(kubeletPod)));
  if (!list.ok) throw new Error(list.problem);
  const index = PodIndex.fromPods(list.pods);
  return {
    lookup: (ip) => index.lookup(ip),
    lookupV4: (address) => index.lookupV4(address),
    isNodeAddress: (ip) => index.isNodeAddress(ip),
    completedStartNs: T0,
    answering: true,
    requestRefresh: () => undefined,
  };
}

function cluster(): ClusterIndex {
  const index = new ClusterIndex();
  put.service(index, service("shop", "web", CLUSTER_IP, [{ port: 80 }]));
  put.slice(index, slice("shop", "web", "web-1", [BACKEND_IP, REMOTE_IP], [8080]));
  put.pod(index, pod("shop", "web-0", BACKEND_IP));
  put.pod(index, pod("shop", "web-remote", REMOTE_IP));
  put.pod(index, pod("shop", "api-says-client", CLIENT_IP));
  return index;
}

function setup(source = kubelet(), holdMs = 2000) {
  const out: AccessRecord[] = [];
  const enricher = new Enricher({ source, holdNs: holdMs * MS, emit: (r) => out.push(r), cluster: cluster() });
  return { out, enricher };
}

const toClusterIp = (at: number) => ({ ...record("OUTBOUND", CLIENT_IP, CLUSTER_IP, at), dstPort: 80 });
const inboundOf = (out: AccessRecord, at: number) => ({ ...record("INBOUND", CLIENT_IP, BACKEND_IP, at), srcPort: out.srcPort, dstPort: 8080 });

describe("services on lines", () => {
  test("OUTBOUND to a ClusterIP waits for its INBOUND line: hostname, service namespace, the backend pod as dst", () => {
    const { out, enricher } = setup();
    const o = toClusterIp(T0 + 10 * MS);
    enricher.accept(o, T0 + 10 * MS);
    enricher.endBatch(T0 + 11 * MS);
    expect(out).toHaveLength(0);
    enricher.accept(inboundOf(o, T0 + 12 * MS), T0 + 12 * MS);
    enricher.endBatch(T0 + 13 * MS);
    expect(out.map((r) => [r.direction, r.dstAddr, r.dstPort, r.dstService, r.dstWorkload, r.dstNamespace, r.srcWorkload])).toEqual([
      // the INBOUND line addressed to the endpoint: the service by its exact address and port
      ["INBOUND", BACKEND_IP, 8080, "web.shop.svc.cluster.local", "web-0", "shop", "client-0"],
      ["OUTBOUND", BACKEND_IP, 8080, "web.shop.svc.cluster.local", "web-0", "shop", "client-0"],
    ]);
    expect(enricher.stats.backendsLearned).toBe(1);
  });

  test("the addresses as numbers, as the agent gives them: the backend found in the ClusterIP's place is named by the kubelet", () => {
    const out: AccessRecord[] = [];
    const index = cluster();
    index.deletePod("shop/web-0"); // only the kubelet can name the backend
    const enricher = new Enricher({ source: kubelet(), holdNs: 2000 * MS, emit: (r) => out.push(r), cluster: index });
    const accept = (r: AccessRecord, at: number) => enricher.accept(r, at, ipv4Number(r.srcAddr), ipv4Number(r.dstAddr));
    const o = toClusterIp(T0 + 10 * MS);
    accept(o, T0 + 10 * MS);
    accept(inboundOf(o, T0 + 12 * MS), T0 + 12 * MS);
    enricher.endBatch(T0 + 13 * MS);
    expect(out.map((r) => [r.direction, r.srcWorkload, r.dstAddr, r.dstPort, r.dstWorkload, r.dstService])).toEqual([
      ["OUTBOUND", "client-0", BACKEND_IP, 8080, "web-0", "web.shop.svc.cluster.local"],
      ["INBOUND", "client-0", BACKEND_IP, 8080, "web-0", "web.shop.svc.cluster.local"],
    ]);
  });

  test("INBOUND first: the OUTBOUND line is resolved at once", () => {
    const { out, enricher } = setup();
    const o = toClusterIp(T0 + 10 * MS);
    enricher.accept(inboundOf(o, T0 + 9 * MS), T0 + 9 * MS);
    enricher.accept(o, T0 + 10 * MS);
    enricher.endBatch(T0 + 11 * MS);
    expect(out.map((r) => [r.direction, r.dstAddr, r.dstWorkload])).toEqual([
      ["INBOUND", BACKEND_IP, "web-0"],
      ["OUTBOUND", BACKEND_IP, "web-0"],
    ]);
  });

  test("no INBOUND line by the deadline: dst.addr stays the ClusterIP:port, dst.workload '-', the service named", () => {
    const { out, enricher } = setup();
    enricher.accept(toClusterIp(T0 + 10 * MS), T0 + 10 * MS);
    enricher.endBatch(T0 + 11 * MS);
    enricher.release(T0 + 2009 * MS);
    expect(out).toHaveLength(0);
    enricher.release(T0 + 2010 * MS);
    expect(out.map((r) => [r.dstAddr, r.dstPort, r.dstService, r.dstWorkload, r.dstNamespace])).toEqual([
      [CLUSTER_IP, 80, "web.shop.svc.cluster.local", null, "shop"],
    ]);
  });

  test("no backend of the service on this node: the line is not held", () => {
    const { out, enricher } = setup(kubelet([{ name: "client-0", namespace: "shop", ip4: CLIENT_IP }]));
    enricher.accept(toClusterIp(T0 + 10 * MS), T0 + 10 * MS);
    enricher.endBatch(T0 + 11 * MS);
    expect(out.map((r) => [r.dstAddr, r.dstService])).toEqual([[CLUSTER_IP, "web.shop.svc.cluster.local"]]);
  });

  test("to a pod IP: the service whose slice lists that exact address and port; another port is no service", () => {
    const { out, enricher } = setup();
    enricher.accept(record("OUTBOUND", CLIENT_IP, REMOTE_IP, T0), T0);
    enricher.accept({ ...record("OUTBOUND", CLIENT_IP, REMOTE_IP, T0), dstPort: 9999 }, T0);
    enricher.endBatch(T0 + MS);
    expect(out.map((r) => [r.dstService, r.dstWorkload, r.dstNamespace])).toEqual([
      ["web.shop.svc.cluster.local", "web-remote", "shop"],
      [null, "web-remote", "shop"],
    ]);
  });

  test("the kubelet wins for local pods; the API server names remote ones", () => {
    const { out, enricher } = setup();
    enricher.accept({ ...record("OUTBOUND", CLIENT_IP, "10.244.7.7", T0) }, T0);
    enricher.endBatch(T0 + MS);
    expect(out[0]!.srcWorkload).toBe("client-0"); // not "api-says-client"
    expect(out[0]!.dstWorkload).toBeNull();
    expect(out[0]!.dstService).toBeNull();
  });

  test("without a kubelet: API names for both ends, and ClusterIP lines wait for their pair", () => {
    const none: NameSource = {
      lookup: () => undefined,
      lookupV4: () => undefined,
      isNodeAddress: () => false,
      completedStartNs: Number.POSITIVE_INFINITY,
      answering: true,
      requestRefresh: () => undefined,
    };
    const { out, enricher } = setup(none);
    const o = toClusterIp(T0);
    enricher.accept(o, T0);
    enricher.endBatch(T0 + MS);
    expect(out).toHaveLength(0);
    enricher.accept(inboundOf(o, T0 + MS), T0 + MS);
    enricher.endBatch(T0 + 2 * MS);
    expect(out.map((r) => [r.direction, r.srcWorkload, r.dstAddr, r.dstWorkload])).toEqual([
      ["INBOUND", "api-says-client", BACKEND_IP, "web-0"],
      ["OUTBOUND", "api-says-client", BACKEND_IP, "web-0"],
    ]);
  });

  test("a new local pod's ClusterIP line waits for both the pod list and its INBOUND line", () => {
    const known = new Map([
      [BACKEND_IP, bareInfo("web-0", "shop")],
    ]);
    const asked: number[] = [];
    const source = {
      lookup: (ip: string) => known.get(ip),
      lookupV4: () => {
        throw new Error("no address is given as a number here");
      },
      isNodeAddress: () => false,
      completedStartNs: T0,
      answering: true,
      requestRefresh: (ns: number) => void asked.push(ns),
    };
    const out: AccessRecord[] = [];
    const index = cluster();
    index.deletePod("shop/api-says-client"); // only the kubelet can name the new client
    const enricher = new Enricher({ source, holdNs: 2000 * MS, emit: (r) => out.push(r), cluster: index });
    const o = toClusterIp(T0 + 10 * MS);
    enricher.accept(o, T0 + 10 * MS);
    enricher.endBatch(T0 + 11 * MS);
    expect(asked).toEqual([T0 + 10 * MS]);
    enricher.accept(inboundOf(o, T0 + 12 * MS), T0 + 12 * MS);
    enricher.endBatch(T0 + 13 * MS);
    // the INBOUND line waits for the list too (its remote end is the awaited new pod); nothing out yet
    expect(out).toHaveLength(0);
    known.set(CLIENT_IP, bareInfo("client-new", "shop"));
    source.completedStartNs = T0 + 20 * MS;
    enricher.release(T0 + 30 * MS);
    expect(out.map((r) => [r.direction, r.srcWorkload, r.dstAddr, r.dstWorkload, r.dstService])).toEqual([
      ["OUTBOUND", "client-new", BACKEND_IP, "web-0", "web.shop.svc.cluster.local"],
      ["INBOUND", "client-new", BACKEND_IP, "web-0", "web.shop.svc.cluster.local"],
    ]);
  });
});

describe("ClusterIP backends from the kernel's connection tracking", () => {
  const START = T0 + 10 * MS;
  const REPORT = T0 + 50 * MS;
  /** An OUTBOUND line to the ClusterIP of a connection that began at START. */
  const connection = () => {
    const o = toClusterIp(REPORT);
    const sec = Math.floor(START / 1e9);
    return { ...o, startTime: { sec, nsec: START - sec * 1e9 } };
  };
  /** A NAT view that knows one translation, confirmed at `insertedNs`; it records what it was asked. */
  function nat(insertedNs: number) {
    const asked: unknown[][] = [];
    return {
      asked,
      lookup: (...args: [4 | 6, string, number, string, number]) => {
        asked.push(args);
        return { addr: REMOTE_IP, port: 8080, insertedNs };
      },
    };
  }

  test("confirmed while the connection was open: the backend the NAT chose, at once, even one on another node", () => {
    const { out, enricher } = setup();
    const view = nat(START + 1 * MS);
    enricher.nat = view;
    const o = connection();
    enricher.accept(o, REPORT);
    enricher.endBatch(REPORT + MS);
    expect(view.asked).toEqual([[4, CLIENT_IP, o.srcPort, CLUSTER_IP, 80]]);
    expect(out.map((r) => [r.dstAddr, r.dstPort, r.dstService, r.dstWorkload, r.dstNamespace])).toEqual([
      [REMOTE_IP, 8080, "web.shop.svc.cluster.local", "web-remote", "shop"],
    ]);
    expect({ learned: enricher.stats.backendsLearned, fromConntrack: enricher.stats.backendsFromConntrack, held: enricher.stats.heldForBackend }).toEqual({
      learned: 1,
      fromConntrack: 1,
      held: 0,
    });
  });

  test("at the connection's start and at its report exactly: still its own", () => {
    for (const at of [START, REPORT]) {
      const { out, enricher } = setup();
      enricher.nat = nat(at);
      enricher.accept(connection(), REPORT);
      enricher.endBatch(REPORT + MS);
      expect(out.map((r) => r.dstWorkload)).toEqual(["web-remote"]);
    }
  });

  for (const [what, insertedNs] of [
    ["before the connection began (an earlier connection's)", START - 1],
    ["after its report (a later connection's)", REPORT + 1],
  ] as const) {
    test(`confirmed ${what}: not taken; the INBOUND line of a local backend still pairs`, () => {
      const { out, enricher } = setup();
      enricher.nat = nat(insertedNs);
      const o = connection();
      enricher.accept(o, REPORT);
      enricher.endBatch(REPORT + MS);
      expect(out).toHaveLength(0); // held for its INBOUND line, as without conntrack
      enricher.accept(inboundOf(o, REPORT + 2 * MS), REPORT + 2 * MS);
      enricher.endBatch(REPORT + 3 * MS);
      expect(out.map((r) => [r.direction, r.dstAddr, r.dstWorkload])).toEqual([
        ["INBOUND", BACKEND_IP, "web-0"],
        ["OUTBOUND", BACKEND_IP, "web-0"],
      ]);
      expect(enricher.stats.backendsFromConntrack).toBe(0);
    });
  }

  test("a connection open before the agent (start unknown): its own translation was never seen, so none is taken", () => {
    const { out, enricher } = setup(kubelet([{ name: "client-0", namespace: "shop", ip4: CLIENT_IP }]));
    const view = nat(REPORT - MS);
    enricher.nat = view;
    enricher.accept(toClusterIp(REPORT), REPORT);
    enricher.endBatch(REPORT + MS);
    expect(view.asked).toEqual([]);
    expect(out.map((r) => [r.dstAddr, r.dstWorkload])).toEqual([[CLUSTER_IP, null]]);
  });

  test("only lines to a ClusterIP ask: a line to a pod IP costs no lookup", () => {
    const { enricher } = setup();
    const view = nat(START);
    enricher.nat = view;
    enricher.accept({ ...record("OUTBOUND", CLIENT_IP, REMOTE_IP, REPORT), startTime: connection().startTime }, REPORT);
    enricher.endBatch(REPORT + MS);
    expect(view.asked).toEqual([]);
  });
});
