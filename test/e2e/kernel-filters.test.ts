/**
 * The filters the kernel decides (ports, direction, failed attempts), end to end: the compiled agent
 * started with --exclude-port, then PUT /filters while real connections between pods come and go,
 * with each way of keeping state. A connection those filters drop never reaches the agent: no
 * line, and `kmesh_accesslog_lines_filtered_in_kernel_total`, read from the kernel's own counters,
 * counts it, as does `kmesh_accesslog_lines_filtered_total`; over the hash map it has no entry
 * either while it is open. A connection open while the filters change is judged by the filters in
 * force at its close (README, Filters).
 *
 * Exact counts where only our connections can meet a filter (a port outside the ephemeral range);
 * a keep list or a direction also drops the machine's other connections, so there the counts are
 * at least ours. Admin requests go over the Unix socket: a TCP scrape would be a connection too.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/kernel-filters.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { agentUnavailableReason, keptInTable, keptWithEachSocket, matchConnection } from "./agent.ts";
import { adminRequest, metrics, startAdminAgent, type AdminAgent } from "./admin-support.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { agentMapId, dumpConnections } from "./probe-maps.ts";

const ready = prerequisitesMet("kernel filters", netnsUnavailableReason() ?? agentUnavailableReason());

/** Ports outside the ephemeral range, so that no other connection of the machine has them at either end. */
const PORT = 20_000 + Math.floor(Math.random() * 5_000);
const REFUSED_PORT = PORT + 5_000;
const total = (name: string) => `kmesh_accesslog_lines_filtered_total{filter="${name}"}`;
const inKernel = (name: string) => `kmesh_accesslog_lines_filtered_in_kernel_total{filter="${name}"}`;
const KERNEL_LABELS = ["direction", "failed_only", "port", "exclude_port"];
/** Room for qemu's TCG in the kernel matrix (about ten times slower): how long a connection is held open while filters change, waits for lines, and each test. */
const HOLD_MS = 3_000;
const WAIT_MS = 30_000;
const TEST_MS = 180_000;
/** After a change of filters, the records the kernel had queued before it are read (by the new filters) within this. */
const SETTLE_MS = 300;

interface Key {
  srcAddr: string;
  srcPort: number;
  dstAddr: string;
  dstPort: number;
}

