// The byte formatter writes exactly the bytes of today's string formatter (format-reference.ts,
// kept verbatim), on many random records: IPv4 and IPv6, names that need escaping (including
// non-ASCII and lone surrogates), unknown values, failed attempts, huge and odd numbers, and ends
// named from a pod (srcPod/dstPod), whose names the line may or may not still carry.
import { describe, expect, test } from "bun:test";
import { type AccessRecord, JsonLines, KmeshText, type LineFormat, WRITE_SLACK } from "../../../src/accesslog/format.ts";
import type { WallTime } from "../../../src/kernel/clock.ts";
import type { PodInfo } from "../../../src/kube/pod.ts";
import { escapeValue, formatGoTime, formatJsonLine, formatKmeshLine } from "../fixtures.ts";
import { type Random, seededRandom as random } from "../../support/random.ts";
import { reference } from "./format-reference.ts";

const PLAIN = "abcdefghijklmnopqrstuvwxyz0123456789-._:/~";
const ODD = [" ", ",", "=", "\\", "%", "\n", "\t", "\r", "\u0000", "\u007f", '"', "é", "ü", "日", "本", "😀", "\ud800", "\udfff", "\u2028", "-"];

function name(rng: Random): string | null {
  if (rng.chance(0.15)) return null;
  if (rng.chance(0.05)) return rng.pick(["-", "", "--", "%", "%2D"]);
  let text = "";
  const length = 1 + rng.int(rng.chance(0.1) ? 250 : 30);
  const odd = rng.chance(0.3);
  for (let i = 0; i < length; i++) text += odd && rng.chance(0.2) ? rng.pick(ODD) : PLAIN[rng.int(PLAIN.length)]!;
  return text;
}

function ipv4(rng: Random): string {
  return [rng.int(256), rng.int(256), rng.int(256), rng.int(256)].join(".");
}

function ipv6(rng: Random): string {
  return rng.pick([
    () => "::",
    () => "::1",
    () => `fd00:10:244::${rng.int(65536).toString(16)}`,
    () => Array.from({ length: 8 }, () => rng.int(65536).toString(16)).join(":"),
    () => `2001:db8::${rng.int(65536).toString(16)}:${rng.int(65536).toString(16)}`,
    () => `::ffff:${ipv4(rng)}`,
  ])();
}

function wallTime(rng: Random): WallTime {
  const sec = rng.pick([
    () => 1_745_484_880 + rng.int(100_000),
    () => rng.int(4_102_444_800),
    () => 0,
    () => 951_782_400 - 1 + rng.int(3), // around 2000-02-29
  ])();
  const nsec = rng.pick([
    () => rng.int(1e9),
    () => 0,
    () => rng.int(10) * 10 ** rng.int(9),
    () => 999_999_999,
    () => 1,
  ])();
  return { sec, nsec };
}

function counter(rng: Random): number {
  return rng.pick([
    () => rng.int(10),
    () => rng.int(100_000),
    () => rng.int(2 ** 32),
    () => Math.floor(rng.next() * 2 ** 53),
    () => 2 ** 53,
    () => 2 ** 53 + 2,
    () => Math.floor(rng.next() * 2 ** 64), // a u64 the decoder would round
    () => 2 ** 31,
    () => 2 ** 31 - 1,
    () => 10 ** rng.int(16),
    () => 10 ** rng.int(16) - 1,
    () => rng.pick([1.5, -1, -0, Number.NaN, Number.POSITIVE_INFINITY, 1e21, 1e-7, 123.456]),
  ])();
}

function duration(rng: Random): number | null {
  return rng.pick([
    () => null,
    () => rng.int(100_000_000) / 1e6,
    () => Math.floor(rng.next() * 1e13) / 1e6,
    () => Math.floor(rng.next() * 1e16) / 1e6, // beyond 1e15 ns: String's own digits
    () => rng.int(1000) / 1e6,
    () => rng.int(100) * 1000,
    () => 0,
    () => rng.next() * 1e5, // not a whole number of nanoseconds
    () => rng.pick([Number.NaN, -1.5, 1e-7, 86_400_000.000001, 50052.734827]),
  ])();
}

