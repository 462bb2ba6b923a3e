// What the API server says about the whole cluster, kept up to date one change at a time (from
// its watches, or from the feed: ../feed/):
//   ClusterIP:port → Service            (an OUTBOUND connection addressed to a Service)
//   endpoint IP:port → Service          (a connection addressed to a pod that backs a Service:
//                                        exactly the address and port an EndpointSlice lists)
//   pod IP → pod                        (names for remote ends)
// Only the entries naming needs are kept (entries.ts), never the objects. Pods, which are most of
// a cluster, take one small record each: the pod's name, its namespace and the metrics' labels
// interned (one string per namespace, workload, app..., however many pods share it), its claim and
// IPs; the record is what a lookup returns. Pods that claim no IP (hostNetwork, finished) keep a
// record too, unindexed, so that the TCP metrics can tell that they exist. Memory:
// scripts/bench/api-memory.ts, scripts/bench/feed.ts.
//
// Rules (the entries' are in entries.ts): when several Services claim one endpoint IP:port, or one
// ClusterIP:port, the one seen first keeps it (a second keeps it once the first is gone). Among
// pods claiming one IP the strongest claim wins (../pod.ts), the one seen first on a tie.
import { DEFAULT_CLUSTER_DOMAIN } from "../../options.ts";
import { NEVER, type PodInfo } from "../pod.ts";
import { ANY_PORT, type Counts, type Entry, type PodEntry, type ServiceEntry, type SliceEntry, splitKey, type ResourceKind } from "./entries.ts";

export interface ServiceRef {
  name: string;
  namespace: string;
  /** `<name>.<namespace>.svc.<cluster domain>` */
  host: string;
}

/**
 * ip → port → claimants, the first claimant wins. Each IP holds one flat array of (port, claimant)
 * pairs in the order they came: most IPs have one port and one claimant, and a Map per IP cost
 * several hundred bytes where this costs a few dozen (scripts/bench/feed.ts).
 */
class AddressMap<T> {
  readonly #map = new Map<string, (number | T)[]>();

  add(ip: string, port: number, value: T): void {
    const pairs = this.#map.get(ip);
    if (pairs === undefined) this.#map.set(ip, [port, value]);
    else pairs.push(port, value);
  }

  remove(ip: string, port: number, value: T): void {
    const pairs = this.#map.get(ip);
    if (pairs === undefined) return;
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i] === port && pairs[i + 1] === value) {
        pairs.splice(i, 2);
        break;
      }
    }
    if (pairs.length === 0) this.#map.delete(ip);
  }

  get(ip: string, port: number): T | undefined {
    const pairs = this.#map.get(ip);
    if (pairs === undefined) return undefined;
    let any: T | undefined;
    for (let i = 0; i < pairs.length; i += 2) {
      if (pairs[i] === port) return pairs[i + 1] as T;
      if (pairs[i] === ANY_PORT) any ??= pairs[i + 1] as T;
    }
    return any;
  }

  get size(): number {
    return this.#map.size;
  }
}

interface KeptSlice {
  /** its Service's key, `namespace/name` */
  service: string;
  ref: ServiceRef;
  entry: SliceEntry;
}

/**
 * A pod as the index keeps it: what a line is told (PodInfo: the record itself is returned by
 * lookupPod, no copy), how strongly it claims its IPs, and which. One per pod with an IP.
 */
export interface PodRecord extends PodInfo {
  readonly strength: number;
  readonly ips: readonly string[];
}

export class ClusterIndex {
  readonly clusterDomain: string;
  readonly #refs = new Map<string, ServiceRef>();
  readonly #clusterIps = new AddressMap<ServiceRef>();
  readonly #services = new Map<string, { ref: ServiceRef; entry: ServiceEntry }>();
  readonly #endpoints = new AddressMap<ServiceRef>();
  readonly #slices = new Map<string, KeptSlice>();
  /** service key → its slices (most have one) */
  readonly #slicesOfService = new Map<string, KeptSlice[]>();
  /** IP → the pod claiming it, or the pods when several do (rare: an array only then) */
  readonly #podsByIp = new Map<string, PodRecord | PodRecord[]>();
  /** namespace → name → record (every pod, indexed or not): no `namespace/name` string kept per pod */
  readonly #pods = new Map<string, Map<string, PodRecord>>();
  /** pods indexed by IP */
  #podCount = 0;
  /** one copy of each namespace's name (and of other short texts many pods share) */
  readonly #interned = new Map<string, string>();
  /** changes whenever an endpoint is added or removed (for caches of endpoint facts) */
  endpointsVersion = 0;

