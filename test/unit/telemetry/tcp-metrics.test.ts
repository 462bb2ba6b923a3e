// Kmesh's TCP metrics from access records: labels exactly as Kmesh names and orders them, with
// Istio's values; counters that add each connection's figures once (the sum of a series is the
// sum of its close lines); series dropped once what they name has been gone for the grace period.
import { describe, expect, test } from "bun:test";
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import type { ServiceRef } from "../../../src/kube/apiserver/cluster-index.ts";
import type { PodInfo } from "../../../src/kube/pod.ts";
import { CONNECTION_LABELS, SERVICE_LABELS, WORKLOAD_LABELS } from "../../../src/telemetry/labels.ts";
import { type KubeView, TcpMetrics } from "../../../src/telemetry/tcp-metrics.ts";
import { parseExposition } from "../../../src/admin/metrics.ts";
import { record } from "../fixtures.ts";

const CLIENT: PodInfo = {
  name: "client-7d4b9c8f6d-x2x9q",
  namespace: "shop",
  workload: "client",
  canonicalService: "client",
  canonicalRevision: "v1",
  app: "client",
  version: "v1",
  serviceAccount: "buyer",
};
const SERVER: PodInfo = {
  name: "web-0",
  namespace: "shop",
  workload: "web",
  canonicalService: "web",
  canonicalRevision: "latest",
  app: "web",
  version: "latest",
  serviceAccount: null,
};
const WEB: ServiceRef = { name: "web", namespace: "shop", host: "web.shop.svc.cluster.local" };

/** A kube view whose pods and Services are these sets (edit them to make things go). */
function kube(pods: string[], services: string[]): KubeView & { pods: Set<string>; services: Set<string> } {
  const view = { pods: new Set(pods), services: new Set(services) };
  return { ...view, hasPod: (key) => view.pods.has(key), hasService: (key) => view.services.has(key) };
}

function metrics(o: { graceMs?: number; prefix?: string } = {}) {
  const m = new TcpMetrics({ prefix: o.prefix ?? "kmesh", clusterName: "Kubernetes", trustDomain: "cluster.local", graceMs: o.graceMs ?? 1000, reportIntervalMs: 5000 });
  m.kube = kube(["shop/client-7d4b9c8f6d-x2x9q", "shop/web-0"], ["shop/web"]);
  return m;
}

/** One report of a connection from 10.244.1.5:40001 to 10.244.1.6:8080 (figures since it began). */
function report(over: Partial<AccessRecord>): AccessRecord {
  const base = record(over.direction ?? "OUTBOUND", "10.244.1.5", "10.244.1.6", 1e9);
  return { ...base, srcPort: 40001, sentBytes: 0, receivedBytes: 0, connection: `c ${over.direction ?? "OUTBOUND"}`, ...over };
}

