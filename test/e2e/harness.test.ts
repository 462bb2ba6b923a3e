/**
 * Self-test of the end-to-end harness (node.ts, peer.ts, exchange.ts, the line parser in
 * agent.ts): runs without the agent binary, so the harness is known good before the capture
 * tests rely on it.
 */
import { describe, expect, test } from "bun:test";
import { nsToMs, parseAddr, parseJsonLine, parseRfc3339, parseTextLine, parseTime } from "./agent.ts";
import { problemsWith, serverBegan } from "./connection-checks.ts";
import { type ConnectionReport, exchange, runClient, startServer } from "./exchange.ts";
import { createTestNode, listNamespaces, NETNS_PREFIX, run, sweepStaleNamespaces } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const MiB = 1024 * 1024;
const SEED =
  "accesslog: 2025-04-24 08:54:40.971980208 +0000 UTC src.addr=10.244.2.79:41978, src.workload=-, src.namespace=-, " +
  "dst.addr=10.244.2.78:8080, dst.service=10.244.2.78, dst.workload=-, dst.namespace=-, " +
  "start_time=2025-04-24 08:53:50.919245381 +0000 UTC, direction=OUTBOUND, state=BPF_TCP_CLOSE, sent_bytes=3, " +
  "received_bytes=227, packet_loss=0, retransmissions=0, srtt=40515us, min_rtt=34us, duration=50052.734827ms";

describe("line parser", () => {
  test("parses the seed line", () => {
    const e = parseTextLine(SEED);
    expect(e).toMatchObject({
      srcAddr: "10.244.2.79",
      srcPort: 41978,
      dstAddr: "10.244.2.78",
      dstPort: 8080,
      dstService: "10.244.2.78",
      srcWorkload: "-",
      direction: "OUTBOUND",
      state: "BPF_TCP_CLOSE",
      sentBytes: 3,
      receivedBytes: 227,
      packetLoss: 0,
      retransmissions: 0,
      srttUs: 40515,
      minRttUs: 34,
      durationMs: 50052.734827,
      error: null,
    });
    expect(e.timeNs! - e.startNs!).toBe(50_052_734_827n);
  });

  test("IPv6 in brackets, trailing error field", () => {
    const line = SEED.replace("10.244.2.79:41978", "[fd00::1]:41978").replace(
      "duration=50052.734827ms",
      "duration=0.5ms, error=ECONNREFUSED",
    );
    expect(parseTextLine(line)).toMatchObject({ srcAddr: "fd00::1", srcPort: 41978, error: "ECONNREFUSED" });
  });

  test("rejects deviations from the format", () => {
    expect(() => parseTextLine(SEED.replace("10.244.2.79:41978", "fd00::1:41978"))).toThrow(/ip:port/);
    expect(() => parseTextLine(SEED.replace(".971980208", ".971980200"))).toThrow(/trailing zeros/);
    expect(() => parseTextLine(SEED.replace("srtt=40515us", "srtt=40515"))).toThrow(/us/);
    expect(() => parseTextLine(SEED.replace("src.workload=-, src.namespace=-", "src.namespace=-, src.workload=-"))).toThrow(
      /expected/,
    );
    expect(() => parseTextLine(SEED.replace("accesslog: ", ""))).toThrow(/prefix/);
  });

  test("Go time layout", () => {
    expect(parseTime("2025-04-24 08:54:40 +0000 UTC")).toBe(1745484880_000000000n);
    expect(parseTime("2025-04-24 08:54:40.5 +0000 UTC")).toBe(1745484880_500000000n);
    expect(parseAddr("[::1]:80")).toEqual({ addr: "::1", port: 80 });
  });

  test("JSON times: RFC 3339 in UTC with nine fraction digits, and nothing else", () => {
    expect(parseRfc3339("2026-12-01T12:22:18.152687231Z")).toBe(1796127738_152687231n);
    expect(parseRfc3339("2028-02-29T00:00:00.000000000Z")).toBe(1835395200_000000000n);
    for (const bad of [
      "2026-12-01 12:22:18.152687231 +0000 UTC",
      "2026-12-01T12:22:18.15268723Z",
      "2026-12-01T12:22:18Z",
      "2026-12-01T12:22:18.152687231+00:00",
      "2026-12-01t12:22:18.152687231z",
      "2026-02-30T12:22:18.152687231Z",
      "2026-12-01T24:00:00.000000000Z",
      "2026-13-01T12:22:18.152687231Z",
    ]) {
      expect(() => parseRfc3339(bad)).toThrow(/RFC 3339|real UTC date/);
    }
  });

  test("JSON lines need numbers", () => {
    const json = {
      time: "2025-04-24T08:54:40.971980208Z",
      src_addr: "10.244.2.79",
      src_port: 41978,
      src_workload: "-",
      src_namespace: "-",
      dst_addr: "10.244.2.78",
      dst_port: 8080,
      dst_service: "10.244.2.78",
      dst_workload: "-",
      dst_namespace: "-",
      start_time: "2025-04-24T08:53:50.919245381Z",
      direction: "OUTBOUND",
      state: "BPF_TCP_CLOSE",
      sent_bytes: 3,
      received_bytes: 227,
      packet_loss: 0,
      retransmissions: 0,
      srtt_us: 40515,
      min_rtt_us: 34,
      duration_ms: 50052.734827,
      error: null,
      netns: 4026531840,
      process_pid: 4242,
      process_command: "ws-client",
      container_id: "ab".repeat(32),
      container_name: "client",
    };
    expect(parseJsonLine(JSON.stringify(json))).toMatchObject({ srcPort: 41978, sentBytes: 3, durationMs: 50052.734827, processPid: 4242, containerName: "client" });
    expect(() => parseJsonLine(JSON.stringify({ ...json, sent_bytes: "3" }))).toThrow(/sent_bytes/);
    expect(() => parseJsonLine(JSON.stringify({ ...json, process_pid: "4242" }))).toThrow(/process_pid/);
    expect(() => parseJsonLine(JSON.stringify({ ...json, container_id: "not-an-id" }))).toThrow(/container_id/);
  });
});

