// The text line's per-pair runs (KmeshText keeps ` src.addr=<host>:` and everything from the source
// port to `start_time=` per connection pair): a line written from them has the bytes of the string
// formatter (format-reference.ts) whatever changed since the runs were made.
import { describe, expect, test } from "bun:test";
import { type AccessRecord, KmeshText, WRITE_SLACK } from "../../../src/accesslog/format.ts";
import { seededRandom as random } from "../../support/random.ts";
import { reference } from "./format-reference.ts";

const base: AccessRecord = {
  reportTime: { sec: 1_764_000_000, nsec: 123_456_789 },
  startTime: { sec: 1_763_999_999, nsec: 5 },
  srcAddr: "10.244.1.7",
  srcPort: 40_000,
  srcWorkload: "client-7f9c",
  srcNamespace: "shop",
  dstAddr: "10.244.1.9",
  dstPort: 8080,
  dstService: null,
  dstWorkload: "server-5d2a",
  dstNamespace: "shop",
  direction: "OUTBOUND",
  state: "BPF_TCP_CLOSE",
  sentBytes: 100,
  receivedBytes: 2000,
  packetLoss: 0,
  retransmissions: 0,
  srttUs: 50,
  minRttUs: 20,
  durationMs: 1.5,
  error: null,
  family: 4,
  netns: 4026531840,
  pid: null,
  command: null,
  containerId: null,
  containerName: null,
};

const decode = new TextDecoder();

/** The line `text` writes for `r`, checked against the string formatter's. */
function same(text: KmeshText, r: AccessRecord, at = 0, fill = 0): void {
  const out = new Uint8Array(at + text.maxBytes(r) + WRITE_SLACK).fill(fill);
  const end = text.write(r, out, at);
  expect(decode.decode(out.subarray(at, end))).toBe(reference.formatKmeshLine(r));
}

