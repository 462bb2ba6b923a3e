// What the unit tests share: Kmesh's seed example as an AccessRecord, records between chosen
// addresses, a fake agent behind the admin routes, a fake clock and a fake refresher for the
// kubelet's pod source, and real-shaped API objects checked by the agent's own schemas. (Real-shaped kubelet pod lists: ../support/kubelet-pods.ts.)
import * as v from "valibot";
import { type AccessRecord, JsonLines, KmeshText } from "../../src/accesslog/format.ts";
import { MetricsRegistry } from "../../src/admin/metrics.ts";
import type { AdminBackend, Readiness } from "../../src/admin/routes.ts";
import type { Switches } from "../../src/admin/switches.ts";
import { versionInfo } from "../../src/admin/version.ts";
import { type Filters, filtersOf } from "../../src/options.ts";
import { objectKey, podEntry, serviceEntry, sliceEntry } from "../../src/kube/apiserver/entries.ts";
import { type EndpointSlice, EndpointSliceSchema, type Service, ServiceSchema } from "../../src/kube/apiserver/objects.ts";
import type { ObjectSink } from "../../src/kube/apiserver/source.ts";
import type { KubeletFailure } from "../../src/kube/kubelet/client.ts";
import { PodIndex } from "../../src/kube/kubelet/pod-index.ts";
import { checkPodList } from "../../src/kube/kubelet/pod-list.ts";
import type { Scheduler } from "../../src/kube/kubelet/pod-source.ts";
import type { Refresher, RefreshOutcome } from "../../src/kube/kubelet/refresh.ts";
import { type Pod, type PodInfo, podInfo, PodSchema } from "../../src/kube/pod.ts";
import type { WallTime } from "../../src/kernel/clock.ts";
import type { LogLevel } from "../../src/log.ts";
import { AF_INET, BPF_TCP, type ConnEvent, DIRECTION_OUTBOUND, RECORD_ESTABLISHED, RECORD_SIZE, RecordView } from "../../src/kernel/record.ts";
import { pod, podList, type PodSpecOptions } from "../support/kubelet-pods.ts";

// ── Access records ───────────────────────────────────────────────────────────

/** Kmesh's own example line (docs/accesslog-format.md): a periodic report of a 50 s websocket. */
export const SEED_LINE =
  "accesslog: 2025-04-24 08:54:40.971980208 +0000 UTC src.addr=10.244.2.79:41978, src.workload=ws-client, src.namespace=default, dst.addr=10.244.2.78:8080, dst.service=ws-server-service.default.svc.cluster.local, dst.workload=ws-server, dst.namespace=default, start_time=2025-04-24 08:53:50.919245381 +0000 UTC, direction=OUTBOUND, state=BPF_TCP_ESTABLISHED, sent_bytes=3, received_bytes=227, packet_loss=0, retransmissions=0, srtt=40515us, min_rtt=34us, duration=50052.734827ms";

export const utc = (iso: string) => Date.parse(iso) / 1000;

/** The record of SEED_LINE. */
export const SEED_RECORD: Readonly<AccessRecord> = {
  reportTime: { sec: utc("2025-04-24T08:54:40Z"), nsec: 971_980_208 },
  startTime: { sec: utc("2025-04-24T08:53:50Z"), nsec: 919_245_381 },
  srcAddr: "10.244.2.79",
  srcPort: 41978,
  srcWorkload: "ws-client",
  srcNamespace: "default",
  dstAddr: "10.244.2.78",
  dstPort: 8080,
  dstService: "ws-server-service.default.svc.cluster.local",
  dstWorkload: "ws-server",
  dstNamespace: "default",
  direction: "OUTBOUND",
  state: "BPF_TCP_ESTABLISHED",
  sentBytes: 3,
  receivedBytes: 227,
  packetLoss: 0,
  retransmissions: 0,
  srttUs: 40515,
  minRttUs: 34,
  durationMs: 50052.734827,
  error: null,
  family: 4,
  netns: 4026531840,
  pid: null,
  command: null,
  containerId: null,
  containerName: null,
};

/** The seed record as the decoder makes it, before any name is known. */
export const UNNAMED_SEED_RECORD: Readonly<AccessRecord> = {
  ...SEED_RECORD,
  srcWorkload: null,
  srcNamespace: null,
  dstService: null,
  dstWorkload: null,
  dstNamespace: null,
};

