/**
 * The TCP corners where a line could go wrong, each made for real on the test node: Fast Open
 * (payload in the SYN, a FIN with the SYN-ACK), a socket that connects to itself, and the map
 * states the kernel leaves behind when it skips the probe (a run at ESTABLISHED never made, a
 * close never seen, a socket's memory holding another connection). Plus the network namespace of
 * each line in JSON.
 *
 * Needs root, bpftool and dist/kmesh-accesslog. Run: `bun test test/e2e/tcp-corners.test.ts`.
 */
import { statSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AdminAgent, closeCounts, startAdminAgent } from "./admin-support.ts";
import { type AccessLogEntry, agentUnavailableReason, matchConnection } from "./agent.ts";
import { exchange, runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { DIRECTION_INBOUND, DIRECTION_OUTBOUND } from "../../src/kernel/record.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { agentMapId, bpftoolUnavailableReason, type ConnEntry, deleteEntry, dumpConnections, entriesTo, hasEntry, ipv4Word, writeEntry } from "./probe-maps.ts";

const ready = prerequisitesMet(
  "TCP corners",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? bpftoolUnavailableReason(),
);

const SOCKETS = `${import.meta.dir}/sockets.ts`;

type Key = { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number };
const isClose = (e: AccessLogEntry) => e.state === "BPF_TCP_CLOSE";

/** Runs `sockets.ts <args>` in the pod to completion and returns its JSON report. */
async function sockets<T>(pod: Pod, args: string[]): Promise<T> {
  const proc = pod.exec([process.execPath, SOCKETS, ...args]);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`sockets.ts ${args[0]} in ${pod.name} exited ${code}: ${stderr.trim()}`);
  return JSON.parse(stdout.trim()) as T;
}

