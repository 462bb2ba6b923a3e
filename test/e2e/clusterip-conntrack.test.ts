/**
 * The backend of a ClusterIP connection, wherever it runs, from the kernel's connection tracking
 * (bpf/conntrack.bpf.c), end to end with the compiled agent, a local kubelet and a local API server.
 *
 * The test node has a client pod on its bridge br0 (on the kubelet's list) and a "far" pod behind a
 * second bridge br1 that stands for a pod of another node: not on the kubelet's list, known to the
 * API server only. The ClusterIP is kube-proxy's: an iptables DNAT rule in the node's namespace, in
 * PREROUTING, to the far pod; the node masquerades what leaves through br1, as traffic that left a
 * node for another would look to this node's agent, so the far pod's INBOUND line (which the agent
 * sees, both pods being on this machine) shows the node's address and cannot pair with the
 * client's line: only conntrack can tell where the connection went. The rules are added after the
 * agent started: where nf_conntrack is a module, they load it, and the agent hooks it then.
 *
 * Where the kernel has kprobes (the kernels of the matrix, test/kernels/subset.ts runs this file)
 * the hook must attach and the OUTBOUND line must name the far pod. On a kernel without kprobes
 * (this project's VM) the hook is fentry, which the kernel may refuse: then `check` and the agent
 * say so, and the line keeps the ClusterIP, as the README says; both outcomes are asserted exactly.
 *
 * Needs root, iptables, openssl and dist/kmesh-accesslog (scripts/build).
 */
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AccessLogEntry, type Agent, agentUnavailableReason } from "./agent.ts";
import { freePort, metrics } from "./admin-support.ts";
import { type LocalApiServer, serviceObject, sliceObject, startApiServer } from "./api-server.ts";
import { check } from "./check-support.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { type PodIdentity, podEntry, startKubeletAgent } from "./kubelet-agent.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet(
  "ClusterIP backends from conntrack",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? kubeletUnavailableReason(),
);

const ID = {
  client: { name: "client-7d4b9c8f6d-x2x9q", namespace: "shop" },
  far: { name: "far-5f6d7c8b9a-k8s2p", namespace: "shop" },
} satisfies Record<string, PodIdentity>;

const CLUSTER_IP = "10.96.88.10";
const CLUSTER_IP6 = "fd00:96::88:10";
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const SERVICE_HOST = "web.shop.svc.cluster.local";
/** The kernel has kprobes: the agent's hook must attach (read from the machine, not the agent). */
const KPROBES = existsSync("/sys/bus/event_source/devices/kprobe");
const HOOKED = /^kmesh-accesslog: conntrack: (kprobe|fentry) on __nf_conntrack_hash_insert attached: /;
const REFUSED = /^kmesh-accesslog: conntrack: cannot hook the kernel's connection tracking \(/;

