/**
 * A close the kernel skipped the probe for is still written, with its exact figures, when its
 * socket ends (handle_destroy in bpf/accesslog.bpf.c). The kernel skips the tracepoint program
 * when a softirq interrupts it on the same CPU (README, "A burst of closes"), which no test can
 * make happen at will; the probe's test-only switch ignore_close_port (bpf/accesslog.h), written
 * here with bpftool, makes the tracepoint program ignore the closes of one port's sockets the same
 * way. Where the stand-ins are attached (tracepoints that run their programs preemptibly, or
 * asked for here), the close the program ignored is made by the stand-in instead, right away, as
 * one the kernel skipped would be. Every way of keeping the state, both close orders, IPv4 and
 * IPv6; and the ends where our
 * FIN decides the bytes sent (bytes_acked counts it once acknowledged; the record takes it off
 * only if it went out): a RST after data either way (no FIN), a FIN then a RST, a FIN never
 * acknowledged, no payload, Fast Open, retransmissions, and data the sender's own host dropped
 * (which tcp_sock.bytes_sent counts at each try: README, "The kernel's cost per connection").
 *
 * Needs root, bpftool and dist/kmesh-accesslog. Run: `bun test test/e2e/skipped-close.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { STAND_INS_ENV } from "../../src/kernel/probe.ts";
import { type AdminAgent, closeCounts, closesMadeRight, closesSince, startAdminAgent } from "./admin-support.ts";
import { AGENT_BINARY, agentUnavailableReason, keptWithEachSocket, PREEMPTIBLE_TRACEPOINTS } from "./agent.ts";
import { closeLines, keyOf, problemsWith, serverBegan } from "./connection-checks.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";
import { attachedEvents, bpftoolUnavailableReason, ignoreCloses } from "./probe-maps.ts";

const SOCKETS = `${import.meta.dir}/sockets.ts`;

type Side = { port: number; written: number; received: number };

/** Runs `sockets.ts <args>` in the pod to completion and returns its JSON report. */
async function sockets<T>(pod: Pod, args: string[]): Promise<T> {
  const proc = pod.exec([process.execPath, SOCKETS, ...args]);
  const [stdout, stderr, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  if (code !== 0) throw new Error(`sockets.ts ${args[0]} in ${pod.name} exited ${code}: ${stderr.trim()}`);
  return JSON.parse(stdout.trim()) as T;
}

const ready = prerequisitesMet(
  "skipped closes",
  netnsUnavailableReason() ?? agentUnavailableReason() ?? bpftoolUnavailableReason(),
);

/**
 * Times against the peers' own clocks: under qemu's TCG (the kernel matrix), on a busy host, a peer
 * has been seen to take its clock 340 ms before its connect(). The figures are what this tests.
 */
const TOLERANCE_MS = 1_000;

/**
 * Each way of keeping state, without the stand-ins and with them, attached where the kernel would
 * not attach them (bpf/accesslog.bpf.c): there each close ignored goes to the stand-in, as a run the
 * kernel skipped does where tracepoints are preemptible (where they are, every variant has them).
 * The table and the hash map have a classic tracepoint stand-in first, socket storage a tp_btf one.
 * `endings`: every ending below; else only the two close orders. The stand-ins of the hash map and
 * socket storage run the same code as the table's stand-in or the first program, but for where the
 * state is kept, and under TCG each ending costs the kernel matrix seconds.
 */
const VARIANTS = [
  { state: "socket-table", standIns: false, endings: true },
  { state: "hash-map", standIns: false, endings: true },
  { state: "socket-storage", standIns: false, endings: true },
  { state: "socket-table", standIns: true, endings: true },
  { state: "hash-map", standIns: true, endings: false },
  { state: "socket-storage", standIns: true, endings: false },
] as const;

for (const { state, standIns, endings } of VARIANTS) {
  describe.skipIf(!ready)(`a close the probe skipped, --connection-state ${state}${standIns ? ", stand-ins attached" : ""}`, () => {
    let node: TestNode;
    let agent: AdminAgent;
    let client: Pod;
    let server: Pod;

    beforeAll(async () => {
      node = await createTestNode({ pods: ["client", "server"] });
      [client, server] = [node.pod("client"), node.pod("server")];
      agent = await startAdminAgent({ output: "json", args: ["--connection-state", state], ...(standIns ? { env: { [STAND_INS_ENV]: "always" } } : {}) });
      await waitUntilCapturing(agent.agent, client, server);
    }, 60_000);

    afterAll(async () => {
      await agent?.[Symbol.asyncDispose]();
      await node?.[Symbol.asyncDispose]();
    });

    test(standIns ? "the stand-ins are attached, as asked" : "the stand-ins are attached where tracepoints are preemptible, and only there", async () => {
      expect((await closeCounts(agent.adminAddr)).standIns).toBe(standIns || PREEMPTIBLE_TRACEPOINTS);
      // Behind each first program: a classic tracepoint program then two tp_btf ones, or three tp_btf
      // ones with socket storage (where the kernel takes it: else the hash map is used). The classic
      // one, when there, claims first: it makes the closes ignored.
      const tpBtf = ["raw_tracepoint inet_sock_set_state", "raw_tracepoint tcp_destroy_sock"];
      const classic = state === "socket-storage" && keptWithEachSocket(agent.agent.stderrLines) ? tpBtf : ["tracepoint inet_sock_set_state", "tracepoint tcp_destroy_sock"];
      const attached = standIns || PREEMPTIBLE_TRACEPOINTS ? [...tpBtf, ...tpBtf, ...tpBtf, ...classic] : tpBtf;
      expect(attachedEvents(agent.agent.proc.pid).filter((e) => !e.includes("sys_exit_accept"))).toEqual(attached.sort());
    });

    for (const [family, closeFirst, port] of [[4, "client", 7_101], [6, "server", 7_102]] as const) {
      test(`IPv${family}, the ${closeFirst} closes first: one line per side when the socket ends, exact bytes`, async () => {
        const before = await closeCounts(agent.adminAddr);
        ignoreCloses(agent.agent.proc.pid, port);
        try {
          const { client: c, server: s } = await exchange(client, server, { family, clientSend: 1000, serverSend: 5000, closeFirst, serverPort: port });
          const { out, inb } = await closeLines(agent.agent, keyOf(c, s));
          expect({ line: out.raw, problems: problemsWith(out, c, TOLERANCE_MS) }).toEqual({ line: out.raw, problems: [] });
          expect({ line: inb.raw, problems: problemsWith(inb, s, TOLERANCE_MS, serverBegan(c, s)) }).toEqual({ line: inb.raw, problems: [] });
          expect([out.direction, out.sentBytes, out.receivedBytes]).toEqual(["OUTBOUND", 1000, 5000]);
          expect([inb.direction, inb.sentBytes, inb.receivedBytes]).toEqual(["INBOUND", 5000, 1000]);
        } finally {
          ignoreCloses(agent.agent.proc.pid, 0);
        }
        const after = await closeCounts(agent.adminAddr);
        expect(closesSince(before, after, 2)).toEqual(closesMadeRight(after, 2));
      });
    }

    /**
     * Runs `connect` (which makes one connection to `port` of the client pod, or of the server pod
     * from the client pod) with the closes of `port` ignored, and checks both sides' lines against
     * what each side wrote and what reached it, and that both were written at the socket's end.
     */
    async function bothSides(port: number, family: 4 | 6, connect: () => Promise<{ client: Side; server: Side; serverHost?: string }>) {
      const before = await closeCounts(agent.adminAddr);
      ignoreCloses(agent.agent.proc.pid, port);
      let r: Awaited<ReturnType<typeof connect>>;
      let lines: Awaited<ReturnType<typeof closeLines>>;
      try {
        r = await connect();
        const host = client.ip(family);
        // (a side may close after its peer has reported: a FIN or its ACK lost)
        lines = await closeLines(agent.agent, { srcAddr: host, srcPort: r.client.port, dstAddr: r.serverHost ?? host, dstPort: port });
      } finally {
        ignoreCloses(agent.agent.proc.pid, 0);
      }
      const { out, inb } = lines;
      expect([out.raw, out.sentBytes, out.receivedBytes, out.error]).toEqual([out.raw, r.client.written, r.client.received, null]);
      expect([inb.raw, inb.sentBytes, inb.receivedBytes, inb.error]).toEqual([inb.raw, r.server.written, r.server.received, null]);
      const after = await closeCounts(agent.adminAddr);
      expect(closesSince(before, after, 2)).toEqual(closesMadeRight(after, 2));
    }

    /** One connection in the client pod, ended by sockets.ts as `how` says (see its usage). */
    const ending = (family: 4 | 6, port: number, how: string, first: "client" | "server") =>
      sockets<{ client: Side; server: Side }>(client, ["ending", "--host", client.ip(family), "--port", String(port), "--case", how, "--first", first]);

    if (endings) {
      const ENDINGS = [
        ["zero", "client", 4],
        ["zero", "server", 6],
        ["reset", "client", 4],
        ["reset", "server", 6],
        ["shutdown-reset", "client", 6],
        ["shutdown-reset", "server", 4],
        ["fin-unacked", "client", 4],
        ["fin-unacked", "server", 6],
      ] as const;
      for (const [[how, first, family], i] of ENDINGS.map((e, i) => [e, i] as const)) {
        test(`${how}, ${first} first, IPv${family}: exact bytes on both sides`, async () => {
          const port = 7_110 + i;
          // fin-unacked: the first side's FINs never arrive
          const dropFin = ["INPUT", "-p", "tcp", first === "client" ? "--dport" : "--sport", String(port), "--tcp-flags", "FIN", "FIN", "-j", "DROP"];
          if (how === "fin-unacked") client.iptables(["-A", ...dropFin], family);
          try {
            await bothSides(port, family, () => ending(family, port, how, first));
          } finally {
            if (how === "fin-unacked") client.iptables(["-D", ...dropFin], family);
          }
        });
      }

      test("Fast Open with data, IPv4: exact bytes on both sides", async () => {
        const port = 7_120;
        client.run(["sysctl", "-qw", "net.ipv4.tcp_fastopen=0x207"]);
        const before = client.tcpCounters();
        await bothSides(port, 4, async () => {
          const r = await sockets<{ clientPort: number; client: { written: number; read: number }; server: { written: number; read: number } }>(
            client,
            ["fastopen", "--host", client.ip4, "--port", String(port), "--syn-data", "10", "--more", "90", "--reply", "500", "--close-first", "client"],
          );
          return {
            client: { port: r.clientPort, written: r.client.written, received: r.client.read },
            server: { port, written: r.server.written, received: r.server.read },
          };
        });
        expect(client.tcpCounters().TcpExtTCPFastOpenActive! - before.TcpExtTCPFastOpenActive!).toBe(1);
      });

      /** An exchange between the pods (peer.ts), as the two sides reported it. */
      const exchanged = async (family: 4 | 6, port: number, clientSend: number, serverSend: number) => {
        const { client: c, server: s } = await exchange(client, server, { family, clientSend, serverSend, closeFirst: "client", serverPort: port });
        return {
          client: { port: c.localPort, written: c.bytesWritten, received: c.bytesRead },
          server: { port, written: s.bytesWritten, received: s.bytesRead },
          serverHost: server.ip(family),
        };
      };

      /** An iptables rule that drops the first packet of 500 bytes or more from or to `port`. */
      const dropFirstBig = (chain: string, dir: string, port: number) => [chain, "-p", "tcp", dir, String(port), "-m", "length", "--length", "500:65535",
        "-m", "statistic", "--mode", "nth", "--every", "1000000", "--packet", "0", "-j", "DROP"];

      /** Whether each rule of `rules` dropped its packet (a rule is in one of the two iptables backends). */
      const droppedOnce = (rules: readonly (readonly [Pod, string[]])[], family: 4 | 6) => {
        const tool = family === 4 ? "iptables" : "ip6tables";
        return rules.map(([pod, rule]) => {
          const listed = [tool, `${tool}-legacy`].map((t) => pod.run([t, "-L", rule[0]!, "-v", "-x", "-n"], true).stdout).join("");
          return /^\s*1\s+\d+\s+DROP/m.test(listed);
        });
      };

      test("retransmissions (the first data packet each way lost on arrival), IPv4: exact bytes on both sides", async () => {
        const port = 7_121;
        const rules = [[server, dropFirstBig("INPUT", "--dport", port)], [client, dropFirstBig("INPUT", "--sport", port)]] as const;
        const retransmitted = () => [client.tcpCounters().TcpRetransSegs!, server.tcpCounters().TcpRetransSegs!];
        const before = retransmitted();
        for (const [pod, rule] of rules) pod.iptables(["-A", ...rule]);
        try {
          await bothSides(port, 4, () => exchanged(4, port, 100_000, 300_000));
          expect(droppedOnce(rules, 4)).toEqual([true, true]);
        } finally {
          for (const [pod, rule] of rules) pod.iptables(["-D", ...rule]);
        }
        const after = retransmitted();
        expect([after[0]! > before[0]!, after[1]! > before[1]!]).toEqual([true, true]);
      });

      for (const [family, port] of [[4, 7_122], [6, 7_123]] as const) {
        test(`data its own host dropped once on the way out (sent again, not retransmitted), IPv${family}: exact bytes`, async () => {
          // The first packet of 500 bytes or more each side sends: the sender's own iptables drops
          // it, and TCP sends it again later as new data (tcp_sock.bytes_sent counts it twice).
          const rules = [[client, dropFirstBig("OUTPUT", "--dport", port)], [server, dropFirstBig("OUTPUT", "--sport", port)]] as const;
          for (const [pod, rule] of rules) pod.iptables(["-A", ...rule], family);
          try {
            await bothSides(port, family, () => exchanged(family, port, 1000, 5000));
            expect(droppedOnce(rules, family)).toEqual([true, true]);
          } finally {
            for (const [pod, rule] of rules) pod.iptables(["-D", ...rule], family);
          }
        });
      }
    }
  });
}

/**
 * A classic program of another tool on sock:inet_sock_set_state before the agent starts: the
 * tracepoint's perf hook is then registered before the agent's first program, and the classic
 * stand-in runs in front of it. The claims make the stand-in make every run and the first none.
 */
const bpftraceReady = ready && prerequisitesMet("another tool's classic program", Bun.which("bpftrace") === null ? "bpftrace is not installed: run scripts/setup" : null);
describe.skipIf(!bpftraceReady)("stand-ins behind another tool's classic program", () => {
  let node: TestNode;
  let agent: AdminAgent;
  let bpftrace: Subprocess<"ignore", "pipe", "pipe"> | undefined;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    bpftrace = Bun.spawn(["bpftrace", "-e", "tracepoint:sock:inet_sock_set_state { @changes = count(); }"], { stdout: "pipe", stderr: "pipe" });
    const pid = bpftrace.pid;
    for (const deadline = Date.now() + 60_000; !attachedEvents(pid).includes("tracepoint inet_sock_set_state"); ) {
      if (Date.now() > deadline || bpftrace.exitCode !== null) throw new Error(`bpftrace did not attach: ${await new Response(bpftrace.stderr).text()}`);
      await Bun.sleep(100);
    }
    agent = await startAdminAgent({ output: "json", args: ["--connection-state", "hash-map"], env: { [STAND_INS_ENV]: "always" } });
    await waitUntilCapturing(agent.agent, node.pod("client"), node.pod("server"));
  }, 120_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    bpftrace?.kill("SIGINT");
    await bpftrace?.exited;
    await node?.[Symbol.asyncDispose]();
  });

  for (const [family, closeFirst, port] of [[4, "client", 7_131], [6, "server", 7_132]] as const) {
    test(`IPv${family}, the ${closeFirst} closes first: one line per side, exact bytes, made by the stand-in`, async () => {
      const before = await closeCounts(agent.adminAddr);
      const [client, server] = [node.pod("client"), node.pod("server")];
      const { client: c, server: s } = await exchange(client, server, { family, clientSend: 1000, serverSend: 5000, closeFirst, serverPort: port });
      const { out, inb } = await closeLines(agent.agent, keyOf(c, s));
      await Bun.sleep(300); // a second line would have come with the first
      const again = await closeLines(agent.agent, keyOf(c, s));
      expect([again.out.raw, again.inb.raw]).toEqual([out.raw, inb.raw]);
      expect({ line: out.raw, problems: problemsWith(out, c, TOLERANCE_MS) }).toEqual({ line: out.raw, problems: [] });
      expect({ line: inb.raw, problems: problemsWith(inb, s, TOLERANCE_MS, serverBegan(c, s)) }).toEqual({ line: inb.raw, problems: [] });
      const after = await closeCounts(agent.adminAddr);
      // Each side's start and close at least, all by the stand-in; nothing left to the socket's end.
      expect({ stoodInAtLeast4: after.stoodIn - before.stoodIn >= 4, atEnd: after.atEnd - before.atEnd, missed: after.missed - before.missed }).toEqual({
        stoodInAtLeast4: true,
        atEnd: 0,
        missed: 0,
      });
    });
  }
});

