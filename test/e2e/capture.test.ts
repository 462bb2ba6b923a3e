/**
 * End-to-end tests of the agent's core feature: one line per TCP connection, with exact values.
 * Real client and server processes (peer.ts) run in two pods of a throw-away test node; the
 * compiled agent runs on the host and sees them; every assertion compares the agent's line with
 * what the peers themselves observed.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/capture.test.ts`.
 */
import { readdirSync, readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type AccessLogEntry, type Agent, agentUnavailableReason, matchConnection, nsToMs, parseRfc3339, startAgent, TEXT_FIELDS } from "./agent.ts";
import { checkExchange, checkRefused, closeLines, isClose, type Key, keyOf } from "./connection-checks.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, run, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const MiB = 1024 * 1024;
const ready = prerequisitesMet("capture", netnsUnavailableReason() ?? agentUnavailableReason());

describe.skipIf(!ready)("capture: text lines", () => {
  let node: TestNode;
  let agent: Agent;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server", "lossy"] });
    [a, b] = [node.pod("client"), node.pod("server")];
    agent = startAgent({ output: "text" });
    await waitUntilCapturing(agent, a, b);
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  const sizes = [
    [0, 0],
    [1, 1],
    [1000, 5000],
    [4 * MiB, 3 * MiB],
  ] as const;
  for (const family of [4, 6] as const) {
    for (const [clientSend, serverSend] of sizes) {
      test(`IPv${family}, client sends ${clientSend} and receives ${serverSend}, client closes first`, async () => {
        await checkExchange(agent, a, b, { family, clientSend, serverSend, closeFirst: "client" });
      });
    }
    test(`IPv${family}, 1000/5000, server closes first`, async () => {
      await checkExchange(agent, a, b, { family, clientSend: 1000, serverSend: 5000, closeFirst: "server" });
    });
    test(`IPv${family}, connection held open 400 ms: duration matches`, async () => {
      const { out, inb } = await checkExchange(agent, a, b, {
        family,
        clientSend: 10,
        serverSend: 20,
        closeFirst: "client",
        holdMs: 400,
      });
      expect(out.durationMs!).toBeGreaterThanOrEqual(400);
      expect(inb.durationMs!).toBeGreaterThanOrEqual(400);
    });
  }

  test("IPv6 addresses are bracketed, fields in Kmesh order, unknown metadata is '-', dst.service is the IP", async () => {
    const { out, inb } = await checkExchange(agent, a, b, { family: 6, clientSend: 1, serverSend: 1, closeFirst: "client" });
    for (const e of [out, inb]) {
      expect(e.raw).toContain(` src.addr=[${a.ip6}]:${e.srcPort}, `);
      expect(e.raw).toContain(` dst.addr=[${b.ip6}]:${e.dstPort}, `);
      expect(e.fieldOrder).toEqual([...TEXT_FIELDS]);
      expect(e).toMatchObject({ srcWorkload: "-", srcNamespace: "-", dstWorkload: "-", dstNamespace: "-" });
      expect(e.dstService).toBe(b.ip6);
    }
  });

  test("a dual-stack server socket's IPv4 connection is written as plain IPv4", async () => {
    const { out, inb } = await checkExchange(agent, a, b, {
      family: 4,
      serverHost: "::",
      clientSend: 7,
      serverSend: 9,
      closeFirst: "client",
    });
    expect(inb.raw).toContain(`src.addr=${a.ip4}:${out.srcPort}, `);
    expect(inb.raw).toContain(`dst.addr=${b.ip4}:${out.dstPort}, `);
  });

  test("an IPv6 client socket reaching an IPv4 server through ::ffff: is written as plain IPv4", async () => {
    const { out, inb } = await checkExchange(agent, a, b, {
      family: 4,
      serverHost: "::",
      clientTarget: `::ffff:${b.ip4}`,
      clientSend: 3,
      serverSend: 4,
      closeFirst: "server",
    });
    for (const e of [out, inb]) {
      expect(e.raw).toContain(`src.addr=${a.ip4}:${out.srcPort}, `);
      expect(e.raw).toContain(`dst.addr=${b.ip4}:${out.dstPort}, `);
    }
  });

  test("a refused connection: one OUTBOUND line, zero bytes, error=ECONNREFUSED, no INBOUND line", async () => {
    await checkRefused(agent, a, b);
  });

  test("20% packet loss: retransmissions and packet_loss > 0, byte counts still exact", async () => {
    const lossy = node.pod("lossy");
    lossy.addRandomInputDrop(0.2);
    // A dropped SYN, FIN or final ACK is resent after a timeout (1 s, 200 ms) that the peers'
    // own clocks do not see: time checks get a loose bound here, counts stay exact.
    const { out, inb } = await checkExchange(
      agent,
      a,
      lossy,
      { family: 4, clientSend: 2 * MiB, serverSend: 1000, closeFirst: "client" },
      5_000,
    );
    const kernel = a.tcpCounters();
    expect({ line: out.raw, retransmissions: out.retransmissions! > 0, packetLoss: out.packetLoss! > 0 }).toEqual({
      line: out.raw,
      retransmissions: true,
      packetLoss: true,
    });
    // The client pod's kernel counter covers all of its connections: an upper bound for one.
    expect(out.retransmissions!).toBeLessThanOrEqual(kernel.TcpRetransSegs!);
    expect(inb).toMatchObject({ sentBytes: 1000, receivedBytes: 2 * MiB });
  }, 60_000);

  test("every line the agent printed for this node's connections is well-formed", () => {
    // Lines of other connections on the machine depend on what else runs: only ours are judged.
    const ours = agent.malformed.filter((m) => m.line.includes(node.pods[0]!.ip4.replace(/\.\d+$/, ".")) || m.line.includes(`[${node.pods[0]!.ip6.replace(/::\w+$/, "::")}`));
    expect(ours).toEqual([]);
  });
});