/** A pod with a name (pods always have one) and a namespace that may be unknown. */
function pod(rng: Random): PodInfo {
  const podName = name(rng) ?? "pod";
  return {
    name: podName,
    namespace: name(rng),
    workload: podName,
    canonicalService: podName,
    canonicalRevision: "latest",
    app: podName,
    version: "latest",
    serviceAccount: null,
  };
}

/**
 * `r` with its ends named from pods of `pods` (the same objects again and again, as the index
 * hands them out): mostly the pod's own names, sometimes not (a service's namespace on the
 * destination, names set otherwise), so that the formatter must check before it uses a pod's piece.
 */
function namedFromPods(rng: Random, r: AccessRecord, pods: readonly PodInfo[]): AccessRecord {
  if (rng.chance(0.6)) {
    const src = rng.pick(pods);
    [r.srcWorkload, r.srcNamespace, r.srcPod] = [src.name, src.namespace, src];
    if (rng.chance(0.1)) r.srcNamespace = name(rng);
    if (rng.chance(0.05)) r.srcWorkload = name(rng);
  }
  if (rng.chance(0.6)) {
    const dst = rng.pick(pods);
    [r.dstWorkload, r.dstNamespace, r.dstPod] = [dst.name, dst.namespace, dst];
    if (rng.chance(0.1)) r.dstNamespace = name(rng);
    if (rng.chance(0.05)) r.dstWorkload = name(rng);
  }
  return r;
}

function record(rng: Random): AccessRecord {
  const family = rng.chance(0.3) ? 6 : 4;
  const address = family === 6 ? ipv6 : ipv4;
  const failed = rng.chance(0.1);
  return {
    reportTime: wallTime(rng),
    startTime: rng.chance(0.1) ? null : wallTime(rng),
    srcAddr: address(rng),
    srcPort: rng.chance(0.05) ? rng.pick([0, 65535]) : rng.int(65536),
    srcWorkload: name(rng),
    srcNamespace: name(rng),
    dstAddr: address(rng),
    dstPort: rng.int(65536),
    dstService: rng.chance(0.5) ? null : name(rng),
    dstWorkload: name(rng),
    dstNamespace: name(rng),
    direction: rng.chance(0.5) ? "OUTBOUND" : "INBOUND",
    state: rng.pick(["BPF_TCP_CLOSE", "BPF_TCP_ESTABLISHED", "BPF_TCP_SYN_SENT", "BPF_TCP_42"]),
    sentBytes: failed ? 0 : counter(rng),
    receivedBytes: failed ? 0 : counter(rng),
    packetLoss: counter(rng),
    retransmissions: counter(rng),
    srttUs: counter(rng),
    minRttUs: counter(rng),
    durationMs: duration(rng),
    error: failed ? rng.pick(["ECONNREFUSED", "ETIMEDOUT", "ECONNABORTED", "errno22"]) : rng.chance(0.01) ? name(rng) : null,
    family,
    netns: rng.chance(0.5) ? 4026531840 : rng.int(2 ** 32),
    pid: rng.chance(0.3) ? null : rng.chance(0.1) ? 2 ** 32 - 1 : 1 + rng.int(4_194_304),
    command: rng.chance(0.3) ? null : name(rng),
    containerId: rng.chance(0.5) ? null : name(rng),
    containerName: rng.chance(0.5) ? null : name(rng),
  };
}

const utf8 = new TextEncoder();

/**
 * The bytes `format` writes, checked against its own bound; the chunk around them untouched
 * (but for the slack after the end that word-wide stores may use).
 */
