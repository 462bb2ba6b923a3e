/**
 * Periodic reports: while connection metrics are on, every open connection, idle ones included,
 * gets a BPF_TCP_ESTABLISHED line every --report-interval, with cumulative counters, a growing
 * duration and the same start_time; then its BPF_TCP_CLOSE line. Off: the close line only.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/admin-periodic.test.ts`.
 */
import { describe, expect, test } from "bun:test";
import { agentUnavailableReason, keptInTable, type AccessLogEntry } from "./agent.ts";
import { adminRequest, metrics, startAdminAgent } from "./admin-support.ts";
import { checkPeriodic, CLOSE, ESTABLISHED, idleConnection, linesOf } from "./connection-checks.ts";
import { waitUntilCapturing } from "./exchange.ts";
import { createTestNode } from "./node.ts";
import { openConnections } from "../../scripts/bench/connections.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { agentMapId, dumpConnections } from "./probe-maps.ts";

const ready = prerequisitesMet("periodic reports", netnsUnavailableReason() ?? agentUnavailableReason());

describe.skipIf(!ready)("periodic reports", () => {
  test("an idle connection held 12 s, connection metrics on, every 5 s: two or more ESTABLISHED reports, then CLOSE", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--connection-metrics"] });
    await waitUntilCapturing(agent.agent, a, b);
    const held = await idleConnection(a, b, 12_000);
    await checkPeriodic(agent.agent, held, 2, 5_000);
    expect((await metrics(agent.adminAddr)).get("kmesh_accesslog_periodic_reports_total")).toBeGreaterThanOrEqual(4);
  }, 60_000);

  test("a short interval: IPv6, every 0.5 s over 3 s", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--connection-metrics=true", "--report-interval", "0.5"] });
    await waitUntilCapturing(agent.agent, a, b);
    const held = await idleConnection(a, b, 3_000, 6);
    await checkPeriodic(agent.agent, held, 5, 500);
  }, 60_000);

  test("connection metrics off (the default): only the CLOSE line", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--report-interval", "0.5"] });
    await waitUntilCapturing(agent.agent, a, b);
    const held = await idleConnection(a, b, 2_000);
    for (const direction of ["OUTBOUND", "INBOUND"] as const) {
      expect((await linesOf(agent.agent, held, direction)).map((e) => e.state)).toEqual([CLOSE]);
    }
    expect((await metrics(agent.adminAddr)).get("kmesh_accesslog_periodic_report_runs_total")).toBe(0);
  }, 60_000);

  test("switched at run time: POST /connection_metrics starts and stops them; accesslog off stops them too", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent({ args: ["--report-interval", "0.5"] });
    await waitUntilCapturing(agent.agent, a, b);
    /** Posts and returns the wall-clock time (ms) once the agent has answered. */
    const post = async (target: string) => {
      expect((await adminRequest(agent.adminAddr, "POST", target)).status).toBe(200);
      return Date.now();
    };
    const pending = idleConnection(a, b, 7_000);
    await Bun.sleep(1_000);
    const on1 = await post("/connection_metrics?enable=true");
    await Bun.sleep(1_600); // about three reports
    const off1 = await post("/accesslog?enable=false"); // Kmesh prints periodic records only while accesslog is on
    await Bun.sleep(1_200);
    const on2 = await post("/accesslog?enable=true");
    await Bun.sleep(1_100); // about two more
    const off2 = await post("/connection_metrics?enable=false");
    const held = await pending;
    const entries = await linesOf(agent.agent, held, "OUTBOUND");
    const at = entries.filter((e) => e.state === ESTABLISHED).map((e) => Number(e.timeNs! / 1_000_000n));
    const SLACK = 50; // a report being made while the answer travels back
    const within = (t: number, from: number, to: number) => t >= from - SLACK && t <= to + SLACK;
    expect({
      outsideTheOnWindows: at.filter((t) => !within(t, on1, off1) && !within(t, on2, off2)).map((t) => t - on1),
      inFirstWindow: at.filter((t) => within(t, on1, off1)).length >= 2,
      inSecondWindow: at.filter((t) => within(t, on2, off2)).length >= 1,
    }).toEqual({ outsideTheOnWindows: [], inFirstWindow: true, inSecondWindow: true });
    expect(entries.at(-1)?.state).toBe(CLOSE);
  }, 60_000);

  // The agent reads the kernel's connection keys 4,096 at a time and has the kernel fill 256
  // records per run: 3,000 pairs (6,000 sockets) take two reads and 24 runs per round.
  // Each way of keeping state: the hash map's keys read in batches; the socket table walked in runs of
  // report_table, then the keys of the sockets whose entry another held (about a sixth of 6,000
  // sockets in 16,384 entries); socket storage walked by an iterator.
  for (const state of ["socket-table", "hash-map", "socket-storage"] as const) {
    test(`3,000 open connections, ${state}: every socket once in every round, none twice, none missed`, async () => {
      const PAIRS = 3_000;
      await using agent = await startAdminAgent({ args: ["--report-interval", "0.5", "--connection-state", state] });
      const held = await openConnections(PAIRS);
      try {
        const ports = new Set(held.ports);
        const ours = (e: AccessLogEntry) => e.state === ESTABLISHED && e.dstAddr === "127.0.0.1" && ports.has(e.dstPort!);
        const before = await metrics(agent.adminAddr);
        // A round runs whole between two admin requests (both on the agent's one event loop).
        expect((await adminRequest(agent.adminAddr, "POST", "/connection_metrics?enable=true")).status).toBe(200);
        await agent.agent.waitForLines(ours, 3 * 2 * PAIRS, 30_000);
        expect((await adminRequest(agent.adminAddr, "POST", "/connection_metrics?enable=false")).status).toBe(200);
        const after = await metrics(agent.adminAddr);
        const runs = after.get("kmesh_accesslog_periodic_report_runs_total")! - before.get("kmesh_accesslog_periodic_report_runs_total")!;
        await Bun.sleep(1_000); // lines of the last round still on their way
        const perSocket = new Map<string, number>();
        for (const e of agent.agent.filter(ours)) {
          const key = `${e.direction} ${e.srcPort} ${e.dstPort}`;
          perSocket.set(key, (perSocket.get(key) ?? 0) + 1);
        }
        const counts = new Map<number, number>();
        for (const n of perSocket.values()) counts.set(n, (counts.get(n) ?? 0) + 1);
        // Every socket (both ends of each pair) in every round, the holders' listeners never.
        expect({ sockets: perSocket.size, reportsPerSocket: [...counts] }).toEqual({ sockets: 2 * PAIRS, reportsPerSocket: [[runs, 2 * PAIRS]] });
        expect(runs).toBeGreaterThanOrEqual(3);
        if (state === "socket-table" && keptInTable(agent.agent.stderrLines)) {
          // Both parts walked: the sockets whose entry another socket held are in the hash map.
          const inMap = dumpConnections(agentMapId(agent.agent.pid, "connections")).filter(
            (e) => ports.has(e.state.remotePort) || ports.has(e.state.localPort),
          ).length;
          expect(inMap).toBeGreaterThan(0);
          expect(inMap).toBeLessThan(PAIRS);
        }
        // Then every socket's close, from wherever its state was: one line each, its start known.
        await held.closeAll();
        const closes = (e: AccessLogEntry) => e.state === CLOSE && e.dstAddr === "127.0.0.1" && ports.has(e.dstPort!);
        await agent.agent.waitForLines(closes, 2 * PAIRS, 30_000);
        const closed = new Set(agent.agent.filter((e) => closes(e) && e.startNs !== null).map((e) => `${e.direction} ${e.srcPort} ${e.dstPort}`));
        expect({ lines: agent.agent.filter(closes).length, socketsWithStart: closed.size }).toEqual({ lines: 2 * PAIRS, socketsWithStart: 2 * PAIRS });
      } finally {
        await held.dispose();
      }
    }, 90_000);
  }
});
