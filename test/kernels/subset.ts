/**
 * The e2e subset that scripts/test-kernels runs inside a VM on every kernel of the matrix
 * (docs/kernels.md), against dist/kmesh-accesslog, with the helpers of test/e2e: `check`; exact
 * bytes both ways in both close orders, IPv4 and IPv6; a refused attempt; periodic reports; a
 * connection open before the agent started; the TCP corners (test/e2e/tcp-corners.test.ts, whose
 * tests this file takes in: Fast Open, a socket connected to itself, the map states a skipped probe
 * leaves); a close the probe skipped, written when its socket ends (test/e2e/skipped-close.test.ts,
 * taken in too); the backend of a ClusterIP from the kernel's connection tracking
 * (test/e2e/clusterip-conntrack.test.ts, taken in too: the hook must attach where there are
 * kprobes, as on every kernel of the matrix); a full ring buffer drained exactly
 * (test/e2e/ring-buffer.test.ts); the filters the kernel decides, with each way of keeping state
 * (test/e2e/kernel-filters.test.ts); the process behind each socket, connect() and accept() side,
 * with either way of keeping state, also on closes written when their socket ends
 * (test/e2e/processes.test.ts: the accept() tracepoints must attach on every kernel of the
 * matrix); and, last, that the kernel neither got tainted nor
 * logged a warning while all that ran.
 *
 * Not named *.test.ts, so the host's `bun test` leaves it out (the host's own e2e files cover all of
 * it and more there). In a VM: `bun test ./test/kernels/subset.ts`. It runs on the host too, as
 * root, but its last test then judges everything the host's kernel logged since it booted.
 */
import { readFileSync } from "node:fs";
import { release } from "node:os";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Agent, agentUnavailableReason, matchConnection, startAgent } from "../e2e/agent.ts";
import { check, rootCheckLines } from "../e2e/check-support.ts";
import { checkExchange, checkPeriodic, checkRefused, CLOSE, ESTABLISHED, idleConnection, keyOf, reportsOf } from "../e2e/connection-checks.ts";
import { type ExchangeResult, exchange, waitUntilCapturing } from "../e2e/exchange.ts";
import { createTestNode, type Pod, type TestNode } from "../e2e/node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "../e2e/prereq.ts";
import { socketStorageFromTracing } from "../../src/kernel/probe.ts";
// Registers the corners', the skipped closes', the full ring's, the ClusterIP backends', the kernel filters' and the processes' tests here, before the taint check below.
import "../e2e/ring-buffer.test.ts";
import "../e2e/kernel-filters.test.ts";
import "../e2e/tcp-corners.test.ts";
import "../e2e/skipped-close.test.ts";
import "../e2e/clusterip-conntrack.test.ts";
import "../e2e/processes.test.ts";

/** Under qemu's TCG the guest runs about ten times slower: times get this much slack, counts none. */
const TOLERANCE_MS = 250;
const REPORT_INTERVAL_MS = 1_000;

const ready = prerequisitesMet(`Linux ${release()}`, netnsUnavailableReason() ?? agentUnavailableReason());
/** scripts/kernels/init.sh reads it before anything runs; elsewhere it is read now */
const taintedAtBoot = Number(process.env.KAL_TAINTED_AT_BOOT ?? readFileSync("/proc/sys/kernel/tainted", "utf8"));

/** The letters the kernel prints for its taint bits, bit 0 first (512, bit 9, is W: a warning). */
function taintLetters(mask: number): string {
  const letters = "PFSRMBUDAWCIOELKXTN";
  return [...letters].filter((_, bit) => mask & (1 << bit)).join("");
}

/** Lines of the kernel log that tell of a warning, a bug or an oops, each with the line before it. */
function kernelWarnings(): string[] {
  const log = Bun.spawnSync(["dmesg"]).stdout.toString().split("\n");
  return log.flatMap((line, i) => (/WARNING:|BUG:|Call Trace/.test(line) ? [`${log[i - 1] ?? ""}`, line] : []));
}