describe("a line's times against the peers' clocks", () => {
  // The seed line as the server's INBOUND line of a connection that lived 50 s.
  const line = parseTextLine(SEED.replace("direction=OUTBOUND", "direction=INBOUND"));
  const kernelStartMs = nsToMs(line.startNs!);
  const report = (event: "client" | "server", startMs: number): ConnectionReport => ({
    event,
    localAddress: "10.244.2.78",
    localPort: 8080,
    remoteAddress: "10.244.2.79",
    remotePort: 41978,
    bytesWritten: 3,
    bytesRead: 227,
    startMs,
    connectedMs: null,
    payloadMs: null,
    closedMs: nsToMs(line.timeNs!),
    firstFin: null,
    error: null,
  });

  test("a server's accept callback late by 435 ms is no problem: its line is judged from the client's start", () => {
    const server = report("server", kernelStartMs + 435);
    expect(problemsWith(line, server, 250)).toEqual(["start_time is 435.000ms before the server began"]);
    expect(problemsWith(line, server, 250, serverBegan(report("client", kernelStartMs - 1), server))).toEqual([]);
  });

  test("a start_time before the client began connecting is still a problem", () => {
    const server = report("server", kernelStartMs + 435);
    expect(problemsWith(line, server, 250, serverBegan(report("client", kernelStartMs + 300), server))).toEqual([
      "start_time is 300.000ms before the client began connecting",
    ]);
    // A client whose start came after the server's: the server's own start is the bound.
    const sooner = report("server", kernelStartMs + 260);
    expect(problemsWith(line, sooner, 250, serverBegan(report("client", kernelStartMs + 300), sooner))).toEqual([
      "start_time is 260.000ms before the server began",
    ]);
  });
});

const ready = prerequisitesMet("harness self-test", netnsUnavailableReason());

