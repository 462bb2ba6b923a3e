import { describe, expect, test } from "bun:test";
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import { errnoName } from "../../../src/accesslog/record.ts";
import { escapeValue, formatGoTime, formatJsonLine, formatKmeshLine, SEED_LINE, SEED_RECORD, utc } from "../fixtures.ts";

const seed = SEED_RECORD;

describe("formatGoTime", () => {
  test("the seed example", () => {
    expect(formatGoTime(seed.reportTime)).toBe("2025-04-24 08:54:40.971980208 +0000 UTC");
    expect(formatGoTime(seed.startTime!)).toBe("2025-04-24 08:53:50.919245381 +0000 UTC");
  });

  test("trailing zeros of the fraction are dropped, leading ones kept", () => {
    const sec = utc("2025-04-24T08:54:40Z");
    expect(formatGoTime({ sec, nsec: 971_980_200 })).toBe("2025-04-24 08:54:40.9719802 +0000 UTC");
    expect(formatGoTime({ sec, nsec: 500_000_000 })).toBe("2025-04-24 08:54:40.5 +0000 UTC");
    expect(formatGoTime({ sec, nsec: 1 })).toBe("2025-04-24 08:54:40.000000001 +0000 UTC");
    expect(formatGoTime({ sec, nsec: 10 })).toBe("2025-04-24 08:54:40.00000001 +0000 UTC");
    expect(formatGoTime({ sec, nsec: 20_000 })).toBe("2025-04-24 08:54:40.00002 +0000 UTC");
    expect(formatGoTime({ sec, nsec: 999_999_999 })).toBe("2025-04-24 08:54:40.999999999 +0000 UTC");
  });

  test("no dot when the fraction is zero", () => {
    expect(formatGoTime({ sec: utc("2025-04-24T08:54:40Z"), nsec: 0 })).toBe("2025-04-24 08:54:40 +0000 UTC");
    expect(formatGoTime({ sec: 0, nsec: 0 })).toBe("1970-01-01 00:00:00 +0000 UTC");
  });

  test("over midnight, month ends, leap days and the new year", () => {
    expect(formatGoTime({ sec: utc("2024-12-31T23:59:59Z"), nsec: 999_999_999 })).toBe(
      "2024-12-31 23:59:59.999999999 +0000 UTC",
    );
    expect(formatGoTime({ sec: utc("2024-12-31T23:59:59Z") + 1, nsec: 0 })).toBe("2025-01-01 00:00:00 +0000 UTC");
    expect(formatGoTime({ sec: utc("2024-02-28T23:59:59Z") + 1, nsec: 7 })).toBe(
      "2024-02-29 00:00:00.000000007 +0000 UTC",
    );
    expect(formatGoTime({ sec: utc("2025-02-28T23:59:59Z") + 1, nsec: 0 })).toBe("2025-03-01 00:00:00 +0000 UTC");
    expect(formatGoTime({ sec: utc("2000-02-29T12:00:00Z"), nsec: 0 })).toBe("2000-02-29 12:00:00 +0000 UTC");
    expect(formatGoTime({ sec: utc("2100-03-01T00:00:00Z"), nsec: 0 })).toBe("2100-03-01 00:00:00 +0000 UTC");
  });

  test("agrees with Date on many seconds, cache or not", () => {
    let sec = 0;
    for (let i = 0; i < 5000; i++) {
      sec = (sec * 7919 + 104729 + i * 86_399) % 4_102_444_800; // up to 2100
      const iso = new Date(sec * 1000).toISOString(); // 2025-04-24T08:54:40.000Z
      const expected = iso.slice(0, 10) + " " + iso.slice(11, 19) + " +0000 UTC";
      expect(formatGoTime({ sec, nsec: 0 })).toBe(expected);
      expect(formatGoTime({ sec: 1_745_484_880, nsec: 0 })).toBe("2025-04-24 08:54:40 +0000 UTC");
      expect(formatGoTime({ sec, nsec: 0 })).toBe(expected);
    }
  });
});

