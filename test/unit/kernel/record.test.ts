import { describe, expect, test } from "bun:test";
import {
  AF_INET,
  AF_INET6,
  BPF_TCP,
  BPF_TCP_STATE_NAMES,
  DIRECTION_INBOUND,
  DIRECTION_OUTBOUND,
  RECORD_ESTABLISHED,
  RECORD_FIELDS,
  RECORD_SIZE,
  OWNER_FIELDS,
  OWNER_SIZE,
  RECORD_START_UNKNOWN,
  RecordError,
  RecordView,
  tcpStateName,
} from "../../../src/kernel/record.ts";
import { ipv4Number } from "../../../src/address.ts";
import { decodeRecord, rawRecord as build, v6 } from "../fixtures.ts";

function rejection(view: DataView, offset?: number, length?: number): RecordError {
  try {
    decodeRecord(view, offset, length);
  } catch (e) {
    expect(e).toBeInstanceOf(RecordError);
    return e as RecordError;
  }
  throw new Error("decodeRecord accepted the record");
}

describe("layout", () => {
  test("RECORD_FIELDS matches struct conn_record", () => {
    expect(RECORD_SIZE).toBe(144);
    expect(RECORD_FIELDS).toEqual({
      start_ns: { offset: 0, size: 8 },
      report_ns: { offset: 8, size: 8 },
      sent_bytes: { offset: 16, size: 8 },
      received_bytes: { offset: 24, size: 8 },
      sock_id: { offset: 32, size: 8 },
      src_addr: { offset: 40, size: 16 },
      dst_addr: { offset: 56, size: 16 },
      src_port: { offset: 72, size: 2 },
      dst_port: { offset: 74, size: 2 },
      family: { offset: 76, size: 2 },
      direction: { offset: 78, size: 1 },
      state: { offset: 79, size: 1 },
      packets_lost: { offset: 80, size: 4 },
      retransmissions: { offset: 84, size: 4 },
      srtt_us: { offset: 88, size: 4 },
      min_rtt_us: { offset: 92, size: 4 },
      netns: { offset: 96, size: 4 },
      error: { offset: 100, size: 4 },
      flags: { offset: 104, size: 4 },
      reserved: { offset: 108, size: 4 },
      owner: { offset: 112, size: 32 },
    });
    expect(OWNER_SIZE).toBe(32);
    expect(OWNER_FIELDS).toEqual({
      cgroup_id: { offset: 0, size: 8 },
      pid: { offset: 8, size: 4 },
      comm: { offset: 12, size: 16 },
      reserved: { offset: 28, size: 4 },
    });
  });

  test("fields are contiguous and fill the record", () => {
    let next = 0;
    for (const { offset, size } of Object.values(RECORD_FIELDS)) {
      expect<number>(offset).toBe(next);
      next = offset + size;
    }
    expect(next).toBe(RECORD_SIZE);
  });

  test("constants", () => {
    expect([DIRECTION_OUTBOUND, DIRECTION_INBOUND]).toEqual([1, 2]);
    expect([RECORD_START_UNKNOWN, RECORD_ESTABLISHED]).toEqual([1, 2]);
    expect(BPF_TCP_STATE_NAMES.slice(1)).toEqual([
      "BPF_TCP_ESTABLISHED",
      "BPF_TCP_SYN_SENT",
      "BPF_TCP_SYN_RECV",
      "BPF_TCP_FIN_WAIT1",
      "BPF_TCP_FIN_WAIT2",
      "BPF_TCP_TIME_WAIT",
      "BPF_TCP_CLOSE",
      "BPF_TCP_CLOSE_WAIT",
      "BPF_TCP_LAST_ACK",
      "BPF_TCP_LISTEN",
      "BPF_TCP_CLOSING",
      "BPF_TCP_NEW_SYN_RECV",
    ]);
    for (const [name, n] of Object.entries(BPF_TCP)) expect(tcpStateName(n)).toBe(`BPF_TCP_${name}`);
    expect(tcpStateName(0)).toBe("BPF_TCP_0");
    expect(tcpStateName(13)).toBe("BPF_TCP_13");
  });
});

