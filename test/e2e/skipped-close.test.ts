/**
 * A close the kernel skipped the probe for is still written, with its exact figures, when its
 * socket ends (handle_destroy in bpf/accesslog.bpf.c). The kernel skips the tracepoint program
 * when a softirq interrupts it on the same CPU (README, "A burst of closes"), which no test can
 * make happen at will; the probe's test-only switch ignore_close_port (bpf/accesslog.h), written
 * here with bpftool, makes the tracepoint program ignore the closes of one port's sockets the same
 * way. Both ways of keeping the state, both close orders, IPv4 and IPv6.
 *
 * Needs root, bpftool and dist/kmesh-accesslog. Run: `bun test test/e2e/skipped-close.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AdminAgent, closeCounts, startAdminAgent } from "./admin-support.ts";
import { agentUnavailableReason } from "./agent.ts";
import { closeLines, keyOf, problemsWith } from "./connection-checks.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { bpftoolUnavailableReason, ignoreCloses } from "./probe-maps.ts";

const ready = prerequisitesMet(
  "skipped closes",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? bpftoolUnavailableReason(),
);

/**
 * Times against the peers' own clocks: under qemu's TCG (the kernel matrix), on a busy host, a peer
 * has been seen to take its clock 340 ms before its connect(). The figures are what this tests.
 */
const TOLERANCE_MS = 1_000;

for (const state of ["hash-map", "socket-storage"] as const) {
  describe.skipIf(!ready)(`a close the probe skipped, --connection-state ${state}`, () => {
    let node: TestNode;
    let agent: AdminAgent;
    let client: Pod;
    let server: Pod;

    beforeAll(async () => {
      node = await createTestNode({ pods: ["client", "server"] });
      [client, server] = [node.pod("client"), node.pod("server")];
      agent = await startAdminAgent({ output: "json", args: ["--connection-state", state] });
      await waitUntilCapturing(agent.agent, client, server);
    }, 60_000);

    afterAll(async () => {
      await agent?.[Symbol.asyncDispose]();
      await node?.[Symbol.asyncDispose]();
    });

    for (const [family, closeFirst, port] of [[4, "client", 7_101], [6, "server", 7_102]] as const) {
      test(`IPv${family}, the ${closeFirst} closes first: one line per side when the socket ends, exact bytes`, async () => {
        const before = await closeCounts(agent.adminAddr);
        ignoreCloses(agent.agent.proc.pid, port);
        try {
          const { client: c, server: s } = await exchange(client, server, { family, clientSend: 1000, serverSend: 5000, closeFirst, serverPort: port });
          const { out, inb } = await closeLines(agent.agent, keyOf(c, s));
          expect({ line: out.raw, problems: problemsWith(out, c, TOLERANCE_MS) }).toEqual({ line: out.raw, problems: [] });
          expect({ line: inb.raw, problems: problemsWith(inb, s, TOLERANCE_MS) }).toEqual({ line: inb.raw, problems: [] });
          expect([out.direction, out.sentBytes, out.receivedBytes]).toEqual(["OUTBOUND", 1000, 5000]);
          expect([inb.direction, inb.sentBytes, inb.receivedBytes]).toEqual(["INBOUND", 5000, 1000]);
        } finally {
          ignoreCloses(agent.agent.proc.pid, 0);
        }
        const after = await closeCounts(agent.adminAddr);
        expect({ atEnd: after.atEnd - before.atEnd, missed: after.missed - before.missed }).toEqual({ atEnd: 2, missed: 0 });
      });
    }
  });
}