/** Epoch nanoseconds as RFC 3339 with nine digits, from Date's own calendar (not the agent's code). */
const isoNano = (ns: bigint) => `${new Date(Number(ns / 1_000_000_000n) * 1000).toISOString().slice(0, 19)}.${String(ns % 1_000_000_000n).padStart(9, "0")}Z`;

describe.skipIf(!ready)("capture: JSON lines", () => {
  test("--output json gives the same values, as numbers, with every key", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = startAgent({ output: "json" });
    await using text = startAgent({ output: "text" });
    await waitUntilCapturing(agent, a, b);
    await waitUntilCapturing(text, a, b);
    for (const family of [4, 6] as const) {
      const { out, inb } = await checkExchange(agent, a, b, { family, clientSend: 1000, serverSend: 5000, closeFirst: "client" });
      for (const e of [out, inb]) {
        expect(e.fieldOrder).toEqual([
          "time", "src_addr", "src_port", "src_workload", "src_namespace", "dst_addr", "dst_port", "dst_service",
          "dst_workload", "dst_namespace", "start_time", "direction", "state", "sent_bytes", "received_bytes",
          "packet_loss", "retransmissions", "srtt_us", "min_rtt_us", "duration_ms", "error", "netns",
          "process_pid", "process_command", "container_id", "container_name",
        ]);
        const raw = JSON.parse(e.raw) as Record<string, unknown>;
        for (const k of ["src_port", "dst_port", "sent_bytes", "received_bytes", "packet_loss", "retransmissions", "srtt_us", "min_rtt_us", "duration_ms"]) {
          expect(typeof raw[k]).toBe("number");
        }
        expect(raw.src_addr).toBe(a.ip(family));
        expect(raw.dst_addr).toBe(b.ip(family));
        // The times passed the strict RFC 3339 parser (parseJsonLine); they are the exact instants
        // the numbers say: start + duration is the report time to the nanosecond, and each text
        // is the canonical form of its instant (Date's own ISO text, nine digits, Z).
        const [time, start] = [parseRfc3339(raw.time as string), parseRfc3339(raw.start_time as string)];
        expect(time - start).toBe(BigInt(Math.round((raw.duration_ms as number) * 1e6)));
        expect([raw.time, raw.start_time]).toEqual([isoNano(time), isoNano(start)]);
        // The text agent saw the same connection: same kernel values.
        const key = { srcAddr: e.srcAddr, srcPort: e.srcPort!, dstAddr: e.dstAddr, dstPort: e.dstPort! };
        const [t] = await text.waitForLines((x) => matchConnection(key, e.direction as "OUTBOUND")(x) && isClose(x));
        const same = (x: AccessLogEntry) => [x.sentBytes, x.receivedBytes, x.packetLoss, x.retransmissions, x.srttUs, x.minRttUs, x.state];
        expect(same(e)).toEqual(same(t!));
        expect(Math.abs(nsToMs(e.startNs! - t!.startNs!))).toBeLessThan(1);
        expect(Math.abs(nsToMs(e.timeNs! - t!.timeNs!))).toBeLessThan(1);
      }
    }
    expect(agent.malformed).toEqual([]);
  }, 90_000);
});

