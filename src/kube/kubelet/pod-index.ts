// IP → pod, built from scratch from one complete pod list and swapped in whole. Which pod an
// address belongs to: docs/kubernetes.md, "Which pod an address belongs to" (claims: ../pod.ts).
import { ipv4Number, isLoopbackOrUnspecified } from "../../address.ts";
import { claim, containerStatuses, NEVER, type Pod, type PodInfo, podInfo, podIps, runtimeContainerId } from "../pod.ts";

/**
 * What the index takes of a pod, made once per pod: KnownPods (pod-list-reader.ts) keeps these from
 * list to list rather than the checked Pods, which hold about twice as much.
 */
export interface IndexedPod {
  /** `namespace/name` */
  readonly key: string;
  /** its containers' runtime ids and names */
  readonly containers: readonly (readonly [id: string, name: string])[];
  /** the node's addresses it names: its host IPs, and its own when it is on the host's network */
  readonly nodeAddresses: readonly string[];
  /** the IPs it claims, how strongly, and what a line is told about it; null when it claims none */
  readonly claim: { readonly ips: readonly string[]; readonly strength: number; readonly info: PodInfo } | null;
}

export function indexedPod(pod: Pod): IndexedPod {
  const containers: [string, string][] = [];
  for (const status of containerStatuses(pod)) {
    const id = runtimeContainerId(status.containerID);
    if (id !== null) containers.push([id, status.name]);
  }
  const nodeAddresses: string[] = [];
  for (const entry of pod.status?.hostIPs ?? []) if (entry.ip) nodeAddresses.push(entry.ip);
  if (pod.status?.hostIP) nodeAddresses.push(pod.status.hostIP);
  const hostNetwork = pod.spec?.hostNetwork === true;
  if (hostNetwork) nodeAddresses.push(...podIps(pod));
  const strength = hostNetwork ? NEVER : claim(pod);
  return {
    key: `${pod.metadata.namespace ?? ""}/${pod.metadata.name}`,
    containers,
    nodeAddresses,
    claim: strength === NEVER ? null : { ips: podIps(pod), strength, info: podInfo(pod) },
  };
}

/**
 * IPv4 address (as a number) → pod, for the line path: two look-ups a line by text cost a
 * pipeline line about a sixth of its time (hashing and comparing strings whose bytes are out of
 * the processor's caches), by number next to nothing (README, "The line pipeline"). Open
 * addressing in typed arrays at most half full, made once with its index and never changed.
 */
class Ipv4Table {
  /** the addresses, as int32 */
  readonly #keys: Int32Array;
  /** 1 + the pod's place in #pods; 0: an empty slot */
  readonly #slots: Int32Array;
  readonly #pods: PodInfo[] = [];
  /** 32 - log2(slots): a slot is the top bits of a Fibonacci hash */
  readonly #shift: number;

  constructor(byIp: ReadonlyMap<string, PodInfo>) {
    const v4: [number, PodInfo][] = [];
    for (const [ip, pod] of byIp) {
      const address = ipv4Number(ip);
      if (address >= 0) v4.push([address, pod]);
    }
    let bits = 4;
    while (1 << bits < 2 * v4.length) bits++;
    this.#keys = new Int32Array(1 << bits);
    this.#slots = new Int32Array(1 << bits);
    this.#shift = 32 - bits;
    const mask = (1 << bits) - 1;
    for (const [address, pod] of v4) {
      let slot = Math.imul(address, 0x9e3779b1) >>> this.#shift;
      while (this.#slots[slot] !== 0) slot = (slot + 1) & mask;
      this.#keys[slot] = address;
      this.#pods.push(pod);
      this.#slots[slot] = this.#pods.length;
    }
  }

  get(address: number): PodInfo | undefined {
    const key = address | 0;
    const keys = this.#keys;
    const slots = this.#slots;
    const mask = slots.length - 1;
    for (let slot = Math.imul(key, 0x9e3779b1) >>> this.#shift; ; slot = (slot + 1) & mask) {
      const at = slots[slot]!;
      if (at === 0) return undefined;
      if (keys[slot] === key) return this.#pods[at - 1];
    }
  }
}

export class PodIndex {
  static readonly EMPTY = new PodIndex([]);

  readonly #byIp = new Map<string, PodInfo>();
  readonly #nodeAddresses = new Set<string>();
  /** `namespace/name` of every pod in the list, indexed or not */
  readonly #podKeys = new Set<string>();
  /** the runtime's id of a container (without `<runtime>://`) → its name in its pod */
  readonly #containerNames = new Map<string, string>();
  /** the IPv4 part of #byIp by number, for the line path (lookupV4) */
  readonly #byIpv4: Ipv4Table;
  /** pods in the list this index was built from, indexed or not */
  readonly podCount: number;

  private constructor(pods: readonly IndexedPod[]) {
    this.podCount = pods.length;
    const claims = new Map<string, number>();
    for (const pod of pods) {
      this.#podKeys.add(pod.key);
      for (const [id, name] of pod.containers) this.#containerNames.set(id, name);
      for (const ip of pod.nodeAddresses) this.#nodeAddresses.add(ip);
      if (pod.claim === null) continue;
      const { ips, strength, info } = pod.claim;
      for (const ip of ips) {
        if ((claims.get(ip) ?? NEVER) >= strength) continue;
        claims.set(ip, strength);
        this.#byIp.set(ip, info);
      }
    }
    // An address that is the node's own (a hostNetwork pod's) is never a pod IP.
    for (const ip of this.#nodeAddresses) this.#byIp.delete(ip);
    this.#byIpv4 = new Ipv4Table(this.#byIp);
  }

  /** The index of checked pods (the check command's, the tests'). */
  static fromPods(pods: readonly Pod[]): PodIndex {
    return new PodIndex(pods.map(indexedPod));
  }

  /** The index of pods already taken apart (KnownPods'). */
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

  /** lookup() of an IPv4 address given as its number (ipv4Number, the record view's srcV4 and dstV4). */
  lookupV4(address: number): PodInfo | undefined {
    return this.#byIpv4.get(address);
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
