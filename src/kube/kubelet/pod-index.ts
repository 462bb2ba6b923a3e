// IP → pod, built from scratch from one complete pod list and swapped in whole. Which pod an
// address belongs to: docs/kubernetes.md, "Which pod an address belongs to" (claims: ../pod.ts).
import { isLoopbackOrUnspecified } from "../../address.ts";
import { claim, containerStatuses, NEVER, type Pod, type PodInfo, podInfo, podIps, runtimeContainerId } from "../pod.ts";

/** Each checked pod's PodInfo, made once: a pod unchanged since the last list is the same Pod (pod-list-reader.ts). */
const infoCache = new WeakMap<Pod, PodInfo>();

function infoOf(pod: Pod): PodInfo {
  let info = infoCache.get(pod);
  if (info === undefined) infoCache.set(pod, (info = podInfo(pod)));
  return info;
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

  private constructor(pods: readonly Pod[]) {
    this.podCount = pods.length;
    const claims = new Map<string, number>();
    for (const pod of pods) {
      this.#podKeys.add(`${pod.metadata.namespace ?? ""}/${pod.metadata.name}`);
      for (const status of containerStatuses(pod)) {
        const id = runtimeContainerId(status.containerID);
        if (id !== null) this.#containerNames.set(id, status.name);
      }
      for (const entry of pod.status?.hostIPs ?? []) if (entry.ip) this.#nodeAddresses.add(entry.ip);
      if (pod.status?.hostIP) this.#nodeAddresses.add(pod.status.hostIP);

      const ips = podIps(pod);
      if (pod.spec?.hostNetwork === true) {
        for (const ip of ips) this.#nodeAddresses.add(ip);
        continue;
      }
      const strength = claim(pod);
      if (strength === NEVER) continue;
      for (const ip of ips) {
        if ((claims.get(ip) ?? NEVER) >= strength) continue;
        claims.set(ip, strength);
        this.#byIp.set(ip, infoOf(pod));
      }
    }
    // An address that is the node's own (a hostNetwork pod's) is never a pod IP.
    for (const ip of this.#nodeAddresses) this.#byIp.delete(ip);
  }

  static fromPods(pods: readonly Pod[]): PodIndex {
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