describe("decodeRecord", () => {
  test("every field at its offset (IPv4)", () => {
    const view = build({
      startNs: 0x0000_0012_3456_789an,
      reportNs: 0x0000_0123_4567_89abn,
      sentBytes: 0x0000_0001_0000_0002n,
      receivedBytes: 0xfedc_ba98n,
      sockId: 0xffff_8881_0a0b_0c0dn,
      src: [192, 168, 0, 1],
      dst: [255, 0, 10, 254],
      srcPort: 0xfffe,
      dstPort: 1,
      direction: DIRECTION_INBOUND,
      state: BPF_TCP.CLOSE,
      packetsLost: 0xffffffff,
      retransmissions: 7,
      srttUs: 8,
      minRttUs: 9,
      netns: 0xf000_0001,
      error: -5,
      flags: RECORD_ESTABLISHED | 0x8000_0000,
      reserved: 0xdeadbeef,
      ownerCgroupId: 0x0001_0000_0000_1234n,
      ownerPid: 0xfffffffe,
      ownerComm: [...Buffer.from("fifteen-bytes-x"), 0],
    });
    expect(decodeRecord(view)).toEqual({
      start: { sec: 78, nsec: 187_493_530 },
      report: { sec: 1250, nsec: 999_896_491 },
      sentBytes: 0x1_0000_0002,
      receivedBytes: 0xfedc_ba98,
      sockId: 0xffff_8881_0a0b_0c0dn,
      family: 4,
      srcAddr: "192.168.0.1",
      dstAddr: "255.0.10.254",
      srcPort: 0xfffe,
      dstPort: 1,
      direction: "INBOUND",
      state: 7,
      packetsLost: 0xffffffff,
      retransmissions: 7,
      srttUs: 8,
      minRttUs: 9,
      netns: 0xf000_0001,
      error: -5,
      flags: 0x8000_0002,
      ownerPid: 0xfffffffe,
      ownerCommand: "fifteen-bytes-x",
      ownerCgroupId: 0x0001_0000_0000_1234,
    });
  });

  test("the owner: a command name of 16 bytes without a NUL, bytes that are not UTF-8, and none", () => {
    expect(decodeRecord(build({ ownerPid: 7, ownerComm: [...Buffer.from("sixteen-bytes-xy")] })).ownerCommand).toBe("sixteen-bytes-xy");
    expect(decodeRecord(build({ ownerPid: 7, ownerComm: [0x61, 0xff, 0x62] })).ownerCommand).toBe("a\ufffdb");
    const none = decodeRecord(build());
    expect([none.ownerPid, none.ownerCommand, none.ownerCgroupId]).toEqual([0, "", 0]);
    // one view, two records: the cached text of one is not the other's
    const records = new RecordView();
    expect(records.select(build({ ownerComm: [...Buffer.from("curl")] })).ownerCommand).toBe("curl");
    expect(records.select(build({ ownerComm: [...Buffer.from("curl2")] })).ownerCommand).toBe("curl2");
    expect(records.select(build({ ownerComm: [...Buffer.from("curl")] })).ownerCommand).toBe("curl");
  });

  test("record at an offset inside a larger buffer, trailing bytes ignored", () => {
    const view = build({ srcPort: 1234 }, RECORD_SIZE + 16, 40);
    const ev = decodeRecord(view, 40);
    expect(ev.srcPort).toBe(1234);
    expect(ev.srcAddr).toBe("10.244.2.79");
    expect(decodeRecord(view, 40, RECORD_SIZE).srcPort).toBe(1234);
  });

  test("IPv4 addresses ignore the 12 bytes after the first 4", () => {
    const ev = decodeRecord(build({ src: [1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9] }));
    expect(ev.srcAddr).toBe("1.2.3.4");
    expect(ev.family).toBe(4);
  });

  test("OUTBOUND, start time and the START_UNKNOWN flag", () => {
    expect(decodeRecord(build()).direction).toBe("OUTBOUND");
    expect(decodeRecord(build()).start).toEqual({ sec: 1, nsec: 0 });
    expect(decodeRecord(build({ startNs: 0n })).start).toBeNull();
    expect(decodeRecord(build({ flags: RECORD_START_UNKNOWN | RECORD_ESTABLISHED })).start).toBeNull();
  });

  test("IPv6", () => {
    const ev = decodeRecord(
      build({
        family: AF_INET6,
        src: v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        dst: v6(0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a),
      }),
    );
    expect(ev.family).toBe(6);
    expect(ev.srcAddr).toBe("2001:db8::1");
    expect(ev.dstAddr).toBe("fe80::1ff:fe23:4567:890a");
  });

  test("IPv4-mapped IPv6 becomes IPv4", () => {
    const ev = decodeRecord(
      build({
        family: AF_INET6,
        src: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1],
        dst: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 33],
      }),
    );
    expect(ev.family).toBe(4);
    expect(ev.srcAddr).toBe("10.0.0.1");
    expect(ev.dstAddr).toBe("192.0.2.33");
  });

  test("IPv4-mapped destination with no source yet: 0.0.0.0", () => {
    const ev = decodeRecord(
      build({
        family: AF_INET6,
        src: new Array(16).fill(0),
        dst: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 33],
        flags: 0,
        error: 101,
      }),
    );
    expect(ev.family).toBe(4);
    expect(ev.srcAddr).toBe("0.0.0.0");
    expect(ev.dstAddr).toBe("192.0.2.33");
  });

  test("a mapped address beside a real IPv6 one stays IPv6 (RFC 5952 section 5 text)", () => {
    const ev = decodeRecord(
      build({
        family: AF_INET6,
        src: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1],
        dst: v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
      }),
    );
    expect(ev.family).toBe(6);
    expect(ev.srcAddr).toBe("::ffff:10.0.0.1");
    expect(ev.dstAddr).toBe("2001:db8::1");
  });

  test("timestamps above 2^53 ns stay exact to the nanosecond; counters are numbers", () => {
    const big = (1n << 60n) + 123_456_789n;
    const ev = decodeRecord(build({ startNs: (1n << 53n) + 1n, reportNs: big, sentBytes: (1n << 64n) - 1n }));
    expect(ev.start).toEqual({ sec: 9_007_199, nsec: 254_740_993 });
    expect(ev.report).toEqual({ sec: 1_152_921_504, nsec: 730_303_765 });
    expect(ev.sentBytes).toBe(2 ** 64);
    expect(decodeRecord(build({ reportNs: 0xffff_ffffn })).report).toEqual({ sec: 4, nsec: 294_967_295 });
    expect(decodeRecord(build({ reportNs: 0x1_0000_0000n })).report).toEqual({ sec: 4, nsec: 294_967_296 });
  });
});