function written(format: LineFormat, r: AccessRecord, at: number): Uint8Array {
  const bound = format.maxBytes(r);
  const out = new Uint8Array(at + bound + WRITE_SLACK + 16).fill(0xaa);
  const end = format.write(r, out, at);
  expect(end - at).toBeLessThanOrEqual(bound);
  expect(out.subarray(0, at).every((b) => b === 0xaa)).toBe(true);
  expect(out.subarray(end + WRITE_SLACK).every((b) => b === 0xaa)).toBe(true);
  return out.slice(at, end);
}

function sameBytes(actual: Uint8Array, expected: Uint8Array, what: () => string): void {
  if (actual.length === expected.length && actual.every((b, i) => b === expected[i])) return;
  // Shown as text for a readable difference.
  expect(`${new TextDecoder().decode(actual)}`).toBe(`${new TextDecoder().decode(expected)} (${what()})`);
}

describe("the byte formatter writes the bytes of the string formatter", () => {
  const text = new KmeshText();
  const json = new JsonLines();
  // Enough distinct names to fill the name caches (16,384 entries) and clear them.
  const RECORDS = 12_000;

  test.each([1, 2, 3])("Kmesh text, %d", (seed) => {
    const rng = random(seed * 7919);
    const pods = Array.from({ length: 200 }, () => pod(rng));
    for (let i = 0; i < RECORDS; i++) {
      const r = namedFromPods(rng, record(rng), pods);
      const expected = utf8.encode(reference.formatKmeshLine(r));
      sameBytes(written(text, r, rng.int(8)), expected, () => JSON.stringify(r));
    }
  });

  test.each([1, 2, 3])("JSON, %d", (seed) => {
    const rng = random(seed * 104729);
    const pods = Array.from({ length: 200 }, () => pod(rng));
    for (let i = 0; i < RECORDS; i++) {
      const r = namedFromPods(rng, record(rng), pods);
      const expected = utf8.encode(reference.formatJsonLine(r));
      sameBytes(written(json, r, rng.int(8)), expected, () => JSON.stringify(r));
    }
  });

  test("the string forms are those bytes decoded", () => {
    const rng = random(42);
    for (let i = 0; i < 5000; i++) {
      const r = record(rng);
      expect(utf8.encode(formatKmeshLine(r))).toEqual(utf8.encode(reference.formatKmeshLine(r)));
      expect(utf8.encode(formatJsonLine(r))).toEqual(utf8.encode(reference.formatJsonLine(r)));
    }
  });

  test("times and escapes on their own", () => {
    const rng = random(99);
    for (let i = 0; i < 20_000; i++) {
      const t = wallTime(rng);
      expect(formatGoTime(t)).toBe(reference.formatGoTime(t));
      const value = name(rng) ?? "";
      expect(utf8.encode(escapeValue(value))).toEqual(utf8.encode(reference.escapeValue(value)));
    }
  });

  test("durations of whole nanoseconds are Go's %v in text, String(ms) in JSON, digit for digit", () => {
    const rng = random(5);
    const r = record(rng);
    for (let i = 0; i < 50_000; i++) {
      const ns = rng.pick([() => rng.int(200), () => rng.int(1e6), () => rng.int(1e9), () => Math.floor(rng.next() * 1e15), () => 10 ** rng.int(15)])();
      const line = formatKmeshLine({ ...r, durationMs: ns / 1e6, error: null });
      expect(line.slice(line.lastIndexOf("duration=") + 9)).toBe(`${reference.goFloat(ns / 1e6)}ms`);
      expect(JSON.parse(formatJsonLine({ ...r, durationMs: ns / 1e6 })).duration_ms).toBe(ns / 1e6);
      expect(formatJsonLine({ ...r, durationMs: ns / 1e6 })).toContain(`"duration_ms":${String(ns / 1e6)},`);
    }
  });

  test("a line that would not fit is not a reason to write outside the chunk", () => {
    const r = record(random(7));
    const long = { ...r, srcWorkload: "é".repeat(5000), error: "\u0000".repeat(3000) };
    for (const format of [new KmeshText(), new JsonLines()]) {
      const text = written(format, long, 3);
      expect(text.length).toBeGreaterThan(10_000);
    }
  });
});