describe("formatKmeshLine", () => {
  test("reproduces the seed example byte for byte", () => {
    expect(formatKmeshLine(seed)).toBe(SEED_LINE);
  });

  test("unknown values are -, dst.service falls back to the destination IP", () => {
    const r: AccessRecord = {
      ...seed,
      srcWorkload: null,
      srcNamespace: null,
      dstService: null,
      dstWorkload: null,
      dstNamespace: null,
      startTime: null,
      durationMs: null,
      state: "BPF_TCP_CLOSE",
      direction: "INBOUND",
    };
    expect(formatKmeshLine(r)).toBe(
      "accesslog: 2025-04-24 08:54:40.971980208 +0000 UTC src.addr=10.244.2.79:41978, src.workload=-, src.namespace=-, dst.addr=10.244.2.78:8080, dst.service=10.244.2.78, dst.workload=-, dst.namespace=-, start_time=-, direction=INBOUND, state=BPF_TCP_CLOSE, sent_bytes=3, received_bytes=227, packet_loss=0, retransmissions=0, srtt=40515us, min_rtt=34us, duration=-",
    );
  });

  test("IPv6 addresses in brackets, the bare address as service", () => {
    const r: AccessRecord = {
      ...seed,
      family: 6,
      srcAddr: "fd00:10:244::4f",
      dstAddr: "fd00:10:244::4e",
      dstService: null,
    };
    expect(formatKmeshLine(r)).toContain(
      " src.addr=[fd00:10:244::4f]:41978, src.workload=ws-client, src.namespace=default, dst.addr=[fd00:10:244::4e]:8080, dst.service=fd00:10:244::4e, ",
    );
  });

  test("a failed attempt ends with error=", () => {
    const r: AccessRecord = {
      ...seed,
      state: "BPF_TCP_CLOSE",
      sentBytes: 0,
      receivedBytes: 0,
      srttUs: 0,
      minRttUs: 0,
      durationMs: 1.001,
      error: "ECONNREFUSED",
    };
    expect(formatKmeshLine(r).endsWith(", srtt=0us, min_rtt=0us, duration=1.001ms, error=ECONNREFUSED")).toBe(true);
    expect(formatKmeshLine(seed)).not.toContain("error=");
  });

  test("duration digits like Go's %v", () => {
    const line = (durationMs: number) => formatKmeshLine({ ...seed, durationMs }).split("duration=")[1];
    expect(line(50052.734827)).toBe("50052.734827ms");
    expect(line(2.236)).toBe("2.236ms");
    expect(line(2_236_000 / 1e6)).toBe("2.236ms");
    expect(line(50_052_734_827 / 1e6)).toBe("50052.734827ms");
    expect(line(0)).toBe("0ms");
    expect(line(1 / 1e6)).toBe("1e-06ms");
    expect(line(123 / 1e6)).toBe("0.000123ms");
    expect(line(5000)).toBe("5000ms");
    expect(line(1_200_000)).toBe("1.2e+06ms");
    expect(line(86_400_000.000001)).toBe("8.6400000000001e+07ms");
  });

  test("names with line-breaking characters are escaped", () => {
    const r: AccessRecord = {
      ...seed,
      srcWorkload: "evil, dst.workload=x",
      srcNamespace: "new\nline",
      dstService: "caf\u00e9.example",
      dstWorkload: "a\\b%c",
      dstNamespace: "-",
      error: "E X",
    };
    const line = formatKmeshLine(r);
    expect(line).toContain(
      " src.workload=evil%2C%20dst.workload%3Dx, src.namespace=new%0Aline, dst.addr=10.244.2.78:8080, dst.service=caf%C3%A9.example, dst.workload=a%5Cb%25c, dst.namespace=%2D, ",
    );
    expect(line.endsWith(", error=E%20X")).toBe(true);
    expect(line).not.toContain("\n");
    expect(line.split(", ").length).toBe(SEED_LINE.split(", ").length + 1);
  });
});

describe("escapeValue", () => {
  test("plain names pass through as the same string", () => {
    for (const name of ["ws-client", "default", "a.b-c_d:e/f~g(h)", "x", ""]) expect(escapeValue(name)).toBe(name);
  });

  test("each offending byte is percent-encoded (UTF-8, uppercase hex)", () => {
    expect(escapeValue(" ")).toBe("%20");
    expect(escapeValue(",=\\%")).toBe("%2C%3D%5C%25");
    expect(escapeValue("\t\r\n\u0000\u007f")).toBe("%09%0D%0A%00%7F");
    expect(escapeValue("ünï")).toBe("%C3%BCn%C3%AF");
    expect(escapeValue("日本")).toBe("%E6%97%A5%E6%9C%AC");
    expect(escapeValue("😀")).toBe("%F0%9F%98%80");
    expect(escapeValue("\ud800")).toBe("%EF%BF%BD");
    expect(escapeValue("-")).toBe("%2D");
    expect(escapeValue("--")).toBe("--");
  });

  test("decodeURIComponent reverses it", () => {
    for (const value of ["evil, x=y", "a\\b%25c", "new\nline", "café", "日本 語", "-", "ok", "%", "100%"]) {
      expect(decodeURIComponent(escapeValue(value))).toBe(value);
    }
  });
});

