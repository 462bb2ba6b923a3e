// Addresses as text (src/address.ts): the kernel's bytes as dotted quads and RFC 5952 text, cached
// or not; Kubernetes' texts made canonical; host:port as --admin-addr takes it; what is an address
// (as node:net says, without loading it).
import { describe, expect, test } from "bun:test";
import * as net from "node:net";
import { AddressTexts, canonicalIp, formatHostPort, ipv4Number, ipv4Text, ipv6Text, isIPv4, isIPv6, parseHostPort } from "../../src/address.ts";
import { v6 } from "./fixtures.ts";

/** RFC 5952 text of 8 groups, through the record decoder's cache (which checks it against ipv6Text). */
const texts = new AddressTexts();
function v6Text(...groups: number[]): string {
  const view = new DataView(Uint8Array.from(v6(...groups)).buffer);
  const text = texts.ipv6(view, 0);
  expect(text).toBe(ipv6Text(view, 0));
  return text;
}

describe("RFC 5952 text", () => {
  test.each([
    [[0, 0, 0, 0, 0, 0, 0, 1], "::1"],
    [[0, 0, 0, 0, 0, 0, 0, 0], "::"],
    [[1, 0, 0, 0, 0, 0, 0, 0], "1::"],
    [[0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], "2001:db8::1"],
    // longest run wins
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 0], "2001:db8:0:0:1::"],
    // equal runs: the first is compressed
    [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], "2001:db8::1:0:0:1"],
    // a single zero group is never compressed
    [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], "2001:db8:0:1:1:1:1:1"],
    [[0x2001, 0, 0x2, 0x3, 0x4, 0x5, 0x6, 0], "2001:0:2:3:4:5:6:0"],
    // no leading zeros, lowercase
    [[0x2001, 0x0db8, 0x00aa, 0x000b, 0xabcd, 0xef01, 0x0001, 0xffff], "2001:db8:aa:b:abcd:ef01:1:ffff"],
    [[0xfe80, 0, 0, 0, 0x1ff, 0xfe23, 0x4567, 0x890a], "fe80::1ff:fe23:4567:890a"],
    [[0xfe80, 0, 0, 0, 0, 0, 0, 1], "fe80::1"],
    [[0, 0, 1, 0, 0, 0, 1, 0], "0:0:1::1:0"],
    [[0, 0, 0, 1, 0, 0, 0, 0], "0:0:0:1::"],
    [[0, 0, 0, 1, 0, 0, 0, 1], "::1:0:0:0:1"],
    [[0xff02, 0, 0, 0, 0, 0, 0, 0xfb], "ff02::fb"],
    [[0, 0, 0, 0, 0, 0xffff, 0x0a00, 0x0001], "::ffff:10.0.0.1"],
    [[0, 0, 0, 0, 0, 0, 0x0a00, 0x0001], "::a00:1"],
  ])("%p → %s", (groups, text) => {
    expect(v6Text(...groups)).toBe(text);
  });
});

test("RFC 5952 text agrees with the WHATWG URL serializer on random addresses", () => {
  let seed = 12345;
  const random = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed / 0x80000000;
  };
  for (let n = 0; n < 2000; n++) {
    // mostly zeros, so that runs of every length and position occur
    const groups = Array.from({ length: 8 }, () => (random() < 0.6 ? 0 : Math.floor(random() * 0x10000)));
    if (groups.slice(0, 6).join() === "0,0,0,0,0,65535") continue; // WHATWG writes mapped in hex
    const expected = new URL(`http://[${groups.map((g) => g.toString(16)).join(":")}]/`).hostname.slice(1, -1);
    expect(v6Text(...groups)).toBe(expected);
  }
});

