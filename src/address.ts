// Addresses as text, one way everywhere. The kernel's address bytes and Kubernetes' address texts
// both become the same canonical text (dotted quad; RFC 5952 for IPv6; IPv4-mapped IPv6 as plain
// IPv4 where both ends agree), so that a connection's address and a pod's IP compare as plain
// strings; and `host:port` as the admin API flag takes it.
import { isIPv4, isIPv6 } from "node:net";

// ── From bytes (network byte order) ──────────────────────────────────────────

// Decimal text of 0..255, so that IPv4 text costs only the concatenation.
const DEC_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

function dottedQuad(word: number): string {
  return `${DEC_BYTE[word >>> 24]!}.${DEC_BYTE[(word >>> 16) & 255]!}.${DEC_BYTE[(word >>> 8) & 255]!}.${DEC_BYTE[word & 255]!}`;
}

/** Dotted-quad text of the 4 bytes at `at`. */
export function ipv4Text(view: DataView, at: number): string {
  return dottedQuad(view.getUint32(at, false));
}

/** ::ffff:a.b.c.d, the IPv6 form of an IPv4 address. */
export function isV4Mapped(view: DataView, at: number): boolean {
  return view.getUint32(at, false) === 0 && view.getUint32(at + 4, false) === 0 && view.getUint32(at + 8, false) === 0xffff;
}

/**
 * RFC 5952 text of the 16 bytes at `at`: lowercase hex, no leading zeros, the longest run of two
 * or more zero groups (the first one on a tie) replaced by `::`. An IPv4-mapped address on its
 * own is written `::ffff:a.b.c.d` (RFC 5952 section 5).
 */
export function ipv6Text(view: DataView, at: number): string {
  if (isV4Mapped(view, at)) return "::ffff:" + ipv4Text(view, at + 12);

  // Find the longest zero run without storing the groups: read each group again when writing.
  let bestStart = -1;
  let bestLength = 1; // a run must be longer than this to count
  let runStart = -1;
  for (let i = 0; i < 8; i++) {
    if (view.getUint16(at + 2 * i, false) === 0) {
      if (runStart < 0) runStart = i;
      if (i - runStart + 1 > bestLength) {
        bestStart = runStart;
        bestLength = i - runStart + 1;
      }
    } else {
      runStart = -1;
    }
  }

  let text = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      text += "::";
      i += bestLength - 1;
      continue;
    }
    if (text.length > 0 && i !== bestStart + bestLength) text += ":";
    text += view.getUint16(at + 2 * i, false).toString(16);
  }
  return text;
}

/**
 * ipv4Text and ipv6Text, remembered. A node talks to the same few thousand addresses over and
 * over: the same string instance each time means no new string per record, and Map lookups by
 * address (the pod index) that hash it once. Direct-mapped by a hash of the address bytes, so that
 * a lookup is a multiplication and a compare, and a node that sees many distinct addresses only
 * replaces entries (a new string for an address that lost its slot).
 */
export class AddressTexts {
  static readonly #V4_SLOTS = 1 << 14;
  static readonly #V6_SLOTS = 1 << 12;
  readonly #v4Words = new Float64Array(AddressTexts.#V4_SLOTS).fill(-1); // never a u32
  readonly #v4Texts: string[] = new Array<string>(AddressTexts.#V4_SLOTS).fill("");
  readonly #v6Words = new Int32Array(AddressTexts.#V6_SLOTS * 4);
  readonly #v6Texts: (string | undefined)[] = new Array<string | undefined>(AddressTexts.#V6_SLOTS).fill(undefined);

