/**
 * Services and remote pods from the API server, end to end: the compiled agent reads a local
 * HTTPS kubelet (this node's pods) and a local HTTPS API server of ours (api-server.ts: the real
 * list/watch protocol, real-shaped Services, EndpointSlices and Pods), through a kubeconfig file.
 * A ClusterIP is made real in the client pod as kube-proxy does, with an iptables DNAT rule (and a
 * route for the service range, which only exists inside the test namespaces).
 *
 * Asserts: the OUTBOUND line to the ClusterIP names the service's hostname and the backend pod it
 * reached (learned from the INBOUND line); a connection to the pod IP is named by the slice's exact
 * address and port (another port is no service); the far end that is not on the kubelet's list is
 * named from the API server; a watch that breaks, expires (410) and resumes loses no update.
 *
 * Needs root, iptables, openssl and dist/kmesh-accesslog (scripts/build).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AccessLogEntry, type Agent, agentUnavailableReason, startAgent } from "./agent.ts";
import { freePort, metrics } from "./admin-support.ts";
import { type LocalApiServer, serviceObject, sliceObject, startApiServer } from "./api-server.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { type PodIdentity, podEntry, startKubeletAgent, until } from "./kubelet-agent.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet(
  "API-server names",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? kubeletUnavailableReason() ?? (Bun.which("iptables") ? null : "needs iptables"),
);

const ID = {
  client: { name: "client-7d4b9c8f6d-x2x9q", namespace: "shop" },
  server: { name: "web-5f6d7c8b9a-k8s2p", namespace: "shop" },
  remote: { name: "remote-6c7d8e9f5a-q1w2e", namespace: "elsewhere" },
} satisfies Record<string, PodIdentity>;
type Name = keyof typeof ID;

const CLUSTER_IP = "10.96.77.10";
const CLUSTER_IP6 = "fd00:96::77:10";
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;

describe.skipIf(!ready)("services and remote pods from the API server", () => {
  let node: TestNode;
  let kubelet: LocalKubelet;
  let api: LocalApiServer;
  let agent: Agent;
  const pods = {} as Record<Name, Pod>;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "remote"] });
    for (const name of Object.keys(ID) as Name[]) pods[name] = node.pod(name);
    // kube-proxy's part: the ClusterIP exists only as a DNAT rule in the client's namespace.
    pods.client.run(["ip", "route", "add", "10.96.0.0/16", "dev", "eth0"]);
    pods.client.iptables(["-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `${pods.server.ip4}:${TARGET_PORT}`]);
    pods.client.run(["ip", "-6", "route", "add", "fd00:96::/64", "dev", "eth0"]);
    pods.client.iptables(["-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP6, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `[${pods.server.ip6}]:${TARGET_PORT}`], 6);
    // The kubelet lists this node's pods: not "remote", which stands for a pod on another node.
    kubelet = await startKubelet({ pods: [podEntry(pods.client, ID.client), podEntry(pods.server, ID.server)] });
    api = await startApiServer();
    for (const name of Object.keys(ID) as Name[]) api.put("pods", podEntry(pods[name], ID[name]));
    // dual stack: both ClusterIPs on the Service, one slice per family
    const web = serviceObject("shop", "web", CLUSTER_IP, SERVICE_PORT, TARGET_PORT);
    Object.assign(web.spec as object, { clusterIPs: [CLUSTER_IP, CLUSTER_IP6], ipFamilies: ["IPv4", "IPv6"], ipFamilyPolicy: "PreferDualStack" });
    api.put("services", web);
    api.put("endpointslices", sliceObject("shop", "web", [{ ip: pods.server.ip4, pod: ID.server.name }], TARGET_PORT));
    api.put("endpointslices", { ...sliceObject("shop", "web", [{ ip: pods.server.ip6, pod: ID.server.name }], TARGET_PORT), addressType: "IPv6" });
    agent = startKubeletAgent(kubelet, { args: ["--kubeconfig", api.kubeconfig] });
    await waitUntilCapturing(agent, pods.client, pods.server);
    await until("the API server's three watches", () => api.openWatches === 3, 10_000);
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await kubelet?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  /** A connection from `client` to target:port (served by `server` on its own IP and `listenPort`); its two close lines. */
  async function connect(client: Pod, server: Pod, target: string, port: number, listenPort = port, by: Agent = agent) {
    const family = target.includes(":") ? 6 : 4;
    const peer = await startServer(server, { host: server.ip(family), port: listenPort, recv: 100, send: 200 });
    try {
      const report = await runClient(client, { host: target, port, send: 100, recv: 200, closeFirst: true });
      if (report.error) throw new Error(`client failed: ${report.error}`);
      await peer.finished();
      const mine = (direction: string) => (e: AccessLogEntry) =>
        e.direction === direction && e.srcAddr === client.ip(family) && e.srcPort === report.localPort && e.state === "BPF_TCP_CLOSE";
      const [[out], [inb]] = await Promise.all([by.waitForLines(mine("OUTBOUND"), 1, 10_000), by.waitForLines(mine("INBOUND"), 1, 10_000)]);
      return { out: out!, inb: inb! };
    } finally {
      peer.kill();
    }
  }

  test("to the ClusterIP: dst.service is the hostname, dst.addr and dst.workload the backend pod reached", async () => {
    const { out, inb } = await connect(pods.client, pods.server, CLUSTER_IP, SERVICE_PORT, TARGET_PORT);
    expect(out.raw).toContain(
      `src.workload=${ID.client.name}, src.namespace=shop, dst.addr=${pods.server.ip4}:${TARGET_PORT}, dst.service=web.shop.svc.cluster.local, dst.workload=${ID.server.name}, dst.namespace=shop, `,
    );
    expect(inb.raw).toContain(`dst.addr=${pods.server.ip4}:${TARGET_PORT}, dst.service=web.shop.svc.cluster.local, dst.workload=${ID.server.name}, `);
  });

  test("IPv6: to the ClusterIP of a dual-stack Service, the same", async () => {
    const { out } = await connect(pods.client, pods.server, CLUSTER_IP6, SERVICE_PORT, TARGET_PORT);
    expect(out.raw).toContain(
      `dst.addr=[${pods.server.ip6}]:${TARGET_PORT}, dst.service=web.shop.svc.cluster.local, dst.workload=${ID.server.name}, dst.namespace=shop, `,
    );
  });

  test("to the pod IP: the service by the slice's exact address and port; another port is no service", async () => {
    const direct = await connect(pods.client, pods.server, pods.server.ip4, TARGET_PORT);
    expect(direct.out.dstService).toBe("web.shop.svc.cluster.local");
    const other = await connect(pods.client, pods.server, pods.server.ip4, 8081);
    expect(other.out.dstService).toBe(pods.server.ip4);
    expect(other.out.dstWorkload).toBe(ID.server.name);
    expect(other.out.dstNamespace).toBe("shop");
  });

  test("a far end that is not on the kubelet's list is named from the API server", async () => {
    const { out, inb } = await connect(pods.client, pods.remote, pods.remote.ip4, 9000);
    expect(out.raw).toContain(`dst.workload=${ID.remote.name}, dst.namespace=elsewhere, `);
    expect(inb.raw).toContain(`src.workload=${ID.client.name}, src.namespace=shop, `);
  });

  test("a watch that breaks, then expires (410), resumes without losing an update", async () => {
    const listsBefore = api.requests.filter((r) => !r.watch).length;
    // A break: a service added meanwhile arrives when the watch resumes from its resourceVersion.
    api.breakWatches();
    api.put("services", serviceObject("elsewhere", "during-break", "10.96.77.20", 9001, 9001));
    api.put("endpointslices", sliceObject("elsewhere", "during-break", [{ ip: pods.remote.ip4, pod: ID.remote.name }], 9001));
    await until("the watches back", () => api.openWatches === 3, 10_000);
    expect(api.requests.filter((r) => !r.watch).length).toBe(listsBefore);
    expect((await connect(pods.client, pods.remote, pods.remote.ip4, 9001)).out.dstService).toBe("during-break.elsewhere.svc.cluster.local");

    // Expired: history is compacted while the watch is down; the 410 makes the agent list again.
    api.breakWatches();
    api.put("endpointslices", sliceObject("elsewhere", "after-expiry", [{ ip: pods.remote.ip4, pod: ID.remote.name }], 9002));
    api.compact();
    await until("a list after the 410", () => api.requests.filter((r) => !r.watch).length > listsBefore, 10_000);
    await until("the watches back", () => api.openWatches === 3, 10_000);
    expect((await connect(pods.client, pods.remote, pods.remote.ip4, 9002)).out.dstService).toBe("after-expiry.elsewhere.svc.cluster.local");
  });

  test("the API server down: the kubelet still names local pods, known services stay; back up, it resumes", async () => {
    api.stop();
    await Bun.sleep(1_000); // the watches fail and back off
    const { out } = await connect(pods.client, pods.server, CLUSTER_IP, SERVICE_PORT, TARGET_PORT);
    expect(out.srcWorkload).toBe(ID.client.name);
    expect(out.dstService).toBe("web.shop.svc.cluster.local");
    expect(out.dstWorkload).toBe(ID.server.name);
    api.start();
    await until("the watches back", () => api.openWatches === 3, 40_000);
    // The server counts a watch when asked; the agent says the failure is over when the answer
    // arrives, a moment later (under load, after the next test stops the agent).
    const count = (re: RegExp) => agent.stderrLines.filter((l) => re.test(l)).length;
    await until("every failure said over", () => count(/cannot reach the API server/) === count(/the connection failure is over/), 10_000);
  }, 60_000);

  test("stderr: the first lists once, never the token; exit 0", async () => {
    const { stderr, exitCode } = await agent.stop();
    expect(exitCode).toBe(0);
    expect(stderr).toContain(`the API server at ${api.url} (kubeconfig ${api.kubeconfig}): 1 services, 2 endpoint slices, 3 pods (6 pod IPs) listed; watching for changes`);
    expect(stderr.match(/listed; watching for changes/g)).toHaveLength(1);
    // the broken watches: one line per kind when it broke, one when it came back
    expect((stderr.match(/cannot reach the API server/g) ?? []).length).toBe((stderr.match(/the connection failure is over/g) ?? []).length);
    const token = (await Bun.file(api.tokenFile).text()).trim();
    expect(stderr).not.toContain(token);
  });

  test("without a kubelet (--no-kubelet): the API server names both ends and the ClusterIP backend", async () => {
    const adminAddr = `127.0.0.1:${freePort()}`;
    await using apiOnly = startAgent({ output: "text", args: ["--no-kubelet", "--kubeconfig", api.kubeconfig, "--admin-addr", adminAddr] });
    await waitUntilCapturing(apiOnly, pods.client, pods.server);
    const { out } = await connect(pods.client, pods.server, CLUSTER_IP, SERVICE_PORT, TARGET_PORT, apiOnly);
    expect(out.raw).toContain(
      `src.workload=${ID.client.name}, src.namespace=shop, dst.addr=${pods.server.ip4}:${TARGET_PORT}, dst.service=web.shop.svc.cluster.local, dst.workload=${ID.server.name}, dst.namespace=shop, `,
    );
    const m = await metrics(adminAddr);
    expect(m.get("kmesh_accesslog_clusterip_backends_learned_total")).toBeGreaterThanOrEqual(1);
    expect(m.get("kmesh_accesslog_api_pods")).toBe(3);
    expect(m.get("kmesh_accesslog_api_services")).toBeGreaterThanOrEqual(1);
    expect(m.get("kmesh_accesslog_api_lists_total")).toBeGreaterThanOrEqual(3);
  }, 60_000);

  test("the API server unreachable from the start: the kubelet names local pods, dst.service is the address", async () => {
    const dead = `${api.kubeconfig}.dead`;
    await Bun.write(dead, (await Bun.file(api.kubeconfig).text()).replace(api.url, "https://127.0.0.1:1"));
    await using kubeletOnly = startKubeletAgent(kubelet, { args: ["--kubeconfig", dead] });
    await waitUntilCapturing(kubeletOnly, pods.client, pods.server);
    const { out } = await connect(pods.client, pods.server, pods.server.ip4, TARGET_PORT, TARGET_PORT, kubeletOnly);
    expect(out.srcWorkload).toBe(ID.client.name);
    expect(out.dstWorkload).toBe(ID.server.name);
    expect(out.dstService).toBe(pods.server.ip4);
    const { stderr, exitCode } = await kubeletOnly.stop();
    expect(exitCode).toBe(0);
    // one line per kind, not one per attempt
    expect(stderr.match(/cannot reach the API server at https:\/\/127\.0\.0\.1:1 /g)).toHaveLength(3);
  }, 60_000);
});