/**
 * A ConnEvent of its own, decoded from the record of `length` bytes at `offset` in `view` into a ConnEvent of its own. Throws
 * RecordError for a record that is too short or carries an unknown family, direction or state.
 * Bytes beyond RECORD_SIZE are ignored (a newer kernel side may append fields).
 */
export function decodeRecord(view: DataView, offset = 0, length: number = view.byteLength - offset): ConnEvent {
  const r = new RecordView().select(view, offset, length);
  return {
    start: r.start,
    report: r.report,
    sentBytes: r.sentBytes,
    receivedBytes: r.receivedBytes,
    sockId: r.sockId,
    family: r.family,
    srcAddr: r.srcAddr,
    dstAddr: r.dstAddr,
    srcPort: r.srcPort,
    dstPort: r.dstPort,
    direction: r.direction,
    state: r.state,
    packetsLost: r.packetsLost,
    retransmissions: r.retransmissions,
    srttUs: r.srttUs,
    minRttUs: r.minRttUs,
    netns: r.netns,
    error: r.error,
    flags: r.flags,
    ownerPid: r.ownerPid,
    ownerCommand: r.ownerCommand,
    ownerCgroupId: r.ownerCgroupId,
  };
}

// ── Kernel records ───────────────────────────────────────────────────────────

// Offsets written out from bpf/accesslog.h by hand, independently of RECORD_FIELDS.
export const LE = true; // the test hosts (x86-64, arm64) are little-endian, as the kernel writes

/** The fields of a `struct conn_record` as the kernel writes them. */
export interface RawRecord {
  startNs: bigint;
  reportNs: bigint;
  sentBytes: bigint;
  receivedBytes: bigint;
  sockId: bigint;
  src: number[];
  dst: number[];
  srcPort: number;
  dstPort: number;
  family: number;
  direction: number;
  state: number;
  packetsLost: number;
  retransmissions: number;
  srttUs: number;
  minRttUs: number;
  netns: number;
  error: number;
  flags: number;
  reserved: number;
  /** struct conn_owner */
  ownerCgroupId: bigint;
  ownerPid: number;
  /** up to 16 bytes, NUL-padded */
  ownerComm: number[];
}

/** A connection record (the seed example's figures, 2.5 s long). */
export const RAW_RECORD: Readonly<RawRecord> = {
  startNs: 1_000_000_000n,
  reportNs: 3_500_000_000n,
  sentBytes: 3n,
  receivedBytes: 227n,
  sockId: 0xffff8881_2345_6780n,
  src: [10, 244, 2, 79],
  dst: [10, 244, 2, 78],
  srcPort: 41978,
  dstPort: 8080,
  family: AF_INET,
  direction: DIRECTION_OUTBOUND,
  state: BPF_TCP.ESTABLISHED,
  packetsLost: 0,
  retransmissions: 0,
  srttUs: 40515,
  minRttUs: 34,
  netns: 4026531840,
  error: 0,
  flags: RECORD_ESTABLISHED,
  reserved: 0,
  ownerCgroupId: 0n,
  ownerPid: 0,
  ownerComm: [],
};

/** The bytes of a record: RAW_RECORD with `over`, at `at` in a buffer of `at + size` bytes. */
export function rawRecord(over: Partial<RawRecord> = {}, size = RECORD_SIZE, at = 0): DataView {
  const r = { ...RAW_RECORD, ...over };
  const v = new DataView(new ArrayBuffer(at + size));
  const o = at;
  v.setBigUint64(o + 0, r.startNs, LE);
  v.setBigUint64(o + 8, r.reportNs, LE);
  v.setBigUint64(o + 16, r.sentBytes, LE);
  v.setBigUint64(o + 24, r.receivedBytes, LE);
  v.setBigUint64(o + 32, r.sockId, LE);
  r.src.forEach((b, i) => v.setUint8(o + 40 + i, b));
  r.dst.forEach((b, i) => v.setUint8(o + 56 + i, b));
  v.setUint16(o + 72, r.srcPort, LE);
  v.setUint16(o + 74, r.dstPort, LE);
  v.setUint16(o + 76, r.family, LE);
  v.setUint8(o + 78, r.direction);
  v.setUint8(o + 79, r.state);
  v.setUint32(o + 80, r.packetsLost, LE);
  v.setUint32(o + 84, r.retransmissions, LE);
  v.setUint32(o + 88, r.srttUs, LE);
  v.setUint32(o + 92, r.minRttUs, LE);
  v.setUint32(o + 96, r.netns, LE);
  v.setInt32(o + 100, r.error, LE);
  v.setUint32(o + 104, r.flags, LE);
  v.setUint32(o + 108, r.reserved, LE);
  v.setBigUint64(o + 112, r.ownerCgroupId, LE);
  v.setUint32(o + 120, r.ownerPid, LE);
  r.ownerComm.forEach((b, i) => v.setUint8(o + 124 + i, b));
  return v;
}

