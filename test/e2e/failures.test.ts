// Connection attempts that fail are logged too, marked with the errno the
// connecting application saw. Refused is covered in capture.test.ts; here a
// server that never answers (its SYNs dropped) gives ETIMEDOUT.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Agent, agentUnavailableReason, matchConnection, startAgent } from "./agent.ts";
import { runClient, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("failures", netnsUnavailableReason() ?? agentUnavailableReason());

describe.skipIf(!ready)("failed connection attempts", () => {
  let node: TestNode;
  let agent: Agent;
  let client: Pod;
  let server: Pod;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    client = node.pod("client");
    server = node.pod("server");
    agent = startAgent({ output: "text" });
    await waitUntilCapturing(agent, client, server);
  });

  afterAll(async () => {
    await agent?.stop("SIGTERM");
    await node?.[Symbol.asyncDispose]();
  });

  test("a connect that times out: one OUTBOUND line, zero bytes, error=ETIMEDOUT, duration of the SYN retries", async () => {
    const port = 7070;
    // The server's kernel never sees the SYNs; the client gives up after one retry (1 s + 2 s).
    server.iptables(["-A", "INPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"]);
    client.run(["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"]);
    const localPort = 20_000 + Math.floor(Math.random() * 20_000);
    const started = performance.now();
    const report = await runClient(client, { host: server.ip4, port, localPort });
    // Bun's socket client names every failed connect ECONNREFUSED; the time it took tells.
    expect(report.error).not.toBeNull();
    expect(performance.now() - started).toBeGreaterThan(2_900);
    const key = { srcAddr: client.ip4, srcPort: localPort, dstAddr: server.ip4, dstPort: port };
    const [line] = await agent.waitForLines(matchConnection(key, "OUTBOUND"), 1, 10_000);
    expect(line!.raw).toEndWith(", error=ETIMEDOUT");
    expect(line).toMatchObject({ state: "BPF_TCP_CLOSE", sentBytes: 0, receivedBytes: 0, error: "ETIMEDOUT" });
    // SYN at 0 s, retry at 1 s, give up at 3 s.
    expect(line!.durationMs!).toBeGreaterThan(2_900);
    expect(line!.durationMs!).toBeLessThan(3_500);
    expect(agent.filter(matchConnection(key)).map((e) => e.raw)).toEqual([line!.raw]);
  }, 30_000);
});