describe.skipIf(!ready)("test node", () => {
  const ourNamespaces = () => listNamespaces().filter((n) => n.startsWith(`${NETNS_PREFIX}${process.pid}-`));
  const rootLinks = () => run(["ip", "-o", "link", "show"]).stdout.split("\n").map((l) => l.split(":")[1]?.trim()).sort();

  test("builds pods on a bridge, nothing in the root namespace, removes it all", async () => {
    const linksBefore = rootLinks();
    let names: string[];
    let sleeperPid = 0;
    {
      await using node = await createTestNode({ pods: ["a", "b"] });
      names = node.namespaces();
      expect(names).toHaveLength(3);
      for (const n of names) expect(listNamespaces()).toContain(n);
      const a = node.pod("a");
      expect(a.ip4).toMatch(/^10\.244\.\d+\.2$/);
      expect(a.ip6).toMatch(/^fd00:[0-9a-f]{1,4}::2$/);
      expect(a.run(["ip", "-o", "addr", "show", "dev", "eth0"]).stdout).toContain(`${a.ip6}/64`);
      // No route out: only the pod subnet.
      expect(a.run(["ip", "-4", "route"]).stdout.trim().split("\n")).toHaveLength(1);
      expect(rootLinks()).toEqual(linksBefore);
      const sleeper = a.exec(["sleep", "600"]);
      expect(sleeper.exitCode).toBeNull();
      sleeperPid = sleeper.pid;
    }
    for (const n of names) expect(listNamespaces()).not.toContain(n);
    expect(ourNamespaces()).toEqual([]);
    expect(() => process.kill(sleeperPid, 0)).toThrow();
  });

  test("a remote pod: behind br1 on its own subnets, reached through the node's routing, both families", async () => {
    await using node = await createTestNode({ pods: ["a", { name: "far", remote: true }] });
    const [a, far] = [node.pod("a"), node.pod("far")];
    expect({ far4: far.ip4, far6: far.ip6, gw4: node.gateway(4, true), gw6: node.gateway(6) }).toEqual({
      far4: `${node.remoteSubnet4}.3`,
      far6: `${node.remoteSubnet6}:3`,
      gw4: `${node.remoteSubnet4}.1`,
      gw6: `${node.subnet6}:1`,
    });
    expect(run(["ip", "-n", node.netns, "-o", "link", "show", "master", "br1"]).stdout).toContain("veth1@");
    expect(a.run(["ip", "-4", "route", "show", "default"]).stdout.trim()).toBe(`default via ${node.gateway(4)} dev eth0`);
    for (const family of [4, 6] as const) {
      const { server } = await exchange(a, far, { family, clientSend: 10, serverSend: 20, closeFirst: "client" });
      expect(server.remoteAddress).toBe(a.ip(family)); // routed, not translated
    }
    // A NAT rule in the node's namespace applies to what it routes.
    node.iptables(["-t", "nat", "-A", "POSTROUTING", "-o", "br1", "-j", "MASQUERADE"]);
    const { server } = await exchange(a, far, { family: 4, clientSend: 10, serverSend: 20, closeFirst: "client" });
    expect(server.remoteAddress).toBe(node.gateway(4, true));
  });

  test("cleans up after an error thrown midway, and kills its processes", async () => {
    let names: string[] = [];
    let pid = 0;
    const attempt = async () => {
      await using node = await createTestNode({ pods: ["x"] });
      names = node.namespaces();
      pid = node.pod("x").exec(["sleep", "600"]).pid;
      throw new Error("boom");
    };
    await expect(attempt()).rejects.toThrow("boom");
    expect(names.length).toBe(2);
    for (const n of names) expect(listNamespaces()).not.toContain(n);
    expect(() => process.kill(pid, 0)).toThrow();
  });

  test("a failure while building removes what was built", async () => {
    const before = ourNamespaces();
    await expect(createTestNode({ pods: ["ok", "Bad_Name"] })).rejects.toThrow(/bad pod name/);
    expect(ourNamespaces()).toEqual(before);
  });

  test("sweeps namespaces left by a dead run", () => {
    const stale = `${NETNS_PREFIX}99999999-dead-node`;
    run(["ip", "netns", "add", stale]);
    expect(sweepStaleNamespaces()).toContain(stale);
    expect(listNamespaces()).not.toContain(stale);
  });
});

