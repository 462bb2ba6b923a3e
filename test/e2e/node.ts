/**
 * A disposable test "node": a private network namespace holding a bridge, and one namespace per
 * "pod" joined to it by a veth pair. Nothing is created in the root namespace and no pod has a
 * route out, so a test's traffic never leaves its namespaces.
 *
 *   await using node = await createTestNode({ pods: ["client", "server"] });
 *   const proc = node.pod("client").exec(["bun", "peer.ts", ...]);
 *
 * A pod can instead stand for a pod on another node (`{ name, remote: true }`): it hangs off a
 * second bridge `br1` of the node namespace, on subnets of its own, and the node routes between
 * the two bridges (its addresses `.1`/`::1` on each are the pods' default routes). Only a node with
 * such a pod routes; the others stay as they were, bridges without a route out.
 *
 * Names carry the creating process id and a random suffix (`ke2e-<pid>-<rand>-<pod>`), so parallel
 * runs never clash, and namespaces left behind by a run that died are swept by the next one.
 * Disposal kills every process started in the namespaces, then deletes them (the veths go with
 * them); it runs even when the test fails, and a process-exit hook covers a test runner that dies.
 */
import { atRunEnd } from "../support/cleanup.ts";
import type { Subprocess, SpawnOptions } from "bun";

export const NETNS_PREFIX = "ke2e-";

export interface PodSpec {
  /** lower-case letters, digits and '-', at most 12 characters */
  name: string;
  /** behind the second bridge, br1: a pod of another node, reached through this node's routing */
  remote?: boolean;
}

export interface CommandResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

type Stdio = "pipe" | "inherit" | "ignore";
export interface ExecOptions {
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
  env?: Record<string, string | undefined>;
}

export type PodProcess = Subprocess<"pipe" | "ignore" | "inherit", "pipe", "pipe">;