describe.skipIf(!ready).each(["socket-table", "hash-map", "socket-storage"] as const)("filters decided in the kernel, --connection-state %s", (state) => {
  let node: TestNode;
  let a: Pod;
  let b: Pod;
  let agent: AdminAgent;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["a", "b"] });
    [a, b] = [node.pod("a"), node.pod("b")];
    agent = await startAdminAgent({ args: ["--no-kubelet", "--no-kube-api", "--connection-state", state, "--exclude-port", String(PORT)] });
    await waitUntilCapturing(agent.agent, a, b);
  }, TEST_MS);
  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  const scrape = () => metrics(agent.socket);
  const put = async (filters: object) => expect((await adminRequest(agent.socket, "PUT", "/filters", 5_000, JSON.stringify(filters))).status).toBe(200);
  const linesOf = (key: Key) => agent.agent.filter(matchConnection(key));

  /** One request/response from a to b on `port` (else any); `whileOpen` runs once it is established. */
  async function connect(port?: number, o: { holdMs?: number; whileOpen?: () => Promise<void> | void } = {}): Promise<Key> {
    const server = await startServer(b, { host: b.ip4, ...(port === undefined ? {} : { port }), recv: 3, send: 5 });
    try {
      const client = runClient(a, { host: b.ip4, port: server.port, send: 3, recv: 5, closeFirst: true, ...(o.holdMs === undefined ? {} : { holdMs: o.holdMs }) });
      if (o.whileOpen !== undefined) {
        const established = () => a.run(["ss", "-Htn", "state", "established", `dport = :${server.port}`]).stdout.trim() !== "";
        for (let i = 0; i < 100 && !established(); i++) await Bun.sleep(20);
        await o.whileOpen();
      }
      const done = await client;
      expect(done.error).toBeNull();
      await server.finished();
      return { srcAddr: done.localAddress, srcPort: done.localPort, dstAddr: b.ip4, dstPort: server.port };
    } finally {
      server.kill();
    }
  }

  /** A connection no filter here drops; resolves once both its lines are out (and so every earlier line). */
  async function marker(port?: number): Promise<Key> {
    const key = await connect(port);
    await agent.agent.waitForLines(matchConnection(key), 2, WAIT_MS);
    return key;
  }

  test("the way of keeping state is the one asked for", () => {
    if (state === "socket-table") keptInTable(agent.agent.stderrLines);
    const storage = state === "socket-storage" && keptWithEachSocket(agent.agent.stderrLines);
    expect(agent.agent.stderrLines.some((l) => l.includes(storage ? "connection state kept with each socket" : "open connections tracked"))).toBe(true);
  });

  test("--exclude-port from the start: no line, no entry while open, counted in the kernel exactly; a refused attempt too", async () => {
    const before = await scrape();
    for (const label of KERNEL_LABELS) expect([label, before.get(inKernel(label))]).toEqual([label, 0]);
    expect(before.get(total("exclude_port"))).toBe(0);

    let entries: unknown[] = [];
    const held = await connect(PORT, {
      holdMs: HOLD_MS,
      whileOpen: () => {
        // Over the hash map, neither end of it has an entry (the others are not dumped here).
        if (state !== "hash-map") return;
        const map = agentMapId(agent.agent.pid, "connections");
        entries = dumpConnections(map).filter((e) => e.state.remotePort === PORT || e.state.localPort === PORT);
      },
    });
    // A refused attempt reports no local port: the client binds one.
    const localPort = 30_000 + Math.floor(Math.random() * 2_000);
    const refused = await runClient(a, { host: b.ip4, port: REFUSED_PORT, localPort });
    expect(refused.error).toBe("ECONNREFUSED");
    // Its line out before the change (a record still queued when filters change meets the new ones).
    await agent.agent.waitForLines(matchConnection({ srcAddr: a.ip4, srcPort: localPort, dstAddr: b.ip4, dstPort: REFUSED_PORT }), 1, WAIT_MS);
    await put({ excludePort: [PORT, REFUSED_PORT] });
    const refusedAgain = await runClient(a, { host: b.ip4, port: REFUSED_PORT, localPort: localPort + 1 });
    expect(refusedAgain.error).toBe("ECONNREFUSED");
    await marker();

    expect(entries).toEqual([]);
    expect(linesOf(held)).toEqual([]);
    // The first attempt was before REFUSED_PORT was excluded: its line is there; the second has none.
    expect(linesOf({ srcAddr: a.ip4, srcPort: localPort, dstAddr: b.ip4, dstPort: REFUSED_PORT }).map((e) => e.error)).toEqual(["ECONNREFUSED"]);
    expect(linesOf({ srcAddr: a.ip4, srcPort: localPort + 1, dstAddr: b.ip4, dstPort: REFUSED_PORT })).toEqual([]);
    const after = await scrape();
    expect({ total: after.get(total("exclude_port")), inKernel: after.get(inKernel("exclude_port")) }).toEqual({ total: 3, inKernel: 3 });
  }, TEST_MS);

  test("PUT: a keep list, then a direction, each for the next connection; dropped in the kernel", async () => {
    await put({ port: [PORT] });
    await Bun.sleep(SETTLE_MS);
    const m0 = await scrape();
    const other = await connect();
    const kept = await marker(PORT);
    expect(linesOf(other)).toEqual([]);
    expect(linesOf(kept).map((e) => [e.direction, e.sentBytes, e.receivedBytes]).sort()).toEqual([
      ["INBOUND", 5, 3],
      ["OUTBOUND", 3, 5],
    ]);
    const m1 = await scrape();
    // At least our connection's two ends (the machine's other connections are dropped too), and
    // every drop by port was the kernel's: the agent dropped none.
    const grown = (m: Map<string, number>, from: Map<string, number>, name: string) => m.get(name)! - from.get(name)!;
    expect(grown(m1, m0, inKernel("port"))).toBeGreaterThanOrEqual(2);
    expect(grown(m1, m0, total("port"))).toBe(grown(m1, m0, inKernel("port")));

    await put({ direction: "INBOUND" });
    await Bun.sleep(SETTLE_MS);
    const m1b = await scrape();
    const inbound = await connect();
    await agent.agent.waitForLines(matchConnection(inbound, "INBOUND"), 1, WAIT_MS);
    const m2 = await scrape();
    expect(grown(m2, m1b, inKernel("direction"))).toBeGreaterThanOrEqual(1);
    expect(grown(m2, m1b, total("direction"))).toBe(grown(m2, m1b, inKernel("direction")));
    // INBOUND lines only: once a later connection's is out, every earlier line is.
    const next = await connect();
    await agent.agent.waitForLines(matchConnection(next, "INBOUND"), 1, WAIT_MS);
    expect(linesOf(inbound).map((e) => e.direction)).toEqual(["INBOUND"]);
    expect(linesOf(next).map((e) => e.direction)).toEqual(["INBOUND"]);
  }, TEST_MS);

  test("filters changed while a connection is open: its close is judged by the filters then", async () => {
    // Tracked from its start, dropped at its close.
    await put({});
    const m0 = await scrape();
    const droppedAtClose = await connect(PORT, { holdMs: HOLD_MS, whileOpen: () => put({ excludePort: [PORT] }) });
    // Not tracked from its start (dropped then), kept at its close: reported as a connection whose start is unknown.
    const keptAtClose = await connect(PORT, { holdMs: HOLD_MS, whileOpen: () => put({}) });
    await agent.agent.waitForLines(matchConnection(keptAtClose), 2, WAIT_MS);
    // No filter: nothing is counted in the kernel.
    await marker();
    const m1 = await scrape();

    expect(linesOf(droppedAtClose)).toEqual([]);
    expect(linesOf(keptAtClose).map((e) => [e.direction, e.startNs, e.sentBytes, e.receivedBytes]).sort()).toEqual([
      ["INBOUND", null, 5, 3],
      ["OUTBOUND", null, 3, 5],
    ]);
    for (const label of KERNEL_LABELS) {
      const grew = m1.get(inKernel(label))! - m0.get(inKernel(label))!;
      expect([label, grew]).toEqual([label, label === "exclude_port" ? 2 : 0]);
    }
    expect(m1.get(total("exclude_port"))! - m0.get(total("exclude_port"))!).toBe(2);
  }, TEST_MS);
});