describe.skipIf(!ready)("peers across the bridge", () => {
  const cases = [
    { clientSend: 0, serverSend: 0 },
    { clientSend: 1, serverSend: 1 },
    { clientSend: 1000, serverSend: 5000 },
    { clientSend: 4 * MiB, serverSend: 3 * MiB },
  ];
  for (const family of [4, 6] as const) {
    for (const closeFirst of ["client", "server"] as const) {
      test(`IPv${family}, ${closeFirst} closes first: exact bytes, consistent ports, no RST`, async () => {
        await using node = await createTestNode({ pods: ["a", "b"] });
        const [a, b] = [node.pod("a"), node.pod("b")];
        for (const c of cases) {
          const { client, server } = await exchange(a, b, { family, closeFirst, ...c });
          expect(client).toMatchObject({ bytesWritten: c.clientSend, bytesRead: c.serverSend, error: null });
          expect(server).toMatchObject({ bytesWritten: c.serverSend, bytesRead: c.clientSend, error: null });
          expect(client).toMatchObject({ localAddress: a.ip(family), remoteAddress: b.ip(family) });
          expect(server).toMatchObject({
            localAddress: b.ip(family),
            localPort: client.remotePort,
            remoteAddress: a.ip(family),
            remotePort: client.localPort,
          });
          expect(client.firstFin).toBe(closeFirst === "client" ? "local" : "remote");
          expect(server.firstFin).toBe(closeFirst === "server" ? "local" : "remote");
        }
        for (const pod of [a, b]) {
          const counters = pod.tcpCounters();
          expect(counters.TcpOutRsts ?? 0).toBe(0);
          expect(counters.TcpExtTCPAbortOnData ?? 0).toBe(0);
        }
      });
    }
  }

  test("dual-stack server reports an IPv4 peer as plain IPv4; hold keeps the connection open", async () => {
    await using node = await createTestNode({ pods: ["a", "b"] });
    const [a, b] = [node.pod("a"), node.pod("b")];
    const { client, server } = await exchange(a, b, {
      family: 4,
      serverHost: "::",
      clientSend: 10,
      serverSend: 20,
      closeFirst: "client",
      holdMs: 300,
    });
    expect(server.remoteAddress).toBe(a.ip4);
    expect(server.localAddress).toBe(b.ip4);
    expect(client.closedMs - client.startMs).toBeGreaterThanOrEqual(300);
    expect(client.closedMs - client.startMs).toBeLessThan(1000);
  });

  test("refused connection reports ECONNREFUSED with the chosen local port", async () => {
    await using node = await createTestNode({ pods: ["a", "b"] });
    const localPort = 20000 + Math.floor(Math.random() * 20000);
    const report = await runClient(node.pod("a"), { host: node.pod("b").ip4, port: 9, localPort });
    expect(report).toMatchObject({ error: "ECONNREFUSED", localPort, bytesWritten: 0, bytesRead: 0 });
  });

  test("iptables random drop works in a pod namespace; bytes stay exact", async () => {
    await using node = await createTestNode({ pods: ["a", "b"] });
    const [a, b] = [node.pod("a"), node.pod("b")];
    b.addRandomInputDrop(0.2);
    expect(b.run(["iptables", "-S", "INPUT"]).stdout).toContain("statistic");
    const { client, server } = await exchange(a, b, { family: 4, clientSend: 2 * MiB, serverSend: 1000, closeFirst: "client" });
    expect(client).toMatchObject({ bytesWritten: 2 * MiB, bytesRead: 1000 });
    expect(server).toMatchObject({ bytesWritten: 1000, bytesRead: 2 * MiB });
    expect(a.tcpCounters().TcpRetransSegs).toBeGreaterThan(0);
  }, 60_000); // a dropped SYN alone costs a 1 s retransmission

  test("a server can serve many connections until killed", async () => {
    await using node = await createTestNode({ pods: ["a", "b"] });
    const [a, b] = [node.pod("a"), node.pod("b")];
    const server = await startServer(b, { host: b.ip6, connections: 0, send: 3, recv: 2 });
    for (let i = 0; i < 3; i++) {
      const client = await runClient(a, { host: b.ip6, port: server.port, send: 2, recv: 3, closeFirst: true });
      expect((await server.report(client.localPort)).bytesRead).toBe(2);
    }
    server.kill();
  });
});
