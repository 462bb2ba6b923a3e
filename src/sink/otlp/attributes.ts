// What an OTLP LogRecord says about a report, declared once: each attribute's key, its value type
// and where its value comes from. OpenTelemetry's semantic conventions name what they cover
// (source.*, destination.*, network.*, k8s.*, error.type); the rest is ours, under `kmesh.`. A
// value that is not known is left out (no stand-in like the text line's `-`). A later field is
// one more row here; encode.ts writes whatever the table holds.
// The README's OTLP section lists the same table for users.
import type { AccessRecord } from "../../accesslog/format.ts";

export type AttributeValue =
  /** an AnyValue string_value */
  | { kind: "string"; value: (r: AccessRecord) => string | null }
  /** an AnyValue int_value; the value is a whole number 0..2^53 */
  | { kind: "int"; value: (r: AccessRecord) => number | null }
  /** an AnyValue double_value */
  | { kind: "double"; value: (r: AccessRecord) => number | null }
  /** an AnyValue string_value, the record's time written as RFC 3339 (as in the JSON line) */
  | { kind: "time"; value: (r: AccessRecord) => AccessRecord["reportTime"] | null };

export type AttributeSpec = AttributeValue & { key: string };

/** The local socket's end: the client of an OUTBOUND report, the server of an INBOUND one. */
const localIsSource = (r: AccessRecord) => r.direction === "OUTBOUND";

/** The kernel's BPF_TCP_* state names (kernel/record.ts) as network.connection.state values. */
export const CONNECTION_STATES: Readonly<Record<string, string>> = {
  BPF_TCP_ESTABLISHED: "established",
  BPF_TCP_SYN_SENT: "syn_sent",
  BPF_TCP_SYN_RECV: "syn_received",
  BPF_TCP_FIN_WAIT1: "fin_wait_1",
  BPF_TCP_FIN_WAIT2: "fin_wait_2",
  BPF_TCP_TIME_WAIT: "time_wait",
  BPF_TCP_CLOSE: "closed",
  BPF_TCP_CLOSE_WAIT: "close_wait",
  BPF_TCP_LAST_ACK: "last_ack",
  BPF_TCP_LISTEN: "listen",
  BPF_TCP_CLOSING: "closing",
  BPF_TCP_NEW_SYN_RECV: "syn_received",
};

export const RECORD_ATTRIBUTES: readonly AttributeSpec[] = [
  // Semantic conventions: the connecting side is the source, the accepting side the destination.
  { key: "source.address", kind: "string", value: (r) => r.srcAddr },
  { key: "source.port", kind: "int", value: (r) => r.srcPort },
  { key: "destination.address", kind: "string", value: (r) => r.dstAddr },
  { key: "destination.port", kind: "int", value: (r) => r.dstPort },
  { key: "network.transport", kind: "string", value: () => "tcp" },
  { key: "network.type", kind: "string", value: (r) => (r.family === 4 ? "ipv4" : "ipv6") },
  { key: "network.connection.state", kind: "string", value: (r) => CONNECTION_STATES[r.state] ?? null },
  { key: "k8s.namespace.name", kind: "string", value: (r) => (localIsSource(r) ? r.srcNamespace : r.dstNamespace) },
  { key: "k8s.pod.name", kind: "string", value: (r) => (localIsSource(r) ? r.srcWorkload : r.dstWorkload) },
  { key: "error.type", kind: "string", value: (r) => r.error },
  // The process behind the local socket: process.executable.name is the Name of /proc/<pid>/status
  // (the kernel's comm), as the conventions say for Linux.
  { key: "process.pid", kind: "int", value: (r) => r.pid },
  { key: "process.executable.name", kind: "string", value: (r) => r.command },
  { key: "container.id", kind: "string", value: (r) => r.containerId },
  { key: "k8s.container.name", kind: "string", value: (r) => r.containerName },
  // Ours: what the conventions have no name for.
  { key: "kmesh.source.workload", kind: "string", value: (r) => r.srcWorkload },
  { key: "kmesh.source.namespace", kind: "string", value: (r) => r.srcNamespace },
  { key: "kmesh.destination.workload", kind: "string", value: (r) => r.dstWorkload },
  { key: "kmesh.destination.namespace", kind: "string", value: (r) => r.dstNamespace },
  { key: "kmesh.destination.service", kind: "string", value: (r) => r.dstService },
  { key: "kmesh.direction", kind: "string", value: (r) => r.direction },
  { key: "kmesh.sent_bytes", kind: "int", value: (r) => r.sentBytes },
  { key: "kmesh.received_bytes", kind: "int", value: (r) => r.receivedBytes },
  { key: "kmesh.packet_loss", kind: "int", value: (r) => r.packetLoss },
  { key: "kmesh.retransmissions", kind: "int", value: (r) => r.retransmissions },
  { key: "kmesh.srtt_us", kind: "int", value: (r) => r.srttUs },
  { key: "kmesh.min_rtt_us", kind: "int", value: (r) => r.minRttUs },
  { key: "kmesh.duration_ms", kind: "double", value: (r) => r.durationMs },
  { key: "kmesh.start_time", kind: "time", value: (r) => r.startTime },
  { key: "kmesh.netns", kind: "int", value: (r) => r.netns },
];