  constructor(clusterDomain = DEFAULT_CLUSTER_DOMAIN) {
    this.clusterDomain = clusterDomain;
  }

  #intern(text: string): string {
    const kept = this.#interned.get(text);
    if (kept !== undefined) return kept;
    this.#interned.set(text, text);
    return text;
  }

  /** One ServiceRef per service name (shared by its ClusterIPs and endpoints); `key` is `namespace/name`. */
  #ref(key: string, namespace: string, name: string): ServiceRef {
    let ref = this.#refs.get(key);
    if (ref === undefined) {
      ref = { name, namespace: this.#intern(namespace), host: `${name}.${namespace}.svc.${this.clusterDomain}` };
      this.#refs.set(key, ref);
    }
    return ref;
  }

  #dropRefIfUnused(key: string): void {
    if (!this.#services.has(key) && !this.#slicesOfService.has(key)) this.#refs.delete(key);
  }

  // ── Services ──────────────────────────────────────────────────────────────

  putService(key: string, entry: ServiceEntry): void {
    this.deleteService(key);
    const { namespace, name } = splitKey(key);
    const ref = this.#ref(key, namespace, name);
    for (const ip of entry.ips) for (const port of entry.ports) this.#clusterIps.add(ip, port, ref);
    this.#services.set(key, { ref, entry });
  }

  deleteService(key: string): void {
    const old = this.#services.get(key);
    if (old === undefined) return;
    for (const ip of old.entry.ips) for (const port of old.entry.ports) this.#clusterIps.remove(ip, port, old.ref);
    this.#services.delete(key);
    this.#dropRefIfUnused(key);
  }

  /** The Service whose ClusterIP:port this is. */
  serviceAtClusterIp(ip: string, port: number): ServiceRef | undefined {
    return this.#clusterIps.get(ip, port);
  }

  // ── EndpointSlices ────────────────────────────────────────────────────────

  putSlice(key: string, entry: SliceEntry): void {
    this.deleteSlice(key);
    this.endpointsVersion++;
    if (entry.service === "") return;
    const { namespace } = splitKey(key);
    const service = `${namespace}/${entry.service}`;
    const ref = this.#ref(service, namespace, entry.service);
    for (const ip of entry.ips) for (const port of entry.ports) this.#endpoints.add(ip, port, ref);
    const kept: KeptSlice = { service, ref, entry };
    this.#slices.set(key, kept);
    const slices = this.#slicesOfService.get(service);
    if (slices === undefined) this.#slicesOfService.set(service, [kept]);
    else slices.push(kept);
  }

  deleteSlice(key: string): void {
    const old = this.#slices.get(key);
    if (old === undefined) return;
    this.endpointsVersion++;
    for (const ip of old.entry.ips) for (const port of old.entry.ports) this.#endpoints.remove(ip, port, old.ref);
    this.#slices.delete(key);
    const slices = this.#slicesOfService.get(old.service);
    if (slices !== undefined) {
      slices.splice(slices.indexOf(old), 1);
      if (slices.length === 0) this.#slicesOfService.delete(old.service);
    }
    this.#dropRefIfUnused(old.service);
  }

  /** The Service whose EndpointSlices list exactly this address and port. */
  serviceAtEndpoint(ip: string, port: number): ServiceRef | undefined {
    return this.#endpoints.get(ip, port);
  }

  /** Every endpoint address of a Service (from all its slices). */
  *endpointAddresses(ref: ServiceRef): Iterable<string> {
    for (const slice of this.#slicesOfService.get(`${ref.namespace}/${ref.name}`) ?? []) yield* slice.entry.ips;
  }

  // ── Pods ──────────────────────────────────────────────────────────────────

  putPod(key: string, entry: PodEntry): void {
    this.deletePod(key);
    const { namespace, name } = splitKey(key);
    const ns = this.#intern(namespace);
    const l = entry.labels;
    const indexed = entry.claim !== NEVER && entry.ips.length > 0;
    const record: PodRecord = {
      name,
      namespace: ns === "" ? null : ns,
      workload: this.#intern(l.workload),
      canonicalService: this.#intern(l.canonicalService),
      canonicalRevision: this.#intern(l.canonicalRevision),
      app: this.#intern(l.app),
      version: this.#intern(l.version),
      serviceAccount: l.serviceAccount === null ? null : this.#intern(l.serviceAccount),
      strength: entry.claim,
      ips: indexed ? entry.ips : [],
    };
    for (const ip of record.ips) {
      const held = this.#podsByIp.get(ip);
      if (held === undefined) this.#podsByIp.set(ip, record);
      else if (Array.isArray(held)) held.push(record);
      else this.#podsByIp.set(ip, [held, record]);
    }
    let names = this.#pods.get(ns);
    if (names === undefined) this.#pods.set(ns, (names = new Map()));
    names.set(name, record);
    if (indexed) this.#podCount++;
  }

  deletePod(key: string): void {
    const { namespace, name } = splitKey(key);
    const names = this.#pods.get(namespace);
    const old = names?.get(name);
    if (names === undefined || old === undefined) return;
    for (const ip of old.ips) {
      const held = this.#podsByIp.get(ip);
      if (held === old) this.#podsByIp.delete(ip);
      else if (Array.isArray(held)) {
        const i = held.indexOf(old);
        if (i >= 0) held.splice(i, 1);
        if (held.length === 1) this.#podsByIp.set(ip, held[0]!);
      }
    }
    names.delete(name);
    if (names.size === 0) this.#pods.delete(namespace);
    if (old.ips.length > 0) this.#podCount--;
  }

  /** Whether the pod `namespace/name` exists, indexed or not. */
  hasPod(key: string): boolean {
    const { namespace, name } = splitKey(key);
    return this.#pods.get(namespace)?.has(name) === true;
  }

  /** Whether the Service `namespace/name` exists. */
  hasService(key: string): boolean {
    return this.#services.has(key);
  }

  /** The pod at a canonical address: the strongest claim, the earliest on a tie. */
  lookupPod(ip: string): PodRecord | undefined {
    const held = this.#podsByIp.get(ip);
    if (held === undefined || !Array.isArray(held)) return held;
    let best = held[0];
    for (const c of held) if (best === undefined || c.strength > best.strength) best = c;
    return best;
  }

  // ── Whole lists ───────────────────────────────────────────────────────────

  /** Keys currently held for a kind: to drop what a new list no longer has. */
  keys(kind: ResourceKind): string[] {
    if (kind === "services") return [...this.#services.keys()];
    if (kind === "endpointslices") return [...this.#slices.keys()];
    const keys: string[] = [];
    for (const [namespace, names] of this.#pods) for (const name of names.keys()) keys.push(`${namespace}/${name}`);
    return keys;
  }

  /** An entry of `kind` (the API-server source's, or the feed's), in place of the key's old one. */
  put(kind: ResourceKind, key: string, entry: Entry): void {
    if (kind === "services") this.putService(key, entry as ServiceEntry);
    else if (kind === "endpointslices") this.putSlice(key, entry as SliceEntry);
    else this.putPod(key, entry as PodEntry);
  }

  delete(kind: ResourceKind, key: string): void {
    if (kind === "services") this.deleteService(key);
    else if (kind === "endpointslices") this.deleteSlice(key);
    else this.deletePod(key);
  }

  get counts(): Counts {
    return { services: this.#services.size, endpointSlices: this.#slices.size, pods: this.#podCount, podIps: this.#podsByIp.size };
  }
}
