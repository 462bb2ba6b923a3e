/**
 * OTLP export end to end: the compiled agent, real connections between pods of a test node, and a
 * local collector (test/support/otlp-receiver.ts) that decodes every request with the official
 * opentelemetry-proto definitions. The agent also writes JSON lines, so each LogRecord is checked
 * against the line of the same report, to the nanosecond. Collector failures: 503 with
 * Retry-After, down at start, slow, a queue that overflows (drops counted exactly in /metrics),
 * TLS, the flush at SIGTERM.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/otlp.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { VERSION } from "../../src/options.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { type OtlpReceiver, type ReceivedRecord, startReceiver } from "../support/otlp-receiver.ts";
import { adminRequest, metrics, privateLockFile, removePrivateLockDir, runBinary, waitReady } from "./admin-support.ts";
import { type AccessLogEntry, type Agent, agentUnavailableReason, matchConnection, parseRfc3339, parseTextLine, socketBeside, startAgent } from "./agent.ts";
import { exchange } from "./exchange.ts";
import { exchangeLines, podEntry } from "./kubelet-agent.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("OTLP export", netnsUnavailableReason() ?? agentUnavailableReason() ?? kubeletUnavailableReason());
const NODE_NAME = "otlp-test-node";
const M = (name: string) => `kmesh_accesslog_otlp_${name}`;

interface OtlpAgent extends AsyncDisposable {
  agent: Agent;
  socket: string;
}

/** The agent with JSON lines on stdout and every report to `receiver`; resolves once ready. */
async function startOtlpAgent(receiver: OtlpReceiver, args: string[] = []): Promise<OtlpAgent> {
  const lockFile = privateLockFile();
  const agent = startAgent({
    output: "json",
    env: { NODE_NAME },
    args: ["--lock-file", lockFile, "--otlp-endpoint", receiver.endpoint, "--otlp-batch-delay", "0.1", ...args],
  });
  const socket = socketBeside(lockFile);
  const handle = {
    agent,
    socket,
    [Symbol.asyncDispose]: async () => {
      await agent[Symbol.asyncDispose]();
      removePrivateLockDir(lockFile);
    },
  };
  try {
    await waitReady(agent, socket);
  } catch (error) {
    await handle[Symbol.asyncDispose]();
    throw error;
  }
  return handle;
}

/** The record of a line's report: same connection, same side. */
const recordOf = (e: AccessLogEntry) => (r: ReceivedRecord) =>
  r.attributes["source.port"] === BigInt(e.srcPort!) &&
  r.attributes["destination.port"] === BigInt(e.dstPort!) &&
  r.attributes["source.address"] === e.srcAddr &&
  r.attributes["kmesh.direction"] === e.direction;

/** `count` exchanges from a to b, one after the other; their close lines. */
async function exchanges(agent: Agent, a: Pod, b: Pod, count: number): Promise<AccessLogEntry[]> {
  const lines: AccessLogEntry[] = [];
  for (let i = 0; i < count; i++) {
    const { out, inb } = await exchangeLines(agent, a, b, { clientSend: 10 + i, serverSend: 20 + i });
    lines.push(out, inb);
  }
  return lines;
}

/** Each of `lines` has exactly one record at the receiver (no loss, no duplicate). */
async function deliveredOnce(receiver: OtlpReceiver, lines: AccessLogEntry[], timeoutMs = 30_000): Promise<void> {
  for (const line of lines) await receiver.waitForRecords(recordOf(line), 1, timeoutMs);
  expect(lines.map((line) => receiver.records.filter(recordOf(line)).length)).toEqual(lines.map(() => 1));
}

const stderrCount = (agent: Agent, text: string) => agent.stderrLines.filter((line) => line.includes(text)).length;

