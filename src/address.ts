// Addresses as text, one way everywhere. The kernel's address bytes and Kubernetes' address texts
// both become the same canonical text (dotted quad; RFC 5952 for IPv6; IPv4-mapped IPv6 as plain
// IPv4 where both ends agree), so that a connection's address and a pod's IP compare as plain
// strings; and `host:port` as the admin API flag takes it.

// ── What is an address ───────────────────────────────────────────────────────
// What node:net's isIPv4 and isIPv6 accept (test/unit/address.test.ts holds the two to each other),
// checked here: node:net is not loaded for two functions (1.3 MB: README, "Footprint").

const DOT = 0x2e;
const COLON = 0x3a;
const ZONE = /^[0-9a-zA-Z.:-]+$/;
const isDigit = (c: number) => c >= 0x30 && c <= 0x39;
const isHexDigit = (c: number) => isDigit(c) || ((c | 0x20) >= 0x61 && (c | 0x20) <= 0x66);

/** A dotted quad: four decimal numbers of 0 to 255, none with a leading zero. */
export function isIPv4(text: string): boolean {
  let parts = 0;
  let value = 0;
  let digits = 0;
  // The end of the text closes the last number as a dot would.
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : DOT;
    if (c === DOT) {
      if (digits === 0 || value > 255 || ++parts > 4) return false;
      value = 0;
      digits = 0;
    } else if (isDigit(c) && !(digits === 1 && value === 0) && ++digits <= 3) {
      value = value * 10 + c - 0x30;
    } else {
      return false;
    }
  }
  return parts === 4;
}

/**
 * IPv6 text: eight groups of 1-4 hex digits, or fewer around one `::` (which stands for at least
 * one zero group); the last two groups may be a dotted quad; a `%zone` may follow.
 */
export function isIPv6(text: string): boolean {
  let end = text.indexOf("%");
  if (end < 0) end = text.length;
  else if (!ZONE.test(text.slice(end + 1))) return false;
  let groups = 0;
  let elided = false;
  let i = 0;
  if (text.charCodeAt(0) === COLON) {
    if (text.charCodeAt(1) !== COLON) return false;
    elided = true;
    i = 2;
  }
  while (i < end) {
    let j = i;
    while (j < end && isHexDigit(text.charCodeAt(j))) j++;
    if (j < end && text.charCodeAt(j) === DOT) {
      // A dotted quad, the last thing there is.
      if (!isIPv4(text.slice(i, end))) return false;
      groups += 2;
      break;
    }
    if (j === i || j - i > 4) return false;
    groups++;
    if (j === end) break;
    if (text.charCodeAt(j) !== COLON) return false;
    if (text.charCodeAt(j + 1) === COLON && j + 1 < end) {
      if (elided) return false;
      elided = true;
      i = j + 2;
    } else {
      i = j + 1;
      if (i === end) return false; // a group must follow a single colon
    }
  }
  return elided ? groups <= 7 : groups === 8;
}

// ── From bytes (network byte order) ──────────────────────────────────────────

// Decimal text of 0..255, so that IPv4 text costs only the concatenation.
const DEC_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

function dottedQuad(word: number): string {
  return `${DEC_BYTE[word >>> 24]!}.${DEC_BYTE[(word >>> 16) & 255]!}.${DEC_BYTE[(word >>> 8) & 255]!}.${DEC_BYTE[word & 255]!}`;
}

/**
 * A dotted quad as the number its 4 bytes make read big-endian (0 to 2^32 - 1: what ipv4Text
 * and the record view read), or -1 when `text` is not one.
 */
