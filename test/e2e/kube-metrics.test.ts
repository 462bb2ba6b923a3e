// The kubelet side of the agent shows in /metrics: pod lists read, failures,
// pods indexed, lines held for an unknown local pod (enrichment misses),
// lines filtered.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Agent, agentUnavailableReason } from "./agent.ts";
import { freePort, metrics, waitReady } from "./admin-support.ts";
import { exchange } from "./exchange.ts";
import { exchangeLines, podEntry, startKubeletAgent } from "./kubelet-agent.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { createTestNode, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("kubelet metrics", netnsUnavailableReason() ?? agentUnavailableReason() ?? kubeletUnavailableReason());
const M = (name: string) => `kmesh_accesslog_${name}`;

describe.skipIf(!ready)("kubelet metrics", () => {
  let node: TestNode;
  let kubelet: LocalKubelet;
  let agent: Agent;
  const adminAddr = `127.0.0.1:${freePort()}`;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "unlisted"] });
    kubelet = await startKubelet({
      pods: [
        podEntry(node.pod("client"), { name: "client-1", namespace: "shop" }),
        podEntry(node.pod("server"), { name: "server-1", namespace: "payments" }),
      ],
    });
    agent = startKubeletAgent(kubelet, {
      args: ["--admin-addr", adminAddr, "--kubelet-refresh", "30", "--kubelet-hold", "0.5", "--exclude-namespace", "payments"],
    });
    await waitReady(agent, adminAddr);
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await kubelet?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  test("refreshes, pods indexed, misses and filtered lines are counted", async () => {
    let before = await metrics(adminAddr);
    for (let i = 0; i < 200 && (before.get(M("kubelet_refreshes_total")) ?? 0) < 1; i++) {
      await Bun.sleep(50);
      before = await metrics(adminAddr);
    }
    expect(before.get(M("kubelet_pods_indexed"))).toBe(2);
    expect(before.get(M("kubelet_refresh_failures_total"))).toBe(0);

    // Both lines of this connection have an end in "payments": both are filtered out.
    const filteredBefore = before.get(M('lines_filtered_total{filter="exclude_namespace"}'))!;
    await exchange(node.pod("client"), node.pod("server"), { family: 4, clientSend: 10, serverSend: 10, closeFirst: "client" });
    await Bun.sleep(300); // those lines never come: give the agent time to read and drop them
    // A connection from a pod the kubelet does not list: its OUTBOUND line misses and is held.
    const missesBefore = before.get(M("enrichment_misses_total")) ?? 0;
    await exchangeLines(agent, node.pod("unlisted"), node.pod("client"));

    // The refresh the miss asked for (at most one a second) comes soon after.
    let after = await metrics(adminAddr);
    for (let i = 0; i < 60 && after.get(M("kubelet_refreshes_total"))! <= before.get(M("kubelet_refreshes_total"))!; i++) {
      await Bun.sleep(50);
      after = await metrics(adminAddr);
    }
    expect(after.get(M('lines_filtered_total{filter="exclude_namespace"}'))! - filteredBefore).toBe(2);
    expect(after.get(M("enrichment_misses_total"))! - missesBefore).toBeGreaterThanOrEqual(1);
    expect(after.get(M("kubelet_refreshes_total"))!).toBeGreaterThan(before.get(M("kubelet_refreshes_total"))!);
  }, 60_000);
});
