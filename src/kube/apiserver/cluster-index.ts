// What the API server says about the whole cluster, kept up to date one watch event at a time:
//   ClusterIP:port → Service            (an OUTBOUND connection addressed to a Service)
//   endpoint IP:port → Service          (a connection addressed to a pod that backs a Service:
//                                        exactly the address and port an EndpointSlice lists)
//   pod IP → pod                        (names for remote ends)
// Only what a lookup needs is kept (a few short strings per object, never the objects), so memory
// follows the cluster's size: see scripts/bench/api-memory.ts.
//
// Rules: TCP ports only (a port without a protocol is TCP); `None` and missing ClusterIPs are not
// indexed (headless, ExternalName); an EndpointSlice port without a number stands for every port
// of its addresses; when several Services claim one endpoint IP:port, or one ClusterIP:port, the
// one seen first keeps it (a second keeps it once the first is gone). Pods follow the kubelet's
// index (../kubelet/pod-index.ts): hostNetwork pods are not indexed; among pods claiming one IP
// the strongest claim wins (../pod.ts), the one seen first on a tie.
import { DEFAULT_CLUSTER_DOMAIN } from "../../options.ts";
import { claim, NEVER, type Pod, type PodInfo, podInfo, podIps } from "../pod.ts";
import { type EndpointSlice, SERVICE_NAME_LABEL, type Service } from "./objects.ts";

export interface ServiceRef {
  name: string;
  namespace: string;
  /** `<name>.<namespace>.svc.<cluster domain>` */
  host: string;
}

/** A port number that stands for every port (an EndpointSlice port without a number). */
const ANY_PORT = -1;

const isTcp = (protocol: string | null | undefined) => protocol == null || protocol === "TCP";

/** ip → port → claimants, first claimant wins. */
class AddressMap<T> {
  readonly #map = new Map<string, Map<number, T[]>>();

  add(ip: string, port: number, value: T): void {
    let ports = this.#map.get(ip);
    if (ports === undefined) this.#map.set(ip, (ports = new Map()));
    const list = ports.get(port);
    if (list === undefined) ports.set(port, [value]);
    else list.push(value);
  }

  remove(ip: string, port: number, value: T): void {
    const ports = this.#map.get(ip);
    const list = ports?.get(port);
    if (ports === undefined || list === undefined) return;
    const i = list.indexOf(value);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) ports.delete(port);
    if (ports.size === 0) this.#map.delete(ip);
  }

  get(ip: string, port: number): T | undefined {
    const ports = this.#map.get(ip);
    if (ports === undefined) return undefined;
    return (ports.get(port) ?? ports.get(ANY_PORT))?.[0];
  }

  get size(): number {
    return this.#map.size;
  }
}

interface SliceEntry {
  service: string;
  ref: ServiceRef;
  /** [ip, port] pairs it contributed */
  addresses: string[];
  ports: number[];
}

interface PodClaim {
  key: string;
  strength: number;
  info: PodInfo;
}

export const objectKey = (metadata: { name: string; namespace?: string | null }) => `${metadata.namespace ?? ""}/${metadata.name}`;

export class ClusterIndex {
  readonly clusterDomain: string;
  readonly #refs = new Map<string, ServiceRef>();
  readonly #clusterIps = new AddressMap<ServiceRef>();
  /** service key → the [ip, port] pairs it contributed */
  readonly #services = new Map<string, { ref: ServiceRef; ips: string[]; ports: number[] }>();
  readonly #endpoints = new AddressMap<ServiceRef>();
  readonly #slices = new Map<string, SliceEntry>();
  /** service key → its slices' keys */
  readonly #slicesOfService = new Map<string, Set<string>>();
  readonly #podsByIp = new Map<string, PodClaim[]>();
  readonly #pods = new Map<string, { ips: string[]; claim: PodClaim }>();
  /** every pod's key, indexed or not */
  readonly #podKeys = new Set<string>();
  /** changes whenever an endpoint is added or removed (for caches of endpoint facts) */
  endpointsVersion = 0;

  constructor(clusterDomain = DEFAULT_CLUSTER_DOMAIN) {
    this.clusterDomain = clusterDomain;
  }