/** The samples of one metric, by label set. */
const samples = (m: TcpMetrics, name: string) => parseExposition(m.render()).filter((s) => s.name === name);
const value = (m: TcpMetrics, name: string, labels: Record<string, string> = {}) =>
  samples(m, name).filter((s) => Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

describe("labels", () => {
  test("Kmesh's names in Kmesh's order", () => {
    const peer = (side: string) =>
      ["workload", "canonical_service", "canonical_revision", "workload_namespace", "principal", "app", "version", "cluster"].map((n) => `${side}_${n}`);
    const tail = ["request_protocol", "response_flags", "connection_security_policy"];
    expect(WORKLOAD_LABELS).toEqual(["reporter", ...peer("source"), "destination_pod_address", "destination_pod_namespace", "destination_pod_name", ...peer("destination"), ...tail]);
    expect(SERVICE_LABELS).toEqual(["reporter", ...peer("source"), "destination_service", "destination_service_namespace", "destination_service_name", ...peer("destination"), ...tail]);
    expect(CONNECTION_LABELS).toEqual([
      "reporter",
      "start_time",
      ...peer("source"),
      "source_address",
      "destination_address",
      "destination_pod_address",
      "destination_pod_namespace",
      "destination_pod_name",
      "destination_service",
      "destination_service_namespace",
      "destination_service_name",
      ...peer("destination"),
      ...tail,
    ]);
  });

  test("a pod-to-pod connection: every label of both series, in order, never empty", () => {
    const m = metrics();
    m.observe(report({ sentBytes: 100, receivedBytes: 200 }), 0, CLIENT, SERVER);
    const text = m.render();
    const workload = text.split("\n").find((l) => l.startsWith("kmesh_tcp_workload_sent_bytes_total{"));
    expect(workload).toBe(
      "kmesh_tcp_workload_sent_bytes_total{" +
        'reporter="source",source_workload="client",source_canonical_service="client",source_canonical_revision="v1",source_workload_namespace="shop",' +
        'source_principal="spiffe://cluster.local/ns/shop/sa/buyer",source_app="client",source_version="v1",source_cluster="Kubernetes",' +
        'destination_pod_address="10.244.1.6",destination_pod_namespace="shop",destination_pod_name="web-0",' +
        'destination_workload="web",destination_canonical_service="web",destination_canonical_revision="latest",destination_workload_namespace="shop",' +
        'destination_principal="unknown",destination_app="web",destination_version="latest",destination_cluster="Kubernetes",' +
        'request_protocol="tcp",response_flags="-",connection_security_policy="unknown"} 100',
    );
    const service = samples(m, "kmesh_tcp_sent_bytes_total")[0]!;
    expect(Object.keys(service.labels)).toEqual([...SERVICE_LABELS]);
    // no Service: the destination IP stands for it, as in the line's dst.service; its namespace is the pod's
    expect(service.labels).toMatchObject({ destination_service: "10.244.1.6", destination_service_namespace: "shop", destination_service_name: "unknown" });
    for (const s of parseExposition(text)) for (const v of Object.values(s.labels)) expect(v).not.toBe("");
  });

  test("unknown ends, INBOUND's reporter, a ClusterIP whose backend is not known, an address with no pod", () => {
    const m = metrics();
    m.observe(report({ direction: "INBOUND" }), 0, undefined, SERVER);
    const inbound = samples(m, "kmesh_tcp_workload_connections_opened_total")[0]!.labels;
    expect(inbound).toMatchObject({ reporter: "destination", source_workload: "unknown", source_principal: "unknown", source_cluster: "unknown", destination_workload: "web" });

    const m2 = metrics();
    m2.observe(report({ dstAddr: "10.96.0.10", dstPort: 80, dstService: WEB.host }), 0, CLIENT, undefined, WEB);
    expect(samples(m2, "kmesh_tcp_workload_sent_bytes_total")[0]!.labels).toMatchObject({ destination_pod_address: "unknown", destination_pod_name: "unknown", destination_workload: "unknown" });
    expect(samples(m2, "kmesh_tcp_sent_bytes_total")[0]!.labels).toMatchObject({
      destination_service: "web.shop.svc.cluster.local",
      destination_service_namespace: "shop",
      destination_service_name: "web",
    });

    const m3 = metrics();
    m3.observe(report({ dstAddr: "93.184.216.34", dstPort: 443 }), 0, CLIENT);
    expect(samples(m3, "kmesh_tcp_workload_sent_bytes_total")[0]!.labels).toMatchObject({ destination_pod_address: "93.184.216.34", destination_workload: "unknown" });
    expect(samples(m3, "kmesh_tcp_sent_bytes_total")[0]!.labels).toMatchObject({ destination_service: "93.184.216.34", destination_service_namespace: "unknown" });
  });

  test("label values are escaped; the istio prefix names the same series istio_tcp_*", () => {
    const m = metrics({ prefix: "istio" });
    m.observe(report({}), 0, { ...CLIENT, app: 'a "quoted" \\ app\nx' }, SERVER);
    expect(m.render()).toContain('source_app="a \\"quoted\\" \\\\ app\\nx"');
    expect(samples(m, "istio_tcp_connections_opened_total")).toHaveLength(1);
    expect(samples(m, "kmesh_tcp_connections_opened_total")).toHaveLength(0);
    expect(parseExposition(m.render()).map((s) => s.name)).toEqual([
      "istio_tcp_workload_connections_opened_total",
      "istio_tcp_workload_connections_closed_total",
      "istio_tcp_workload_sent_bytes_total",
      "istio_tcp_workload_received_bytes_total",
      "istio_tcp_workload_conntections_failed_total",
      "istio_tcp_retrans_total",
      "istio_tcp_packet_loss_total",
      "istio_tcp_connections_opened_total",
      "istio_tcp_connections_closed_total",
      "istio_tcp_sent_bytes_total",
      "istio_tcp_received_bytes_total",
      "istio_tcp_conntections_failed_total",
    ]);
  });
});

describe("counters", () => {
  test("periodic reports then the close: each figure counted once, opened at the first report, closed at the close", () => {
    const m = metrics();
    const periodic = (sent: number, received: number, retrans: number) =>
      report({ state: "BPF_TCP_ESTABLISHED", sentBytes: sent, receivedBytes: received, retransmissions: retrans, packetLoss: retrans });
    m.observe(periodic(10, 20, 1), 0, CLIENT, SERVER);
    expect(value(m, "kmesh_tcp_workload_connections_opened_total")).toBe(1);
    expect(value(m, "kmesh_tcp_workload_sent_bytes_total")).toBe(10);
    m.observe(periodic(15, 20, 1), 0, CLIENT, SERVER);
    m.observe(report({ sentBytes: 40, receivedBytes: 70, retransmissions: 3, packetLoss: 2 }), 0, CLIENT, SERVER);
    expect({
      opened: value(m, "kmesh_tcp_workload_connections_opened_total"),
      closed: value(m, "kmesh_tcp_workload_connections_closed_total"),
      sent: value(m, "kmesh_tcp_workload_sent_bytes_total"),
      received: value(m, "kmesh_tcp_workload_received_bytes_total"),
      retrans: value(m, "kmesh_tcp_retrans_total"),
      lost: value(m, "kmesh_tcp_packet_loss_total"),
      failed: value(m, "kmesh_tcp_workload_conntections_failed_total"),
      serviceSent: value(m, "kmesh_tcp_sent_bytes_total"),
      serviceOpened: value(m, "kmesh_tcp_connections_opened_total"),
      serviceClosed: value(m, "kmesh_tcp_connections_closed_total"),
    }).toEqual({ opened: 1, closed: 1, sent: 40, received: 70, retrans: 3, lost: 2, failed: 0, serviceSent: 40, serviceOpened: 1, serviceClosed: 1 });
  });

  test("many connections of one pair: the series is the sum of their close lines; both sides have their own", () => {
    const m = metrics();
    let sent = 0;
    for (let i = 0; i < 50; i++) {
      const figures = { sentBytes: 1000 + i, receivedBytes: 7 * i };
      sent += figures.sentBytes;
      m.observe(report({ ...figures, srcPort: 41000 + i, connection: `out ${i}` }), 0, CLIENT, SERVER);
      m.observe(report({ direction: "INBOUND", sentBytes: figures.receivedBytes, receivedBytes: figures.sentBytes, srcPort: 41000 + i, connection: `in ${i}` }), 0, CLIENT, SERVER);
    }
    expect(value(m, "kmesh_tcp_workload_sent_bytes_total", { reporter: "source" })).toBe(sent);
    expect(value(m, "kmesh_tcp_workload_received_bytes_total", { reporter: "destination" })).toBe(sent);
    expect(value(m, "kmesh_tcp_workload_connections_closed_total", { reporter: "destination" })).toBe(50);
    expect(m.counts).toEqual({ workload: 2, service: 2, connection: 0 });
  });

  test("a failed attempt: failed, neither opened nor closed", () => {
    const m = metrics();
    m.observe(report({ error: "ECONNREFUSED", retransmissions: 2 }), 0, CLIENT, SERVER);
    expect(value(m, "kmesh_tcp_workload_conntections_failed_total")).toBe(1);
    expect(value(m, "kmesh_tcp_conntections_failed_total")).toBe(1);
    expect(value(m, "kmesh_tcp_workload_connections_opened_total")).toBe(0);
    expect(value(m, "kmesh_tcp_workload_connections_closed_total")).toBe(0);
    expect(value(m, "kmesh_tcp_retrans_total")).toBe(2);
  });

  test("records read while the metrics were off (no connection) are not counted", () => {
    const m = metrics();
    m.observe({ ...report({}), connection: undefined }, 0, CLIENT, SERVER);
    expect(m.render()).toBe("");
  });
});

describe("per-connection series", () => {
  test("only while on, only past the report interval; the latest figures; gone at the close", () => {
    const m = metrics();
    const periodic = (durationMs: number, sent: number) =>
      report({ state: "BPF_TCP_ESTABLISHED", durationMs, sentBytes: sent, startTime: { sec: 1_745_484_830, nsec: 5 } });
    m.observe(periodic(6000, 10), 0, CLIENT, SERVER);
    expect(m.counts.connection).toBe(0); // off
    m.setConnectionSeries(true);
    m.observe(periodic(4000, 20), 0, CLIENT, SERVER);
    expect(m.counts.connection).toBe(0); // younger than the interval
    m.observe(periodic(6000, 30), 0, CLIENT, SERVER);
    m.observe(periodic(11000, 45), 0, CLIENT, SERVER);
    const [series] = samples(m, "kmesh_tcp_connection_sent_bytes_total");
    expect(series!.value).toBe(45);
    expect(Object.keys(series!.labels)).toEqual([...CONNECTION_LABELS]);
    expect(series!.labels).toMatchObject({
      start_time: "2025-04-24 08:53:50.000000005 +0000 UTC",
      source_address: "10.244.1.5:40001",
      destination_address: "10.244.1.6:8080",
      destination_pod_name: "web-0",
    });
    m.observe(report({ sentBytes: 50 }), 0, CLIENT, SERVER);
    expect(m.counts.connection).toBe(0);
    expect(value(m, "kmesh_tcp_workload_sent_bytes_total")).toBe(50);
  });

  test("turned off: dropped; a connection the periodic reads stop seeing is forgotten", () => {
    const m = metrics();
    m.setConnectionSeries(true);
    m.observe(report({ state: "BPF_TCP_ESTABLISHED", durationMs: null, sentBytes: 5 }), 0, CLIENT, SERVER);
    expect(m.counts.connection).toBe(1); // open since before the agent: older than the interval
    m.setConnectionSeries(false);
    expect(m.counts.connection).toBe(0);
    m.setConnectionSeries(true);
    m.observe(report({ state: "BPF_TCP_ESTABLISHED", durationMs: null, sentBytes: 6, connection: "other" }), 0, CLIENT, SERVER);
    for (let i = 0; i < 3; i++) m.scanned();
    expect(m.counts.connection).toBe(0);
  });
});

describe("bounded", () => {
  test("a pod gone for the grace period takes its series with it; back in time, nothing goes", () => {
    const m = metrics({ graceMs: 1000 });
    const view = kube(["shop/client-7d4b9c8f6d-x2x9q", "shop/web-0"], ["shop/web"]);
    m.kube = view;
    m.observe(report({}), 0, CLIENT, SERVER);
    m.observe(report({ connection: "to service", dstService: WEB.host }), 0, CLIENT, SERVER, WEB);
    expect(m.counts).toEqual({ workload: 1, service: 2, connection: 0 });
    view.pods.delete("shop/web-0");
    m.sweep(10_000);
    m.sweep(10_500);
    view.pods.add("shop/web-0"); // back before the grace ended
    m.sweep(10_900);
    view.pods.delete("shop/web-0");
    m.sweep(11_000);
    m.sweep(11_999);
    expect(m.counts.workload).toBe(1);
    m.sweep(12_000);
    expect(m.counts).toEqual({ workload: 0, service: 0, connection: 0 });
    expect(m.dropped).toBe(3);
  });

  test("a Service gone takes its series; an address idle for the grace period goes; without Kubernetes, everything is an address", () => {
    const m = metrics({ graceMs: 1000 });
    const view = kube(["shop/client-7d4b9c8f6d-x2x9q"], ["shop/web"]);
    m.kube = view;
    m.observe(report({ connection: "a", dstAddr: "10.96.0.10", dstService: WEB.host }), 0, CLIENT, undefined, WEB);
    m.observe(report({ connection: "b", dstAddr: "93.184.216.34" }), 0, CLIENT);
    expect(m.counts).toEqual({ workload: 2, service: 2, connection: 0 });
    view.services.clear();
    m.sweep(500);
    m.observe(report({ connection: "c", dstAddr: "93.184.216.34" }), 900, CLIENT);
    m.sweep(1500);
    expect(m.counts).toEqual({ workload: 1, service: 1, connection: 0 }); // the Service's went, the address is fresh
    m.sweep(1900);
    expect(m.counts).toEqual({ workload: 0, service: 0, connection: 0 });

    const bare = metrics({ graceMs: 1000 });
    bare.kube = null;
    bare.observe(report({}), 0);
    bare.sweep(999);
    expect(bare.counts.workload).toBe(1);
    bare.sweep(1000);
    expect(bare.counts.workload).toBe(0);
  });

  test("a series dropped is never counted into again: the same pods make a new one, from zero", () => {
    const m = metrics({ graceMs: 1000 });
    const view = kube(["shop/client-7d4b9c8f6d-x2x9q", "shop/web-0"], []);
    m.kube = view;
    m.observe(report({ sentBytes: 7 }), 0, CLIENT, SERVER);
    view.pods.delete("shop/web-0");
    m.sweep(0);
    m.sweep(1000);
    expect(m.counts.workload).toBe(0);
    view.pods.add("shop/web-0");
    m.observe(report({ sentBytes: 5, connection: "again" }), 1500, CLIENT, SERVER);
    expect([m.counts.workload, value(m, "kmesh_tcp_workload_sent_bytes_total")]).toEqual([1, 5]);
    m.clear();
    m.observe(report({ sentBytes: 3, connection: "after clear" }), 1500, CLIENT, SERVER);
    expect([m.counts.workload, value(m, "kmesh_tcp_workload_sent_bytes_total")]).toEqual([1, 3]);
  });

  test("clear() forgets everything", () => {
    const m = metrics();
    m.setConnectionSeries(true);
    m.observe(report({ state: "BPF_TCP_ESTABLISHED", durationMs: null }), 0, CLIENT, SERVER);
    m.clear();
    expect(m.counts).toEqual({ workload: 0, service: 0, connection: 0 });
    expect(m.render()).toBe("");
  });
});