  /** ipv4Text of the 4 bytes at `at`. */
  ipv4(view: DataView, at: number): string {
    const word = view.getUint32(at, false);
    const slot = Math.imul(word, 0x9e3779b1) >>> 18; // Fibonacci hashing: the top 14 bits
    if (this.#v4Words[slot] === word) return this.#v4Texts[slot]!;
    const text = dottedQuad(word);
    this.#v4Words[slot] = word;
    this.#v4Texts[slot] = text;
    return text;
  }

  /** ipv6Text of the 16 bytes at `at`. */
  ipv6(view: DataView, at: number): string {
    const w0 = view.getInt32(at, false);
    const w1 = view.getInt32(at + 4, false);
    const w2 = view.getInt32(at + 8, false);
    const w3 = view.getInt32(at + 12, false);
    const slot = Math.imul(w0 ^ Math.imul(w1, 31) ^ Math.imul(w2, 961) ^ Math.imul(w3, 0x9e3779b1), 0x9e3779b1) >>> 20;
    const i = slot * 4;
    const words = this.#v6Words;
    const cached = this.#v6Texts[slot];
    if (cached !== undefined && words[i] === w0 && words[i + 1] === w1 && words[i + 2] === w2 && words[i + 3] === w3) {
      return cached;
    }
    const text = ipv6Text(view, at);
    words[i] = w0;
    words[i + 1] = w1;
    words[i + 2] = w2;
    words[i + 3] = w3;
    this.#v6Texts[slot] = text;
    return text;
  }
}

// ── From text (as Kubernetes writes it) ──────────────────────────────────────

const V4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const HEX_GROUP = /^[0-9a-fA-F]{1,4}$/;

const isDecimalByte = (part: string) => Number(part) <= 255 && (part.length === 1 || !part.startsWith("0"));

/** The four bytes of a dotted quad (no leading zeros, as Go's net.ParseIP), or false. */
function parseV4(text: string, into: Uint8Array, at: number): boolean {
  const m = V4.exec(text);
  if (!m) return false;
  for (let i = 0; i < 4; i++) {
    const part = m[i + 1]!;
    if (!isDecimalByte(part)) return false;
    into[at + i] = Number(part);
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
 * The canonical text of an IP address (the text the record decoder writes for the same address),
 * or null when `text` is not one (zones such as `%eth0`, CIDR suffixes and leading zeros in a
 * dotted quad are not addresses here).
 */
export function canonicalIp(text: string): string | null {
  // Dotted quads are already canonical once checked: no bytes, no new string.
  const m = V4.exec(text);
  if (m !== null) return m.slice(1).every(isDecimalByte) ? text : null;
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  if (!text.includes(":") || !parseV6(text, bytes)) return null;
  return isV4Mapped(view, 0) ? ipv4Text(view, 12) : ipv6Text(view, 0);
}

/** The bytes of an IP address's text in network byte order (4 for a dotted quad, 16 for IPv6), or null. */
export function ipBytes(text: string): Uint8Array | null {
  const v4 = new Uint8Array(4);
  if (parseV4(text, v4, 0)) return v4;
  const v6 = new Uint8Array(16);
  return text.includes(":") && parseV6(text, v6) ? v6 : null;
}

// ── Networks ─────────────────────────────────────────────────────────────────

export interface Network {
  /** 4 or 16 bytes, host bits zero */
  bytes: Uint8Array;
  prefix: number;
}

/**
 * `address/prefix`, or an address alone (/32, /128), as a Network: host bits are cleared (Go's
 * net.ParseCIDR keeps the network too), and an IPv4-mapped IPv6 network of /96 or longer is the
 * IPv4 network it maps, since connections' addresses are written that way. Null when not one.
 */
export function parseNetwork(text: string): Network | null {
  const slash = text.indexOf("/");
  const address = slash < 0 ? text : text.slice(0, slash);
  let bytes = ipBytes(address);
  if (bytes === null) return null;
  let prefix = bytes.length * 8;
  if (slash >= 0) {
    const digits = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(digits) || (digits.length > 1 && digits.startsWith("0")) || Number(digits) > prefix) return null;
    prefix = Number(digits);
  }
  if (bytes.length === 16 && prefix >= 96 && isV4Mapped(new DataView(bytes.buffer), 0)) {
    bytes = bytes.slice(12);
    prefix -= 96;
  }
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - 8 * i));
    bytes[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return { bytes, prefix };
}

/** The canonical text of a network (`10.244.0.0/16`, `fd00::/8`), or null when `text` is not one. */
export function canonicalCidr(text: string): string | null {
  const network = parseNetwork(text);
  if (network === null) return null;
  const view = new DataView(network.bytes.buffer, network.bytes.byteOffset, network.bytes.length);
  return `${network.bytes.length === 4 ? ipv4Text(view, 0) : ipv6Text(view, 0)}/${network.prefix}`;
}

/** Whether the address of canonical text `address` is in `network` (IPv4 in IPv4 networks, IPv6 in IPv6 ones). */
export function inNetwork(network: Network, address: string): boolean {
  const bytes = ipBytes(address);
  if (bytes === null || bytes.length !== network.bytes.length) return false;
  const whole = network.prefix >> 3;
  for (let i = 0; i < whole; i++) if (bytes[i] !== network.bytes[i]) return false;
  const rest = network.prefix & 7;
  return rest === 0 || ((bytes[whole]! ^ network.bytes[whole]!) & (0xff << (8 - rest)) & 0xff) === 0;
}

/** Loopback and unspecified addresses: a connection's end there is this node, never a pod IP. */
export function isLoopbackOrUnspecified(canonical: string): boolean {
  return canonical.startsWith("127.") || canonical === "::1" || canonical === "0.0.0.0" || canonical === "::";
}

// ── host:port ────────────────────────────────────────────────────────────────

export interface HostPort {
  /** Without brackets, as Bun.serve and fetch's URL need it. */
  host: string;
  port: number;
}

const HOST_NAME = /^(?=.{1,253}$)[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

/**
 * `host:port` / `[v6]:port`, where host is an IPv4 address, a bracketed IPv6 address or a host
 * name, and port 1 to 65535; undefined when it is not one.
 */
export function parseHostPort(text: string): HostPort | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port < 1 || port > 65_535) return undefined;
  const v6 = match[1];
  if (v6 !== undefined) return isIPv6(v6) ? { host: v6, port } : undefined;
  const host = match[2]!;
  if (isIPv4(host) || (HOST_NAME.test(host) && !/^[\d.]+$/.test(host))) return { host, port };
  return undefined;
}

/** `host:port`, bracketing IPv6. */
export function formatHostPort(address: HostPort): string {
  return isIPv6(address.host) ? `[${address.host}]:${address.port}` : `${address.host}:${address.port}`;
}
