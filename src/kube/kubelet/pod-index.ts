// IP → pod, built from one complete pod list. The index is built from scratch on every refresh and
// replaces the previous one whole, so an entry never outlives the list that contained it.
//
// Building is split in two: buildIndexData (checked pods → plain arrays, what a refresh returns) and
// PodIndex.fromData (plain arrays → the Map the line path reads, built when the index is swapped).
//
// Rules (docs/kubernetes.md; claims: ../pod.ts):
// - a pod is reachable under every address in `status.podIPs` and `status.podIP` (both families);
// - hostNetwork pods are never indexed by IP: they report the node's address, shared by many;
//   their addresses and every pod's `status.hostIP(s)` are remembered as the node's own addresses;
// - among pods claiming one IP the strongest claim wins; on a tie the first one in the list keeps
//   the IP, so the result does not depend on anything but the list.
import { isLoopbackOrUnspecified } from "../../address.ts";
import { claim, containerStatuses, NEVER, type Pod, type PodInfo, podInfo, podIps, runtimeContainerId } from "../pod.ts";

/** An index as plain arrays: what a refresh returns. */
export interface PodIndexData {
  pods: PodInfo[];
  /** canonical IP texts; ips[i] belongs to pods[podOfIp[i]] */
  ips: string[];
  podOfIp: number[];
  /** canonical addresses of the node itself (hostIPs, hostNetwork pods' IPs) */
  nodeAddresses: string[];
  /** `namespace/name` of every pod in the list, indexed or not */
  podKeys: string[];
  /** pods in the list, indexed or not */
  podCount: number;
  /** containerIds[i] (the runtime's id, without `<runtime>://`) is named containerNames[i] in its pod */
  containerIds: string[];
  containerNames: string[];
}

/** Each checked pod's PodInfo, made once: a pod unchanged since the last list is the same Pod (pod-list-reader.ts). */
const infoCache = new WeakMap<Pod, PodInfo>();

function infoOf(pod: Pod): PodInfo {
  let info = infoCache.get(pod);
  if (info === undefined) infoCache.set(pod, (info = podInfo(pod)));
  return info;
}

export function buildIndexData(pods: readonly Pod[]): PodIndexData {
  const infos: PodInfo[] = [];
  const owner = new Map<string, { pod: number; claim: number }>();
  const nodeAddresses = new Set<string>();
  const podKeys: string[] = [];
  const containerIds: string[] = [];
  const containerNames: string[] = [];

  for (const pod of pods) {
    podKeys.push(`${pod.metadata.namespace ?? ""}/${pod.metadata.name}`);
    for (const status of containerStatuses(pod)) {
      const id = runtimeContainerId(status.containerID);
      if (id === null) continue;
      containerIds.push(id);
      containerNames.push(status.name);
    }
    for (const entry of pod.status?.hostIPs ?? []) if (entry.ip) nodeAddresses.add(entry.ip);
    if (pod.status?.hostIP) nodeAddresses.add(pod.status.hostIP);

    const ips = podIps(pod);
    if (pod.spec?.hostNetwork === true) {
      for (const ip of ips) nodeAddresses.add(ip);
      continue;
    }
    const strength = claim(pod);
    if (strength === NEVER || ips.length === 0) continue;

    let index = -1;
    for (const ip of ips) {
      const current = owner.get(ip);
      if (current !== undefined && current.claim >= strength) continue;
      if (index < 0) {
        index = infos.length;
        infos.push(infoOf(pod));
      }
      owner.set(ip, { pod: index, claim: strength });
    }
  }

  const ips: string[] = [];
  const podOfIp: number[] = [];
  for (const [ip, { pod }] of owner) {
    // An address that is the node's own (a hostNetwork pod's) is never a pod IP.
    if (nodeAddresses.has(ip)) continue;
    ips.push(ip);
    podOfIp.push(pod);
  }
  return { pods: infos, ips, podOfIp, nodeAddresses: [...nodeAddresses], podKeys, podCount: pods.length, containerIds, containerNames };
}

export class PodIndex {
  static readonly EMPTY = new PodIndex(new Map(), new Set(), new Set(), 0, new Map());

  readonly #byIp: ReadonlyMap<string, PodInfo>;
  readonly #nodeAddresses: ReadonlySet<string>;
  readonly #podKeys: ReadonlySet<string>;
  readonly #containerNames: ReadonlyMap<string, string>;
  /** pods in the list this index was built from */
  readonly podCount: number;

  private constructor(
    byIp: ReadonlyMap<string, PodInfo>,
    nodeAddresses: ReadonlySet<string>,
    podKeys: ReadonlySet<string>,
    podCount: number,
    containerNames: ReadonlyMap<string, string>,
  ) {
    this.#byIp = byIp;
    this.#nodeAddresses = nodeAddresses;
    this.#podKeys = podKeys;
    this.podCount = podCount;
    this.#containerNames = containerNames;
  }

  /** The name in its pod of the container with this runtime id (kernel/cgroups.ts), when the list has it. */
  containerName(id: string): string | undefined {
    return this.#containerNames.get(id);
  }

  /** Whether the list held the pod `namespace/name`. */
  hasPod(key: string): boolean {
    return this.#podKeys.has(key);
  }

  static fromData(data: PodIndexData): PodIndex {
    const byIp = new Map<string, PodInfo>();
    for (let i = 0; i < data.ips.length; i++) {
      const pod = data.pods[data.podOfIp[i]!];
      if (pod !== undefined) byIp.set(data.ips[i]!, pod);
    }
    const containerNames = new Map<string, string>();
    for (let i = 0; i < data.containerIds.length; i++) containerNames.set(data.containerIds[i]!, data.containerNames[i]!);
    return new PodIndex(byIp, new Set(data.nodeAddresses), new Set(data.podKeys), data.podCount, containerNames);
  }

  static fromPods(pods: readonly Pod[]): PodIndex {
    return PodIndex.fromData(buildIndexData(pods));
  }

  /** The pod at a canonical address (as the record decoder writes it). */
  lookup(ip: string): PodInfo | undefined {
    return this.#byIp.get(ip);
  }

  /**
   * True for addresses that belong to the node rather than to a pod: loopback, unspecified, the
   * node's host IPs and hostNetwork pods' IPs as the last list gave them.
   */
  isNodeAddress(ip: string): boolean {
    return isLoopbackOrUnspecified(ip) || this.#nodeAddresses.has(ip);
  }

  /** Pod IPs indexed. */
  get size(): number {
    return this.#byIp.size;
  }
}