describe.skipIf(!ready)(`Linux ${release()}`, () => {
  test("check: every prerequisite is there, exit 0", async () => {
    const result = await check(["--no-kubelet"]);
    expect({ lines: result.lines, stderr: result.stderr, exitCode: result.exitCode }).toEqual({
      lines: rootCheckLines(),
      stderr: "",
      exitCode: 0,
    });
  });

  describe("one agent, connection metrics on, a report every second", () => {
    let node: TestNode;
    let agent: Agent;
    let a: Pod;
    let b: Pod;
    let preexisting: Promise<ExchangeResult>;
    let capturingBeforeItClosed = false;
    let agentStartedMs = 0;

    beforeAll(async () => {
      node = await createTestNode({ pods: ["client", "server"] });
      [a, b] = [node.pod("client"), node.pod("server")];
      // A connection opened before the agent: its payload moves at once, then it idles.
      let closed = false;
      preexisting = exchange(a, b, { family: 4, clientSend: 1000, serverSend: 5000, closeFirst: "client", holdMs: 20_000 });
      void preexisting.finally(() => (closed = true)).catch(() => undefined);
      for (let i = 0; i < 200 && a.run(["ss", "-Htn", "state", "established"]).stdout.trim() === ""; i++) await Bun.sleep(50);
      await Bun.sleep(500);
      agentStartedMs = Date.now();
      // Socket storage where the kernel has it (the default is the hash map, which the TCP
      // corners below use): both ways run on every kernel of the matrix.
      agent = startAgent({
        output: "text",
        args: ["--connection-metrics", "--report-interval", String(REPORT_INTERVAL_MS / 1000), "--connection-state", "socket-storage"],
      });
      await waitUntilCapturing(agent, a, b, 60_000);
      capturingBeforeItClosed = !closed;
    }, 90_000);

    afterAll(async () => {
      await agent?.[Symbol.asyncDispose]();
      await node?.[Symbol.asyncDispose]();
    });

    test("--connection-state socket-storage: kept with each socket from 5.11 on, in the hash map before", () => {
      const capturing = agent.stderrLines.find((l) => l.includes("capturing TCP connections")) ?? "";
      const withSocket = socketStorageFromTracing(release());
      expect(capturing.includes("connection state kept with each socket")).toBe(withSocket);
      expect(capturing.includes("open connections tracked")).toBe(!withSocket);
      expect(agent.stderrLines.filter((l) => l.includes("the kernel refused socket storage"))).toEqual([]);
    });

    for (const family of [4, 6] as const) {
      test(`IPv${family}: the client closes first; exact bytes both ways`, async () => {
        await checkExchange(agent, a, b, { family, clientSend: 1000, serverSend: 5000, closeFirst: "client" }, TOLERANCE_MS);
      });
      test(`IPv${family}: the server closes first; exact bytes both ways`, async () => {
        await checkExchange(agent, a, b, { family, clientSend: 300_000, serverSend: 70_000, closeFirst: "server" }, TOLERANCE_MS);
      });
    }

    test("a refused connection: error=ECONNREFUSED, zero bytes, one line", async () => {
      await checkRefused(agent, a, b);
    });

    test("a held connection: ESTABLISHED reports with exact cumulative bytes, then its close", async () => {
      const held = await idleConnection(a, b, 3_500, 6);
      await checkPeriodic(agent, held, 2, REPORT_INTERVAL_MS, TOLERANCE_MS);
    });

    test("a connection open before the agent started: start_time=-, reports and close with exact bytes", async () => {
      const { client, server } = await preexisting;
      const key = keyOf(client, server);
      await agent.waitForLines((e) => matchConnection(key)(e) && e.state === CLOSE, 2, 10_000);
      const out = { start: "-", duration: null, sent: 1000, received: 5000 };
      const inb = { start: "-", duration: null, sent: 5000, received: 1000 };
      const periodicOut = reportsOf(agent, key, "OUTBOUND", ESTABLISHED);
      const periodicIn = reportsOf(agent, key, "INBOUND", ESTABLISHED);
      expect({
        payloadBeforeTheAgent: Math.max(client.payloadMs!, server.payloadMs!) < agentStartedMs,
        capturingBeforeItClosed,
        twoOrMoreReportsEachWay: periodicOut.length >= 2 && periodicIn.length >= 2,
        periodicOut: new Set(periodicOut.map((r) => JSON.stringify(r))),
        periodicIn: new Set(periodicIn.map((r) => JSON.stringify(r))),
        closeOut: reportsOf(agent, key, "OUTBOUND", CLOSE),
        closeIn: reportsOf(agent, key, "INBOUND", CLOSE),
      }).toEqual({
        payloadBeforeTheAgent: true,
        capturingBeforeItClosed: true,
        twoOrMoreReportsEachWay: true,
        periodicOut: new Set([JSON.stringify(out)]),
        periodicIn: new Set([JSON.stringify(inb)]),
        closeOut: [out],
        closeIn: [inb],
      });
    }, 60_000);

    test("SIGTERM: exit 0, every line well-formed", async () => {
      const stopped = await agent.stop("SIGTERM");
      expect({ exitCode: stopped.exitCode, killed: stopped.killed, malformed: agent.malformed }).toEqual({
        exitCode: 0,
        killed: false,
        malformed: [],
      });
    });
  });

  test("the kernel was not tainted and logged no warning, bug or oops", () => {
    const tainted = Number(readFileSync("/proc/sys/kernel/tainted", "utf8"));
    expect({ tainted: `${tainted} ${taintLetters(tainted)}`.trim(), warnings: kernelWarnings() }).toEqual({
      tainted: `${taintedAtBoot} ${taintLetters(taintedAtBoot)}`.trim(),
      warnings: [],
    });
  });
});