describe("decodeRecord rejects", () => {
  test("a short record", () => {
    const e = rejection(new DataView(new ArrayBuffer(143)));
    expect(e.message).toBe("record too short: 143 bytes, expected 144");
    expect(e.kind).toBe("short");
    expect(rejection(new DataView(new ArrayBuffer(0))).message).toBe("record too short: 0 bytes, expected 144");
    expect(rejection(build(), 0, 100).message).toBe("record too short: 100 bytes, expected 144");
    expect(rejection(build(), 8).message).toBe("record too short: 136 bytes, expected 144");
  });

  test("a length that runs past the buffer", () => {
    const e = rejection(build(), 8, 144);
    expect(e.kind).toBe("short");
    expect(e.message).toBe("record at offset 8 runs past the end of its 144-byte buffer");
    expect(rejection(build(), -1, 144).kind).toBe("short");
  });

  test("an unknown family", () => {
    for (const family of [0, 1, 3, 0x0200, 0x0a00]) {
      const e = rejection(build({ family }));
      expect(e.kind).toBe("family");
      expect(e.message).toBe(`unknown address family ${family}`);
    }
  });

  test("an unknown direction", () => {
    for (const direction of [0, 3, 255]) {
      const e = rejection(build({ direction }));
      expect(e.kind).toBe("direction");
      expect(e.message).toBe(`unknown direction ${direction}`);
    }
  });

  test("an unknown state", () => {
    for (const state of [0, 13, 255]) {
      const e = rejection(build({ state }));
      expect(e.kind).toBe("state");
      expect(e.message).toBe(`unknown TCP state ${state}`);
    }
  });

  test("garbage", () => {
    const bytes = new Uint8Array(RECORD_SIZE).fill(0xff);
    const e = rejection(new DataView(bytes.buffer));
    expect(e.name).toBe("RecordError");
    expect(e.message).toBe("unknown direction 255");
  });
});

