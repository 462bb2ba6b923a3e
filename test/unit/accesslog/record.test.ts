import { expect, test } from "bun:test";
import { AccessRecordPool, toAccessRecord } from "../../../src/accesslog/record.ts";
import { makeClock } from "../../../src/kernel/clock.ts";
import { type ConnEvent, RECORD_ESTABLISHED, RecordView } from "../../../src/kernel/record.ts";
import { decodeRecord, formatKmeshLine, rawRecord, SEED_LINE, UNNAMED_SEED_RECORD } from "../fixtures.ts";

// Kernel boot (monotonic 0) at 2025-04-24 08:00:00.123456789 UTC.
const BOOT_SEC = Date.parse("2025-04-24T08:00:00Z") / 1000;
const clock = makeClock(BOOT_SEC, 123_456_789, () => 0);
const monoOf = (iso: string, nsec: number) => {
  const ns = (Date.parse(iso) / 1000 - BOOT_SEC) * 1e9 + nsec - 123_456_789;
  return { sec: Math.floor(ns / 1e9), nsec: ns % 1e9 };
};
const nsOf = (t: { sec: number; nsec: number }) => BigInt(t.sec) * 1_000_000_000n + BigInt(t.nsec);

const event: ConnEvent = {
  start: monoOf("2025-04-24T08:53:50Z", 919_245_381),
  report: monoOf("2025-04-24T08:54:40Z", 971_980_208),
  sentBytes: 3,
  receivedBytes: 227,
  sockId: 1n,
  family: 4,
  srcAddr: "10.244.2.79",
  dstAddr: "10.244.2.78",
  srcPort: 41978,
  dstPort: 8080,
  direction: "OUTBOUND",
  state: 1,
  packetsLost: 0,
  retransmissions: 0,
  srttUs: 40515,
  minRttUs: 34,
  netns: 4026531840,
  error: 0,
  flags: RECORD_ESTABLISHED,
  ownerPid: 0,
  ownerCommand: "",
  ownerCgroupId: 0,
};

test("the seed example from a raw ring-buffer record to the line, byte for byte", () => {
  const v = rawRecord({ startNs: nsOf(event.start!), reportNs: nsOf(event.report), sockId: 0xffff888100000000n });

  const record = toAccessRecord(decodeRecord(v), clock);
  expect(record.durationMs).toBe(50052.734827);
  // The agent's way: a RecordView on the record where it lies.
  expect(toAccessRecord(new RecordView().select(v), clock)).toEqual(record);
  const named = {
    ...record,
    srcWorkload: "ws-client",
    srcNamespace: "default",
    dstService: "ws-server-service.default.svc.cluster.local",
    dstWorkload: "ws-server",
    dstNamespace: "default",
  };
  expect(formatKmeshLine(named)).toBe(SEED_LINE);
});

test("fields of an established connection", () => {
  expect(toAccessRecord(event, clock)).toEqual(UNNAMED_SEED_RECORD);
});

test("unknown start: no start time, no duration", () => {
  const r = toAccessRecord({ ...event, start: null, state: 7 }, clock);
  expect(r.startTime).toBeNull();
  expect(r.durationMs).toBeNull();
  expect(r.state).toBe("BPF_TCP_CLOSE");
  expect(r.error).toBeNull();
});

test("a failed attempt carries its errno name", () => {
  const failed = { ...event, state: 7, flags: 0, sentBytes: 0, receivedBytes: 0 };
  expect(toAccessRecord({ ...failed, error: 111 }, clock).error).toBe("ECONNREFUSED");
  expect(toAccessRecord({ ...failed, error: 110 }, clock).error).toBe("ETIMEDOUT");
  expect(toAccessRecord({ ...failed, error: 0 }, clock).error).toBe("ECONNABORTED");
  // an established connection reset later is not a failed attempt
  expect(toAccessRecord({ ...event, error: 104 }, clock).error).toBeNull();
});

test("duration is exact in milliseconds", () => {
  const r = toAccessRecord({ ...event, start: { sec: 1, nsec: 0 }, report: { sec: 1, nsec: 2_236_000 } }, clock);
  expect(r.durationMs).toBe(2.236);
  expect(formatKmeshLine(r)).toContain(", duration=2.236ms");
});

test("a pool for outputs that show no process leaves the process unknown; the others name it", () => {
  const owned = { ...event, ownerPid: 4242, ownerCommand: "wrk", ownerCgroupId: 77 };
  const unnamed = new AccessRecordPool(2, false).fill(owned, clock);
  expect(unnamed).toEqual(UNNAMED_SEED_RECORD);
  expect(unnamed.pid).toBeNull();
  expect(unnamed.command).toBeNull();
  const named = new AccessRecordPool(2).fill(owned, clock);
  expect(named).toEqual({ ...UNNAMED_SEED_RECORD, pid: 4242, command: "wrk" });
});
