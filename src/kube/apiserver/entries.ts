// What naming needs of each object, and nothing else: the entries the cluster index keeps and the
// feed (../feed/) sends. An API-server object becomes its entry here, once, whichever path it came
// by (a watch of the API server, or the feed), so both paths name alike. The rules:
// docs/kubernetes.md, "Services" (claims: ../pod.ts).
import { claim, NEVER, type Pod, type PodInfo, podInfo, podIps } from "../pod.ts";
import { type EndpointSlice, SERVICE_NAME_LABEL, type Service } from "./objects.ts";

/** The objects naming reads from the API server, by the name of their list. */
export const RESOURCE_KINDS = ["services", "endpointslices", "pods"] as const;
export type ResourceKind = (typeof RESOURCE_KINDS)[number];

/** What an index (or the feed's store) holds. */
export interface Counts {
  services: number;
  endpointSlices: number;
  pods: number;
  podIps: number;
}

/** `3 services, 4 endpoint slices, 5 pods (6 pod IPs)`. */
export const describeCounts = (c: Counts) => `${c.services} services, ${c.endpointSlices} endpoint slices, ${c.pods} pods (${c.podIps} pod IPs)`;

/** A port number that stands for every port (an EndpointSlice port without a number). */
export const ANY_PORT = -1;

const isTcp = (protocol: string | null | undefined) => protocol == null || protocol === "TCP";

/** A Service: its ClusterIPs and TCP ports. */
export interface ServiceEntry {
  ips: string[];
  ports: number[];
}

/** An EndpointSlice: its Service's name ("" for none), endpoint addresses and TCP ports (ANY_PORT: every port). */
export interface SliceEntry {
  service: string;
  ips: string[];
  ports: number[];
}

/** What the TCP metrics' labels say of a pod beyond its name and namespace (../pod.ts podInfo()). */
export type PodLabels = Omit<PodInfo, "name" | "namespace">;

/** A pod: the IPs it claims and how strongly (../pod.ts claim(); NEVER: none), and its labels. */
export interface PodEntry {
  ips: string[];
  claim: number;
  labels: PodLabels;
}

/** What the index and the feed's store keep of one object, whatever its kind. */
export type Entry = ServiceEntry | SliceEntry | PodEntry;

/** What every object's key is made of. */
export type Metadata = { name: string; namespace?: string | null };

/** `namespace/name`: the key of every object. */
export const objectKey = (metadata: Metadata) => `${metadata.namespace ?? ""}/${metadata.name}`;

/** A key's namespace and name. */
export function splitKey(key: string): { namespace: string; name: string } {
  const slash = key.indexOf("/");
  return { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

export function serviceEntry(service: Service): ServiceEntry {
  const spec = service.spec;
  const ips = [...new Set([...(spec?.clusterIPs ?? []), spec?.clusterIP ?? null])].filter((ip): ip is string => ip !== null);
  const ports = [...new Set((spec?.ports ?? []).filter((p) => isTcp(p.protocol)).map((p) => p.port))];
  return { ips, ports };
}

export function sliceEntry(slice: EndpointSlice): SliceEntry {
  const service = slice.metadata.labels?.[SERVICE_NAME_LABEL] ?? "";
  const ports = [...new Set((slice.ports ?? []).filter((p) => isTcp(p.protocol)).map((p) => p.port ?? ANY_PORT))];
  const ips: string[] = [];
  for (const endpoint of slice.endpoints ?? []) {
    for (const ip of endpoint.addresses ?? []) if (ip !== null && !ips.includes(ip)) ips.push(ip);
  }
  return { service, ips, ports };
}

export function podEntry(pod: Pod): PodEntry {
  const strength = pod.spec?.hostNetwork === true ? NEVER : claim(pod);
  const { name: _name, namespace: _namespace, ...labels } = podInfo(pod);
  return { ips: strength === NEVER ? [] : podIps(pod), claim: strength, labels };
}