/** Runs a command to completion; throws with its stderr if it fails (unless `allowFailure`). */
export function run(argv: string[], allowFailure = false): CommandResult {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  const result = { exitCode: r.exitCode ?? -1, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
  if (result.exitCode !== 0 && !allowFailure) {
    throw new Error(`\`${argv.join(" ")}\` failed (exit ${result.exitCode}): ${result.stderr.trim()}`);
  }
  return result;
}

function randomHex(bytes: number): string {
  return Buffer.from(crypto.getRandomValues(new Uint8Array(bytes))).toString("hex");
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

export function listNamespaces(): string[] {
  // `ip netns list` prints "name" or "name (id: N)".
  return run(["ip", "netns", "list"], true)
    .stdout.split("\n")
    .map((line) => line.split(" ")[0]!)
    .filter(Boolean);
}

/** Kills every process inside a namespace (including ones we did not start ourselves). */
function killNamespacePids(netns: string): void {
  const pids = run(["ip", "netns", "pids", netns], true).stdout.split(/\s+/).filter(Boolean);
  for (const pid of pids) {
    try {
      process.kill(Number(pid), "SIGKILL");
    } catch {
      // already gone
    }
  }
}

function deleteNamespace(netns: string): void {
  killNamespacePids(netns);
  const r = run(["ip", "netns", "del", netns], true);
  if (r.exitCode !== 0 && listNamespaces().includes(netns)) {
    throw new Error(`could not delete netns ${netns}: ${r.stderr.trim()}`);
  }
}

/** Deletes namespaces of earlier runs whose process is gone (a killed runner cannot clean up). */
export function sweepStaleNamespaces(): string[] {
  const swept: string[] = [];
  for (const name of listNamespaces()) {
    const m = new RegExp(`^${NETNS_PREFIX}(\\d+)-`).exec(name);
    if (m && Number(m[1]) !== process.pid && !isAlive(Number(m[1]))) {
      try {
        deleteNamespace(name);
        swept.push(name);
      } catch {
        // another sweeper got there first
      }
    }
  }
  return swept;
}

/** An iptables rule in a namespace: the default (nft) backend, else the legacy one. */
function iptablesIn(netns: string, args: string[], family: 4 | 6): void {
  const tool = family === 4 ? "iptables" : "ip6tables";
  const inNs = (command: string) => run(["ip", "netns", "exec", netns, command, ...args], true);
  const first = inNs(tool);
  if (first.exitCode === 0) return;
  const legacy = inNs(`${tool}-legacy`);
  if (legacy.exitCode !== 0) {
    throw new Error(`${tool} ${args.join(" ")} failed in ${netns}: ${first.stderr.trim()}; legacy: ${legacy.stderr.trim()}`);
  }
}

export class Pod {
  readonly #node: TestNode;
  constructor(
    node: TestNode,
    readonly name: string,
    /** the pod's network namespace */
    readonly netns: string,
    readonly ip4: string,
    readonly ip6: string,
  ) {
    this.#node = node;
  }

  /** The pod's address for the given family (4 or 6). */
  ip(family: 4 | 6): string {
    return family === 4 ? this.ip4 : this.ip6;
  }

  /**
   * Spawns `argv` inside the pod's namespace (`ip netns exec`, which execs the command, so the
   * process id is the command's). The node kills it at dispose if it is still running.
   */
  exec(argv: string[], opts: ExecOptions = {}): PodProcess {
    return this.#node.track(
      Bun.spawn(["ip", "netns", "exec", this.netns, ...argv], {
        stdin: opts.stdin ?? "ignore",
        stdout: "pipe",
        stderr: "pipe",
        env: { ...process.env, ...opts.env },
      } as SpawnOptions.OptionsObject<"ignore", "pipe", "pipe">) as PodProcess,
    );
  }

  /** Runs a short command in the pod to completion; throws if it fails. */
  run(argv: string[], allowFailure = false): CommandResult {
    return run(["ip", "netns", "exec", this.netns, ...argv], allowFailure);
  }

  /**
   * Adds an iptables rule in the pod (`iptables` or `ip6tables`, args as after the command name).
   * Uses the default (nft) backend and falls back to the legacy one if that fails.
   */
  iptables(args: string[], family: 4 | 6 = 4): void {
    iptablesIn(this.netns, args, family);
  }

  /** Drops a random fraction of the packets this pod receives (both families unless told). */
  addRandomInputDrop(probability: number, families: (4 | 6)[] = [4, 6]): void {
    for (const family of families) {
      this.iptables(
        ["-A", "INPUT", "-m", "statistic", "--mode", "random", "--probability", String(probability), "-j", "DROP"],
        family,
      );
    }
  }

  /** The pod's kernel TCP counters (`nstat -az`), e.g. TcpOutRsts, TcpRetransSegs. */
  tcpCounters(): Record<string, number> {
    const out = this.run(["nstat", "-az", "--json"]).stdout;
    const parsed = JSON.parse(out) as Record<string, Record<string, number>>;
    return Object.assign({}, ...Object.values(parsed));
  }
}

export interface TestNodeOptions {
  pods: (string | PodSpec)[];
}

const liveNodes = new Set<TestNode>();
let exitHookInstalled = false;

export class TestNode implements AsyncDisposable {
  /** `ke2e-<pid>-<rand>`: prefix of every namespace of this node */
  readonly id: string;
  /** the node's own namespace, holding the bridge `br0` (and `br1` for remote pods) */
  readonly netns: string;
  readonly subnet4: string;
  readonly subnet6: string;
  /** the subnets behind br1 (remote pods) */
  readonly remoteSubnet4: string;
  readonly remoteSubnet6: string;
  readonly pods: Pod[] = [];
  readonly #processes = new Set<Subprocess>();
  #disposed = false;

  constructor() {
    const rand = randomHex(3);
    this.id = `${NETNS_PREFIX}${process.pid}-${rand}`;
    this.netns = `${this.id}-node`;
    const octet = 1 + (crypto.getRandomValues(new Uint8Array(1))[0]! % 254);
    this.subnet4 = `10.244.${octet}`;
    // RFC 5952 text (no leading zeros, never a zero group) so it compares equal to the agent's.
    const group = 1 + (new Uint16Array(crypto.getRandomValues(new Uint8Array(2)).buffer)[0]! % 0xffff);
    this.subnet6 = `fd00:${group.toString(16)}:`;
    this.remoteSubnet4 = `10.245.${octet}`;
    this.remoteSubnet6 = `fd01:${group.toString(16)}:`;
  }

  /** The node's own address on the bridge of local (br0) or remote (br1) pods, once it routes. */
  gateway(family: 4 | 6, remote = false): string {
    const [v4, v6] = remote ? [this.remoteSubnet4, this.remoteSubnet6] : [this.subnet4, this.subnet6];
    return family === 4 ? `${v4}.1` : `${v6}:1`;
  }

  /** Adds an iptables rule in the node's namespace (the nft backend, else the legacy one). */
  iptables(args: string[], family: 4 | 6 = 4): void {
    iptablesIn(this.netns, args, family);
  }

  /** The pod called `name`; throws if there is none. */
  pod(name: string): Pod {
    const pod = this.pods.find((p) => p.name === name);
    if (!pod) throw new Error(`no pod ${name} on ${this.id}`);
    return pod;
  }

  /** Every namespace this node created (pods first, the node last). */
  namespaces(): string[] {
    return [...this.pods.map((p) => p.netns), this.netns];
  }

  /** Registers a process for cleanup at dispose. */
  track<T extends Subprocess>(proc: T): T {
    this.#processes.add(proc);
    void proc.exited.then(() => this.#processes.delete(proc));
    return proc;
  }

  /** Builds the namespaces; called once by createTestNode. */
  setUp(specs: PodSpec[]): void {
    liveNodes.add(this);
    run(["ip", "netns", "add", this.netns]);
    const inNode = (...args: string[]) => run(["ip", "-n", this.netns, ...args]);
    inNode("link", "set", "lo", "up");
    inNode("link", "add", "br0", "type", "bridge", "stp_state", "0", "mcast_snooping", "0");
    inNode("link", "set", "br0", "up");
    const routed = specs.some((spec) => spec.remote);
    if (routed) {
      inNode("link", "add", "br1", "type", "bridge", "stp_state", "0", "mcast_snooping", "0");
      inNode("link", "set", "br1", "up");
      for (const [bridge, remote] of [["br0", false], ["br1", true]] as const) {
        inNode("addr", "add", `${this.gateway(4, remote)}/24`, "dev", bridge);
        inNode("-6", "addr", "add", `${this.gateway(6, remote)}/64`, "dev", bridge, "nodad");
      }
      run(["ip", "netns", "exec", this.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    }
    specs.forEach((spec, i) => {
      if (!/^[a-z0-9-]{1,12}$/.test(spec.name)) throw new Error(`bad pod name ${JSON.stringify(spec.name)}`);
      if (this.pods.some((p) => p.name === spec.name)) throw new Error(`duplicate pod name ${spec.name}`);
      const netns = `${this.id}-${spec.name}`;
      const [v4, v6] = spec.remote ? [this.remoteSubnet4, this.remoteSubnet6] : [this.subnet4, this.subnet6];
      const pod = new Pod(this, spec.name, netns, `${v4}.${i + 2}`, `${v6}:${(i + 2).toString(16)}`);
      run(["ip", "netns", "add", netns]);
      this.pods.push(pod);
      const inPod = (...args: string[]) => run(["ip", "-n", netns, ...args]);
      const hostSide = `veth${i}`;
      // Both ends are born inside their namespaces: nothing ever exists in the root one.
      inNode("link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", netns);
      inNode("link", "set", hostSide, "master", spec.remote ? "br1" : "br0", "up");
      inPod("link", "set", "lo", "up");
      inPod("addr", "add", `${pod.ip4}/24`, "dev", "eth0");
      inPod("-6", "addr", "add", `${pod.ip6}/64`, "dev", "eth0", "nodad");
      inPod("link", "set", "eth0", "up");
      if (routed) {
        inPod("route", "add", "default", "via", this.gateway(4, spec.remote));
        inPod("-6", "route", "add", "default", "via", this.gateway(6, spec.remote));
      }
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.#disposed) return;
    this.#disposed = true;
    const errors: unknown[] = [];
    for (const proc of this.#processes) {
      try {
        proc.kill("SIGKILL");
      } catch (e) {
        errors.push(e);
      }
    }
    await Promise.all([...this.#processes].map((p) => p.exited.catch(() => undefined)));
    this.#processes.clear();
    this.destroyNamespaces(errors);
    liveNodes.delete(this);
    if (errors.length > 0) throw new AggregateError(errors, `cleanup of ${this.id} failed`);
  }

  /** Synchronous part of cleanup, also used by the process-exit hook. */
  destroyNamespaces(errors: unknown[] = []): void {
    // Also anything named after this node that setUp created before it failed.
    const ours = listNamespaces().filter((n) => n.startsWith(`${this.id}-`));
    for (const netns of ours) {
      try {
        deleteNamespace(netns);
      } catch (e) {
        errors.push(e);
      }
    }
  }
}

/**
 * Creates a node with the given pods: each pod gets eth0 with 10.244.<n>.<i+2>/24 and
 * fd00:<x>::<i+2>/64 (no DAD), and lo up. If building fails halfway, what was built is removed.
 */
export async function createTestNode(options: TestNodeOptions): Promise<TestNode> {
  sweepStaleNamespaces();
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    atRunEnd(() => {
      for (const node of liveNodes) node.destroyNamespaces();
    });
  }
  const node = new TestNode();
  try {
    node.setUp(options.pods.map((p) => (typeof p === "string" ? { name: p } : p)));
  } catch (e) {
    await node[Symbol.asyncDispose]().catch(() => undefined);
    throw e;
  }
  return node;
}