interface BpfObjects {
  /** programs named handle_set_state or handle_set_state_sk (bpftool may cut names at 15 characters) */
  progs: Set<number>;
  allProgs: Set<number>;
  links: Set<number>;
  maps: Set<number>;
}

/** The BPF programs, links and maps on the machine, as bpftool lists them. */
function bpfObjects(): BpfObjects {
  const list = (kind: string) => JSON.parse(run(["bpftool", kind, "list", "-j"]).stdout) as { id: number; name?: string }[];
  const progs = list("prog");
  return {
    allProgs: new Set(progs.map((p) => p.id)),
    progs: new Set(
      progs
        .filter((p) => p.name?.startsWith("handle_set_stat"))
        .map((p) => p.id),
    ),
    links: new Set(list("link").map((l) => l.id)),
    maps: new Set(list("map").map((m) => m.id)),
  };
}

/** BPF objects a process holds file descriptors of (/proc/<pid>/fdinfo: prog_id, link_id, map_id). */
function bpfObjectsHeldBy(pid: number): { progs: number[]; links: number[]; maps: number[] } {
  const held = { progs: new Set<number>(), links: new Set<number>(), maps: new Set<number>() };
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    } catch {
      continue; // closed meanwhile
    }
    const link = /^link_id:\s*(\d+)$/m.exec(info);
    const prog = /^prog_id:\s*(\d+)$/m.exec(info);
    const map = /^map_id:\s*(\d+)$/m.exec(info);
    if (link) held.links.add(Number(link[1]));
    else if (prog) held.progs.add(Number(prog[1]));
    if (map) held.maps.add(Number(map[1]));
  }
  return { progs: [...held.progs], links: [...held.links], maps: [...held.maps] };
}

/** Whether the pod has a TCP socket that is neither listening nor in TIME_WAIT. */
function openSockets(pod: Pod): boolean {
  return pod.run(["ss", "-Htan", "exclude", "listening", "exclude", "time-wait"]).stdout.trim() !== "";
}

