/**
 * What the e2e tests check on the agent's lines of one connection, shared by the test files
 * (capture, periodic reports) and by test/kernels/subset.ts, which runs them on every kernel of
 * the matrix: close lines against what both peers observed, a refused attempt, periodic reports.
 */
import { expect } from "bun:test";
import { type AccessLogEntry, type Agent, matchConnection, nsToMs } from "./agent.ts";
import { type ConnectionReport, type ExchangeOptions, exchange, runClient } from "./exchange.ts";
import type { Pod } from "./node.ts";

/** allowed difference between the agent's times and what the peers measured */
export const TIME_TOLERANCE_MS = 50;
export const ESTABLISHED = "BPF_TCP_ESTABLISHED";
export const CLOSE = "BPF_TCP_CLOSE";

export type Key = { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number };
export const keyOf = (client: ConnectionReport, server: ConnectionReport): Key => ({
  srcAddr: client.localAddress,
  srcPort: client.localPort,
  dstAddr: server.localAddress,
  dstPort: server.localPort,
});
export const isClose = (e: AccessLogEntry) => e.state === CLOSE;

/** The final (BPF_TCP_CLOSE) OUTBOUND and INBOUND lines of one connection, exactly one each. */
export async function closeLines(agent: Agent, key: Key): Promise<{ out: AccessLogEntry; inb: AccessLogEntry }> {
  const out = matchConnection(key, "OUTBOUND");
  const inb = matchConnection(key, "INBOUND");
  await agent.waitForLines((e) => out(e) && isClose(e), 1, 10_000);
  await agent.waitForLines((e) => inb(e) && isClose(e), 1, 10_000);
  const outs = agent.filter((e) => out(e) && isClose(e));
  const inbs = agent.filter((e) => inb(e) && isClose(e));
  expect(outs.map((e) => e.raw)).toHaveLength(1);
  expect(inbs.map((e) => e.raw)).toHaveLength(1);
  return { out: outs[0]!, inb: inbs[0]! };
}

/**
 * Everything one line must agree with, given what the local end (the peer that reported it)
 * observed. Returns the list of problems, so a failure shows all of them and the line.
 */
export function problemsWith(e: AccessLogEntry, local: ConnectionReport, toleranceMs = TIME_TOLERANCE_MS, began = beganFor(local)): string[] {
  const problems: string[] = [];
  const want = (what: string, got: unknown, expected: unknown) => {
    if (got !== expected) problems.push(`${what}=${String(got)}, expected ${String(expected)}`);
  };
  want("state", e.state, "BPF_TCP_CLOSE");
  want("error", e.error, null);
  want("sent_bytes", e.sentBytes, local.bytesWritten);
  want("received_bytes", e.receivedBytes, local.bytesRead);
  if (!(e.srttUs! > 0)) problems.push(`srtt=${e.srttUs}, expected > 0`);
  if (!(e.minRttUs! > 0)) problems.push(`min_rtt=${e.minRttUs}, expected > 0`);
  if (!(e.srttUs! >= e.minRttUs!)) problems.push(`srtt=${e.srttUs} < min_rtt=${e.minRttUs}`);
  if (e.timeNs === null || e.startNs === null || e.durationMs === null) {
    problems.push("time, start_time or duration unknown");
    return problems;
  }
  if (e.startNs > e.timeNs) problems.push(`start_time ${e.startTime} is after the report time ${e.time}`);
  const span = nsToMs(e.timeNs - e.startNs);
  if (Math.abs(span - e.durationMs) > 0.002) {
    problems.push(`duration=${e.durationMs}ms but report time - start_time = ${span}ms`);
  }
  // The peer reads its clock in its event loop, which a loaded machine (a TCG VM above all) can
  // delay by hundreds of milliseconds: so the connection's life in the kernel is checked to lie
  // inside what the peer saw around it and to cover what it saw within it, not to equal it.
  const startMs = nsToMs(e.startNs);
  const endMs = nsToMs(e.timeNs);
  if (startMs < began.ms - toleranceMs) {
    problems.push(`start_time is ${(began.ms - startMs).toFixed(3)}ms before ${began.what}`);
  }
  if (endMs > local.closedMs + toleranceMs) {
    problems.push(`report time is ${(endMs - local.closedMs).toFixed(3)}ms after the ${local.event} saw the close`);
  }
  // The client's connect() returned, the server's accept() handed the socket over: it was open.
  const openMs = local.connectedMs ?? local.startMs;
  if (startMs > openMs + toleranceMs) {
    problems.push(`start_time is ${(startMs - openMs).toFixed(3)}ms after the ${local.event} had the connection`);
  }
  if (local.payloadMs !== null && endMs < local.payloadMs - toleranceMs) {
    problems.push(`report time is ${(local.payloadMs - endMs).toFixed(3)}ms before the ${local.event} had exchanged its payload`);
  }
  return problems;
}