test("address texts stay right when cached addresses collide", () => {
  const bytes = new Uint8Array(4);
  const view = new DataView(bytes.buffer);
  let x = 99;
  for (let i = 0; i < 200_000; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    view.setUint32(0, x);
    expect(texts.ipv4(view, 0)).toBe(`${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`);
    expect(ipv4Text(view, 0)).toBe(`${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`);
    expect(ipv4Number(ipv4Text(view, 0))).toBe(x); // the number the record view reads
  }
  for (let i = 0; i < 20_000; i++) {
    const groups = Array.from({ length: 8 }, (_, g) => (g < 4 && i % 2 === 0 ? 0 : (i * 7919 + g * 104729) & 0xffff));
    expect(v6Text(...groups)).toBe(v6Text(...groups)); // cached or not, the same text
    if (groups.slice(0, 6).join() === "0,0,0,0,0,65535") continue;
    expect(v6Text(...groups)).toBe(new URL(`http://[${groups.map((g) => g.toString(16)).join(":")}]/`).hostname.slice(1, -1));
  }
});

describe("address texts' slots grow with the addresses seen", () => {
  const view = new DataView(new ArrayBuffer(16));
  /** Looks up 10.0.0.0 + n (IPv4) or fd00::n (IPv6) and checks the text. */
  function v4(cache: AddressTexts, n: number): void {
    view.setUint32(0, 0x0a000000 + n);
    expect(cache.ipv4(view, 0)).toBe(ipv4Text(view, 0));
  }
  function v6(cache: AddressTexts, n: number): void {
    view.setUint32(0, 0xfd000000);
    view.setUint32(12, n);
    expect(cache.ipv6(view, 0)).toBe(ipv6Text(view, 0));
  }

  test("1,024 IPv4 and 256 IPv6 slots at first; hits never grow them", () => {
    const cache = new AddressTexts();
    expect(cache.slots).toEqual({ v4: 1024, v6: 256 });
    for (let i = 0; i < 100_000; i++) {
      v4(cache, 7);
      v6(cache, 7);
    }
    expect(cache.slots).toEqual({ v4: 1024, v6: 256 });
  });

  test.each([
    ["IPv4", v4, "v4", [1024, 4096, 16384]],
    ["IPv6", v6, "v6", [256, 1024, 4096]],
  ] as const)("%s: four-fold at each half-slots' misses, up to a cap", (_, look, family, sizes) => {
    const cache = new AddressTexts();
    let n = 0;
    for (const [from, to] of [[sizes[0], sizes[1]], [sizes[1], sizes[2]]] as const) {
      for (let i = 1; i < from / 2; i++) look(cache, ++n);
      expect(cache.slots[family]).toBe(from);
      look(cache, ++n); // the miss that reaches half the slots
      expect(cache.slots[family]).toBe(to);
      // The address that grew the slots is in the new ones: looking it up again is no miss (the
      // next step counts the misses that grow them again exactly).
      for (let i = 0; i < 1000; i++) look(cache, n);
    }
    for (let i = 0; i < 100_000; i++) look(cache, ++n);
    expect(cache.slots[family]).toBe(sizes[2]!);
  });
});

test("a dotted quad as a number: its bytes read big-endian; -1 for anything else", () => {
  expect([ipv4Number("10.244.1.5"), ipv4Number("255.255.255.255"), ipv4Number("0.0.0.0")]).toEqual([0x0af40105, 0xffffffff, 0]);
  for (const bad of ["010.1.1.1", "256.1.1.1", "::1", "::ffff:10.1.2.3", "10.0.0.0/8", ""]) expect(ipv4Number(bad)).toBe(-1);
});

describe("IP texts as Kubernetes writes them", () => {
  test("IP texts become the decoder's canonical text", () => {
    expect(canonicalIp("10.244.1.5")).toBe("10.244.1.5");
    expect(canonicalIp("FD00:0:0:0:0:0:0:5")).toBe("fd00::5");
    expect(canonicalIp("2001:db8:0:0:1:0:0:1")).toBe("2001:db8::1:0:0:1");
    expect(canonicalIp("::ffff:10.1.2.3")).toBe("10.1.2.3");
    for (const bad of ["010.1.1.1", "256.1.1.1", "1::2::3", "fe80::1%eth0", "10.0.0.0/8", "1:2:3:4:5:6:7:8:9", ""]) {
      expect(canonicalIp(bad)).toBeNull();
    }
  });
});