describe("the text line's runs per connection pair", () => {
  test("a repeated pair: each line with its own port, numbers and times", () => {
    const text = new KmeshText();
    for (let i = 0; i < 5; i++) {
      same(text, { ...base, srcPort: 40_000 + i * 997, sentBytes: i * 12345, reportTime: { sec: base.reportTime.sec + i, nsec: i }, direction: i % 2 ? "INBOUND" : "OUTBOUND" }, i);
    }
  });

  test("a pod renamed, gone or come between two lines of the pair prints the new names", () => {
    const text = new KmeshText();
    const changes: Partial<AccessRecord>[] = [
      {},
      { srcWorkload: "client-new" },
      { srcNamespace: "shop2" },
      { srcWorkload: null, srcNamespace: null }, // the source pod removed
      { srcWorkload: "client-7f9c", srcNamespace: "shop" }, // and back
      { dstWorkload: "server-other" },
      { dstNamespace: "shop3" },
      { dstWorkload: null, dstNamespace: null },
      { dstService: "server.shop.svc.cluster.local" }, // a Service learned
      { dstService: "server2.shop.svc.cluster.local" },
      { dstService: null },
      { dstPort: 8081 },
      {},
    ];
    let r = base;
    for (const change of changes) {
      r = { ...r, ...change, srcPort: r.srcPort + 1 };
      same(text, r);
      same(text, { ...r, srcPort: r.srcPort + 1000 }); // the same pair again, from its runs
    }
  });

  test("equal names in new strings, and names that need escaping", () => {
    const text = new KmeshText();
    same(text, base);
    same(text, { ...base, srcWorkload: ["client", "7f9c"].join("-"), srcPort: 1 });
    same(text, { ...base, srcWorkload: "client 7f9c", srcPort: 2 });
    same(text, { ...base, srcWorkload: "-", dstWorkload: "é,=%", srcPort: 3 });
    same(text, { ...base, srcWorkload: "-", dstWorkload: "é,=%", srcPort: 4 });
  });

  test("IPv6 in brackets, and the same address text under the other family", () => {
    const text = new KmeshText();
    const v6 = { ...base, family: 6 as const, srcAddr: "fd00:10:244:1::7", dstAddr: "fd00:10:244:1::9" };
    same(text, v6);
    same(text, { ...v6, srcPort: 1 });
    same(text, { ...v6, family: 4, srcPort: 2 });
    same(text, { ...v6, dstService: null, dstWorkload: null, dstNamespace: null, srcPort: 3 });
  });

  test("pairs beyond the table's slots push others out; each line is still its own", () => {
    const text = new KmeshText();
    const pairs = Array.from({ length: 6000 }, (_, i) => ({
      ...base,
      srcAddr: `10.244.${i % 200}.${i % 251}`,
      dstAddr: `10.96.${(i * 7) % 256}.${1 + (i % 254)}`,
      dstPort: 80 + (i % 3),
      srcWorkload: `client-${i}`,
    }));
    for (let round = 0; round < 2; round++) for (const [i, r] of pairs.entries()) same(text, { ...r, srcPort: i + round });
    // More ports of one pair of addresses than slots: some share a slot.
    for (let round = 0; round < 2; round++) for (let port = 0; port < 3000; port++) same(text, { ...base, dstPort: port, srcPort: round });
  });

  test("stray bytes in the chunk after a run do not end up in its words", () => {
    const text = new KmeshText();
    // 0xFF bytes after a run's last byte would make a NaN of its last word if copied with it.
    for (let i = 0; i < 64; i++) same(text, { ...base, srcAddr: `10.${"1".repeat(1 + (i % 8))}.0.1`, dstPort: 80 + (i % 8), srcPort: i }, 0, 0xff);
    for (let i = 0; i < 64; i++) same(text, { ...base, srcAddr: `10.${"1".repeat(1 + (i % 8))}.0.1`, dstPort: 80 + (i % 8), srcPort: 100 + i });
  });

  test("runs too long to keep are written afresh, and a line that did not fit is not kept", () => {
    const text = new KmeshText();
    const long = { ...base, dstService: `${"s".repeat(300)}.shop.svc.cluster.local` };
    same(text, long);
    same(text, { ...long, srcPort: 7 });
    // Too little room: whatever it wrote is not kept for the next line of the pair.
    const small = new Uint8Array(120);
    try {
      text.write({ ...base, srcWorkload: "cut-short" }, small, 0);
    } catch (e) {
      expect(e).toBeInstanceOf(RangeError);
    }
    same(text, { ...base, srcWorkload: "cut-short" });
  });

  test("a few addresses, ports and names, mixed at random", () => {
    const rng = random(2026);
    const text = new KmeshText();
    const addrs4 = ["10.244.1.7", "10.244.1.9", "10.96.0.10", "1.2.3.4", "127.0.0.1"];
    const addrs6 = ["fd00::7", "fd00::9", "::1"];
    const names = [null, "a", "b", "a-b", "-", "x y"];
    for (let i = 0; i < 50_000; i++) {
      const family = rng.chance(0.3) ? 6 : 4;
      const addrs = family === 6 ? addrs6 : addrs4;
      // Sometimes an equal text in a string of its own.
      const addr = () => (rng.chance(0.1) ? [...rng.pick(addrs)].join("") : rng.pick(addrs));
      same(text, {
        ...base,
        family,
        srcAddr: addr(),
        dstAddr: addr(),
        srcPort: rng.int(65536),
        dstPort: rng.pick([80, 443]),
        srcWorkload: rng.pick(names),
        srcNamespace: rng.pick(names),
        dstService: rng.chance(0.7) ? null : rng.pick(names),
        dstWorkload: rng.pick(names),
        dstNamespace: rng.pick(names),
        state: rng.pick(["BPF_TCP_CLOSE", "BPF_TCP_ESTABLISHED"]),
        error: rng.chance(0.1) ? "ECONNREFUSED" : null,
      });
    }
  });
});
