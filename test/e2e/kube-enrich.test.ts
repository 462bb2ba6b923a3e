/**
 * Pod names from the kubelet, end to end: the compiled agent reads a local HTTPS kubelet of ours
 * (../support/kubelet-server.ts: a certificate made now by openssl, a bearer token required, real-shaped
 * PodList JSON) that describes the pods of a throw-away test node, and names both ends of real
 * connections between them. Also: a pod listed 100 ms before its first connection is named; a
 * kubelet that is down at start, then up; 401, 403, garbage, invalid, slow and TLS failures each
 * give their stderr lines once and never stop the lines; the filters.
 *
 * Needs root, openssl and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/kube-enrich.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Agent, agentUnavailableReason, matchConnection } from "./agent.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { exchangeLines, expectedNames, namesOf, type PodIdentity, podEntry, startKubeletAgent, until } from "./kubelet-agent.ts";
import { busyNodePodList } from "../support/kubelet-pods.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("kubelet enrichment", netnsUnavailableReason() ?? agentUnavailableReason() ?? kubeletUnavailableReason());

const ID = {
  client: { name: "client-7d4b9c8f6d-x2x9q", namespace: "shop" },
  server: { name: "server-5f6d7c8b9a-k8s2p", namespace: "payments" },
  newpod: { name: "newbie-6c7d8e9f5a-q1w2e", namespace: "batch" },
  late: { name: "late-8b9c7d6e5f-r4t5y", namespace: "batch" },
} satisfies Record<string, PodIdentity>;
type Name = keyof typeof ID;

describe.skipIf(!ready)("pod names from the kubelet", () => {
  let node: TestNode;
  const pods = {} as Record<Name, Pod>;
  const entry = (name: Name) => podEntry(pods[name], ID[name]);

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "newpod", "late"] });
    for (const name of Object.keys(ID) as Name[]) pods[name] = node.pod(name);
  }, 60_000);

  afterAll(async () => {
    await node?.[Symbol.asyncDispose]();
  });

  describe("names on both ends", () => {
    let kubelet: LocalKubelet;
    let agent: Agent;

    beforeAll(async () => {
      kubelet = await startKubelet({ pods: [entry("client"), entry("server")] });
      // A long period: a pod that appears later can only be named by the refresh its line asks for.
      agent = startKubeletAgent(kubelet, { args: ["--kubelet-refresh", "30"] });
      await waitUntilCapturing(agent, pods.client, pods.server);
    }, 60_000);

    afterAll(async () => {
      await agent?.[Symbol.asyncDispose]();
      await kubelet?.[Symbol.asyncDispose]();
    });

    for (const family of [4, 6] as const) {
      test(`IPv${family}: both directions name both pods exactly; dst.service is the IP`, async () => {
        const { out, inb } = await exchangeLines(agent, pods.client, pods.server, { family });
        for (const line of [out, inb]) {
          expect({ raw: line.raw, names: namesOf(line) }).toEqual({ raw: line.raw, names: expectedNames(ID.client, ID.server) });
          expect(line.dstService).toBe(pods.server.ip(family));
        }
        expect(out.raw).toContain(`src.workload=${ID.client.name}, src.namespace=shop, `);
        expect(out.raw).toContain(`dst.workload=${ID.server.name}, dst.namespace=payments, `);
      });
    }

    test("a pod listed 100 ms before its first connection is named, as client and as server", async () => {
      const requestsBefore = kubelet.requests;
      kubelet.pods = [...kubelet.pods, entry("newpod")];
      await Bun.sleep(100);
      const first = await exchangeLines(agent, pods.newpod, pods.server);
      for (const line of [first.out, first.inb]) {
        expect({ raw: line.raw, names: namesOf(line) }).toEqual({ raw: line.raw, names: expectedNames(ID.newpod, ID.server) });
      }

      kubelet.pods = [...kubelet.pods, entry("late")];
      await Bun.sleep(100);
      const second = await exchangeLines(agent, pods.client, pods.late);
      for (const line of [second.out, second.inb]) {
        expect({ raw: line.raw, names: namesOf(line) }).toEqual({ raw: line.raw, names: expectedNames(ID.client, ID.late) });
      }
      // one asked-for refresh per new pod (the 30 s period never came)
      expect(kubelet.requests - requestsBefore).toBeLessThanOrEqual(3);
    });

    test("stderr: the first list once, never the token", async () => {
      const { stderr, exitCode } = await agent.stop();
      expect(exitCode).toBe(0);
      expect(stderr).toContain(`pod list from the kubelet at ${kubelet.url}: 2 pods, 4 pod IPs indexed; refreshing every 30 s`);
      expect(stderr.match(/pod list from the kubelet/g)).toHaveLength(1);
      const token = (await Bun.file(kubelet.tokenFile).text()).trim();
      expect(stderr).not.toContain(token);
    });
  });

  test("kubelet down at start, then up: lines flow with '-', then with names; a pod gone from the list loses its name", async () => {
    await using kubelet = await startKubelet({ pods: [entry("client"), entry("server")] });
    kubelet.stop(); // the port stays ours to start again
    await using agent = startKubeletAgent(kubelet, { args: ["--kubelet-refresh", "1"] });
    await waitUntilCapturing(agent, pods.client, pods.server);
    const down = await exchangeLines(agent, pods.client, pods.server);
    expect(namesOf(down.out)).toEqual(expectedNames(null, null));
    expect(namesOf(down.inb)).toEqual(expectedNames(null, null));

    kubelet.start();
    await until("a pod list served", () => kubelet.authorized > 0, 5_000);
    await Bun.sleep(200);
    const up = await exchangeLines(agent, pods.client, pods.server);
    expect(namesOf(up.out)).toEqual(expectedNames(ID.client, ID.server));
    expect(namesOf(up.inb)).toEqual(expectedNames(ID.client, ID.server));

    // The index is rebuilt whole from each list: a pod that left it is unnamed after the next one.
    kubelet.pods = [entry("client")];
    const served = kubelet.authorized;
    await until("the shorter list served", () => kubelet.authorized >= served + 2, 5_000);
    const gone = await exchangeLines(agent, pods.client, pods.server);
    expect(namesOf(gone.out)).toEqual(expectedNames(ID.client, null));
    expect(namesOf(gone.inb)).toEqual(expectedNames(ID.client, null));

    const { stderr } = await agent.stop();
    const reach = stderr.split("\n").filter((l) => l.includes("cannot reach the kubelet"));
    expect(reach).toEqual([
      `kmesh-accesslog: cannot reach the kubelet at ${kubelet.url} (ECONNREFUSED: Unable to connect. Is the computer able to access the url?); pod names are '-' until it answers`,
    ]);
    expect(stderr.split("\n").filter((l) => l.includes("is over"))).toEqual([
      `kmesh-accesslog: the kubelet at ${kubelet.url}: the connection failure is over; pod list received (2 pods, 4 pod IPs indexed)`,
    ]);
  }, 60_000);

  test("401, 403, garbage, an invalid list, a slow answer: one line as each starts and ends, lines never stop, names kept", async () => {
    await using kubelet = await startKubelet({ pods: [entry("client"), entry("server")], slowMs: 3_000 });
    await using agent = startKubeletAgent(kubelet, { args: ["--kubelet-refresh", "1"] });
    await waitUntilCapturing(agent, pods.client, pods.server);
    await until("the first list", () => kubelet.authorized > 0);

    const episodes = ["unauthorized", "forbidden", "garbage", "invalid", "slow"] as const;
    for (const mode of episodes) {
      kubelet.mode = mode;
      const seen = kubelet.requests;
      await until(`two requests in mode ${mode}`, () => kubelet.requests >= seen + 2, 10_000);
      // lines go on, named from the last good list
      const { out, inb } = await exchangeLines(agent, pods.client, pods.server, {}, 5_000);
      expect(namesOf(out)).toEqual(expectedNames(ID.client, ID.server));
      expect(namesOf(inb)).toEqual(expectedNames(ID.client, ID.server));
      kubelet.mode = "ok";
      const ok = kubelet.requests;
      await until(`an answer after ${mode}`, () => kubelet.requests > ok, 10_000);
      await Bun.sleep(300);
    }

    const { stderr } = await agent.stop();
    const url = kubelet.url;
    const kubeletLines = stderr.split("\n").filter((l) => l.includes(url) && !l.includes("pod list from the kubelet"));
    const keep = "; keeping the last good pod list (2 pods, ";
    const expected: (string | RegExp)[] = [
      `the kubelet at ${url} refused our credentials (401 Unauthorized: Unauthorized): check the bearer token in ${kubelet.tokenFile} (--kubelet-token-file)${keep}`,
      `the kubelet at ${url}: the 401 Unauthorized is over; pod list received (2 pods, 4 pod IPs indexed)`,
      `the kubelet at ${url} forbids the pod list (403 Forbidden: Forbidden (user=system:serviceaccount:kmesh-system:kmesh-accesslog, verb=get, resource=nodes, subresource(s)=[pods])): the service account needs RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and on nodes/proxy (older clusters)${keep}`,
      `the kubelet at ${url}: the 403 Forbidden is over; pod list received (2 pods, 4 pod IPs indexed)`,
      `the kubelet at ${url} sent an invalid pod list (not JSON: `,
      `the kubelet at ${url}: the invalid pod list is over; pod list received (2 pods, 4 pod IPs indexed)`,
      `the kubelet at ${url} sent an invalid pod list (items[0] (pod default/broken): status.podIP: Invalid type: Expected string but received 42)${keep}`,
      `the kubelet at ${url}: the invalid pod list is over; pod list received (2 pods, 4 pod IPs indexed)`,
      `the kubelet at ${url} did not answer in time (no complete answer within 1 s)${keep}`,
      `the kubelet at ${url}: the timeout is over; pod list received (2 pods, 4 pod IPs indexed)`,
    ];
    expect(kubeletLines).toHaveLength(expected.length);
    kubeletLines.forEach((line, i) => expect(line.replace("kmesh-accesslog: ", "")).toStartWith(expected[i] as string));
  }, 120_000);

  test("TLS: a CA that did not sign the kubelet's certificate names the flags; skip-verify works and says so once", async () => {
    await using kubelet = await startKubelet({ pods: [entry("client"), entry("server")] });
    {
      await using agent = startKubeletAgent(kubelet, { args: ["--kubelet-ca-file", kubelet.otherCaFile, "--kubelet-refresh", "1"] });
      await waitUntilCapturing(agent, pods.client, pods.server);
      const { out } = await exchangeLines(agent, pods.client, pods.server);
      expect(namesOf(out)).toEqual(expectedNames(null, null));
      const { stderr } = await agent.stop();
      const tls = stderr.split("\n").filter((l) => l.includes("TLS certificate"));
      expect(tls).toEqual([
        `kmesh-accesslog: cannot verify the TLS certificate of the kubelet at ${kubelet.url} (UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate): ` +
          "give the CA that signed it with --kubelet-ca-file, or turn verification off with --kubelet-insecure-skip-tls-verify; pod names are '-' until it answers",
      ]);
    }
    {
      await using agent = startKubeletAgent(kubelet, { args: ["--kubelet-insecure-skip-tls-verify", "--kubelet-refresh", "1"] });
      await waitUntilCapturing(agent, pods.client, pods.server);
      await until("a pod list served", () => kubelet.authorized > 0);
      await Bun.sleep(200);
      const { out } = await exchangeLines(agent, pods.client, pods.server);
      expect(namesOf(out)).toEqual(expectedNames(ID.client, ID.server));
      const { stderr } = await agent.stop();
      expect(stderr.split("\n").filter((l) => l.includes("TLS verification"))).toEqual([
        `kmesh-accesslog: TLS verification of the kubelet at ${kubelet.url} is OFF (--kubelet-insecure-skip-tls-verify): ` +
          "whoever can intercept that connection can feed us pod names and receives our token",
      ]);
    }
  }, 90_000);

  test("a 2,000-pod list refreshed every second does not slow the lines", async () => {
    const crowd = (busyNodePodList(2_000).items as unknown[]) ?? [];
    // ours first: on an IP that a crowd pod also claims, the first one listed keeps it
    await using kubelet = await startKubelet({ pods: [entry("client"), entry("server"), ...crowd] });
    await using agent = startKubeletAgent(kubelet, { args: ["--kubelet-refresh", "1"] });
    await waitUntilCapturing(agent, pods.client, pods.server);
    await until("two large lists served", () => kubelet.authorized >= 2, 10_000);
    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const { out } = await exchangeLines(agent, pods.client, pods.server);
      const closedAt = Number(out.timeNs! / 1_000_000n);
      latencies.push(Date.now() - closedAt);
      expect(namesOf(out)).toEqual(expectedNames(ID.client, ID.server));
    }
    console.log(`line latency with a 2,000-pod list every second: max ${Math.max(...latencies)} ms, ${latencies.join(" ")} ms`);
    // the line is seen after exchange() returns, so this includes the peers' own reporting
    expect(Math.max(...latencies)).toBeLessThan(1_000);
  }, 90_000);

  describe("filters", () => {
    let kubelet: LocalKubelet;
    beforeAll(async () => {
      kubelet = await startKubelet({ pods: (Object.keys(ID) as Name[]).map(entry) });
    });
    afterAll(async () => {
      await kubelet?.[Symbol.asyncDispose]();
    });

    /** The exchanges `pairs` in order, then a marker exchange that the filter keeps; returns what was kept. */
    async function kept(args: string[], pairs: [Name, Name][], marker: [Name, Name], output: "text" | "json" = "text") {
      await using agent = startKubeletAgent(kubelet, { output, args });
      // capture is proven with the marker pair, which the filter keeps
      await waitUntilCapturing(agent, pods[marker[0]], pods[marker[1]]);
      const keys = [];
      for (const [c, s] of pairs) {
        const r = await exchange(pods[c], pods[s], { family: 4, clientSend: 1, serverSend: 1, closeFirst: "client" });
        keys.push({ pair: `${c}>${s}`, key: { srcAddr: r.client.localAddress, srcPort: r.client.localPort, dstAddr: r.server.localAddress, dstPort: r.server.localPort } });
      }
      // lines are written in order (all these pods are known: none is held): once the marker's
      // lines are out, every earlier line that was kept is out too
      await exchangeLines(agent, pods[marker[0]], pods[marker[1]]);
      const result = keys.map(({ pair, key }) => `${pair}:${agent.filter(matchConnection(key)).length}`);
      const sample = agent.entries.at(-1)!;
      await agent.stop();
      return { result, sample };
    }

    test("--namespace and --exclude-namespace: either end; several kinds combine", async () => {
      const { result } = await kept(
        ["--namespace", "batch", "--namespace", "shop", "--exclude-namespace", "payments"],
        [
          ["client", "server"], // shop → payments: excluded
          ["late", "server"], // batch → payments: excluded
          ["client", "newpod"], // shop → batch: kept
          ["newpod", "late"], // batch → batch: kept
        ],
        ["client", "late"],
      );
      expect(result).toEqual(["client>server:0", "late>server:0", "client>newpod:2", "newpod>late:2"]);
    }, 60_000);

    test("--pod, with JSON lines", async () => {
      const { result, sample } = await kept(
        ["--pod", ID.server.name],
        [
          ["client", "newpod"], // neither end is the server: dropped
          ["late", "server"], // kept
        ],
        ["client", "server"],
        "json",
      );
      expect(result).toEqual(["client>newpod:0", "late>server:2"]);
      expect(JSON.parse(sample.raw)).toMatchObject({
        src_workload: ID.client.name,
        src_namespace: "shop",
        dst_workload: ID.server.name,
        dst_namespace: "payments",
        dst_service: null,
      });
    }, 60_000);
  });
});