describe.skipIf(!ready)("stand-ins without tracefs", () => {
  // Classic tracepoint programs: libbpf finds their tracepoints in tracefs. The agent runs in a mount
  // namespace of its own, tracefs unmounted there (wherever it is) and only there, stand-ins asked for;
  // debugfs too, whose tracing directory would mount tracefs again when libbpf looks there.
  test("the agent says at start why they are not attached and how to fix it, and runs without them", async () => {
    const mounts = "/sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug";
    const unmount = `for m in ${mounts}; do while umount $m 2>/dev/null; do :; done; done; exec "$@"`;
    const proc = Bun.spawn(
      ["unshare", "--mount", "--propagation", "private", "sh", "-c", unmount, "sh", AGENT_BINARY, "--connection-state", "hash-map", "--duration", "1"],
      { env: { ...process.env, [STAND_INS_ENV]: "always" }, stdout: "ignore", stderr: "pipe" },
    );
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    const lines = stderr.trim().split("\n");
    expect({ code, warning: lines.filter((line) => line.includes("stand-in")) }).toEqual({
      code: 0,
      warning: [
        `kmesh-accesslog: the stand-in programs are not attached, though ${PREEMPTIBLE_TRACEPOINTS ? "this kernel's tracepoints run programs preemptibly" : "asked for"}: cannot attach to the ` +
          "sock:inet_sock_set_state and tcp:tcp_destroy_sock tracepoints: tracefs is not mounted, and libbpf finds tracepoints there " +
          "(attach classic_set_state: No such file or directory) — fix: mount -t tracefs nodev /sys/kernel/tracing (in a pod: the node's " +
          "/sys/kernel/tracing, as scripts/deploy/20-daemonset.yaml mounts it)",
      ],
    });
  }, 60_000);
});

describe.skipIf(!ready)(`${STAND_INS_ENV}=never`, () => {
  // What the stand-ins cost is measured against an agent without them (scripts/bench/syscalls.ts).
  test("leaves the stand-ins out, whatever the kernel", async () => {
    await using agent = await startAdminAgent({ env: { [STAND_INS_ENV]: "never" } });
    expect((await closeCounts(agent.adminAddr)).standIns).toBe(false);
  }, 60_000);
});