/** The formats' string forms (a format of each kind for all the tests). */
const kmeshText = new KmeshText();
const jsonLines = new JsonLines();
export const formatKmeshLine = (r: AccessRecord) => kmeshText.line(r);
export const formatJsonLine = (r: AccessRecord) => jsonLines.line(r);
export const formatGoTime = (t: WallTime) => kmeshText.goTime(t);
export const escapeValue = (value: string) => kmeshText.escape(value);

/** 16 bytes (network order) from 8 IPv6 groups. */
export function v6(...groups: number[]): number[] {
  if (groups.length !== 8) throw new Error(`8 groups, not ${groups.length}`);
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

// ── The admin API ────────────────────────────────────────────────────────────

export const SWITCHES_ON: Switches = { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: false };
export const SWITCHES_OFF: Switches = { monitoring: false, accesslog: false, connectionMetrics: false, workloadMetrics: false };

/** An agent behind the admin routes: switches it keeps (or, with failWith, cannot change), metrics. */
export class FakeBackend implements AdminBackend {
  /** every state applied, in order */
  applied: Switches[] = [];
  failWith: string | null = null;
  readonly metrics = new MetricsRegistry();
  constructor(
    public state: Switches = SWITCHES_ON,
    public ready: Readiness = { ready: true },
  ) {}
  switches() {
    return this.state;
  }
  setSwitches(next: Switches) {
    if (this.failWith !== null) throw new Error(this.failWith);
    this.applied.push(next);
    this.state = next;
  }
  filterState: Filters = filtersOf({});
  filters() {
    return this.filterState;
  }
  setFilters(next: Filters) {
    this.filterState = next;
  }
  readiness() {
    return this.ready;
  }
  metricsText() {
    return this.metrics.render();
  }
  version() {
    return versionInfo();
  }
  level: LogLevel = "info";
  logLevel() {
    return this.level;
  }
  setLogLevel(level: LogLevel) {
    this.level = level;
  }
}

// ── The kubelet's pod source and the enricher ────────────────────────────────

export const MS = 1e6;

/** Monotonic ns that start at 100 s; timers fire in time order as the test advances. */
export class FakeClock implements Scheduler {
  now = 100_000 * MS;
  #timers: { at: number; seq: number; fn: () => void }[] = [];
  #seq = 0;

  nowNs(): number {
    return this.now;
  }

  setTimer(fn: () => void, ms: number): () => void {
    const timer = { at: this.now + ms * MS, seq: this.#seq++, fn };
    this.#timers.push(timer);
    return () => {
      this.#timers = this.#timers.filter((t) => t !== timer);
    };
  }

  /** Moves time forward by `ms`, firing due timers in order (and letting promises settle). */
  async advance(ms: number): Promise<void> {
    const end = this.now + ms * MS;
    for (;;) {
      await settle();
      const due = this.#timers.filter((t) => t.at <= end).sort((a, b) => a.at - b.at || a.seq - b.seq)[0];
      if (due === undefined) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.now = Math.max(this.now, due.at);
      due.fn();
    }
    this.now = end;
    await settle();
  }
}

/** Lets pending promise callbacks run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

/** A refresher whose runs the test finishes by hand, in order. */
export class FakeRefresher implements Refresher {
  /** clock time at which each run started */
  readonly starts: number[] = [];
  #waiting: ((outcome: RefreshOutcome) => void)[] = [];
  closed = false;

  constructor(private readonly clock: FakeClock) {}

  run(): Promise<RefreshOutcome> {
    this.starts.push(this.clock.now);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  get running(): number {
    return this.#waiting.length;
  }

  /** Finishes the oldest running refresh with a list of these pods. */
  async answer(pods: PodSpecOptions[]): Promise<void> {
    const list = checkPodList(podList(pods.map(pod)));
    if (!list.ok) throw new Error(list.problem);
    await this.finish({ ok: true, index: PodIndex.fromPods(list.pods), bytes: 0, timings: { fetchMs: 1, parseMs: 1, indexMs: 1 } });
  }

  async fail(failure: KubeletFailure): Promise<void> {
    await this.finish({ ok: false, failure });
  }

  async finish(outcome: RefreshOutcome): Promise<void> {
    const resolve = this.#waiting.shift();
    if (resolve === undefined) throw new Error("no refresh is running");
    resolve(outcome);
    await settle();
  }

  close(): void {
    this.closed = true;
  }
}

let port = 40000;

/** A closed-connection record between two addresses (ports are unique per record). */
export function record(direction: "OUTBOUND" | "INBOUND", src: string, dst: string, reportNs: number): AccessRecord {
  const sec = Math.floor(reportNs / 1e9);
  return {
    reportTime: { sec, nsec: reportNs - sec * 1e9 },
    startTime: null,
    srcAddr: src,
    srcPort: port++,
    srcWorkload: null,
    srcNamespace: null,
    dstAddr: dst,
    dstPort: 8080,
    dstService: null,
    dstWorkload: null,
    dstNamespace: null,
    direction,
    state: "BPF_TCP_CLOSE",
    sentBytes: 1,
    receivedBytes: 2,
    packetLoss: 0,
    retransmissions: 0,
    srttUs: 10,
    minRttUs: 5,
    durationMs: 1,
    error: null,
    family: src.includes(":") ? 6 : 4,
    netns: 4026531840,
    pid: null,
    command: null,
    containerId: null,
    containerName: null,
  };
}

// ── API objects ──────────────────────────────────────────────────────────────

export const service = (ns: string, name: string, clusterIP: string, ports: { port: number; protocol?: string }[], extra: object = {}) =>
  v.parse(ServiceSchema, {
    metadata: { name, namespace: ns, resourceVersion: "1", uid: "u", annotations: { x: "y" } },
    spec: { type: "ClusterIP", clusterIP, clusterIPs: [clusterIP], ports: ports.map((p) => ({ ...p, targetPort: 8080 })), selector: { app: name } },
    ...extra,
  });

export const slice = (ns: string, svc: string, name: string, addresses: string[], ports: (number | null)[]) =>
  v.parse(EndpointSliceSchema, {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name, namespace: ns, labels: { "kubernetes.io/service-name": svc } },
    addressType: "IPv4",
    endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true }, targetRef: { kind: "Pod", name: `p-${a}`, namespace: ns } })),
    ports: ports.map((port) => ({ name: "http", protocol: "TCP", port })),
  });

export const apiPod = (ns: string, name: string, ip: string, extra: { phase?: string; hostNetwork?: boolean; deleting?: boolean } = {}) =>
  v.parse(PodSchema, {
    metadata: { name, namespace: ns, uid: `uid-${name}`, ...(extra.deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
    spec: { nodeName: "other-node", hostNetwork: extra.hostNetwork ?? false },
    status: { phase: extra.phase ?? "Running", podIP: ip, podIPs: [{ ip }] },
  });

/** Puts an API object into the cluster index or the feed's store, as the API-server source does. */
export const put = {
  service: (sink: ObjectSink, s: Service) => sink.put("services", objectKey(s.metadata), serviceEntry(s)),
  slice: (sink: ObjectSink, s: EndpointSlice) => sink.put("endpointslices", objectKey(s.metadata), sliceEntry(s)),
  pod: (sink: ObjectSink, p: Pod) => sink.put("pods", objectKey(p.metadata), podEntry(p)),
};

/** What the indexes tell about a pod without labels, owner or service account (its own workload). */
export const bareInfo = (name: string, namespace: string | null): PodInfo =>
  podInfo(v.parse(PodSchema, { metadata: { name, ...(namespace === null ? {} : { namespace }) } }));
