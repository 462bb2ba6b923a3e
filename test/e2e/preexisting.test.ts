// Connections that were open before the agent started: the agent adds them to
// the kernel's tracking at start-up, so they get periodic reports like any
// other (start unknown: start_time and duration are '-'), the right direction
// on each side, and exact byte counts when they close.
import { describe, expect, test } from "bun:test";
import { agentUnavailableReason, matchConnection, startAgent } from "./agent.ts";
import { keyOf, reportsOf } from "./connection-checks.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("pre-existing connections", netnsUnavailableReason() ?? agentUnavailableReason());

describe.skipIf(!ready)("connections open before the agent started", () => {
  test("get periodic reports in both directions, then exact close reports", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    // The payload moves at once; the connection then idles for holdMs.
    const result = exchange(a, b, { family: 4, clientSend: 1000, serverSend: 5000, closeFirst: "client", holdMs: 5_000 });
    void result.catch(() => undefined);
    await Bun.sleep(500);
    await using agent = startAgent({ output: "text", args: ["--connection-metrics", "--report-interval", "1"] });
    await waitUntilCapturing(agent, a, b);
    const { client, server } = await result;
    const key = keyOf(client, server);
    const summary = (direction: "OUTBOUND" | "INBOUND", state: string) => reportsOf(agent, key, direction, state);
    const periodicOut = summary("OUTBOUND", "BPF_TCP_ESTABLISHED");
    const periodicIn = summary("INBOUND", "BPF_TCP_ESTABLISHED");
    expect(periodicOut.length).toBeGreaterThanOrEqual(2);
    expect(periodicIn.length).toBeGreaterThanOrEqual(2);
    for (const p of periodicOut) expect(p).toEqual({ start: "-", duration: null, sent: 1000, received: 5000 });
    for (const p of periodicIn) expect(p).toEqual({ start: "-", duration: null, sent: 5000, received: 1000 });
    await agent.waitForLines((e) => matchConnection(key)(e) && e.state === "BPF_TCP_CLOSE", 2, 10_000);
    expect(summary("OUTBOUND", "BPF_TCP_CLOSE")).toEqual([{ start: "-", duration: null, sent: 1000, received: 5000 }]);
    expect(summary("INBOUND", "BPF_TCP_CLOSE")).toEqual([{ start: "-", duration: null, sent: 5000, received: 1000 }]);
  }, 60_000);
});