/** The earliest the kernel can have had a connection, as one peer saw it: when it began. */
const beganFor = (local: ConnectionReport) => ({ ms: local.startMs, what: `the ${local.event} began` });

/**
 * The same for the server's line, from both peers' reports: a server's start is its accept
 * callback, which runs after the kernel established the connection, late by as long as its event
 * loop was busy (435 ms once in a TCG VM); the client's connect() came before the kernel had it.
 */
export const serverBegan = (client: ConnectionReport, server: ConnectionReport) =>
  client.startMs < server.startMs ? { ms: client.startMs, what: "the client began connecting" } : beganFor(server);

/** Runs one exchange and checks both of its lines against both peers. */
export async function checkExchange(agent: Agent, a: Pod, b: Pod, o: ExchangeOptions, toleranceMs = TIME_TOLERANCE_MS) {
  const { client, server } = await exchange(a, b, o);
  expect(client).toMatchObject({ bytesWritten: o.clientSend, bytesRead: o.serverSend });
  const key = keyOf(client, server);
  expect(key).toEqual({
    srcAddr: a.ip(o.family),
    srcPort: client.localPort,
    dstAddr: b.ip(o.family),
    dstPort: server.localPort,
  });
  const { out, inb } = await closeLines(agent, key);
  expect({ line: out.raw, problems: problemsWith(out, client, toleranceMs) }).toEqual({ line: out.raw, problems: [] });
  expect({ line: inb.raw, problems: problemsWith(inb, server, toleranceMs, serverBegan(client, server)) }).toEqual({ line: inb.raw, problems: [] });
  return { client, server, out, inb };
}

/** A refused attempt: one OUTBOUND line, zero bytes, error=ECONNREFUSED, and no other line. */
export async function checkRefused(agent: Agent, a: Pod, b: Pod): Promise<void> {
  const localPort = 20_000 + Math.floor(Math.random() * 20_000);
  const refusedPort = 9;
  const client = await runClient(a, { host: b.ip4, port: refusedPort, localPort });
  expect(client.error).toBe("ECONNREFUSED");
  const key = { srcAddr: a.ip4, srcPort: localPort, dstAddr: b.ip4, dstPort: refusedPort };
  const [line] = await agent.waitForLines(matchConnection(key, "OUTBOUND"), 1, 10_000);
  expect(line!.raw).toEndWith(", error=ECONNREFUSED");
  expect(line).toMatchObject({ state: "BPF_TCP_CLOSE", sentBytes: 0, receivedBytes: 0, error: "ECONNREFUSED" });
  await Bun.sleep(1_500);
  expect(agent.filter(matchConnection(key)).map((e) => e.raw)).toEqual([line!.raw]);
}

export interface Held {
  client: ConnectionReport;
  server: ConnectionReport;
  key: Key;
}

/** One request/response, then the client holds the connection idle for `holdMs` before closing. */
export async function idleConnection(a: Pod, b: Pod, holdMs: number, family: 4 | 6 = 4): Promise<Held> {
  const { client, server } = await exchange(a, b, { family, clientSend: 1000, serverSend: 5000, closeFirst: "client", holdMs });
  return { client, server, key: keyOf(client, server) };
}

/** Every line of one direction of a connection, once its close line is in. */
export async function linesOf(agent: Agent, held: Held, direction: "OUTBOUND" | "INBOUND"): Promise<AccessLogEntry[]> {
  const match = matchConnection(held.key, direction);
  await agent.waitForLines((e) => match(e) && e.state === CLOSE, 1, 15_000);
  return agent.filter(match);
}

/**
 * The reports of one direction: ESTABLISHED ones first, durations growing, the same start_time as
 * the close line, counters cumulative, then one CLOSE. A report made once both ends had moved
 * their payload (`settledMs`) has exactly the bytes the local end moved; one made before (a report
 * can fall between connect and the last byte, more likely on a slow machine) has at most those
 * and no less than the report before it. `minReports` of them must be of the settled kind.
 */