describe("formatJsonLine", () => {
  test("the seed record", () => {
    expect(formatJsonLine(seed)).toBe(
      '{"time":"2025-04-24T08:54:40.971980208Z","src_addr":"10.244.2.79","src_port":41978,"src_workload":"ws-client","src_namespace":"default","dst_addr":"10.244.2.78","dst_port":8080,"dst_service":"ws-server-service.default.svc.cluster.local","dst_workload":"ws-server","dst_namespace":"default","start_time":"2025-04-24T08:53:50.919245381Z","direction":"OUTBOUND","state":"BPF_TCP_ESTABLISHED","sent_bytes":3,"received_bytes":227,"packet_loss":0,"retransmissions":0,"srtt_us":40515,"min_rtt_us":34,"duration_ms":50052.734827,"error":null,"netns":4026531840,"process_pid":null,"process_command":null,"container_id":null,"container_name":null}',
    );
  });

  test("times are RFC 3339 in UTC with nine fraction digits, zeros kept", () => {
    const sec = utc("2026-12-01T12:22:18Z");
    const times = (nsec: number) => {
      const j = JSON.parse(formatJsonLine({ ...seed, reportTime: { sec, nsec }, startTime: { sec: sec - 86_400 * 366, nsec } }));
      return [j.time, j.start_time];
    };
    expect(times(152_687_231)).toEqual(["2026-12-01T12:22:18.152687231Z", "2025-11-30T12:22:18.152687231Z"]);
    expect(times(0)).toEqual(["2026-12-01T12:22:18.000000000Z", "2025-11-30T12:22:18.000000000Z"]);
    expect(times(500_000_000)[0]).toBe("2026-12-01T12:22:18.500000000Z");
    expect(times(1)[0]).toBe("2026-12-01T12:22:18.000000001Z");
    expect(JSON.parse(formatJsonLine({ ...seed, reportTime: { sec: 0, nsec: 999_999_999 } })).time).toBe("1970-01-01T00:00:00.999999999Z");
    // Leap day, and the turn of a year.
    expect(JSON.parse(formatJsonLine({ ...seed, reportTime: { sec: utc("2028-02-29T23:59:59Z"), nsec: 7 } })).time).toBe("2028-02-29T23:59:59.000000007Z");
    expect(JSON.parse(formatJsonLine({ ...seed, reportTime: { sec: utc("2026-12-31T23:59:59Z") + 1, nsec: 0 } })).time).toBe("2027-01-01T00:00:00.000000000Z");
  });

  test("the text line keeps Go's layout", () => {
    expect(formatKmeshLine(seed)).toBe(SEED_LINE);
  });

  test("unknowns are null, IPv6 without brackets, values JSON-escaped only", () => {
    const r: AccessRecord = {
      ...seed,
      family: 6,
      srcAddr: "fd00::1",
      dstAddr: "fd00::2",
      srcWorkload: 'we"ird, name\n',
      srcNamespace: null,
      dstService: null,
      dstWorkload: null,
      dstNamespace: null,
      startTime: null,
      durationMs: null,
      state: "BPF_TCP_CLOSE",
      error: "ETIMEDOUT",
      pid: 4_194_304,
      command: 'my "app"',
      containerId: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      containerName: "app",
    };
    const text = formatJsonLine(r);
    expect(text).not.toContain("\n");
    expect(JSON.parse(text)).toEqual({
      time: "2025-04-24T08:54:40.971980208Z",
      src_addr: "fd00::1",
      src_port: 41978,
      src_workload: 'we"ird, name\n',
      src_namespace: null,
      dst_addr: "fd00::2",
      dst_port: 8080,
      dst_service: null,
      dst_workload: null,
      dst_namespace: null,
      start_time: null,
      direction: "OUTBOUND",
      state: "BPF_TCP_CLOSE",
      sent_bytes: 3,
      received_bytes: 227,
      packet_loss: 0,
      retransmissions: 0,
      srtt_us: 40515,
      min_rtt_us: 34,
      duration_ms: null,
      error: "ETIMEDOUT",
      netns: 4026531840,
      process_pid: 4_194_304,
      process_command: 'my "app"',
      container_id: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
      container_name: "app",
    });
    expect(Object.keys(JSON.parse(text))).toEqual([
      "time",
      "src_addr",
      "src_port",
      "src_workload",
      "src_namespace",
      "dst_addr",
      "dst_port",
      "dst_service",
      "dst_workload",
      "dst_namespace",
      "start_time",
      "direction",
      "state",
      "sent_bytes",
      "received_bytes",
      "packet_loss",
      "retransmissions",
      "srtt_us",
      "min_rtt_us",
      "duration_ms",
      "error",
      "netns",
      "process_pid",
      "process_command",
      "container_id",
      "container_name",
    ]);
  });
});

describe("errnoName", () => {
  test.each([
    [111, "ECONNREFUSED"],
    [110, "ETIMEDOUT"],
    [113, "EHOSTUNREACH"],
    [101, "ENETUNREACH"],
    [104, "ECONNRESET"],
    [103, "ECONNABORTED"],
    [32, "EPIPE"],
    [13, "EACCES"],
    [1, "EPERM"],
    [0, "ECONNABORTED"],
    [-111, "ECONNREFUSED"],
    [22, "errno22"],
    [-7, "errno7"],
  ])("%d → %s", (n, name) => {
    expect(errnoName(n)).toBe(name);
  });
});
