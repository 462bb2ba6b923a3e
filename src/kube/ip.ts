// IP address text as Kubernetes writes it → the exact text the record decoder writes for the same
// address (dotted quad; RFC 5952 for IPv6; IPv4-mapped IPv6 as plain IPv4), so that a pod's IP
// and a connection's address compare as plain strings in the index.
import { ipv4Text, ipv6Text } from "../kernel/record.ts";

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

const isDecimalByte = (part: string) => Number(part) <= 255 && (part.length === 1 || !part.startsWith("0"));

/** The four bytes of a dotted quad (no leading zeros, as Go's net.ParseIP), or null. */
function parseV4(text: string, into: Uint8Array, at: number): boolean {
  const m = V4.exec(text);
  if (!m) return false;
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1]!;
    const n = Number(part);
    if (n > 255 || (part.length > 1 && part.startsWith("0"))) return false;
    into[at + i] = n;
  }
  return true;
}

/** 16-bit words of one side of `::` (the last group may be an embedded dotted quad), or null. */
function words(half: string, last: boolean): number[] | null {
  if (half === "") return [];
  const groups = half.split(":");
  const out: number[] = [];
  for (let i = 0; i < groups.length; i++) {
    const g = groups[i]!;
    if (last && i === groups.length - 1 && g.includes(".")) {
      const v4 = new Uint8Array(4);
      if (!parseV4(g, v4, 0)) return null;
      out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else if (HEX_GROUP.test(g)) {
      out.push(Number.parseInt(g, 16));
    } else {
      return null;
    }
  }
  return out;
}

/** The 16 bytes of IPv6 text (`::` at most once), or false. */
function parseV6(text: string, into: Uint8Array): boolean {
  const halves = text.split("::");
  if (halves.length > 2) return false;
  const head = words(halves[0]!, halves.length === 1);
  const tail = halves.length === 2 ? words(halves[1]!, true) : [];
  if (head === null || tail === null) return false;
  // Without `::` there must be exactly 8 words; with it, `::` stands for at least one zero word.
  if (halves.length === 1 ? head.length !== 8 : head.length + tail.length > 7) return false;
  const all = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  all.forEach((word, i) => {
    into[2 * i] = word >> 8;
    into[2 * i + 1] = word & 0xff;
  });
  return true;
}

/**
 * The canonical text of an IP address, or null when `text` is not one (zones such as `%eth0`,
 * CIDR suffixes and leading zeros in a dotted quad are not addresses here).
 */
export function canonicalIp(text: string): string | null {
  // Dotted quads are already canonical once checked: no bytes, no new string.
  const m = V4.exec(text);
  if (m !== null) return m.slice(1).every(isDecimalByte) ? text : null;
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  if (!text.includes(":") || !parseV6(text, bytes)) return null;
  const mapped = bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
  return mapped ? ipv4Text(view, 12) : ipv6Text(view, 0);
}

/** Loopback and unspecified addresses: a connection's end there is this node, never a pod IP. */
export function isLoopbackOrUnspecified(canonical: string): boolean {
  return canonical.startsWith("127.") || canonical === "::1" || canonical === "0.0.0.0" || canonical === "::";
}
