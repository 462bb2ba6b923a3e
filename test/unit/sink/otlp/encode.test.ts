// The hand-written OTLP encoder, checked by the official definitions: every request it writes is
// decoded by the protobufjs code OpenTelemetry generated from opentelemetry-proto
// (test/support/otlp-receiver.ts), and each field compared with what the record holds.
import { describe, expect, test } from "bun:test";
import { type AccessRecord, KmeshText } from "../../../../src/accesslog/format.ts";
import { CONNECTION_STATES, RECORD_ATTRIBUTES } from "../../../../src/sink/otlp/attributes.ts";
import { LogsRequestWriter } from "../../../../src/sink/otlp/encode.ts";
import { decodeLogsRequest, type ReceivedRecord } from "../../../support/otlp-receiver.ts";
import { seededRandom } from "../../../support/random.ts";
import { formatKmeshLine, SEED_RECORD, utc } from "../../fixtures.ts";

const resource: [string, string][] = [
  ["service.name", "kmesh-accesslog"],
  ["service.version", "9.8.7"],
  ["host.name", "node-a"],
  ["k8s.node.name", "node-a"],
];
const writer = () => new LogsRequestWriter(new KmeshText(), resource, { name: "kmesh-accesslog", version: "9.8.7" }, RECORD_ATTRIBUTES);
const ns = (t: { sec: number; nsec: number }) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);
const OBSERVED = { sec: utc("2025-04-24T08:54:41Z"), nsec: 5 };

function roundTrip(records: AccessRecord[], w = writer()): ReceivedRecord[] {
  for (const r of records) w.add(r, OBSERVED);
  expect(w.count).toBe(records.length);
  return decodeLogsRequest(w.finish());
}

/** The attributes a record must carry, computed here from the record (not by the encoder's table). */
function expected(r: AccessRecord): Record<string, string | bigint | number> {
  const local = r.direction === "OUTBOUND" ? { pod: r.srcWorkload, ns: r.srcNamespace } : { pod: r.dstWorkload, ns: r.dstNamespace };
  const a: Record<string, string | bigint | number | null> = {
    "source.address": r.srcAddr,
    "source.port": BigInt(r.srcPort),
    "destination.address": r.dstAddr,
    "destination.port": BigInt(r.dstPort),
    "network.transport": "tcp",
    "network.type": r.family === 4 ? "ipv4" : "ipv6",
    "network.connection.state": r.state === "BPF_TCP_CLOSE" ? "closed" : r.state === "BPF_TCP_ESTABLISHED" ? "established" : null,
    "k8s.namespace.name": local.ns,
    "k8s.pod.name": local.pod,
    "error.type": r.error,
    "process.pid": r.pid === null ? null : BigInt(r.pid),
    "process.executable.name": r.command,
    "container.id": r.containerId,
    "k8s.container.name": r.containerName,
    "kmesh.source.workload": r.srcWorkload,
    "kmesh.source.namespace": r.srcNamespace,
    "kmesh.destination.workload": r.dstWorkload,
    "kmesh.destination.namespace": r.dstNamespace,
    "kmesh.destination.service": r.dstService,
    "kmesh.direction": r.direction,
    "kmesh.sent_bytes": BigInt(r.sentBytes),
    "kmesh.received_bytes": BigInt(r.receivedBytes),
    "kmesh.packet_loss": BigInt(r.packetLoss),
    "kmesh.retransmissions": BigInt(r.retransmissions),
    "kmesh.srtt_us": BigInt(r.srttUs),
    "kmesh.min_rtt_us": BigInt(r.minRttUs),
    "kmesh.duration_ms": r.durationMs,
    "kmesh.start_time": r.startTime === null ? null : `${new Date(r.startTime.sec * 1000).toISOString().slice(0, 19)}.${String(r.startTime.nsec).padStart(9, "0")}Z`,
    "kmesh.netns": BigInt(r.netns),
  };
  return Object.fromEntries(Object.entries(a).filter(([, v]) => v !== null)) as Record<string, string | bigint | number>;
}

