// Names on both ends of a line, from the pod index and the API server's view (the filters come
// after: filters.ts). What each name is: docs/accesslog-format.md; when a line waits for a pod
// list or for its ClusterIP backend, and the order lines come out in: docs/kubernetes.md ("A new
// pod's first lines", "The backend of a ClusterIP connection") and docs/accesslog-format.md ("When
// lines are written").
//
// Held lines are kept sorted by report time and written in that order: the conditions that
// release them are monotone in report time, so a later line is never released before an earlier
// one. A line whose remote end is an address a held line waits for (a new pod of this node) waits
// for the same refresh, so that both lines of a same-node connection name the new pod. No line
// waits when a refresh that started at or after its report time has completed, when its local
// end is loopback or the node's own address, or while the kubelet is failing.
import { isLoopbackOrUnspecified } from "../address.ts";
import { nsBetween } from "../kernel/clock.ts";
import type { ServiceRef } from "../kube/apiserver/cluster-index.ts";
import type { PodInfo } from "../kube/pod.ts";
import type { AccessRecord } from "./format.ts";
import { copyAccessRecord } from "./record.ts";

/** What the enricher needs from the API server's view (kube/apiserver/cluster-index.ts). */
export interface ClusterView {
  lookupPod(ip: string): PodInfo | undefined;
  serviceAtClusterIp(ip: string, port: number): ServiceRef | undefined;
  serviceAtEndpoint(ip: string, port: number): ServiceRef | undefined;
  endpointAddresses(ref: ServiceRef): Iterable<string>;
  /** changes whenever an endpoint is added or removed */
  readonly endpointsVersion: number;
}

/** Where the kernel's NAT sent a connection, as conntrack recorded it (kernel/conntrack.ts). */
export interface NatView {
  /** the backend of src:srcPort → dst:dstPort, and when conntrack confirmed it (monotonic ns) */
  lookup(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number): { addr: string; port: number; insertedNs: number } | undefined;
}

/** How long an INBOUND line's client → backend pair is remembered for an OUTBOUND line. */
const INBOUND_MEMORY_NS = 5_000_000_000;

/** What the enricher needs from the pod source (kube/kubelet/pod-source.ts). */
export interface NameSource {
  lookup(ip: string): PodInfo | undefined;
  /** lookup() of an IPv4 address given as its number (ipv4Number in address.ts) */
  lookupV4(address: number): PodInfo | undefined;
  isNodeAddress(ip: string): boolean;
  /** start (monotonic ns) of the latest completed refresh; -Infinity before the first */
  readonly completedStartNs: number;
  /** false while the kubelet is failing: then no line waits for it */
  readonly answering: boolean;
  /** asks for a refresh that starts after eventNs */
  requestRefresh(eventNs: number): void;
}

/** Names without a kubelet: nothing local is known, so no line waits for a pod list. */
export const NO_KUBELET: NameSource = {
  lookup: () => undefined,
  lookupV4: () => undefined,
  isNodeAddress: isLoopbackOrUnspecified,
  completedStartNs: Number.POSITIVE_INFINITY,
  answering: true,
  requestRefresh: () => undefined,
};

export interface EnricherOptions {
  source: NameSource;
  /** how long a line may be held, ns; 0: never hold */
  holdNs: number;
  /** where finished records go, with the pods at both ends and the Service, when known */
  emit: (r: AccessRecord, src?: PodInfo, dst?: PodInfo, service?: ServiceRef) => void;
  /** most lines held at once; beyond it the oldest is written at once (default 65536) */
  maxHeld?: number;
  /** the API server's view: services and remote pods; null without it */
  cluster?: ClusterView | null;
  /** how long an OUTBOUND line to a ClusterIP may wait for its INBOUND line, ns (default: holdNs) */
  pairHoldNs?: number;
}

