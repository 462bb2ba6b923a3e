/**
 * The cluster feed, end to end: `dist/kmesh-accesslog feed` (feed.ts) lists and watches a local
 * API server of ours (api-server.ts) and serves agents over TLS; agents run with --feed and
 * --no-kubelet, so that every name on their lines came through the cluster index: from the feed,
 * or from the API server while the feed cannot be had. A ClusterIP is made real in the client pod
 * with a DNAT rule, as in kube-api.test.ts.
 *
 * Asserts: an agent through the feed writes exactly the names an agent watching the API server
 * writes, and its TCP metrics carry the same labels (workload, app, version, service account...),
 * and it never lists the API server itself; the feed stopped under a running agent: it says
 * so once and names from the API server meanwhile (a Service created then is named); the feed
 * back: the agent resumes from its version (the feed's counters: a resumption, no snapshot), says
 * so once, and stops watching the API server; a pod deleted and its IP taken by another reaches it
 * in order; the feed down at an agent's start: the API server names its lines, one message; a
 * request without a valid token or from another account is refused with one line.
 *
 * Needs root, iptables, openssl and dist/kmesh-accesslog (scripts/build).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { parseExposition } from "../../src/admin/metrics.ts";
import { type AccessLogEntry, type Agent, agentUnavailableReason, startAgent } from "./agent.ts";
import { freePort, metrics } from "./admin-support.ts";
import { type LocalApiServer, serviceObject, sliceObject, startApiServer } from "./api-server.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { agentToken, type LocalFeed, startFeed } from "./feed.ts";
import { type PodIdentity, podEntry, until } from "./kubelet-agent.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet(
  "the cluster feed",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? (Bun.which("iptables") && Bun.which("openssl") ? null : "needs iptables and openssl"),
);

const ID = {
  client: { name: "client-7d4b9c8f6d-x2x9q", namespace: "shop" },
  server: { name: "web-5f6d7c8b9a-k8s2p", namespace: "shop" },
  remote: { name: "remote-6c7d8e9f5a-q1w2e", namespace: "elsewhere" },
} satisfies Record<string, PodIdentity>;
type Name = keyof typeof ID;

const CLUSTER_IP = "10.96.78.10";
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;

/** The fields of a line that naming decides (and the connection's ends). */
const named = (e: AccessLogEntry) => ({
  direction: e.direction,
  src: `${e.srcAddr}:${e.srcPort}`,
  srcWorkload: e.srcWorkload,
  srcNamespace: e.srcNamespace,
  dst: `${e.dstAddr}:${e.dstPort}`,
  dstService: e.dstService,
  dstWorkload: e.dstWorkload,
  dstNamespace: e.dstNamespace,
});