describe("RecordView", () => {
  /** A batch of random records back to back, as the probe hands them over. */
  function batch(count: number, seed: number): DataView {
    let x = seed;
    const next = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0;
      return x;
    };
    const bytes = new Uint8Array(count * RECORD_SIZE);
    for (let i = 0; i < count; i++) {
      const family = next() % 3 === 0 ? AF_INET6 : AF_INET;
      const mapped = family === AF_INET6 && next() % 4 === 0;
      const addr = () =>
        mapped
          ? [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, next() & 255, next() & 255, next() & 255, next() & 255]
          : Array.from({ length: 16 }, () => (next() % 3 === 0 ? 0 : next() & 255));
      const one = build({
        startNs: BigInt(next()) * 1000n,
        reportNs: BigInt(next()) * 1_000_000n,
        sentBytes: BigInt(next()) * BigInt(next() % 1000),
        receivedBytes: BigInt(next()),
        sockId: (BigInt(next()) << 32n) | BigInt(next()),
        src: addr(),
        dst: addr(),
        srcPort: next() & 0xffff,
        dstPort: next() & 0xffff,
        family,
        direction: 1 + (next() & 1),
        state: 1 + (next() % 12),
        packetsLost: next(),
        retransmissions: next(),
        srttUs: next(),
        minRttUs: next(),
        netns: next(),
        error: next() | 0,
        flags: next() & 3,
      });
      bytes.set(new Uint8Array(one.buffer), i * RECORD_SIZE);
    }
    return new DataView(bytes.buffer);
  }

  test("moved from record to record, it reads what decodeRecord decodes", () => {
    // More distinct addresses than the address caches have slots, so that slots are reused.
    const view = batch(40_000, 7);
    const record = new RecordView();
    const keys = Object.keys(decodeRecord(view, 0, RECORD_SIZE)) as (keyof ReturnType<typeof decodeRecord>)[];
    for (let i = 0; i < 40_000; i++) {
      const expected = decodeRecord(view, i * RECORD_SIZE, RECORD_SIZE);
      expect(record.select(view, i * RECORD_SIZE, RECORD_SIZE)).toBe(record);
      for (const key of keys) {
        if (record[key] !== expected[key]) expect(`${i}: ${key} = ${String(record[key])}`).toBe(`${i}: ${key} = ${String(expected[key])}`);
      }
    }
  });

  test("its IPv4 addresses as numbers, -1 for IPv6 ones, whatever record came before", () => {
    const view = batch(5_000, 11);
    const record = new RecordView();
    const numbers = { 4: 0, 6: 0 };
    for (let i = 0; i < 5_000; i++) {
      const r = record.select(view, i * RECORD_SIZE, RECORD_SIZE);
      const expected = r.family === 4 ? [ipv4Number(r.srcAddr), ipv4Number(r.dstAddr)] : [-1, -1];
      if (r.srcV4 !== expected[0] || r.dstV4 !== expected[1]) expect(`${i}: ${r.srcV4} ${r.dstV4}`).toBe(`${i}: ${expected.join(" ")}`);
      numbers[r.family]++;
    }
    expect(numbers[4]).toBeGreaterThan(3_000); // IPv4 and IPv4-mapped
    expect(numbers[6]).toBeGreaterThan(1_000);
  });

  test("rejects what decodeRecord rejects, and reads the next good record after", () => {
    const record = new RecordView();
    const good = build({ srcPort: 4242 });
    for (const bad of [build({ family: 3 }), build({ direction: 0 }), build({ state: 13 }), new DataView(new ArrayBuffer(100))]) {
      let error: unknown;
      try {
        record.select(bad);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(RecordError);
      expect((error as RecordError).message).toBe(rejection(bad).message);
      expect(record.select(good).srcPort).toBe(4242);
    }
  });
});