interface Entry {
  record: AccessRecord;
  reportNs: number;
  /** the record's addresses as numbers when IPv4 (ipv4Number), else -1: the source's quicker look-up */
  srcV4: number;
  dstV4: number;
  /** the local address it waits for, when its own local end is unknown */
  awaits: string | null;
  hold: boolean;
  /** waits for the pod list (its local or remote end is a new pod) */
  kubeWait: boolean;
  /** client ip|port whose INBOUND line it waits for (an OUTBOUND line to a ClusterIP) */
  pairKey: string | null;
  /** the backend learned from conntrack or from that INBOUND line */
  backend: { addr: string; port: number } | null;
  /** the backend came from conntrack */
  translated: boolean;
  deadlineNs: number;
  /** the pod at its local end (null: none) when endBatch looked it up; undefined when not */
  localPod: PodInfo | null | undefined;
}

export interface EnricherStats {
  /** lines held back */
  held: number;
  /** held lines written because a refresh completed (or failed) */
  releasedByRefresh: number;
  /** held lines written at their deadline (or because too many were held) */
  releasedAtDeadline: number;
  /** OUTBOUND lines to a ClusterIP whose backend was learned (from conntrack or the INBOUND line) */
  backendsLearned: number;
  /** of those, learned from the kernel's connection tracking */
  backendsFromConntrack: number;
  /** OUTBOUND lines to a ClusterIP held only to wait for their INBOUND line (not in `held`) */
  heldForBackend: number;
}

const blankEntry = (): Entry => ({
  record: null as unknown as AccessRecord,
  reportNs: 0,
  srcV4: -1,
  dstV4: -1,
  awaits: null,
  hold: false,
  kubeWait: false,
  pairKey: null,
  backend: null,
  translated: false,
  deadlineNs: 0,
  localPod: undefined,
});

export class Enricher {
  readonly #o: Required<EnricherOptions>;
  /** The current batch: #batch[0, #batchLength), entries used again batch after batch. */
  readonly #batch: Entry[] = [];
  #batchLength = 0;
  /** held lines, sorted by report time, from index #head on */
  #held: Entry[] = [];
  #head = 0;
  /** local addresses held lines wait for → how many lines */
  readonly #awaited = new Map<string, number>();
  readonly stats: EnricherStats = { held: 0, releasedByRefresh: 0, releasedAtDeadline: 0, backendsLearned: 0, backendsFromConntrack: 0, heldForBackend: 0 };
  /** the kernel's NAT translations, once the conntrack hook is attached (the agent sets it) */
  nat: NatView | null = null;
  /** client ip|port → backend, from recent INBOUND lines (insertion order = report order, roughly) */
  readonly #inbound = new Map<string, { addr: string; port: number; atNs: number }>();
  /** client ip|port → held OUTBOUND lines waiting for it */
  readonly #pairWaiters = new Map<string, Entry[]>();
  /** per Service: has it an endpoint on this node, as of which pod list and endpoints version */
  readonly #localBackends = new WeakMap<ServiceRef, { listNs: number; version: number; local: boolean }>();

  constructor(options: EnricherOptions) {
    this.#o = { maxHeld: 65_536, cluster: null, pairHoldNs: options.holdNs, ...options };
  }

  /** Lines held now. */
  get holding(): number {
    return this.#held.length - this.#head;
  }

  /**
   * Queues one record of the current batch; endBatch() decides about all of them. The record is
   * only lent until endBatch() returns (the agent fills it again after): a line held longer is
   * kept as a copy. `srcV4` and `dstV4`: its IPv4 addresses as numbers (the record view has
   * them), for the quicker look-up; -1 when not given.
   */
  accept(record: AccessRecord, reportNs: number, srcV4 = -1, dstV4 = -1): void {
    let entry = this.#batch[this.#batchLength];
    if (entry === undefined) {
      entry = blankEntry();
      this.#batch.push(entry);
    } else {
      entry.awaits = null;
      entry.hold = false;
      entry.kubeWait = false;
      entry.pairKey = null;
      entry.backend = null;
      entry.translated = false;
      entry.deadlineNs = 0;
      entry.localPod = undefined;
    }
    entry.record = record;
    entry.reportNs = reportNs;
    entry.srcV4 = srcV4;
    entry.dstV4 = dstV4;
    this.#batchLength++;
  }