describe.skipIf(!ready)("the cluster feed", () => {
  let node: TestNode;
  let api: LocalApiServer;
  let feed: LocalFeed;
  /** names from the API server (the direct path) */
  let direct: Agent;
  /** names from the feed, the API server as its fallback */
  let fed: Agent;
  const fedAdmin = `127.0.0.1:${freePort()}`;
  /** where each agent serves its TCP metrics (--workload-metrics) */
  const directMetrics = `127.0.0.1:${freePort()}`;
  const fedMetrics = `127.0.0.1:${freePort()}`;
  const pods = {} as Record<Name, Pod>;
  const lists = () => api.requests.filter((r) => !r.watch && r.status === 200).length;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "remote"] });
    for (const name of Object.keys(ID) as Name[]) pods[name] = node.pod(name);
    pods.client.run(["ip", "route", "add", "10.96.0.0/16", "dev", "eth0"]);
    pods.client.iptables(["-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `${pods.server.ip4}:${TARGET_PORT}`]);
    api = await startApiServer();
    for (const name of Object.keys(ID) as Name[]) api.put("pods", podEntry(pods[name], ID[name]));
    api.put("services", serviceObject("shop", "web", CLUSTER_IP, SERVICE_PORT, TARGET_PORT));
    api.put("endpointslices", sliceObject("shop", "web", [{ ip: pods.server.ip4, pod: ID.server.name }], TARGET_PORT));
    feed = await startFeed(api);
    direct = startAgent({ output: "text", args: ["--no-kubelet", "--kubeconfig", api.kubeconfig, "--workload-metrics", "--metrics-addr", directMetrics] });
    await direct.waitForStderr((l) => l.includes("listed; watching for changes"), 15_000);
    const listsBefore = lists();
    fed = startAgent({
      output: "text",
      args: ["--no-kubelet", "--kubeconfig", api.kubeconfig, "--feed", feed.url, "--feed-ca-file", feed.caFile, "--feed-token-file", agentToken(api, feed.dir), "--admin-addr", fedAdmin, "--workload-metrics", "--metrics-addr", fedMetrics],
    });
    await fed.waitForStderr((l) => l.includes("received; following its changes"), 15_000);
    // The agent through the feed asked the API server for nothing.
    expect(lists()).toBe(listsBefore);
    await Promise.all([waitUntilCapturing(direct, pods.client, pods.server), waitUntilCapturing(fed, pods.client, pods.server)]);
  }, 90_000);

  afterAll(async () => {
    await fed?.[Symbol.asyncDispose]();
    await direct?.[Symbol.asyncDispose]();
    await feed?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  /** One connection from `client` to target:port (served by `server` on `listenPort`): its close lines in `agents`. */
  async function connect(client: Pod, server: Pod, target: string, port: number, listenPort: number, agents: Agent[]) {
    const peer = await startServer(server, { host: server.ip4, port: listenPort, recv: 100, send: 200 });
    try {
      const report = await runClient(client, { host: target, port, send: 100, recv: 200, closeFirst: true });
      if (report.error) throw new Error(`client failed: ${report.error}`);
      await peer.finished();
      const mine = (direction: string) => (e: AccessLogEntry) => e.direction === direction && e.srcAddr === client.ip4 && e.srcPort === report.localPort && e.state === "BPF_TCP_CLOSE";
      return await Promise.all(
        agents.map(async (agent) => {
          const [[out], [inb]] = await Promise.all([agent.waitForLines(mine("OUTBOUND"), 1, 10_000), agent.waitForLines(mine("INBOUND"), 1, 10_000)]);
          return { out: named(out!), inb: named(inb!) };
        }),
      );
    } finally {
      peer.kill();
    }
  }

  test("through the feed, every name is the one the API server gives: a ClusterIP and its backend, a remote pod", async () => {
    const [viaApi, viaFeed] = await connect(pods.client, pods.server, CLUSTER_IP, SERVICE_PORT, TARGET_PORT, [direct, fed]);
    expect(viaFeed).toEqual(viaApi!);
    expect(viaFeed!.out).toMatchObject({
      srcWorkload: ID.client.name,
      srcNamespace: "shop",
      dst: `${pods.server.ip4}:${TARGET_PORT}`,
      dstService: "web.shop.svc.cluster.local",
      dstWorkload: ID.server.name,
      dstNamespace: "shop",
    });
    // The TCP metrics' series of the connections to the Service: the same label sets either way.
    const labelSets = async (address: string) => {
      const text = await (await fetch(`http://${address}/status/metric`)).text();
      const sets = parseExposition(text)
        .filter((s) => s.name.endsWith("_tcp_connections_opened_total") && s.labels.destination_workload === "web")
        .map((s) => JSON.stringify(Object.entries(s.labels).sort()));
      return [...new Set(sets)].sort();
    };
    const [setsApi, setsFeed] = await Promise.all([labelSets(directMetrics), labelSets(fedMetrics)]);
    expect(setsFeed).toEqual(setsApi);
    expect(setsFeed.join()).toContain(`["destination_workload","web"]`);
    expect(setsFeed.join()).toContain(`["source_workload","client"]`);
    expect(setsFeed.join()).toContain(`["destination_service","web.shop.svc.cluster.local"]`);
    const [remoteApi, remoteFeed] = await connect(pods.client, pods.remote, pods.remote.ip4, 9000, 9000, [direct, fed]);
    expect(remoteFeed).toEqual(remoteApi!);
    expect(remoteFeed!.out).toMatchObject({ srcWorkload: ID.client.name, dstService: pods.remote.ip4, dstWorkload: ID.remote.name, dstNamespace: "elsewhere" });
  }, 60_000);

  test("the feed stopped: the API server names meanwhile (said once); back, the agent resumes from its version", async () => {
    expect(await feed.stop()).toBe(0);
    await fed.waitForStderr((l) => l.includes(`cannot reach the feed at ${feed.url}`), 15_000);
    // Meanwhile a Service is created: the agent learns it from the API server.
    api.put("services", serviceObject("elsewhere", "during-outage", "10.96.78.20", 9001, 9001));
    api.put("endpointslices", sliceObject("elsewhere", "during-outage", [{ ip: pods.remote.ip4, pod: ID.remote.name }], 9001));
    await until("the fallback's watches", () => api.openWatches === 6, 15_000);
    expect((await metrics(fedAdmin)).get("kmesh_accesslog_feed_fallback")).toBe(1);
    const [outage] = await connect(pods.client, pods.remote, pods.remote.ip4, 9001, 9001, [fed]);
    expect(outage!.out.dstService).toBe("during-outage.elsewhere.svc.cluster.local");

    feed.start();
    await feed.ready();
    await fed.waitForStderr((l) => l.includes("is over; resumed from version"), 20_000);
    const m = await feed.metrics();
    expect(m.get("kmesh_accesslog_feed_resumes_total")).toBe(1);
    expect(m.get("kmesh_accesslog_feed_snapshots_total")).toBe(0);
    expect(m.get("kmesh_accesslog_feed_snapshot_entries_total")).toBe(0);
    // the Service and its slice, which the feed learned when it listed again
    expect(m.get("kmesh_accesslog_feed_changes_sent_total")).toBe(2);
    // The agent stopped watching the API server.
    const agentMetrics = await metrics(fedAdmin);
    expect(agentMetrics.get("kmesh_accesslog_feed_fallback")).toBe(0);
    expect(agentMetrics.get("kmesh_accesslog_feed_resumes_total")).toBe(1);
    expect(agentMetrics.get("kmesh_accesslog_feed_snapshots_total")).toBe(1);
    const count = (text: string) => fed.stderrLines.filter((l) => l.includes(text)).length;
    expect(count("cannot reach the feed")).toBe(1);
    expect(count("is over; resumed from version")).toBe(1);
    expect(fed.stderrLines.find((l) => l.includes("is over; resumed"))).toContain(`no longer watching the API server at ${api.url}`);

    // After the resumption, through the feed: a pod deleted and its IP taken by another, in order.
    api.remove("pods", ID.remote.namespace, ID.remote.name);
    const successor = { name: "remote-successor-0", namespace: "elsewhere" };
    api.put("pods", podEntry(pods.remote, successor));
    const before = agentMetrics.get("kmesh_accesslog_feed_version") ?? 0;
    for (let tries = 0; ((await metrics(fedAdmin)).get("kmesh_accesslog_feed_version") ?? 0) < before + 2; tries++) {
      if (tries > 200) throw new Error("the agent did not apply the deletion and the successor within 10 s");
      await Bun.sleep(50);
    }
    const [after] = await connect(pods.client, pods.remote, pods.remote.ip4, 9002, 9002, [fed]);
    expect(after!.out.dstWorkload).toBe(successor.name);
    expect(after!.out.dstNamespace).toBe("elsewhere");
  }, 90_000);

  test("a request without a valid token, or from another account, is refused with one line", async () => {
    const none = await feed.get("/v1/feed");
    expect(none).toEqual({ status: 401, body: "no bearer token: send the agent's service-account token (--feed-token-file)\n" });
    const bad = await feed.get("/v1/feed", { authorization: "Bearer not-a-token" });
    expect(bad).toEqual({ status: 401, body: "the token is not valid (the API server says: invalid bearer token)\n" });
    const other = (await Bun.file(agentToken(api, feed.dir, "system:serviceaccount:default:nosy")).text()).trim();
    const forbidden = await feed.get("/v1/feed", { authorization: `Bearer ${other}` });
    expect(forbidden).toEqual({
      status: 403,
      body: "system:serviceaccount:default:nosy may not read the feed: start the feed with --allow-service-account <namespace>:<name> for it\n",
    });
  });

  test("the feed down at the agent's start: the API server names its lines; one message", async () => {
    const nowhere = `https://127.0.0.1:${freePort()}`;
    await using alone = startAgent({
      output: "text",
      args: ["--no-kubelet", "--kubeconfig", api.kubeconfig, "--feed", nowhere, "--feed-ca-file", feed.caFile, "--feed-token-file", agentToken(api, feed.dir)],
    });
    await waitUntilCapturing(alone, pods.client, pods.server);
    await alone.waitForStderr((l) => l.includes("listed; watching for changes"), 15_000);
    const [viaFallback] = await connect(pods.client, pods.server, CLUSTER_IP, SERVICE_PORT, TARGET_PORT, [alone]);
    expect(viaFallback!.out).toMatchObject({ dstService: "web.shop.svc.cluster.local", dstWorkload: ID.server.name, srcWorkload: ID.client.name });
    await Bun.sleep(2_000); // a few more attempts, said nowhere
    const { stderr, exitCode } = await alone.stop();
    expect(exitCode).toBe(0);
    expect(stderr.match(/cannot reach the feed at /g)).toHaveLength(1);
    expect(stderr).toContain(`cannot reach the feed at ${nowhere} (`);
    expect(stderr).toContain(`; naming from the API server at ${api.url} meanwhile`);
  }, 60_000);
});