describe.skipIf(!ready)("capture: lifecycle", () => {
  test("SIGTERM: exit 0 and every connection closed before the signal has its lines", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = startAgent({ output: "text" });
    await waitUntilCapturing(agent, a, b);
    const keys: Key[] = [];
    for (let i = 0; i < 6; i++) {
      const { client, server } = await exchange(a, b, {
        family: i % 2 === 0 ? 4 : 6,
        clientSend: 100 * i,
        serverSend: 1000 + i,
        closeFirst: i % 3 === 0 ? "server" : "client",
      });
      keys.push(keyOf(client, server));
    }
    // "Closed" in the kernel's sense: a peer process may exit while its socket still waits in
    // LAST_ACK for the final ACK; only TIME_WAIT (whose full socket is already closed) may remain.
    for (let i = 0; i < 50 && [a, b].some(openSockets); i++) await Bun.sleep(20);
    expect([a, b].map(openSockets)).toEqual([false, false]);
    const stopped = await agent.stop("SIGTERM");
    expect({ exitCode: stopped.exitCode, signal: stopped.signalCode, killed: stopped.killed, stderr: stopped.stderr }).toMatchObject({
      exitCode: 0,
      signal: null,
      killed: false,
    });
    const missing = keys.flatMap((k) =>
      (["OUTBOUND", "INBOUND"] as const)
        .filter((d) => !stopped.entries.some((e) => matchConnection(k, d)(e) && isClose(e)))
        .map((d) => `${d} ${k.srcAddr}:${k.srcPort} -> ${k.dstAddr}:${k.dstPort}`),
    );
    expect(missing).toEqual([]);
  }, 90_000);

  test("a connection opened before the agent started: start_time and duration '-', bytes still exact", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    const holdMs = 6_000;
    const result = exchange(a, b, { family: 4, clientSend: 1000, serverSend: 5000, closeFirst: "client", holdMs });
    let settled = false;
    void result.finally(() => (settled = true)).catch(() => undefined);
    await Bun.sleep(500); // the payload has moved; the connection idles until holdMs is over
    await using agent = startAgent({ output: "text" });
    await waitUntilCapturing(agent, a, b);
    expect({ agentReadyBeforeTheConnectionClosed: !settled }).toEqual({ agentReadyBeforeTheConnectionClosed: true });
    const { client, server } = await result;
    const { out, inb } = await closeLines(agent, keyOf(client, server));
    for (const [e, local] of [[out, client], [inb, server]] as const) {
      expect({
        line: e.raw,
        startTime: e.startTime,
        durationIsDash: / duration=-(, |$)/.test(e.raw),
        sent: e.sentBytes,
        received: e.receivedBytes,
        rtt: e.srttUs! >= e.minRttUs! && e.minRttUs! > 0,
      }).toEqual({
        line: e.raw,
        startTime: "-",
        durationIsDash: true,
        sent: local.bytesWritten,
        received: local.bytesRead,
        rtt: true,
      });
    }
  }, 60_000);

  test("--duration: exits 0 on its own", async () => {
    const started = Date.now();
    await using agent = startAgent({ output: "text", duration: 2 });
    const exitCode = await Promise.race([agent.proc.exited, Bun.sleep(20_000).then(() => "still running")]);
    expect({ exitCode, stderr: exitCode === 0 ? "" : await agent.stderr() }).toEqual({ exitCode: 0, stderr: "" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
  }, 30_000);

  test("kill -9 leaves no BPF link, program or map of ours behind", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    const before = bpfObjects();
    await using agent = startAgent({ output: "text" });
    await waitUntilCapturing(agent, a, b);
    const during = bpfObjects();
    const held = bpfObjectsHeldBy(agent.pid);
    // Everything the agent holds is ours (handle_set_state(_sk) and any other program, e.g. an
    // iterator); cross-check that its tracepoint program is one that appeared since it started.
    const mainProgs = held.progs.filter((id) => during.progs.has(id));
    expect(mainProgs.length).toBeGreaterThan(0);
    for (const id of mainProgs) expect(before.progs.has(id)).toBe(false);
    expect(held.links.length).toBeGreaterThan(0);
    for (const id of held.links) expect(before.links.has(id)).toBe(false);

    agent.proc.kill("SIGKILL");
    await agent.proc.exited;
    let left = held;
    for (let i = 0; i < 50; i++) {
      const after = bpfObjects();
      left = {
        progs: held.progs.filter((id) => after.allProgs.has(id)),
        links: held.links.filter((id) => after.links.has(id)),
        maps: held.maps.filter((id) => after.maps.has(id)),
      };
      if (left.progs.length + left.links.length + left.maps.length === 0) break;
      await Bun.sleep(100);
    }
    expect(left).toEqual({ progs: [], links: [], maps: [] });
  }, 60_000);
});