export function ipv4Number(text: string): number {
  const bytes = ipBytes(text);
  return bytes?.length === 4 ? new DataView(bytes.buffer).getUint32(0, false) : -1;
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
 * One family's slots in AddressTexts: `width` 32-bit words of address and a text per slot.
 * It starts small and grows four-fold (emptied) each time it has missed half as many times as it
 * has slots, up to `2 ** maxBits` slots: an agent whose node talks to few addresses keeps under
 * 20 KiB of slots (0.3 MB at the caps), a busy node's mix gets the room it needs.
 */
class AddressSlots {
  /** Right shift of a 32-bit hash that leaves a slot number: 32 minus the slots' bits. */
  shift = 0;
  words = new Int32Array(0);
  texts: (string | undefined)[] = [];
  #bits = 0;
  #misses = 0;

  constructor(
    readonly width: number,
    bits: number,
    readonly maxBits: number,
  ) {
    this.#empty(bits);
  }

  get slots(): number {
    return this.texts.length;
  }

  /** Counts a miss; may grow, so a slot is found again after it. */
  missed(): void {
    if (this.#bits === this.maxBits || ++this.#misses < this.slots >> 1) return;
    this.#empty(Math.min(this.#bits + 2, this.maxBits));
  }

  #empty(bits: number): void {
    this.#bits = bits;
    this.shift = 32 - bits;
    this.words = new Int32Array(this.width << bits);
    this.texts = new Array<string | undefined>(1 << bits).fill(undefined);
    this.#misses = 0;
  }
}

/**
 * ipv4Text and ipv6Text, remembered. A node talks to the same few thousand addresses over and
 * over: the same string instance each time means no new string per record, and Map lookups by
 * address (the pod index) that hash it once. Direct-mapped by a hash of the address bytes, so that
 * a lookup is a multiplication and a compare, and a node that sees many distinct addresses only
 * replaces entries (a new string for an address that lost its slot). Each family's slots grow
 * with the addresses seen (AddressSlots): 1,024 IPv4 and 256 IPv6 slots at first, at most 16,384
 * and 4,096.
 */
export class AddressTexts {
  readonly #v4 = new AddressSlots(1, 10, 14);
  readonly #v6 = new AddressSlots(4, 8, 12);

  /** The slots each family has now. */
  get slots(): { v4: number; v6: number } {
    return { v4: this.#v4.slots, v6: this.#v6.slots };
  }

  /** ipv4Text of the 4 bytes at `at`. */
  ipv4(view: DataView, at: number): string {
    const word = view.getInt32(at, false);
    const hash = Math.imul(word, 0x9e3779b1); // Fibonacci hashing: a slot is its top bits
    const v4 = this.#v4;
    const slot = hash >>> v4.shift;
    const cached = v4.texts[slot];
    if (cached !== undefined && v4.words[slot] === word) return cached;
    const text = dottedQuad(word);
    v4.missed();
    const to = hash >>> v4.shift;
    v4.words[to] = word;
    v4.texts[to] = text;
    return text;
  }

  /** ipv6Text of the 16 bytes at `at`. */
  ipv6(view: DataView, at: number): string {
    const w0 = view.getInt32(at, false);
    const w1 = view.getInt32(at + 4, false);
    const w2 = view.getInt32(at + 8, false);
    const w3 = view.getInt32(at + 12, false);
    const hash = Math.imul(w0 ^ Math.imul(w1, 31) ^ Math.imul(w2, 961) ^ Math.imul(w3, 0x9e3779b1), 0x9e3779b1);
    const v6 = this.#v6;
    const slot = hash >>> v6.shift;
    const i = slot * 4;
    const words = v6.words;
    const cached = v6.texts[slot];
    if (cached !== undefined && words[i] === w0 && words[i + 1] === w1 && words[i + 2] === w2 && words[i + 3] === w3) {
      return cached;
    }
    const text = ipv6Text(view, at);
    v6.missed();
    const to = hash >>> v6.shift;
    const j = to * 4;
    v6.words[j] = w0;
    v6.words[j + 1] = w1;
    v6.words[j + 2] = w2;
    v6.words[j + 3] = w3;
    v6.texts[to] = text;
    return text;
  }
}

// ── From text (as Kubernetes writes it) ──────────────────────────────────────

/**
 * The canonical text of an IP address (the text the record decoder writes for the same address),
 * or null when `text` is not one (zones such as `%eth0`, CIDR suffixes and leading zeros in a
 * dotted quad are not addresses here).
 */
export function canonicalIp(text: string): string | null {
  // Dotted quads are already canonical once checked: no bytes, no new string.
  if (isIPv4(text)) return text;
  const bytes = ipBytes(text);
  if (bytes === null) return null;
  const view = new DataView(bytes.buffer);
  return isV4Mapped(view, 0) ? ipv4Text(view, 12) : ipv6Text(view, 0);
}

/** A dotted quad at the end of the text: all of an IPv4 address, or the last two groups of an IPv6 one. */
const DOTTED_QUAD = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/;

/**
 * The bytes of an IP address's text in network byte order (4 for a dotted quad, 16 for IPv6), or
 * null. isIPv4 and isIPv6 decide what is an address (no leading zeros in a dotted quad, as Go's
 * net.ParseIP), but for zones (`%eth0`), which are not addresses here.
 */
export function ipBytes(text: string): Uint8Array | null {
  const quad = DOTTED_QUAD.exec(text);
  if (quad?.index === 0) return isIPv4(text) ? new Uint8Array([+quad[1]!, +quad[2]!, +quad[3]!, +quad[4]!]) : null;
  if (!isIPv6(text) || text.includes("%")) return null;
  const lastGroups = quad === null ? "" : `${((+quad[1]! << 8) | +quad[2]!).toString(16)}:${((+quad[3]! << 8) | +quad[4]!).toString(16)}`;
  const hex = quad === null ? text : text.slice(0, quad.index) + lastGroups;
  // `::` (once at most) stands for the zero groups between its two sides.
  const [head = [], tail = []] = hex.split("::").map((half) => (half === "" ? [] : half.split(":").map((group) => Number.parseInt(group, 16))));
  const bytes = new Uint8Array(16);
  [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail].forEach((word, i) => {
    bytes[2 * i] = word >> 8;
    bytes[2 * i + 1] = word & 0xff;
  });
  return bytes;
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