describe.skipIf(!ready)("OTLP export", () => {
  let node: TestNode;
  let a: Pod;
  let b: Pod;

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    [a, b] = [node.pod("client"), node.pod("server")];
  }, 60_000);

  afterAll(async () => {
    await node?.[Symbol.asyncDispose]();
  });

  describe("a known connection", () => {
    let kubelet: LocalKubelet;
    beforeAll(async () => {
      kubelet = await startKubelet({
        pods: [
          podEntry(node.pod("client"), { name: "shop-web-5d9f7c6b8-x2x4z", namespace: "shop" }),
          podEntry(node.pod("server"), { name: "pay-api-7c6b85d9f-q9k7m", namespace: "payments" }),
        ],
      });
    });
    afterAll(async () => {
      await kubelet?.[Symbol.asyncDispose]();
    });

    test("every attribute, the times, the body, the resource; the headers file sent and never printed", async () => {
      await using receiver = await startReceiver();
      const secret = `s3cr3t-${crypto.randomUUID()}`;
      const headersFile = join(receiver.dir, "headers");
      writeFileSync(headersFile, `# the collector's gateway\nAuthorization: Bearer ${secret}\nX-Scope-OrgID: tenant-7\n`);
      await using otlp = await startOtlpAgent(receiver, [
        "--kubelet-url", kubelet.url, "--kubelet-ca-file", kubelet.caFile, "--kubelet-token-file", kubelet.tokenFile,
        "--otlp-headers-file", headersFile,
      ]);
      const { out, inb } = await exchangeLines(otlp.agent, a, b, { clientSend: 1000, serverSend: 5000 });
      const [outRecord] = await receiver.waitForRecords(recordOf(out));
      const [inbRecord] = await receiver.waitForRecords(recordOf(inb));

      for (const [line, record] of [[out, outRecord!], [inb, inbRecord!]] as const) {
        const json = JSON.parse(line.raw) as Record<string, string | number>;
        const outbound = line.direction === "OUTBOUND";
        expect(record.attributes).toEqual({
          "source.address": a.ip4,
          "source.port": BigInt(out.srcPort!),
          "destination.address": b.ip4,
          "destination.port": BigInt(out.dstPort!),
          "network.transport": "tcp",
          "network.type": "ipv4",
          "network.connection.state": "closed",
          // the local end: the client for OUTBOUND, the server for INBOUND
          "k8s.namespace.name": outbound ? "shop" : "payments",
          "k8s.pod.name": outbound ? "shop-web-5d9f7c6b8-x2x4z" : "pay-api-7c6b85d9f-q9k7m",
          // the peer process of the local end, as its JSON line names it (exact values: processes.test.ts)
          "process.pid": BigInt(json.process_pid!),
          "process.executable.name": json.process_command!,
          "kmesh.source.workload": "shop-web-5d9f7c6b8-x2x4z",
          "kmesh.source.namespace": "shop",
          "kmesh.destination.workload": "pay-api-7c6b85d9f-q9k7m",
          "kmesh.destination.namespace": "payments",
          "kmesh.direction": line.direction,
          "kmesh.sent_bytes": outbound ? 1000n : 5000n,
          "kmesh.received_bytes": outbound ? 5000n : 1000n,
          // the kernel's figures: the same as the JSON line of the same report
          "kmesh.packet_loss": BigInt(json.packet_loss!),
          "kmesh.retransmissions": BigInt(json.retransmissions!),
          "kmesh.srtt_us": BigInt(json.srtt_us!),
          "kmesh.min_rtt_us": BigInt(json.min_rtt_us!),
          "kmesh.duration_ms": json.duration_ms!,
          "kmesh.start_time": json.start_time!,
          "kmesh.netns": BigInt(json.netns!),
        });
        // The report time, to the nanosecond: the LogRecord's, the JSON line's and the body's Go text.
        expect(record.timeUnixNano).toBe(parseRfc3339(json.time as string));
        expect(parseTextLine(record.body!).timeNs).toBe(record.timeUnixNano);
        expect(parseTextLine(record.body!)).toMatchObject({ srcPort: out.srcPort, sentBytes: line.sentBytes, direction: line.direction, startNs: line.startNs });
        // Observed: when the agent read it, after the report, and soon.
        expect(record.observedTimeUnixNano).toBeGreaterThanOrEqual(record.timeUnixNano);
        expect(record.observedTimeUnixNano - record.timeUnixNano).toBeLessThan(5_000_000_000n);
        expect({ severity: record.severityNumber, text: record.severityText, resource: record.resource, scope: record.scope }).toEqual({
          severity: 9,
          text: "INFO",
          resource: { "service.name": "kmesh-accesslog", "service.version": VERSION, "host.name": NODE_NAME, "k8s.node.name": NODE_NAME },
          scope: { name: "kmesh-accesslog", version: VERSION },
        });
      }
      for (const request of receiver.requests) {
        expect(request.headers.get("authorization")).toBe(`Bearer ${secret}`);
        expect(request.headers.get("x-scope-orgid")).toBe("tenant-7");
      }
      const { stderr, exitCode } = await otlp.agent.stop();
      expect(exitCode).toBe(0);
      expect(stderr).not.toContain(secret);
      expect(otlp.agent.lines.join("\n")).not.toContain(secret);
      expect(receiver.malformed).toEqual([]);
    }, 60_000);
  });

  test("503 with Retry-After, then recovery: every report delivered once, no request before the collector said", async () => {
    await using receiver = await startReceiver();
    let answered = 0;
    // 2 s: longer than the agent's own first backoff (1 s), so that only honouring it passes.
    receiver.answer = () => (++answered <= 3 ? { status: 503, headers: { "retry-after": "2" } } : { status: 200 });
    await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-batch-size", "4"]);
    const lines = await exchanges(otlp.agent, a, b, 10);
    await deliveredOnce(receiver, lines);
    const refused = receiver.requests.filter((r) => r.status === 503);
    expect(refused.length).toBe(3);
    // After a 503, nothing new for the 2 s it asked for (a request already on its way aside).
    for (const r of refused) {
      expect(receiver.requests.filter((s) => s.at > r.at + 50 && s.at < r.at + 1_990).map((s) => s.at - r.at)).toEqual([]);
    }
    expect(stderrCount(otlp.agent, "failed (503 Service Unavailable); retrying in 2.0 s")).toBe(1);
    expect(stderrCount(otlp.agent, "works again")).toBe(1);
    expect(receiver.malformed).toEqual([]);
  }, 90_000);

  test("a collector down at start: reports wait in the queue and all go once it is up", async () => {
    await using receiver = await startReceiver();
    receiver.stop(); // its port stays reserved in its endpoint
    await using otlp = await startOtlpAgent(receiver, ["--no-kubelet"]);
    const lines = await exchanges(otlp.agent, a, b, 5);
    await otlp.agent.waitForStderr((line) => line.includes("failed (unreachable"));
    expect(receiver.records.length).toBe(0);
    receiver.start();
    await deliveredOnce(receiver, lines);
    expect(stderrCount(otlp.agent, "failed (unreachable")).toBe(1);
    await otlp.agent.waitForStderr((line) => line.includes("works again"));
  }, 90_000);

  test("a slow collector: lines on stdout do not wait for it, at most two requests at once, nothing lost", async () => {
    await using receiver = await startReceiver();
    receiver.answer = () => ({ status: 200, delayMs: 2_000 });
    // Batches of whatever came in 0.1 s: the other connections of a busy machine go along, not ahead.
    await using otlp = await startOtlpAgent(receiver, ["--no-kubelet"]);
    const lines: AccessLogEntry[] = [];
    for (let i = 0; i < 6; i++) {
      const { client, server } = await exchange(a, b, { family: 4, clientSend: 10, serverSend: 20, closeFirst: "client" });
      // Both peers are done: both close lines are out within a second, requests of 2 s notwithstanding.
      const ended = Date.now();
      const key = { srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: server.localAddress, dstPort: server.localPort };
      const [outs, inbs] = await Promise.all(
        (["OUTBOUND", "INBOUND"] as const).map((direction) => otlp.agent.waitForLines((e) => matchConnection(key, direction)(e) && e.state === "BPF_TCP_CLOSE", 1, 5_000)),
      );
      expect(Date.now() - ended).toBeLessThan(1_000);
      lines.push(outs![0]!, inbs![0]!);
    }
    await deliveredOnce(receiver, lines, 60_000);
    expect(receiver.maxInFlight).toBe(2);
  }, 120_000);

  test("beyond the queue bound: drops counted exactly in /metrics, said once; what was queued is delivered", async () => {
    await using receiver = await startReceiver();
    receiver.answer = () => ({ status: 503, headers: { "retry-after": "1" } });
    const queue = 20;
    await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-queue-size", String(queue), "--otlp-batch-size", "5"]);
    const ours = await exchanges(otlp.agent, a, b, 20);
    // No new report from here on: the kernel stops writing them (the admin API's switch).
    expect((await adminRequest(otlp.socket, "POST", "/accesslog?enable=false")).status).toBe(200);
    let before = await metrics(otlp.socket);
    for (let i = 0; i < 40; i++) {
      await Bun.sleep(100);
      const now = await metrics(otlp.socket);
      if (now.get("kmesh_accesslog_records_read_total") === before.get("kmesh_accesslog_records_read_total") && i > 3) break;
      before = now;
    }
    // Every report was offered once: as a line on stdout and to the exporter.
    const offered = before.get("kmesh_accesslog_lines_written_total")!;
    expect(otlp.agent.lines.length).toBe(offered);
    expect(offered).toBeGreaterThanOrEqual(ours.length);
    expect(before.get(M("records_queued"))).toBe(queue);
    expect(before.get(`${M("records_dropped_total")}{reason="queue_full"}`)).toBe(offered - queue);
    expect(before.get(M("records_sent_total"))).toBe(0);
    expect(stderrCount(otlp.agent, "the queue is full (20 reports waiting")).toBe(1);
    // The collector recovers: the queued reports, and only they, arrive.
    receiver.answer = () => ({ status: 200 });
    await receiver.waitForRecords(() => true, queue);
    let after = await metrics(otlp.socket);
    for (let i = 0; i < 50 && after.get(M("records_queued")) !== 0; i++) {
      await Bun.sleep(100);
      after = await metrics(otlp.socket);
    }
    expect({
      queued: after.get(M("records_queued")),
      sent: after.get(M("records_sent_total")),
      droppedQueueFull: after.get(`${M("records_dropped_total")}{reason="queue_full"}`),
      droppedRejected: after.get(`${M("records_dropped_total")}{reason="rejected"}`),
      received: receiver.records.length,
    }).toEqual({ queued: 0, sent: queue, droppedQueueFull: offered - queue, droppedRejected: 0, received: queue });
    await otlp.agent.waitForStderr((line) => line.includes(`the queue has room again; ${offered - queue} reports dropped`));
  }, 120_000);

  test("SIGTERM: what is queued is flushed before exit; a collector that never answers gets --otlp-flush-timeout", async () => {
    await using receiver = await startReceiver();
    {
      // Batches wait a minute: nothing goes before the stop.
      await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-batch-delay", "60"]);
      const lines = await exchanges(otlp.agent, a, b, 3);
      expect(receiver.records.filter((r) => lines.some((line) => recordOf(line)(r)))).toEqual([]);
      const { exitCode, stderr } = await otlp.agent.stop();
      expect(exitCode).toBe(0);
      await deliveredOnce(receiver, lines, 1_000);
      expect(stderr).toMatch(/OTLP export stopped: \d+ reports delivered to http:\/\/127\.0\.0\.1:\d+\/v1\/logs, 0 dropped/);
    }
    receiver.answer = () => ({ status: 200, delayMs: 60_000 });
    await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-flush-timeout", "1"]);
    await exchanges(otlp.agent, a, b, 1);
    await Bun.sleep(300); // the batch is on its way, and will not be answered
    const started = Date.now();
    const { exitCode, stderr } = await otlp.agent.stop();
    expect(exitCode).toBe(0);
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(stderr).toMatch(/OTLP export: \d+ reports were still queued when the 1 s of --otlp-flush-timeout ran out: they are lost/);
  }, 90_000);

  describe("TLS", () => {
    test("verified against --otlp-ca-file; another CA is a TLS failure, said once; --otlp-insecure-skip-verify said once", async () => {
      await using receiver = await startReceiver({ tls: true });
      {
        await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-ca-file", receiver.caFile]);
        await deliveredOnce(receiver, await exchanges(otlp.agent, a, b, 1));
        expect(stderrCount(otlp.agent, "TLS verification")).toBe(0);
      }
      {
        await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-ca-file", receiver.otherCaFile]);
        const lines = await exchanges(otlp.agent, a, b, 1);
        await otlp.agent.waitForStderr((line) => line.includes("failed (tls:"), 15_000);
        expect(receiver.records.filter(recordOf(lines[0]!))).toEqual([]);
        expect(stderrCount(otlp.agent, "failed (tls:")).toBe(1);
      }
      {
        await using otlp = await startOtlpAgent(receiver, ["--no-kubelet", "--otlp-insecure-skip-verify"]);
        await deliveredOnce(receiver, await exchanges(otlp.agent, a, b, 1));
        expect(stderrCount(otlp.agent, `TLS verification of the OTLP collector at ${receiver.endpoint}/v1/logs is OFF (--otlp-insecure-skip-verify)`)).toBe(1);
      }
    }, 90_000);
  });

  test("what cannot work is one line on stderr and exit code 2, before anything loads", async () => {
    const bad = await runBinary(["run", "--otlp-endpoint", "collector:4318"]);
    expect(bad).toEqual({
      exitCode: 2,
      stdout: "",
      stderr:
        'kmesh-accesslog: invalid value for --otlp-endpoint: "collector:4318" (expected an http:// or https:// URL of an OTLP/HTTP collector, without credentials or query, e.g. http://otel-collector:4318)\n',
    });
    const missing = await runBinary(["run", "--no-admin-api", "--no-kubelet", "--lock-file", privateLockFile(), "--otlp-endpoint", "http://127.0.0.1:4318", "--otlp-headers-file", "/nonexistent/headers"]);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.trimEnd().split("\n").at(-1)).toBe("kmesh-accesslog: --otlp-headers-file: cannot read /nonexistent/headers: ENOENT");
  });
});