describe.skipIf(!ready)("ClusterIP backends from the kernel's connection tracking", () => {
  let node: TestNode;
  let kubelet: LocalKubelet;
  let api: LocalApiServer;
  let agent: Agent;
  let client: Pod;
  let far: Pod;
  let adminAddr: string;
  /** whether the agent hooked conntrack (it said so on stderr) */
  let hooked = false;
  /** the lines must name the backend */
  let named = true;
  /** ip6tables could add the NAT rules: the IPv6 test runs */
  let nat6 = true;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", { name: "far", remote: true }] });
    [client, far] = [node.pod("client"), node.pod("far")];
    kubelet = await startKubelet({ pods: [podEntry(client, ID.client)] });
    api = await startApiServer();
    api.put("pods", podEntry(client, ID.client));
    api.put("pods", podEntry(far, ID.far));
    const web = serviceObject("shop", "web", CLUSTER_IP, SERVICE_PORT, TARGET_PORT);
    Object.assign(web.spec as object, { clusterIPs: [CLUSTER_IP, CLUSTER_IP6], ipFamilies: ["IPv4", "IPv6"], ipFamilyPolicy: "PreferDualStack" });
    api.put("services", web);
    api.put("endpointslices", sliceObject("shop", "web", [{ ip: far.ip4, pod: ID.far.name }], TARGET_PORT));
    api.put("endpointslices", { ...sliceObject("shop", "web", [{ ip: far.ip6, pod: ID.far.name }], TARGET_PORT), addressType: "IPv6" });
    adminAddr = `127.0.0.1:${freePort()}`;
    agent = startKubeletAgent(kubelet, { args: ["--kubeconfig", api.kubeconfig, "--admin-addr", adminAddr] });
    await waitUntilCapturing(agent, client, far);
    // kube-proxy's part, after the agent started; and the masquerade towards the "other node".
    node.iptables(["-t", "nat", "-A", "PREROUTING", "-d", CLUSTER_IP, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `${far.ip4}:${TARGET_PORT}`]);
    node.iptables(["-t", "nat", "-A", "POSTROUTING", "-o", "br1", "-j", "MASQUERADE"]);
    try {
      node.iptables(["-t", "nat", "-A", "PREROUTING", "-d", CLUSTER_IP6, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `[${far.ip6}]:${TARGET_PORT}`], 6);
      node.iptables(["-t", "nat", "-A", "POSTROUTING", "-o", "br1", "-j", "MASQUERADE"], 6);
    } catch (error) {
      nat6 = false;
      console.warn(`SKIPPING the IPv6 ClusterIP: this node has no ip6tables NAT (${(error as Error).message})`);
    }
    const said = await agent.waitForStderr((line) => HOOKED.test(line) || REFUSED.test(line), 15_000).catch(() => "(nothing)");
    hooked = HOOKED.test(said);
    // With kprobes the backend must be named, whatever the agent said.
    named = KPROBES || hooked;
  }, 90_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await kubelet?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  /** client → target:SERVICE_PORT, served by the far pod on TARGET_PORT: both peers' reports and the OUTBOUND close line. */
  async function viaClusterIp(target: string, family: 4 | 6): Promise<{ line: AccessLogEntry; clientPort: number; seenFrom: string }> {
    const peer = await startServer(far, { host: far.ip(family), port: TARGET_PORT, recv: 100, send: 200 });
    try {
      const report = await runClient(client, { host: target, port: SERVICE_PORT, send: 100, recv: 200, closeFirst: true });
      if (report.error) throw new Error(`client failed: ${report.error}`);
      const served = await peer.report();
      await peer.finished();
      const mine = (e: AccessLogEntry) =>
        e.direction === "OUTBOUND" && e.srcAddr === client.ip(family) && e.srcPort === report.localPort && e.state === "BPF_TCP_CLOSE";
      const [line] = await agent.waitForLines(mine, 1, 10_000);
      return { line: line!, clientPort: report.localPort, seenFrom: served.remoteAddress };
    } finally {
      peer.kill();
    }
  }

  test("the agent hooks conntrack once a NAT rule loads it: a kprobe where the kernel has them", () => {
    const said = agent.stderrLines.filter((line) => HOOKED.test(line) || REFUSED.test(line));
    const attached = (kind: string) => `kmesh-accesslog: conntrack: ${kind} on __nf_conntrack_hash_insert attached: ClusterIP lines name the backend the NAT chose`;
    expect(said).toEqual([KPROBES ? attached("kprobe") : hooked ? attached("fentry") : expect.stringMatching(REFUSED)]);
  });

  for (const family of [4, 6] as const) {
    test(`IPv${family}: the OUTBOUND line to the ClusterIP names the far pod the NAT chose, with exact bytes`, async () => {
      if (family === 6 && !nat6) return;
      const target = family === 4 ? CLUSTER_IP : CLUSTER_IP6;
      const { line, clientPort, seenFrom } = await viaClusterIp(target, family);
      const addr = (ip: string, port: number) => (family === 4 ? `${ip}:${port}` : `[${ip}]:${port}`);
      // The far pod saw the node, not the client: no INBOUND line could have told the agent.
      expect(seenFrom).toBe(node.gateway(family, true));
      const dst = named ? `dst.addr=${addr(far.ip(family), TARGET_PORT)}, dst.service=${SERVICE_HOST}, dst.workload=${ID.far.name}, ` : `dst.addr=${addr(target, SERVICE_PORT)}, dst.service=${SERVICE_HOST}, dst.workload=-, `;
      expect(line.raw).toContain(
        `src.addr=${addr(client.ip(family), clientPort)}, src.workload=${ID.client.name}, src.namespace=shop, ${dst}dst.namespace=shop, `,
      );
      expect(line.raw).toContain(", direction=OUTBOUND, state=BPF_TCP_CLOSE, sent_bytes=100, received_bytes=200, ");
    });
  }

  test("/metrics: the lines named from conntrack, the translations the hook saw", async () => {
    const m = await metrics(adminAddr);
    const lines = nat6 ? 2 : 1;
    expect({
      fromConntrack: m.get("kmesh_accesslog_clusterip_backends_from_conntrack_total"),
      learned: m.get("kmesh_accesslog_clusterip_backends_learned_total"),
      translationsAtLeast: (m.get("kmesh_accesslog_conntrack_translations_total") ?? -1) >= lines,
    }).toEqual(named ? { fromConntrack: lines, learned: lines, translationsAtLeast: true } : { fromConntrack: 0, learned: 0, translationsAtLeast: false });
  });

  test("check with the API server: the conntrack line", async () => {
    const result = await check(["--no-kubelet", "--kubeconfig", api.kubeconfig]);
    const line = result.lines.find((l) => l.includes(" conntrack: "));
    // the probe's line too, which decides whether the hook is tried (and says why it failed)
    expect(result.lines.find((l) => l.includes(" probe: "))).toStartWith("✔ probe: the hooks load and attach");
    if (named) {
      const kind = KPROBES ? "kprobe" : "fentry";
      expect(line).toBe(`✔ conntrack: a ${kind} on __nf_conntrack_hash_insert loads and attaches; detached again: ClusterIP lines name the backend the NAT chose, wherever it runs`);
    } else {
      expect(line).toStartWith("⚠ conntrack: cannot hook the kernel's connection tracking (this kernel has no kprobes; ");
      expect(line).toEndWith(
        "); ClusterIP lines name their backend only when it is a pod of this node — fix: nothing the agent needs; to name backends on other nodes: " +
          "a kernel with kprobes (CONFIG_KPROBES=y), or one that allows fentry programs on nf_conntrack",
      );
    }
    expect(result.exitCode).toBe(0);
  });

  test("SIGTERM: exit 0, the hook detached with the agent", async () => {
    const { exitCode } = await agent.stop();
    expect(exitCode).toBe(0);
    const attached = Bun.spawnSync(["bpftool", "link", "show"]).stdout.toString();
    expect(attached.includes("conntrack_insert")).toBe(false);
  });
});