describe("what is an address: what node:net's isIPv4 and isIPv6 say", () => {
  test.each([
    ["1.2.3.4", true, false],
    ["0.0.0.0", true, false],
    ["255.255.255.255", true, false],
    ["256.1.1.1", false, false],
    ["01.2.3.4", false, false],
    ["1.2.3", false, false],
    ["1.2.3.4.5", false, false],
    ["::", false, true],
    ["::1", false, true],
    ["1::", false, true],
    ["1:2:3:4:5:6:7:8", false, true],
    ["1:2:3:4:5:6:7::", false, true],
    ["1:2:3:4:5:6:7:8:9", false, false],
    ["1:2:3:4:5:6:7::8", false, false],
    ["1::2::3", false, false],
    [":::", false, false],
    ["12345::", false, false],
    ["::ffff:1.2.3.4", false, true],
    ["1:2:3:4:5:6:1.2.3.4", false, true],
    ["1:2:3:4:5:6::1.2.3.4", false, false],
    ["1.2.3.4::", false, false],
    ["::1.2.3.4:1", false, false],
    ["fe80::1%eth0", false, true],
    ["fe80::1%a.b:c-d", false, true],
    ["fe80::1%", false, false],
    ["fe80::1%e%0", false, false],
    ["1.2.3.4%eth0", false, false],
  ])("%j: IPv4 %p, IPv6 %p", (text, v4, v6) => {
    expect([isIPv4(text), isIPv6(text)]).toEqual([v4, v6]);
    expect([net.isIPv4(text), net.isIPv6(text)]).toEqual([v4, v6]);
  });

  test("the same verdicts on 200,000 texts made from addresses, some of them broken", () => {
    let seed = 12345;
    const next = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % n;
    };
    const chars = "0123456789abcdefABCDEFg:.%-";
    const group = () => (next(6) === 0 ? `${next(270)}.${next(270)}.${next(270)}.${next(270)}` : next(0x12000).toString(16).padStart(next(6), "0"));
    const differ: string[] = [];
    let v4 = 0;
    let v6 = 0;
    for (let i = 0; i < 200_000; i++) {
      let text = Array.from({ length: 1 + next(9) }, () => (next(8) === 0 ? "" : group())).join(":");
      if (next(3) === 0) text = text.replace(/:(?=[^:]*$)/, "::"); // a `::` before the last group
      if (next(4) === 0) text = `${text}%${"eth0.:-".slice(0, next(8))}`;
      for (let edits = next(3); edits > 0; edits--) {
        const at = next(text.length + 1);
        text = `${text.slice(0, at)}${chars[next(chars.length)]}${text.slice(at + next(2))}`;
      }
      if (net.isIPv4(text)) v4++;
      if (net.isIPv6(text)) v6++;
      if (isIPv4(text) !== net.isIPv4(text) || isIPv6(text) !== net.isIPv6(text)) differ.push(text);
    }
    expect(differ).toEqual([]);
    // Both kinds are among them (the texts are the same on every run).
    expect([v4, v6]).toEqual([698, 5773]);
  });
});

// --admin-addr values: host:port, [v6]:port, host names; what is refused.
test.each([
  ["127.0.0.1:15200", { host: "127.0.0.1", port: 15200 }],
  ["0.0.0.0:1", { host: "0.0.0.0", port: 1 }],
  ["[::1]:15200", { host: "::1", port: 15200 }],
  ["[fd00::1:2]:65535", { host: "fd00::1:2", port: 65535 }],
  ["localhost:15200", { host: "localhost", port: 15200 }],
  ["agent.kube-system.svc:80", { host: "agent.kube-system.svc", port: 80 }],
])("%j is accepted", (text, address) => {
  expect(parseHostPort(text)).toEqual(address);
  expect(formatHostPort(address)).toBe(text);
});

test.each([
  "", "15200", ":15200", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:abc", "::1:15200", "[::1]",
  "[::1]:", "[127.0.0.1]:1", "[zz::1]:1", "999.1.1.1:1", "1.2.3:1", "host name:1", "-host:1", "http://127.0.0.1:15200", "127.0.0.1:15200/x",
])("%j is refused", (text) => {
  expect(parseHostPort(text)).toBeUndefined();
});