  /** One ServiceRef per service name (shared by its ClusterIPs and endpoints). */
  #ref(namespace: string, name: string): ServiceRef {
    const key = `${namespace}/${name}`;
    let ref = this.#refs.get(key);
    if (ref === undefined) {
      ref = { name, namespace, host: `${name}.${namespace}.svc.${this.clusterDomain}` };
      this.#refs.set(key, ref);
    }
    return ref;
  }

  #dropRefIfUnused(key: string): void {
    if (!this.#services.has(key) && !this.#slicesOfService.has(key)) this.#refs.delete(key);
  }

  // ── Services ──────────────────────────────────────────────────────────────

  setService(service: Service): void {
    const key = objectKey(service.metadata);
    this.deleteService(key);
    const namespace = service.metadata.namespace ?? "";
    const spec = service.spec;
    const ips = [...new Set([...(spec?.clusterIPs ?? []), spec?.clusterIP ?? null])].filter((ip): ip is string => ip !== null);
    const ports = (spec?.ports ?? []).filter((p) => isTcp(p.protocol)).map((p) => p.port);
    const ref = this.#ref(namespace, service.metadata.name);
    for (const ip of ips) for (const port of ports) this.#clusterIps.add(ip, port, ref);
    this.#services.set(key, { ref, ips, ports });
  }

  deleteService(key: string): void {
    const old = this.#services.get(key);
    if (old === undefined) return;
    for (const ip of old.ips) for (const port of old.ports) this.#clusterIps.remove(ip, port, old.ref);
    this.#services.delete(key);
    this.#dropRefIfUnused(key);
  }

  /** The Service whose ClusterIP:port this is. */
  serviceAtClusterIp(ip: string, port: number): ServiceRef | undefined {
    return this.#clusterIps.get(ip, port);
  }

  // ── EndpointSlices ────────────────────────────────────────────────────────

  setSlice(slice: EndpointSlice): void {
    const key = objectKey(slice.metadata);
    this.deleteSlice(key);
    this.endpointsVersion++;
    const serviceName = slice.metadata.labels?.[SERVICE_NAME_LABEL];
    if (serviceName === undefined || serviceName === "") return;
    const namespace = slice.metadata.namespace ?? "";
    const service = `${namespace}/${serviceName}`;
    const ref = this.#ref(namespace, serviceName);
    const ports = (slice.ports ?? []).filter((p) => isTcp(p.protocol)).map((p) => p.port ?? ANY_PORT);
    const addresses: string[] = [];
    for (const endpoint of slice.endpoints ?? []) {
      for (const ip of endpoint.addresses ?? []) if (ip !== null && !addresses.includes(ip)) addresses.push(ip);
    }
    for (const ip of addresses) for (const port of ports) this.#endpoints.add(ip, port, ref);
    this.#slices.set(key, { service, ref, addresses, ports });
    let slices = this.#slicesOfService.get(service);
    if (slices === undefined) this.#slicesOfService.set(service, (slices = new Set()));
    slices.add(key);
  }

  deleteSlice(key: string): void {
    const old = this.#slices.get(key);
    if (old === undefined) return;
    this.endpointsVersion++;
    for (const ip of old.addresses) for (const port of old.ports) this.#endpoints.remove(ip, port, old.ref);
    this.#slices.delete(key);
    const slices = this.#slicesOfService.get(old.service);
    slices?.delete(key);
    if (slices?.size === 0) this.#slicesOfService.delete(old.service);
    this.#dropRefIfUnused(old.service);
  }

  /** The Service whose EndpointSlices list exactly this address and port. */
  serviceAtEndpoint(ip: string, port: number): ServiceRef | undefined {
    return this.#endpoints.get(ip, port);
  }

  /** Every endpoint address of a Service (from all its slices). */
  *endpointAddresses(ref: ServiceRef): Iterable<string> {
    for (const key of this.#slicesOfService.get(`${ref.namespace}/${ref.name}`) ?? []) {
      yield* this.#slices.get(key)?.addresses ?? [];
    }
  }

  // ── Pods ──────────────────────────────────────────────────────────────────

  setPod(pod: Pod): void {
    const key = objectKey(pod.metadata);
    this.deletePod(key);
    this.#podKeys.add(key);
    if (pod.spec?.hostNetwork === true) return;
    const strength = claim(pod);
    const ips = podIps(pod);
    if (strength === NEVER || ips.length === 0) return;
    const entry: PodClaim = { key, strength, info: podInfo(pod) };
    for (const ip of ips) {
      const list = this.#podsByIp.get(ip);
      if (list === undefined) this.#podsByIp.set(ip, [entry]);
      else list.push(entry);
    }
    this.#pods.set(key, { ips, claim: entry });
  }

  deletePod(key: string): void {
    this.#podKeys.delete(key);
    const old = this.#pods.get(key);
    if (old === undefined) return;
    for (const ip of old.ips) {
      const list = this.#podsByIp.get(ip);
      if (list === undefined) continue;
      const i = list.indexOf(old.claim);
      if (i >= 0) list.splice(i, 1);
      if (list.length === 0) this.#podsByIp.delete(ip);
    }
    this.#pods.delete(key);
  }

  /** Whether the pod `namespace/name` exists, indexed or not. */
  hasPod(key: string): boolean {
    return this.#podKeys.has(key);
  }

  /** Whether the Service `namespace/name` exists. */
  hasService(key: string): boolean {
    return this.#services.has(key);
  }

  /** The pod at a canonical address: the strongest claim, the earliest on a tie. */
  lookupPod(ip: string): PodInfo | undefined {
    const list = this.#podsByIp.get(ip);
    if (list === undefined) return undefined;
    let best = list[0];
    for (const c of list) if (best === undefined || c.strength > best.strength) best = c;
    return best?.info;
  }

  // ── Whole lists ───────────────────────────────────────────────────────────

  /** Keys currently held for a kind: to drop what a new list no longer has. */
  keys(kind: "services" | "endpointslices" | "pods"): string[] {
    return [...(kind === "services" ? this.#services.keys() : kind === "endpointslices" ? this.#slices.keys() : this.#podKeys)];
  }

  delete(kind: "services" | "endpointslices" | "pods", key: string): void {
    if (kind === "services") this.deleteService(key);
    else if (kind === "endpointslices") this.deleteSlice(key);
    else this.deletePod(key);
  }

  get counts(): { services: number; endpointSlices: number; pods: number; podIps: number } {
    return { services: this.#services.size, endpointSlices: this.#slices.size, pods: this.#pods.size, podIps: this.#podsByIp.size };
  }
}