describe("LogsRequestWriter", () => {
  test("Kmesh's seed record: times, severity, body, every attribute, resource and scope", () => {
    const [record, ...rest] = roundTrip([SEED_RECORD]);
    expect(rest).toEqual([]);
    expect(record!).toEqual({
      timeUnixNano: 1745484880_971980208n,
      observedTimeUnixNano: ns(OBSERVED),
      severityNumber: 9,
      severityText: "INFO",
      body: formatKmeshLine(SEED_RECORD),
      attributes: {
        "source.address": "10.244.2.79",
        "source.port": 41978n,
        "destination.address": "10.244.2.78",
        "destination.port": 8080n,
        "network.transport": "tcp",
        "network.type": "ipv4",
        "network.connection.state": "established",
        "k8s.namespace.name": "default",
        "k8s.pod.name": "ws-client",
        "kmesh.source.workload": "ws-client",
        "kmesh.source.namespace": "default",
        "kmesh.destination.workload": "ws-server",
        "kmesh.destination.namespace": "default",
        "kmesh.destination.service": "ws-server-service.default.svc.cluster.local",
        "kmesh.direction": "OUTBOUND",
        "kmesh.sent_bytes": 3n,
        "kmesh.received_bytes": 227n,
        "kmesh.packet_loss": 0n,
        "kmesh.retransmissions": 0n,
        "kmesh.srtt_us": 40515n,
        "kmesh.min_rtt_us": 34n,
        "kmesh.duration_ms": 50052.734827,
        "kmesh.start_time": "2025-04-24T08:53:50.919245381Z",
        "kmesh.netns": 4026531840n,
      },
      keys: expect.any(Array),
      droppedAttributesCount: 0,
      flags: 0,
      traceId: "",
      spanId: "",
      resource: { "service.name": "kmesh-accesslog", "service.version": "9.8.7", "host.name": "node-a", "k8s.node.name": "node-a" },
      scope: { name: "kmesh-accesslog", version: "9.8.7" },
    });
    // no error, no process known: those are left out
    const unknown = ["error.type", "process.pid", "process.executable.name", "container.id", "k8s.container.name"];
    expect(record!.keys).toEqual(RECORD_ATTRIBUTES.map((a) => a.key).filter((k) => !unknown.includes(k)));
  });

  test("the process behind the socket: process.pid, process.executable.name, container.id, k8s.container.name", () => {
    const id = "4f1c6a0e8d2b7f3a9c5e1d0b8a6f4e2c7d9b1a3f5e7c9d1b3a5f7e9c1d3b5a7f";
    const r: AccessRecord = { ...SEED_RECORD, pid: 4_194_303, command: "nginx: worker", containerId: id, containerName: "web" };
    const [record] = roundTrip([r]);
    expect(record!.attributes).toMatchObject({ "process.pid": 4_194_303n, "process.executable.name": "nginx: worker", "container.id": id, "k8s.container.name": "web" });
    expect(record!.attributes).toEqual(expected(r));
    // a process without a container (a host process)
    const [host] = roundTrip([{ ...r, containerId: null, containerName: null }]);
    expect(host!.keys.filter((k) => k.startsWith("process.") || k.startsWith("container.") || k === "k8s.container.name")).toEqual(["process.pid", "process.executable.name"]);
  });

  test("unknowns are left out; INBOUND's local end is the destination; IPv6; a failed attempt's error.type", () => {
    const r: AccessRecord = {
      ...SEED_RECORD,
      family: 6,
      srcAddr: "fd00::1",
      dstAddr: "fd00::2",
      direction: "INBOUND",
      srcWorkload: null,
      srcNamespace: null,
      dstService: null,
      startTime: null,
      durationMs: null,
      state: "BPF_TCP_CLOSE",
      error: "ECONNREFUSED",
    };
    const [record] = roundTrip([r]);
    expect(record!.attributes).toEqual(expected(r));
    expect(record!.attributes["k8s.pod.name"]).toBe("ws-server");
    expect(record!.attributes["network.type"]).toBe("ipv6");
    expect(record!.attributes["error.type"]).toBe("ECONNREFUSED");
    for (const key of ["kmesh.source.workload", "kmesh.start_time", "kmesh.duration_ms", "kmesh.destination.service"]) expect(record!.attributes).not.toHaveProperty(key);
  });

  test("every BPF_TCP state has its network.connection.state", () => {
    expect(Object.keys(CONNECTION_STATES).length).toBe(12);
    for (const [state, value] of Object.entries(CONNECTION_STATES)) {
      expect(roundTrip([{ ...SEED_RECORD, state }])[0]!.attributes["network.connection.state"]).toBe(value);
    }
  });

  test("non-ASCII names, lengths of every varint size, large numbers, the extremes of a time", () => {
    const rng = seededRandom(7).next;
    const records: AccessRecord[] = [];
    for (let i = 0; i < 400; i++) {
      // names from 0 to 20,000 characters: lines from short to beyond 16383 bytes (3-byte lengths)
      const long = i % 40 === 1 ? "x".repeat(16_000 + 10 * i) : "";
      records.push({
        ...SEED_RECORD,
        reportTime: { sec: Math.floor(rng() * 4_102_444_800), nsec: i % 3 === 0 ? 999_999_999 : Math.floor(rng() * 1e9) },
        startTime: i % 4 === 0 ? null : { sec: Math.floor(rng() * 4_102_444_800), nsec: Math.floor(rng() * 1e9) },
        srcWorkload: i % 5 === 0 ? null : `pød-${i}-日本${long}`,
        dstNamespace: i % 7 === 0 ? "ns" : `namespace-${"y".repeat(i)}`,
        dstService: i % 2 ? null : `svc-${i}.ns.svc.cluster.local`,
        sentBytes: i % 2 ? 2 ** 53 - 1 - i : i,
        receivedBytes: Math.floor(rng() * 2 ** 40),
        retransmissions: 127 + (i % 3),
        srttUs: 16383 + (i % 3),
        durationMs: i % 6 === 0 ? null : Math.floor(rng() * 1e15) / 1e6,
        netns: 4_294_967_295 - i,
        direction: i % 2 ? "OUTBOUND" : "INBOUND",
      });
    }
    const w = writer();
    // Some lines need a three-byte length (16384 bytes and more), most two.
    const lines = records.map((r) => Buffer.byteLength(formatKmeshLine(r)));
    expect(lines.filter((n) => n >= 16_384).length).toBe(10);
    expect(lines.filter((n) => n < 16_384).length).toBeGreaterThan(300);
    const decoded = roundTrip(records, w);
    expect(decoded.length).toBe(records.length);
    decoded.forEach((d, i) => {
      const r = records[i]!;
      expect(d.timeUnixNano).toBe(ns(r.reportTime));
      expect(d.body).toBe(formatKmeshLine(r));
      expect(d.attributes).toEqual(expected(r));
    });
    // The writer starts a new request after finish(): the next one holds only what came since.
    w.add(SEED_RECORD, OBSERVED);
    expect(decodeLogsRequest(w.finish()).length).toBe(1);
  });

  test("an empty request decodes to no records", () => {
    expect(decodeLogsRequest(writer().finish())).toEqual([]);
  });
});
