// IP → pod, built from one complete pod list. The index is built from scratch on every refresh and
// replaces the previous one whole, so an entry never outlives the list that contained it.
//
// Rules (docs/kubernetes.md; claims: ../pod.ts):
// - a pod is reachable under every address in `status.podIPs` and `status.podIP` (both families);
// - hostNetwork pods are never indexed by IP: they report the node's address, shared by many;
//   their addresses and every pod's `status.hostIP(s)` are remembered as the node's own addresses;
// - among pods claiming one IP the strongest claim wins; on a tie the first one in the list keeps
//   the IP, so the result does not depend on anything but the list.
import { isLoopbackOrUnspecified } from "../../address.ts";
import { claim, containerStatuses, NEVER, type Pod, type PodInfo, podInfo, podIps, runtimeContainerId } from "../pod.ts";

/**
 * What the index takes from one pod, and no more: a pod unchanged since the last list keeps this
 * (pod-list-reader.ts, KnownPods) instead of the whole checked pod.
 */
export interface IndexedPod {
  /** `namespace/name` */
  readonly key: string;
  /** runtime container id, name, id, name, ... */
  readonly containers: readonly string[];
  /** status.hostIP(s) */
  readonly hostIps: readonly string[];
  readonly ips: readonly string[];
  readonly hostNetwork: boolean;
  readonly claim: number;
  readonly info: PodInfo;
}

export function indexedPod(pod: Pod): IndexedPod {
  const containers: string[] = [];
  for (const status of containerStatuses(pod)) {
    const id = runtimeContainerId(status.containerID);
    if (id !== null) containers.push(id, status.name);
  }
  const hostIps: string[] = [];
  for (const entry of pod.status?.hostIPs ?? []) if (entry.ip) hostIps.push(entry.ip);
  if (pod.status?.hostIP) hostIps.push(pod.status.hostIP);
  return {
    key: `${pod.metadata.namespace ?? ""}/${pod.metadata.name}`,
    containers,
    hostIps,
    ips: podIps(pod),
    hostNetwork: pod.spec?.hostNetwork === true,
    claim: claim(pod),
    info: podInfo(pod),
  };
}

export class PodIndex {
  static readonly EMPTY = new PodIndex([]);

  readonly #byIp = new Map<string, PodInfo>();
  readonly #nodeAddresses = new Set<string>();
  /** `namespace/name` of every pod in the list, indexed or not */
  readonly #podKeys = new Set<string>();
  /** the runtime's id of a container (without `<runtime>://`) → its name in its pod */
  readonly #containerNames = new Map<string, string>();
  /** pods in the list this index was built from, indexed or not */
  readonly podCount: number;

  private constructor(pods: readonly IndexedPod[]) {
    this.podCount = pods.length;
    const claims = new Map<string, number>();
    for (const pod of pods) {
      this.#podKeys.add(pod.key);
      for (let i = 0; i < pod.containers.length; i += 2) this.#containerNames.set(pod.containers[i]!, pod.containers[i + 1]!);
      for (const ip of pod.hostIps) this.#nodeAddresses.add(ip);
      if (pod.hostNetwork) {
        for (const ip of pod.ips) this.#nodeAddresses.add(ip);
        continue;
      }
      const strength = pod.claim;
      if (strength === NEVER) continue;
      for (const ip of pod.ips) {
        if ((claims.get(ip) ?? NEVER) >= strength) continue;
        claims.set(ip, strength);
        this.#byIp.set(ip, pod.info);
      }
    }
    // An address that is the node's own (a hostNetwork pod's) is never a pod IP.
    for (const ip of this.#nodeAddresses) this.#byIp.delete(ip);
  }

  static fromPods(pods: readonly Pod[]): PodIndex {
    return new PodIndex(pods.map(indexedPod));
  }

  static fromIndexed(pods: readonly IndexedPod[]): PodIndex {
    return new PodIndex(pods);
  }

  /** The name in its pod of the container with this runtime id (kernel/cgroups.ts), when the list has it. */
  containerName(id: string): string | undefined {
    return this.#containerNames.get(id);
  }

  /** Whether the list held the pod `namespace/name`. */
  hasPod(key: string): boolean {
    return this.#podKeys.has(key);
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