  /** The pod at `ip`; `v4`, when not -1, is the same address as a number. */
  #lookup(ip: string, v4 = -1): PodInfo | undefined {
    const { source } = this.#o;
    return (v4 === -1 ? source.lookup(ip) : source.lookupV4(v4)) ?? this.#o.cluster?.lookupPod(ip);
  }

  #known(ip: string): boolean {
    return this.#lookup(ip) !== undefined || this.#o.source.isNodeAddress(ip);
  }

  /**
   * Pairs OUTBOUND lines to a ClusterIP with INBOUND lines of the same client ip:port: remembers
   * this batch's INBOUND lines (and hands them to waiting lines), and marks the OUTBOUND lines
   * that should wait for theirs.
   */
  #pair(batch: readonly Entry[], length: number, nowNs: number): void {
    const cluster = this.#o.cluster;
    if (cluster === null) return;
    for (let i = 0; i < length; i++) {
      const entry = batch[i]!;
      const r = entry.record;
      // Only a Service's endpoint can be the backend of a ClusterIP connection.
      if (r.direction !== "INBOUND" || cluster.serviceAtEndpoint(r.dstAddr, r.dstPort) === undefined) continue;
      const key = `${r.srcAddr}|${r.srcPort}`;
      const backend = { addr: r.dstAddr, port: r.dstPort, atNs: entry.reportNs };
      this.#inbound.delete(key);
      this.#inbound.set(key, backend);
      const waiting = this.#pairWaiters.get(key);
      if (waiting !== undefined) {
        for (const w of waiting) w.backend = backend;
        this.#pairWaiters.delete(key);
      }
    }
    for (let i = 0; i < length; i++) {
      const entry = batch[i]!;
      const r = entry.record;
      if (r.direction !== "OUTBOUND") continue;
      const ref = cluster.serviceAtClusterIp(r.dstAddr, r.dstPort);
      if (ref === undefined) continue;
      entry.backend = this.#translated(entry);
      if (entry.backend !== null) {
        entry.translated = true;
        continue;
      }
      const key = `${r.srcAddr}|${r.srcPort}`;
      const known = this.#inbound.get(key);
      if (known !== undefined) {
        entry.backend = known;
        continue;
      }
      if (this.#o.pairHoldNs <= 0 || entry.reportNs + this.#o.pairHoldNs <= nowNs || !this.#mayBeLocal(ref)) continue;
      entry.pairKey = key;
      entry.hold = true;
      entry.deadlineNs = Math.max(entry.deadlineNs, entry.reportNs + this.#o.pairHoldNs);
      const list = this.#pairWaiters.get(key);
      if (list === undefined) this.#pairWaiters.set(key, [entry]);
      else list.push(entry);
    }
  }

  /**
   * The backend conntrack recorded for this OUTBOUND line's connection: an entry confirmed between
   * the connection's start and this report (an older one is an earlier connection's of the same
   * addresses and ports, a newer one a later connection's). A connection whose start is unknown
   * began before the probe, so before the hook: its own translation was never seen.
   */
  #translated(entry: Entry): { addr: string; port: number } | null {
    const r = entry.record;
    if (this.nat === null || r.startTime === null) return null;
    const found = this.nat.lookup(r.family, r.srcAddr, r.srcPort, r.dstAddr, r.dstPort);
    if (found === undefined || found.insertedNs > entry.reportNs) return null;
    if (found.insertedNs < entry.reportNs - nsBetween(r.startTime, r.reportTime)) return null;
    return { addr: found.addr, port: found.port };
  }

  /** Could a backend of this Service be a pod on this node (so its INBOUND line will come)? */
  #mayBeLocal(ref: ServiceRef): boolean {
    const { source } = this.#o;
    // Without a kubelet list (none, or not yet) there is no telling: wait.
    if (!Number.isFinite(source.completedStartNs)) return true;
    const cluster = this.#o.cluster!;
    const cached = this.#localBackends.get(ref);
    if (cached !== undefined && cached.listNs === source.completedStartNs && cached.version === cluster.endpointsVersion) return cached.local;
    let local = false;
    for (const ip of cluster.endpointAddresses(ref)) {
      if (source.lookup(ip) !== undefined) {
        local = true;
        break;
      }
    }
    this.#localBackends.set(ref, { listNs: source.completedStartNs, version: cluster.endpointsVersion, local });
    return local;
  }

  #forgetInbound(nowNs: number): void {
    for (const [key, value] of this.#inbound) {
      if (value.atNs + INBOUND_MEMORY_NS > nowNs) break;
      this.#inbound.delete(key);
    }
  }

  /**
   * Writes or holds the records accepted since the last call. Two passes, so that a line whose
   * remote end is a new pod waits even when that pod's own line comes later in the same batch.
   */
  endBatch(nowNs: number): void {
    const batch = this.#batch;
    const length = this.#batchLength;
    if (length === 0) return;
    this.#batchLength = 0;
    const { source, holdNs } = this.#o;
    this.#pair(batch, length, nowNs);
    // While the kubelet fails, no line waits for it (pairs still do).
    const answering = source.answering;
    for (let i = 0; i < length; i++) {
      if (!answering) break;
      const entry = batch[i]!;
      const r = entry.record;
      const outbound = r.direction === "OUTBOUND";
      const local = outbound ? r.srcAddr : r.dstAddr;
      const pod = this.#lookup(local, outbound ? entry.srcV4 : entry.dstV4);
      entry.localPod = pod ?? null; // #write's, if the line is written in this batch
      if (pod !== undefined || source.isNodeAddress(local) || source.completedStartNs >= entry.reportNs) continue;
      source.requestRefresh(entry.reportNs);
      if (holdNs > 0 && entry.reportNs + holdNs > nowNs) {
        entry.hold = true;
        entry.kubeWait = true;
        entry.deadlineNs = Math.max(entry.deadlineNs, entry.reportNs + holdNs);
        entry.awaits = local;
        this.#awaited.set(local, (this.#awaited.get(local) ?? 0) + 1);
      }
    }
    for (let i = 0; i < length; i++) {
      const entry = batch[i]!;
      if (!entry.kubeWait && answering) {
        const r = entry.record;
        const remote = r.direction === "OUTBOUND" ? r.dstAddr : r.srcAddr;
        const rides =
          this.#awaited.size > 0 &&
          this.#awaited.has(remote) &&
          source.completedStartNs < entry.reportNs &&
          entry.reportNs + holdNs > nowNs &&
          !this.#known(remote);
        if (rides) {
          source.requestRefresh(entry.reportNs);
          entry.hold = true;
          entry.kubeWait = true;
          entry.deadlineNs = Math.max(entry.deadlineNs, entry.reportNs + holdNs);
        }
      }
      if (entry.hold) {
        // It outlives the batch: its own record, and a new entry for the batch's slot.
        entry.record = copyAccessRecord(entry.record);
        batch[i] = blankEntry();
        this.#insert(entry);
      } else {
        this.#write(entry);
      }
    }
    // A pair may have completed a held line at the head.
    if (this.#o.cluster !== null) {
      this.#forgetInbound(nowNs);
      this.release(nowNs);
    }
  }

  #insert(entry: Entry): void {
    if (entry.kubeWait) this.stats.held++;
    else this.stats.heldForBackend++;
    const held = this.#held;
    let i = held.length;
    while (i > this.#head && held[i - 1]!.reportNs > entry.reportNs) i--;
    if (i === held.length) held.push(entry);
    else held.splice(i, 0, entry);
    if (this.holding > this.#o.maxHeld) this.#releaseHead(false);
  }

  /**
   * Writes the held lines that a completed refresh answers (or a failed one: see `answering`) or
   * whose deadline has passed.
   */
  release(nowNs: number): void {
    const { source } = this.#o;
    while (this.#head < this.#held.length) {
      const head = this.#held[this.#head]!;
      const kubeDone = !head.kubeWait || source.completedStartNs >= head.reportNs || !source.answering;
      const pairDone = head.pairKey === null || head.backend !== null;
      if (kubeDone && pairDone) this.#releaseHead(true);
      else if (head.deadlineNs <= nowNs) this.#releaseHead(false);
      else break;
    }
  }

  #releaseHead(byRefresh: boolean): void {
    const entry = this.#held[this.#head]!;
    this.#held[this.#head] = undefined as unknown as Entry;
    this.#head++;
    if (this.#head === this.#held.length) {
      this.#held = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#held.length) {
      this.#held = this.#held.slice(this.#head);
      this.#head = 0;
    }
    if (entry.awaits !== null) {
      const n = this.#awaited.get(entry.awaits)! - 1;
      if (n > 0) this.#awaited.set(entry.awaits, n);
      else this.#awaited.delete(entry.awaits);
    }
    if (entry.pairKey !== null && entry.backend === null) {
      const waiting = this.#pairWaiters.get(entry.pairKey);
      const i = waiting?.indexOf(entry) ?? -1;
      if (i >= 0) waiting!.splice(i, 1);
      if (waiting?.length === 0) this.#pairWaiters.delete(entry.pairKey);
    }
    if (byRefresh) this.stats.releasedByRefresh++;
    else this.stats.releasedAtDeadline++;
    this.#write(entry);
  }

  #write(entry: Entry): void {
    const r = entry.record;
    const outbound = r.direction === "OUTBOUND";
    // The local end's pod as endBatch found it, for a line written in its batch (the index is the
    // same); a held line looks again.
    const local = entry.hold ? undefined : entry.localPod;
    const src = outbound && local !== undefined ? (local ?? undefined) : this.#lookup(r.srcAddr, entry.srcV4);
    if (src !== undefined) {
      r.srcWorkload = src.name;
      r.srcNamespace = src.namespace;
      r.srcPod = src;
    }
    const cluster = this.#o.cluster;
    let service: ServiceRef | undefined;
    if (cluster !== null) {
      service = r.direction === "OUTBOUND" ? cluster.serviceAtClusterIp(r.dstAddr, r.dstPort) : undefined;
      if (service !== undefined) {
        // A ClusterIP is nobody's address: the backend, when learned, is the destination.
        if (entry.backend !== null) {
          r.dstAddr = entry.backend.addr;
          r.dstPort = entry.backend.port;
          entry.dstV4 = -1; // the ClusterIP's
          this.stats.backendsLearned++;
          if (entry.translated) this.stats.backendsFromConntrack++;
        }
      } else {
        service = cluster.serviceAtEndpoint(r.dstAddr, r.dstPort);
      }
    }
    const clusterIpUnresolved = service !== undefined && entry.backend === null && r.direction === "OUTBOUND" && cluster!.serviceAtClusterIp(r.dstAddr, r.dstPort) === service;
    const dst = clusterIpUnresolved ? undefined : !outbound && local !== undefined ? (local ?? undefined) : this.#lookup(r.dstAddr, entry.dstV4);
    if (dst !== undefined) {
      r.dstWorkload = dst.name;
      r.dstNamespace = dst.namespace;
      r.dstPod = dst;
    }
    if (service !== undefined) {
      r.dstService = service.host;
      r.dstNamespace = service.namespace;
    }
    this.#o.emit(r, src, dst, service);
  }
}
