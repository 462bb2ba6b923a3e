/**
 * A close that reached neither of the probe's programs leaves its connection's state in the hash
 * map: the kernel ran neither the state-change program nor the socket-end one for it, and counted
 * no skip (README, "A burst of closes": seen in bursts, in softirqs on top of one task). The
 * agent sweeps the map (each minute, and at stop) and counts each such state in closes_missed,
 * which the stop summary says: no close goes unsaid. No test can make the kernel do that at will;
 * here the state is put back into the map with bpftool after a real connection's close, which is
 * what the map holds then.
 *
 * Needs root, bpftool and dist/kmesh-accesslog. Run: `bun test test/e2e/unseen-close.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AdminAgent, startAdminAgent } from "./admin-support.ts";
import { agentUnavailableReason, matchConnection } from "./agent.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { DIRECTION_INBOUND } from "../../src/kernel/record.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { agentMapId, bpftoolUnavailableReason, dumpConnections, ipv4Word, writeEntry } from "./probe-maps.ts";

const ready = prerequisitesMet(
  "closes no program saw",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? bpftoolUnavailableReason(),
);

describe.skipIf(!ready)("a close neither program saw", () => {
  let node: TestNode;
  let agent: AdminAgent;
  let client: Pod;
  let server: Pod;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    [client, server] = [node.pod("client"), node.pod("server")];
    // the defaults, with the hash map (which bpftool reaches)
    agent = await startAdminAgent({ output: "json", args: ["--connection-state", "hash-map"] });
    await waitUntilCapturing(agent.agent, client, server);
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  test("its state left in the hash map is counted at stop, and said; its connection keeps its two lines", async () => {
    const mapId = agentMapId(agent.agent.proc.pid, "connections");
    const peer = await startServer(server, { host: server.ip4, recv: 1000, send: 5000 });
    const done = runClient(client, { host: server.ip4, port: peer.port, send: 1000, recv: 5000, closeFirst: true, holdMs: 1_000 });
    void done.catch(() => undefined);
    // the accepting side's state, taken while the connection is open
    const isInbound = (e: ReturnType<typeof dumpConnections>[number]) =>
      e.state.direction === DIRECTION_INBOUND && e.state.localPort === peer.port && e.state.remoteAddr === ipv4Word(client.ip4);
    let inbound: ReturnType<typeof dumpConnections>[number] | undefined;
    for (const deadline = Date.now() + 5_000; inbound === undefined && Date.now() < deadline; await Bun.sleep(50)) {
      inbound = dumpConnections(mapId).find(isInbound);
    }
    expect(inbound).toBeDefined();
    const c = await done;
    const key = { srcAddr: client.ip4, srcPort: c.localPort, dstAddr: server.ip4, dstPort: peer.port };
    const closes = (e: { state: string }) => e.state === "BPF_TCP_CLOSE";
    await agent.agent.waitForLines((e) => matchConnection(key)(e) && closes(e), 2, 10_000);
    // gone: judged by the connection, not the key (a new socket may have the freed one's memory)
    expect(dumpConnections(mapId).filter(isInbound)).toEqual([]);

    // As if the kernel had run neither program at its close: the state is still there.
    writeEntry(mapId, inbound!);
    const { exitCode, stderr } = await agent.agent.stop();
    expect(exitCode).toBe(0);
    const said = stderr.split("\n").filter((l) => l.includes("closed without their close reaching the probe"));
    expect(said).toEqual([
      "kmesh-accesslog: 1 connections closed without their close reaching the probe (the kernel skipped it, or ran neither of its programs, under bursts of closes): they have no close line",
    ]);
    // no line guessed for it: the connection's two close lines, one a side
    const lines = agent.agent.filter((e) => matchConnection(key)(e) && closes(e));
    expect(lines.map((e) => e.direction).sort()).toEqual(["INBOUND", "OUTBOUND"]);
  }, 30_000);
});