export function periodicProblems(
  entries: AccessLogEntry[],
  local: ConnectionReport,
  minReports: number,
  intervalMs: number,
  toleranceMs = 300,
  settledMs = 0,
): string[] {
  const problems: string[] = [];
  const periodic = entries.filter((e) => e.state === ESTABLISHED);
  const closes = entries.filter((e) => e.state === CLOSE);
  const settled = periodic.filter((e) => nsToMs(e.timeNs!) >= settledMs);
  if (closes.length !== 1) problems.push(`${closes.length} close lines`);
  if (settled.length < minReports) problems.push(`${settled.length} ESTABLISHED reports after the payload, expected at least ${minReports}`);
  if (entries.at(-1)?.state !== CLOSE) problems.push("the close line is not the last");
  const close = closes[0];
  for (const [i, e] of periodic.entries()) {
    if (e.startTime !== close?.startTime) problems.push(`report ${i}: start_time ${e.startTime}, close has ${close?.startTime}`);
    if (settled.includes(e)) {
      if (e.sentBytes !== local.bytesWritten) problems.push(`report ${i}: sent_bytes=${e.sentBytes}, expected ${local.bytesWritten}`);
      if (e.receivedBytes !== local.bytesRead) problems.push(`report ${i}: received_bytes=${e.receivedBytes}, expected ${local.bytesRead}`);
    } else {
      const before = i === 0 ? { sentBytes: 0, receivedBytes: 0 } : periodic[i - 1]!;
      if (!(e.sentBytes! >= before.sentBytes! && e.sentBytes! <= local.bytesWritten)) {
        problems.push(`report ${i} (before the payload was done): sent_bytes=${e.sentBytes}, expected ${before.sentBytes}..${local.bytesWritten}`);
      }
      if (!(e.receivedBytes! >= before.receivedBytes! && e.receivedBytes! <= local.bytesRead)) {
        problems.push(`report ${i} (before the payload was done): received_bytes=${e.receivedBytes}, expected ${before.receivedBytes}..${local.bytesRead}`);
      }
    }
    if (!(e.srttUs! > 0 && e.minRttUs! > 0)) problems.push(`report ${i}: srtt=${e.srttUs} min_rtt=${e.minRttUs}`);
    const previous = i === 0 ? 0 : periodic[i - 1]!.durationMs!;
    if (!(e.durationMs! > previous)) problems.push(`report ${i}: duration ${e.durationMs}ms does not grow (previous ${previous}ms)`);
    if (i > 0 && Math.abs(e.durationMs! - previous - intervalMs) > toleranceMs) {
      problems.push(`report ${i}: ${e.durationMs! - previous}ms after the previous one, expected about ${intervalMs}ms`);
    }
  }
  if (close && periodic.length > 0 && !(close.durationMs! > periodic.at(-1)!.durationMs!)) problems.push("the close duration is not the longest");
  return problems;
}

/** time after the later end's last payload byte by which its acknowledgement has surely arrived */
const ACK_MS = 100;

/**
 * Both directions of a held connection pass periodicProblems (shown with their lines if not). The
 * counters are final once both ends moved their payload and the last byte was acknowledged.
 */
export async function checkPeriodic(agent: Agent, held: Held, minReports: number, intervalMs: number, toleranceMs = 300): Promise<void> {
  const settledMs = Math.max(held.client.payloadMs ?? Infinity, held.server.payloadMs ?? Infinity) + ACK_MS;
  for (const [direction, local] of [["OUTBOUND", held.client], ["INBOUND", held.server]] as const) {
    const entries = await linesOf(agent, held, direction);
    const lines = entries.map((e) => e.raw);
    const problems = periodicProblems(entries, local, minReports, intervalMs, toleranceMs, settledMs);
    expect({ direction, lines, problems }).toEqual({ direction, lines, problems: [] });
  }
}

/** One direction's lines of a connection in one state, reduced to what a connection open before the agent can be checked on. */
export function reportsOf(agent: Agent, key: Key, direction: "OUTBOUND" | "INBOUND", state: string) {
  return agent
    .filter(matchConnection(key, direction))
    .filter((e) => e.state === state)
    .map((e) => ({ start: e.startTime, duration: e.durationMs, sent: e.sentBytes, received: e.receivedBytes }));
}