/** The first line a process prints, as JSON; its stdout is free for others afterwards. */
async function firstLine<T>(proc: { stdout: ReadableStream<Uint8Array> }): Promise<T> {
  const reader = proc.stdout.getReader();
  try {
    let text = "";
    while (!text.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the process ended before its first line (got ${JSON.stringify(text)})`);
      text += new TextDecoder().decode(value);
    }
    return JSON.parse(text.slice(0, text.indexOf("\n"))) as T;
  } finally {
    reader.releaseLock();
  }
}

/** Polls until `check` returns a value (not undefined), or fails after `timeoutMs`. */
async function eventually<T>(what: string, check: () => T | undefined | Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(50);
  }
}

describe.skipIf(!ready)("TCP corners", () => {
  let node: TestNode;
  let agent: AdminAgent;
  let client: Pod;
  let server: Pod;
  let mapId: number;

  /** The one close line of `key` in `direction`, once it is there. */
  async function closeLine(key: Key, direction: "OUTBOUND" | "INBOUND"): Promise<AccessLogEntry> {
    const match = matchConnection(key, direction);
    await agent.agent.waitForLines((e) => match(e) && isClose(e), 1, 10_000);
    const lines = agent.agent.filter((e) => match(e) && isClose(e));
    expect(lines.map((e) => e.raw)).toHaveLength(1);
    return lines[0]!;
  }

  const figures = (e: AccessLogEntry) => ({
    direction: e.direction,
    sent: e.sentBytes,
    received: e.receivedBytes,
    error: e.error,
    startKnown: e.startNs !== null,
  });

  const closesMissed = async () => (await closeCounts(agent.adminAddr)).missed;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "raw", "stale"] });
    [client, server] = [node.pod("client"), node.pod("server")];
    // Fast Open for clients and servers, with no cookie asked for or needed.
    client.run(["sysctl", "-qw", "net.ipv4.tcp_fastopen=0x207"]);
    // The hash map (the default): these tests rewrite the state the kernel keeps, which bpftool reaches there.
    agent = await startAdminAgent({ output: "json", args: ["--connection-metrics", "--report-interval", "0.5", "--connection-state", "hash-map"] });
    await waitUntilCapturing(agent.agent, client, server);
    mapId = agentMapId(agent.agent.proc.pid, "connections");
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  for (const [family, closeFirst] of [[4, "client"], [6, "server"]] as const) {
    test(`Fast Open, IPv${family}, ${closeFirst} closes first: the SYN's data is payload on both sides`, async () => {
      const before = client.tcpCounters();
      const host = client.ip(family);
      const r = await sockets<{ clientPort: number; serverPort: number; client: { written: number; read: number }; server: { written: number; read: number } }>(
        client,
        ["fastopen", "--host", host, "--syn-data", "10", "--more", "90", "--reply", "500", "--close-first", closeFirst],
      );
      const after = client.tcpCounters();
      // The kernel really sent and accepted data in the SYN.
      expect(after.TcpExtTCPFastOpenActive! - before.TcpExtTCPFastOpenActive!).toBe(1);
      expect(after.TcpExtTCPFastOpenPassive! - before.TcpExtTCPFastOpenPassive!).toBe(1);
      expect(r.client).toEqual({ written: 100, read: 500 });
      expect(r.server).toEqual({ written: 500, read: 100 });
      const key = { srcAddr: host, srcPort: r.clientPort, dstAddr: host, dstPort: r.serverPort };
      expect(figures(await closeLine(key, "OUTBOUND"))).toEqual({ direction: "OUTBOUND", sent: 100, received: 500, error: null, startKnown: true });
      expect(figures(await closeLine(key, "INBOUND"))).toEqual({ direction: "INBOUND", sent: 500, received: 100, error: null, startKnown: true });
    });
  }

  for (const data of [10, 0]) {
    test(`Fast Open: a FIN that comes with the SYN-ACK (and ${data} bytes) is not counted as a byte`, async () => {
      const raw = node.pod("raw");
      // The stand-in server is a raw socket: its kernel must not reset what it does not know.
      raw.iptables(["-A", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"]);
      try {
        const port = 7_000 + data;
        const fake = raw.exec([process.execPath, SOCKETS, "fin-in-synack", "--host", raw.ip4, "--port", String(port), "--data", String(data)]);
        expect(await firstLine<{ event: string }>(fake)).toMatchObject({ event: "listening" });
        const r = await sockets<{ clientPort: number; written: number; read: number }>(client, [
          "fastopen-client", "--host", raw.ip4, "--port", String(port), "--syn-data", "5",
        ]);
        expect(r).toMatchObject({ written: 5, read: data });
        expect(await fake.exited).toBe(0);
        const key = { srcAddr: client.ip4, srcPort: r.clientPort, dstAddr: raw.ip4, dstPort: port };
        expect(figures(await closeLine(key, "OUTBOUND"))).toEqual({ direction: "OUTBOUND", sent: 5, received: data, error: null, startKnown: true });
        expect(agent.agent.filter(matchConnection(key)).filter(isClose)).toHaveLength(1);
      } finally {
        raw.iptables(["-D", "OUTPUT", "-p", "tcp", "--tcp-flags", "RST", "RST", "-j", "DROP"]);
      }
    });
  }

  test("a Fast Open child that dies before its handshake ends: one INBOUND failure line", async () => {
    const raw = node.pod("raw");
    server.run(["sysctl", "-qw", "net.ipv4.tcp_fastopen=0x207"]);
    const listening = server.exec([process.execPath, SOCKETS, "fastopen-server", "--host", server.ip4]);
    try {
      const { port } = await firstLine<{ port: number }>(listening);
      const before = server.tcpCounters();
      // The SYN carries data, so the server makes the child at once and answers; the raw side's
      // kernel knows no such connection and resets it: the child dies in SYN_RECV.
      const { sourcePort } = await sockets<{ sourcePort: number }>(raw, ["syn-data", "--host", raw.ip4, "--to", server.ip4, "--port", String(port), "--data", "10"]);
      const key = { srcAddr: raw.ip4, srcPort: sourcePort, dstAddr: server.ip4, dstPort: port };
      const line = await closeLine(key, "INBOUND");
      expect(server.tcpCounters().TcpExtTCPFastOpenPassive! - before.TcpExtTCPFastOpenPassive!).toBe(1);
      expect({ ...figures(line), state: line.state }).toEqual({
        direction: "INBOUND", sent: 0, received: 0, error: "ECONNRESET", startKnown: false, state: "BPF_TCP_CLOSE",
      });
      expect(agent.agent.filter(matchConnection(key)).map((e) => e.direction)).toEqual(["INBOUND"]);
    } finally {
      listening.kill("SIGKILL");
    }
  });

  for (const family of [4, 6] as const) {
    test(`a socket connected to itself, IPv${family}: one OUTBOUND line, exact bytes, no close missed`, async () => {
      const missed = await closesMissed();
      const host = client.ip(family);
      const r = await sockets<{ port: number; written: number; read: number }>(client, ["self-connect", "--host", host, "--bytes", "300"]);
      expect(r).toMatchObject({ written: 300, read: 300 });
      const key = { srcAddr: host, srcPort: r.port, dstAddr: host, dstPort: r.port };
      expect(figures(await closeLine(key, "OUTBOUND"))).toEqual({ direction: "OUTBOUND", sent: 300, received: 300, error: null, startKnown: true });
      await Bun.sleep(200);
      expect(agent.agent.filter(matchConnection(key)).filter(isClose).map((e) => e.direction)).toEqual(["OUTBOUND"]);
      expect(await closesMissed()).toBe(missed);
    });
  }

  /** How long heldConnection waits for each side's entry in the map. */
  const HELD_ENTRY_MS = 20_000;

  /** A held connection client → server; resolves with both reports when it is over. */
  async function heldConnection(holdMs: number) {
    const peer = await startServer(server, { host: server.ip4, recv: 1000, send: 5000 });
    const done = runClient(client, { host: server.ip4, port: peer.port, send: 1000, recv: 5000, closeFirst: true, holdMs }).then(
      async (c) => ({ client: c, server: await peer.report(c.localPort) }),
    );
    void done.catch(() => undefined);
    // (under TCG the client's start and each bpftool dump take seconds)
    const outbound = await eventually(
      "the OUTBOUND entry",
      () => entriesTo(mapId, server.ip4, peer.port).find((e) => e.state.direction === DIRECTION_OUTBOUND),
      HELD_ENTRY_MS,
    );
    const inbound = await eventually(
      "the INBOUND entry",
      () =>
        dumpConnections(mapId).find(
          (e) => e.state.direction === DIRECTION_INBOUND && e.state.localPort === peer.port && e.state.remoteAddr === ipv4Word(client.ip4),
        ),
      HELD_ENTRY_MS,
    );
    return { port: peer.port, outbound, inbound, done };
  }

  test("the probe's runs at ESTABLISHED skipped: the lines are still exact, never failed attempts", async () => {
    // Held long enough to find both entries under TCG: at 1.5 s, 5.10's VM once did not.
    const held = await heldConnection(4_000);
    // What the map holds when the kernel skipped the probe at ESTABLISHED: the connect()ing side's
    // entry as connect() left it, no entry at all for the accepting side.
    const asAtConnect: ConnEntry = { key: held.outbound.key, state: { ...held.outbound.state, localPort: 0, flags: 0 } };
    writeEntry(mapId, asAtConnect);
    deleteEntry(mapId, held.inbound.key);
    const { client: c } = await held.done;
    const key = { srcAddr: client.ip4, srcPort: c.localPort, dstAddr: server.ip4, dstPort: held.port };
    expect(figures(await closeLine(key, "OUTBOUND"))).toEqual({ direction: "OUTBOUND", sent: 1000, received: 5000, error: null, startKnown: true });
    expect(figures(await closeLine(key, "INBOUND"))).toEqual({ direction: "INBOUND", sent: 5000, received: 1000, error: null, startKnown: false });
  });

  test("a socket's memory holding another connection: not reported as this one, counted, then reported as unknown", async () => {
    const held = await heldConnection(3_000);
    const match = (e: AccessLogEntry) => e.dstAddr === server.ip4 && e.dstPort === held.port && e.direction === "OUTBOUND";
    await agent.agent.waitForLines((e) => match(e) && e.state === "BPF_TCP_ESTABLISHED", 1, 5_000);
    const missed = await closesMissed();
    // The entry now names another peer port: the socket behind it is not its connection.
    writeEntry(mapId, { key: held.outbound.key, state: { ...held.outbound.state, remotePort: held.port ^ 1 } });
    const rewritten = Date.now();
    await eventually("the entry dropped", () => (hasEntry(mapId, held.outbound.key) ? undefined : true));
    expect(await closesMissed()).toBe(missed + 1);
    await Bun.sleep(1_200); // two more rounds of periodic reports
    const late = agent.agent.filter((e) => match(e) && e.state === "BPF_TCP_ESTABLISHED" && Number(e.timeNs! / 1_000_000n) > rewritten + 600);
    expect(late.map((e) => e.raw)).toEqual([]);
    const { client: c } = await held.done;
    const key = { srcAddr: client.ip4, srcPort: c.localPort, dstAddr: server.ip4, dstPort: held.port };
    expect(figures(await closeLine(key, "OUTBOUND"))).toEqual({ direction: "OUTBOUND", sent: 1000, received: 5000, error: null, startKnown: false });
    expect(figures(await closeLine(key, "INBOUND"))).toEqual({ direction: "INBOUND", sent: 5000, received: 1000, error: null, startKnown: true });
  });

  test("an attempt whose close was never seen is reaped by the periodic reports", async () => {
    const stale = node.pod("stale");
    const port = 7_071;
    server.iptables(["-A", "INPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"]);
    stale.run(["sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"]);
    try {
      const attempt = runClient(stale, { host: server.ip4, port });
      const entry = await eventually("the attempt's entry", () =>
        entriesTo(mapId, server.ip4, port).find((e) => e.state.direction === DIRECTION_OUTBOUND),
      );
      expect(entry.state.localPort).toBe(0);
      const report = await attempt;
      expect(report.error).not.toBeNull();
      // its failure line (ETIMEDOUT, or ECONNABORTED where the client gave up first)
      await agent.agent.waitForLines((e) => e.dstAddr === server.ip4 && e.dstPort === port && e.error !== null, 1, 10_000);
      // Judged by the peer, not the key: the freed socket's memory (the key) may be another
      // socket's by now, tracked under the same key (the kernel reuses it at once).
      expect(entriesTo(mapId, server.ip4, port)).toEqual([]);
      // As if the probe had not run for its close: the entry is back, its socket closed.
      const missed = await closesMissed();
      writeEntry(mapId, entry);
      await eventually("the stale entry reaped", () => (entriesTo(mapId, server.ip4, port).length > 0 ? undefined : true), 3_000);
      expect(await closesMissed()).toBe(missed + 1);
    } finally {
      server.iptables(["-D", "INPUT", "-p", "tcp", "--dport", String(port), "-j", "DROP"]);
    }
  }, 30_000);

  test("JSON lines name each socket's network namespace (the inode ip netns and lsns show)", async () => {
    const { client: c, server: s } = await exchange(client, server, { family: 4, clientSend: 10, serverSend: 20, closeFirst: "client" });
    const key = { srcAddr: c.localAddress, srcPort: c.localPort, dstAddr: s.localAddress, dstPort: s.localPort };
    const netnsOf = async (direction: "OUTBOUND" | "INBOUND") => (JSON.parse((await closeLine(key, direction)).raw) as { netns: number }).netns;
    expect(await netnsOf("OUTBOUND")).toBe(statSync(`/run/netns/${client.netns}`).ino);
    expect(await netnsOf("INBOUND")).toBe(statSync(`/run/netns/${server.netns}`).ino);
  });
});
