// AccessRecord → one output line, in Kmesh's text layout (KmeshText) or as JSON (JsonLines). What
// each field means, and the pitfalls of each: docs/accesslog-format.md.
//
// A line is written as bytes straight into the chunk the sink hands to the writer, since encoding
// a string of ~40 pieces costs as much as building it: fixed text is pre-encoded and stored eight
// bytes at a time, names and recent seconds' date-times are encoded once and cached, integers are
// written three digits at a time and a fraction's trailing zeros found from a table. Word-wide
// stores may write WRITE_SLACK bytes past a piece's end (the next piece overwrites them; the sink
// keeps that room after a chunk's last line). Against
// the string formatter the tests keep as their oracle: README, "The byte writer against the
// string formatter". A format object holds its chunk and caches (one per sink, nothing kept by the
// module); its string forms (line, goTime, escape) decode these same bytes.

import type { WallTime } from "../kernel/clock.ts";
import type { PodInfo } from "../kube/pod.ts";
import { goFloatText } from "./go-float.ts";

export interface AccessRecord {
  reportTime: WallTime;
  startTime: WallTime | null;
  srcAddr: string;
  srcPort: number;
  srcWorkload: string | null;
  srcNamespace: string | null;
  dstAddr: string;
  dstPort: number;
  dstService: string | null;
  dstWorkload: string | null;
  dstNamespace: string | null;
  direction: "OUTBOUND" | "INBOUND";
  /** e.g. "BPF_TCP_CLOSE" */
  state: string;
  sentBytes: number;
  receivedBytes: number;
  packetLoss: number;
  retransmissions: number;
  srttUs: number;
  minRttUs: number;
  durationMs: number | null;
  /**
   * The pods the names came from (enrich.ts), when they did: a line whose names are still the
   * pod's own is written with that pod's cached piece. Never printed.
   */
  srcPod?: PodInfo;
  dstPod?: PodInfo;
  /** errno name of a failed connection attempt, e.g. "ECONNREFUSED"; null otherwise */
  error: string | null;
  family: 4 | 6;
  /** inode number of the reporting socket's network namespace (as `ip netns identify` and `lsns` know it) */
  netns: number;
  /**
   * The process behind the socket: the one that called connect() (OUTBOUND) or accept() (INBOUND),
   * or, for a connection open before the agent started, one that held the socket then. Its pid (in
   * the node's PID namespace) and command name; null when not known.
   */
  pid: number | null;
  command: string | null;
  /** The container that process ran in (the id its runtime gave it, 64 hex digits), and its name in the pod (kubelet); null when not known. */
  containerId: string | null;
  containerName: string | null;
  /**
   * Which connection (and which side of it) this reports, as the kernel saw it, before any name
   * or backend was added: set only while the TCP metrics are on (src/telemetry/), never printed.
   */
  connection?: string;
}

/** A line layout, written as bytes. */
export interface LineFormat {
  /**
   * At least as many bytes as write() uses for `r` (the newline is not part of a line), for a
   * line that did not fit in the room the sink keeps; WRITE_SLACK more must be free after it.
   */
  maxBytes(r: AccessRecord): number;
  /**
   * Writes the line of `r` into `out` from `at` on, without a newline; returns where it ends.
   * May scribble on up to WRITE_SLACK bytes after that end. A line that does not fit either
   * throws a RangeError or returns an end past `out.length - WRITE_SLACK`; nothing outside
   * `out` is touched.
   */
  write(r: AccessRecord, out: Uint8Array, at: number): number;
}

/** Bytes after a line's end that writing it may overwrite. */
export const WRITE_SLACK = 8;

// ── Bytes ────────────────────────────────────────────────────────────────────

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();
const EMPTY = new Uint8Array(0);

/**
 * Text as bytes, and as 8-byte words for put(): each word is a double whose bits are eight bytes
 * of the text, stored with one DataView.setFloat64 (half the stores of 4-byte words). Text is
 * never 0x7F 0xF?: no word is a NaN, whose bits the engine could change.
 */
interface Piece {
  readonly length: number;
  readonly words: Float64Array;
  readonly bytes: Uint8Array;
}

function pieceOf(bytes: Uint8Array): Piece {
  const words = new Float64Array(Math.ceil(bytes.length / 8));
  new Uint8Array(words.buffer).set(bytes);
  return { length: bytes.length, words, bytes };
}

/** ASCII text as a Piece. */
const ascii = (text: string): Piece => pieceOf(Uint8Array.from(text, (c) => c.charCodeAt(0)));

/** Encoded forms of strings, each computed once; forgotten wholesale when there are too many. */
class PieceCache {
  readonly #map = new Map<string, Piece>();
  constructor(
    readonly encode: (text: string) => Uint8Array,
    readonly limit: number,
  ) {}

  get(text: string): Piece {
    let piece = this.#map.get(text);
    if (piece === undefined) {
      if (this.#map.size >= this.limit) this.#map.clear();
      piece = pieceOf(this.encode(text));
      this.#map.set(text, piece);
    }
    return piece;
  }
}

// ── Numbers and times ────────────────────────────────────────────────────────

/** DIGITS[k] for k in 0..999: the three ASCII digits of k, zero-padded, in the low three bytes. */
const DIGITS = new Int32Array(1000);
for (let k = 0; k < 1000; k++) {
  DIGITS[k] = (48 + Math.floor(k / 100)) | ((48 + (Math.floor(k / 10) % 10)) << 8) | ((48 + (k % 10)) << 16);
}

/** SIGNIFICANT[k] for k in 1..999: the digits of k, zero-padded to three, without its trailing zeros. */
const SIGNIFICANT = new Uint8Array(1000);
for (let k = 1; k < 1000; k++) SIGNIFICANT[k] = k % 100 === 0 ? 1 : k % 10 === 0 ? 2 : 3;

/**
 * Length of the `length`-digit fraction `x` (1..999, its last group) without trailing zeros. From
 * a table: with `%` this was 45 ns of a churn line's 260 (README, "What linecpu cut").
 */
function withoutTrailingZeros(length: number, x: number): number {
  return length - 3 + SIGNIFICANT[x]!;
}

/** "YYYY-MM-DD hh:mm:ss" of a year 0..9999. */
const DATE_TIME_BYTES = 19;

// "YYYY-MM-DD hh:mm:ss" of Unix seconds, in UTC, from days-since-epoch arithmetic (H. Hinnant's
// civil_from_days), without a Date object. Years outside 0..9999 take more or fewer digits, as
// Go writes them.
function dateTimeText(sec: number): string {
  const pad2 = (n: number) => (n < 10 ? "0" : "") + n;
  const days = Math.floor(sec / 86400);
  const secOfDay = sec - days * 86400;
  const z = days + 719468;
  const era = Math.floor(z / 146097);
  const doe = z - era * 146097; // [0, 146096]
  const yoe = Math.floor((doe - Math.floor(doe / 1460) + Math.floor(doe / 36524) - Math.floor(doe / 146096)) / 365);
  const doy = doe - (365 * yoe + Math.floor(yoe / 4) - Math.floor(yoe / 100)); // [0, 365]
  const mp = Math.floor((5 * doy + 2) / 153); // [0, 11], March-based
  const day = doy - Math.floor((153 * mp + 2) / 5) + 1;
  const month = mp < 10 ? mp + 3 : mp - 9;
  const year = yoe + era * 400 + (month <= 2 ? 1 : 0);
  const hour = Math.floor(secOfDay / 3600);
  const minute = Math.floor((secOfDay % 3600) / 60);
  const second = secOfDay % 60;
  const yearText = year >= 0 && year < 10000 ? String(year).padStart(4, "0") : String(year);
  return `${yearText}-${pad2(month)}-${pad2(day)} ${pad2(hour)}:${pad2(minute)}:${pad2(second)}`;
}

// The date-time texts of recent seconds are cached, direct-mapped by second: a burst of lines shares
// its report second, and the start times of connections younger than an hour or so stay cached
// too. Only the texts of years 0..9999 (19 bytes) are cached.
const DATE_TIME_SLOTS = 4096;
const SLOT_WORDS = 3;
/** 0000-01-01 00:00:00 and 10000-01-01 00:00:00 UTC in Unix seconds. */
const YEAR_0_SEC = -62_167_219_200;
const YEAR_10000_SEC = 253_402_300_800;

const UTC = ascii(" +0000 UTC");
/** The longest time writeGoTime writes for years of up to 13 digits. */
const MAX_TIME_BYTES = 48;

const UNKNOWN = ascii("-");
const lengthOf = (value: string | null) => (value === null ? 0 : value.length);

// ── What both layouts write with ─────────────────────────────────────────────

/** The chunk a line is written into, a writer for each kind of value, the cache of date-times. */
abstract class ByteFormat implements LineFormat {
  /** The chunk being written, and a DataView on it for the word-wide stores. */
  protected out: Uint8Array = EMPTY;
  protected view: DataView = new DataView(EMPTY.buffer);
  readonly #dateTimeSecs = new Float64Array(DATE_TIME_SLOTS).fill(Number.NaN);
  readonly #dateTimeWords = new Float64Array(DATE_TIME_SLOTS * SLOT_WORDS);
  /** Where line() writes. */
  #scratch = new Uint8Array(4096);

  abstract maxBytes(r: AccessRecord): number;
  /** Writes the line of `r` into this.out from `at` on, without a newline; returns where it ends. */
  protected abstract writeLine(r: AccessRecord, at: number): number;

  write(r: AccessRecord, bytes: Uint8Array, at: number): number {
    this.target(bytes);
    return this.writeLine(r, at);
  }

  /** The line of `r` as a string: the bytes write() writes. */
  line(r: AccessRecord): string {
    const need = this.maxBytes(r) + WRITE_SLACK;
    if (need > this.#scratch.length) this.#scratch = new Uint8Array(need);
    return fromUtf8.decode(this.#scratch.subarray(0, this.write(r, this.#scratch, 0)));
  }

  /** Go's time.Time.String() of a UTC time, as a line has it (see writeGoTime). */
  goTime(t: WallTime): string {
    const bytes = new Uint8Array(MAX_TIME_BYTES + WRITE_SLACK);
    this.target(bytes);
    return fromUtf8.decode(bytes.subarray(0, this.writeGoTime(t, 0)));
  }

  protected target(bytes: Uint8Array): void {
    if (bytes === this.out) return;
    this.out = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  protected put(piece: Piece, at: number): number {
    const view = this.view;
    const words = piece.words;
    const n = words.length;
    for (let i = 0; i < n; i++) view.setFloat64(at + 8 * i, words[i]!, true);
    return at + piece.length;
  }

  /** A string as UTF-8 (what writing the string itself would give). */
  protected writeRaw(text: string, at: number): number {
    const out = this.out;
    const n = text.length;
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c >= 0x80) return this.writeBytes(utf8.encode(text), at);
      out[at + i] = c;
    }
    return at + n;
  }

  protected writeBytes(bytes: Uint8Array, at: number): number {
    if (at + bytes.length > this.out.length) throw new RangeError("line does not fit");
    this.out.set(bytes, at);
    return at + bytes.length;
  }

  /** k in 0..999 without leading zeros. */
  protected writeSmall(k: number, at: number): number {
    const length = k < 10 ? 1 : k < 100 ? 2 : 3;
    this.view.setInt32(at, DIGITS[k]! >>> (8 * (3 - length)), true);
    return at + length;
  }

  /** An integer 0..999999999 without leading zeros. */
  protected writeInt(n: number, at: number): number {
    if (n < 1000) return this.writeSmall(n, at);
    const view = this.view;
    if (n < 1_000_000) {
      const a = (n / 1000) | 0;
      const p = this.writeSmall(a, at);
      view.setInt32(p, DIGITS[n - a * 1000]!, true);
      return p + 3;
    }
    const a = (n / 1_000_000) | 0;
    const rest = n - a * 1_000_000;
    const b = (rest / 1000) | 0;
    const p = this.writeSmall(a, at);
    view.setInt32(p, DIGITS[b]!, true);
    view.setInt32(p + 3, DIGITS[rest - b * 1000]!, true);
    return p + 6;
  }

  /** An integer 0..999999999 as nine digits, zero-padded. */
  protected writeNine(n: number, at: number): number {
    const view = this.view;
    const a = (n / 1_000_000) | 0;
    const rest = n - a * 1_000_000;
    const b = (rest / 1000) | 0;
    view.setInt32(at, DIGITS[a]!, true);
    view.setInt32(at + 3, DIGITS[b]!, true);
    view.setInt32(at + 6, DIGITS[rest - b * 1000]!, true);
    return at + 9;
  }

  /**
   * String(n) as bytes. Integers 0..2^53 are written from the digit table; anything else (never
   * from the decoder) goes through String so that the digits stay exactly those of the string form.
   */
  protected writeNumber(n: number, at: number): number {
    if (n >= 0 && n < 1e9 && (n | 0) === n) return this.writeInt(n | 0, at);
    if (n >= 1e9 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n) {
      const high = Math.floor(n / 1e9); // < 9.1e6; exact, as n / 1e9 cannot round up to an integer here
      return this.writeNine(n - high * 1e9, this.writeInt(high, at));
    }
    return this.writeRaw(String(n), at);
  }

  /**
   * A duration in milliseconds as String(ms) (the JSON line's number). The decoder's durations are
   * whole nanoseconds divided by 1e6: for such a value under 1e15 ns (11.5 days) the exact decimal
   * n/1e6 has at most 15 significant digits, and no shorter decimal rounds to the same double (two
   * decimals of 15 digits or fewer never do), so String(ms) is that exact decimal without trailing
   * zeros, which is written here from the digit table. Anything else goes through String.
   */
  protected writeDuration(ms: number, at: number): number {
    const ns = Math.round(ms * 1e6);
    if (!(ns >= 0 && ns < 1e15 && ns / 1e6 === ms)) return this.writeRaw(String(ms), at);
    return this.writeNsAsMs(ns, at);
  }

  /**
   * A duration in milliseconds as Kmesh's line has it: Go's %v (go-float.ts). Its digits are
   * String's (above); from 100 ns to 16 min 40 s (1e-4 <= ms < 1e6) its layout is too. Below and
   * above, the exponent form: `5e-05`, `1.2e+06`.
   */
  protected writeGoDuration(ms: number, at: number): number {
    const ns = Math.round(ms * 1e6);
    if (ns >= 100 && ns < 1e12 && ns / 1e6 === ms) return this.writeNsAsMs(ns, at);
    return this.writeGoExponent(ms, ns, at);
  }

  /** ns / 1e6 as the exact decimal without trailing zeros; ns an integer, 0 <= ns < 1e15. */
  protected writeNsAsMs(ns: number, at: number): number {
    const whole = Math.floor(ns / 1e6); // < 1e9, exact: ns / 1e6 is never within an ulp of the next integer
    const fraction = ns - whole * 1e6; // 0..999999, exact (integers below 2^53)
    const p = this.writeInt(whole, at);
    if (fraction === 0) return p;
    const b = (fraction / 1000) | 0;
    const c = fraction - b * 1000;
    this.out[p] = 0x2e; // .
    this.view.setInt32(p + 1, DIGITS[b]!, true);
    this.view.setInt32(p + 4, DIGITS[c]!, true);
    return p + 1 + (c === 0 ? withoutTrailingZeros(3, b) : withoutTrailingZeros(6, c));
  }

  /** writeGoDuration outside the plain range: 0, under 100 ns, from 1e12 ns on, or not whole ns. */
  protected writeGoExponent(ms: number, ns: number, at: number): number {
    if (!(ns >= 0 && ns < 1e15 && ns / 1e6 === ms) || Object.is(ms, -0)) return this.writeRaw(goFloatText(ms), at);
    const out = this.out;
    if (ns === 0) {
      out[at] = 0x30; // 0
      return at + 1;
    }
    // The digits of ns one byte on, then the first moved back and a dot after it.
    const end = this.writeNumber(ns, at + 1);
    let last = end;
    while (out[last - 1] === 0x30) last--; // trailing zeros (ns has a digit that is not)
    out[at] = out[at + 1]!;
    let p = at + 1;
    if (last > at + 2) {
      out[at + 1] = 0x2e; // .
      p = last;
    }
    const exponent = end - at - 1 - 7; // -6..-5 below 100 ns, 6..8 from 1e12 ns on
    out[p] = 0x65; // e
    out[p + 1] = exponent < 0 ? 0x2d : 0x2b; // - or +
    out[p + 2] = 0x30; // 0
    out[p + 3] = 0x30 + Math.abs(exponent);
    return p + 4;
  }

  protected writeDateTime(sec: number, at: number): number {
    const slot = sec & (DATE_TIME_SLOTS - 1);
    const from = slot * SLOT_WORDS;
    const words = this.#dateTimeWords;
    if (this.#dateTimeSecs[slot] !== sec) {
      if (!(sec >= YEAR_0_SEC && sec < YEAR_10000_SEC)) return this.writeRaw(dateTimeText(sec), at);
      words.set(ascii(dateTimeText(sec)).words, from);
      this.#dateTimeSecs[slot] = sec;
    }
    const view = this.view;
    view.setFloat64(at, words[from]!, true);
    view.setFloat64(at + 8, words[from + 1]!, true);
    view.setFloat64(at + 16, words[from + 2]!, true);
    return at + DATE_TIME_BYTES;
  }

  /**
   * Go's time.Time.String() of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`, the fraction
   * without trailing zeros and without the dot when it is zero. `t.nsec` is an integer 0..999999999.
   */
  protected writeGoTime(t: WallTime, at: number): number {
    let p = this.writeDateTime(t.sec, at);
    const n = t.nsec;
    if (n !== 0) {
      const a = (n / 1_000_000) | 0;
      const rest = n - a * 1_000_000;
      const b = (rest / 1000) | 0;
      const c = rest - b * 1000;
      const view = this.view;
      this.out[p] = 0x2e; // .
      view.setInt32(p + 1, DIGITS[a]!, true);
      view.setInt32(p + 4, DIGITS[b]!, true);
      view.setInt32(p + 7, DIGITS[c]!, true);
      p += 1 + (c !== 0 ? withoutTrailingZeros(9, c) : b !== 0 ? withoutTrailingZeros(6, b) : withoutTrailingZeros(3, a));
    }
    return this.put(UTC, p);
  }

  /**
   * RFC 3339 in UTC with all nine fraction digits, `2026-12-01T12:22:18.152687231Z` (the JSON
   * line's times, which log collectors parse without a custom parser).
   */
  protected writeRfc3339(t: WallTime, at: number): number {
    const p = this.writeDateTime(t.sec, at);
    this.out[p - 9] = 0x54; // T, for the space before hh:mm:ss
    this.out[p] = 0x2e; // .
    const end = this.writeNine(t.nsec, p + 1);
    this.out[end] = 0x5a; // Z
    return end + 1;
  }

  /** writeRfc3339 into `bytes` at `at`; returns where it ends (for other sinks' byte writers). */
  rfc3339(t: WallTime, bytes: Uint8Array, at: number): number {
    this.target(bytes);
    return this.writeRfc3339(t, at);
  }
}

// ── Kmesh's text line ────────────────────────────────────────────────────────

// Escaping of values that come from outside (names, the error text): docs/accesslog-format.md,
// "Escaping".
function isPlainCode(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== 0x2c /* , */ && c !== 0x3d /* = */ && c !== 0x5c /* \ */ && c !== 0x25 /* % */;
}

const HEX = "0123456789ABCDEF";
/** Bytes per UTF-16 unit at most: 3 UTF-8 bytes, each `%XX`. */
const MAX_ESCAPE = 9;

function escapedBytes(value: string): Uint8Array {
  if (value === "-") return utf8.encode("%2D");
  const encoded = utf8.encode(value); // lone surrogates become U+FFFD
  let length = 0;
  for (const byte of encoded) length += isPlainCode(byte) ? 1 : 3;
  if (length === encoded.length) return encoded;
  const escaped = new Uint8Array(length);
  let p = 0;
  for (const byte of encoded) {
    if (isPlainCode(byte)) {
      escaped[p++] = byte;
    } else {
      escaped[p++] = 0x25; // %
      escaped[p++] = HEX.charCodeAt(byte >> 4);
      escaped[p++] = HEX.charCodeAt(byte & 15);
    }
  }
  return escaped;
}

// Pod, namespace and service names repeat from line to line; a node has some thousands at most.
const NAME_CACHE_LIMIT = 16_384;

const T_HEAD = ascii("accesslog: ");
const T_SRC_ADDR = ascii(" src.addr=");
const T_SRC_WORKLOAD = ascii(", src.workload=");
const T_SRC_NAMESPACE = ascii(", src.namespace=");
const T_DST_ADDR = ascii(", dst.addr=");
const T_DST_SERVICE = ascii(", dst.service=");
const T_DST_WORKLOAD = ascii(", dst.workload=");
const T_DST_NAMESPACE = ascii(", dst.namespace=");
const T_START_TIME = ascii(", start_time=");
const T_DIRECTION = ascii(", direction=");
const T_STATE = ascii(", state=");
const T_SENT = ascii(", sent_bytes=");
const T_RECEIVED = ascii(", received_bytes=");
const T_LOSS = ascii(", packet_loss=");
const T_RETRANS = ascii(", retransmissions=");
const T_SRTT = ascii(", srtt=");
const T_MIN_RTT = ascii("us, min_rtt=");
const T_DURATION = ascii("us, duration=");
const T_MS = ascii("ms");
const T_ERROR = ascii(", error=");
// Runs of fixed text that the common lines share, written with one put() each: a source or a
// destination without names (no kubelet, or not a pod), and the direction and state of a close.
const T_SRC_UNNAMED = ascii(", src.workload=-, src.namespace=-, dst.addr=");
const T_DST_UNNAMED = ascii(", dst.workload=-, dst.namespace=-, start_time=");
const T_OUTBOUND_CLOSE = ascii(", direction=OUTBOUND, state=BPF_TCP_CLOSE, sent_bytes=");
const T_INBOUND_CLOSE = ascii(", direction=INBOUND, state=BPF_TCP_CLOSE, sent_bytes=");
const CLOSE = "BPF_TCP_CLOSE";

/**
 * Every fixed piece (about 260 bytes), two times (48 each), and two ports, six counters and a
 * duration of at most 25 characters each (the longest String(number)), with room to spare.
 */
const TEXT_FIXED_BYTES = 768;

/** Kmesh's access-log line, without a trailing newline: docs/accesslog-format.md, "The text line". */
export class KmeshText extends ByteFormat {
  readonly #names = new PieceCache(escapedBytes, NAME_CACHE_LIMIT);
  readonly #srcEnds = new WeakMap<PodInfo, Piece>();
  readonly #dstEnds = new WeakMap<PodInfo, Piece>();

  /** The value as it appears in a text line (see the escaping rules above). */
  escape(value: string): string {
    return fromUtf8.decode(this.#names.get(value).bytes);
  }

  maxBytes(r: AccessRecord): number {
    return (
      TEXT_FIXED_BYTES +
      3 * (2 * r.srcAddr.length + 3 * r.dstAddr.length + r.direction.length + r.state.length) +
      MAX_ESCAPE *
        (lengthOf(r.srcWorkload) +
          lengthOf(r.srcNamespace) +
          lengthOf(r.dstService) +
          lengthOf(r.dstWorkload) +
          lengthOf(r.dstNamespace) +
          lengthOf(r.error))
    );
  }

  #value(value: string | null, at: number): number {
    return this.put(value === null ? UNKNOWN : this.#names.get(value), at);
  }

  /**
   * A pod's names with the fixed text around them, one piece per pod and end, made on its first
   * line: one put and one WeakMap look-up instead of four puts and two name look-ups (README,
   * "The line pipeline"). The piece goes when the pod object does.
   */
  #namedEnd(ends: WeakMap<PodInfo, Piece>, pod: PodInfo, workload: Piece, namespace: Piece, next: Piece): Piece {
    let piece = ends.get(pod);
    if (piece === undefined) {
      const parts = [workload, this.#names.get(pod.name), namespace, pod.namespace === null ? UNKNOWN : this.#names.get(pod.namespace), next];
      const bytes = new Uint8Array(parts.reduce((n, part) => n + part.length, 0));
      let at = 0;
      for (const part of parts) {
        bytes.set(part.bytes, at);
        at += part.length;
      }
      piece = pieceOf(bytes);
      ends.set(pod, piece);
    }
    return piece;
  }

  #hostPort(addr: string, port: number, family: 4 | 6, at: number): number {
    const out = this.out;
    let p = at;
    if (family === 6) out[p++] = 0x5b; // [
    p = this.writeRaw(addr, p);
    if (family === 6) out[p++] = 0x5d; // ]
    out[p++] = 0x3a; // :
    return this.writeNumber(port, p);
  }

  protected writeLine(r: AccessRecord, at: number): number {
    let p = this.put(T_HEAD, at);
    p = this.writeGoTime(r.reportTime, p);
    p = this.put(T_SRC_ADDR, p);
    p = this.#hostPort(r.srcAddr, r.srcPort, r.family, p);
    const srcPod = r.srcPod;
    if (r.srcWorkload === null && r.srcNamespace === null) {
      p = this.put(T_SRC_UNNAMED, p);
    } else if (srcPod !== undefined && r.srcWorkload === srcPod.name && r.srcNamespace === srcPod.namespace) {
      p = this.put(this.#namedEnd(this.#srcEnds, srcPod, T_SRC_WORKLOAD, T_SRC_NAMESPACE, T_DST_ADDR), p);
    } else {
      p = this.put(T_SRC_WORKLOAD, p);
      p = this.#value(r.srcWorkload, p);
      p = this.put(T_SRC_NAMESPACE, p);
      p = this.#value(r.srcNamespace, p);
      p = this.put(T_DST_ADDR, p);
    }
    p = this.#hostPort(r.dstAddr, r.dstPort, r.family, p);
    p = this.put(T_DST_SERVICE, p);
    p = r.dstService === null ? this.writeRaw(r.dstAddr, p) : this.put(this.#names.get(r.dstService), p);
    const dstPod = r.dstPod;
    if (r.dstWorkload === null && r.dstNamespace === null) {
      p = this.put(T_DST_UNNAMED, p);
    } else if (dstPod !== undefined && r.dstWorkload === dstPod.name && r.dstNamespace === dstPod.namespace) {
      p = this.put(this.#namedEnd(this.#dstEnds, dstPod, T_DST_WORKLOAD, T_DST_NAMESPACE, T_START_TIME), p);
    } else {
      p = this.put(T_DST_WORKLOAD, p);
      p = this.#value(r.dstWorkload, p);
      p = this.put(T_DST_NAMESPACE, p);
      p = this.#value(r.dstNamespace, p);
      p = this.put(T_START_TIME, p);
    }
    p = r.startTime === null ? this.put(UNKNOWN, p) : this.writeGoTime(r.startTime, p);
    if (r.state === CLOSE) {
      p = this.put(r.direction === "OUTBOUND" ? T_OUTBOUND_CLOSE : T_INBOUND_CLOSE, p);
    } else {
      p = this.put(T_DIRECTION, p);
      p = this.writeRaw(r.direction, p);
      p = this.put(T_STATE, p);
      p = this.writeRaw(r.state, p);
      p = this.put(T_SENT, p);
    }
    p = this.writeNumber(r.sentBytes, p);
    p = this.put(T_RECEIVED, p);
    p = this.writeNumber(r.receivedBytes, p);
    p = this.put(T_LOSS, p);
    p = this.writeNumber(r.packetLoss, p);
    p = this.put(T_RETRANS, p);
    p = this.writeNumber(r.retransmissions, p);
    p = this.put(T_SRTT, p);
    p = this.writeNumber(r.srttUs, p);
    p = this.put(T_MIN_RTT, p);
    p = this.writeNumber(r.minRttUs, p);
    p = this.put(T_DURATION, p);
    if (r.durationMs === null) {
      p = this.put(UNKNOWN, p);
    } else {
      p = this.writeGoDuration(r.durationMs, p);
      p = this.put(T_MS, p);
    }
    if (r.error !== null) {
      p = this.put(T_ERROR, p);
      p = this.put(this.#names.get(r.error), p);
    }
    return p;
  }
}

// ── JSON line ────────────────────────────────────────────────────────────────

/** JSON.stringify(value) as UTF-8 (quotes included). */
const jsonBytes = (value: string): Uint8Array => utf8.encode(JSON.stringify(value));
const J_NULL = ascii("null");
/** Bytes per UTF-16 unit at most: `\uXXXX`. */
const MAX_JSON_ESCAPE = 6;

const J_TIME = ascii('{"time":');
const J_SRC_ADDR = ascii(',"src_addr":');
const J_SRC_PORT = ascii(',"src_port":');
const J_SRC_WORKLOAD = ascii(',"src_workload":');
const J_SRC_NAMESPACE = ascii(',"src_namespace":');
const J_DST_ADDR = ascii(',"dst_addr":');
const J_DST_PORT = ascii(',"dst_port":');
const J_DST_SERVICE = ascii(',"dst_service":');
const J_DST_WORKLOAD = ascii(',"dst_workload":');
const J_DST_NAMESPACE = ascii(',"dst_namespace":');
const J_START_TIME = ascii(',"start_time":');
const J_DIRECTION = ascii(',"direction":');
const J_STATE = ascii(',"state":');
const J_SENT = ascii(',"sent_bytes":');
const J_RECEIVED = ascii(',"received_bytes":');
const J_LOSS = ascii(',"packet_loss":');
const J_RETRANS = ascii(',"retransmissions":');
const J_SRTT = ascii(',"srtt_us":');
const J_MIN_RTT = ascii(',"min_rtt_us":');
const J_DURATION = ascii(',"duration_ms":');
const J_ERROR = ascii(',"error":');
const J_NETNS = ascii(',"netns":');
const J_PID = ascii(',"process_pid":');
const J_COMMAND = ascii(',"process_command":');
const J_CONTAINER_ID = ascii(',"container_id":');
const J_CONTAINER_NAME = ascii(',"container_name":');
const J_NO_PROCESS = ascii(',"process_pid":null,"process_command":null,"container_id":null,"container_name":null');
const J_END = ascii("}");
// As in the text line: the fixed runs of the common lines, one put() each.
const J_SRC_UNNAMED = ascii(',"src_workload":null,"src_namespace":null,"dst_addr":');
const J_DST_UNNAMED = ascii(',"dst_service":null,"dst_workload":null,"dst_namespace":null,"start_time":');
const J_OUTBOUND_CLOSE = ascii(',"direction":"OUTBOUND","state":"BPF_TCP_CLOSE","sent_bytes":');
const J_INBOUND_CLOSE = ascii(',"direction":"INBOUND","state":"BPF_TCP_CLOSE","sent_bytes":');

/** As TEXT_FIXED_BYTES: about 380 bytes of keys, two quoted times, eleven numbers. */
const JSON_FIXED_BYTES = 1024;

/** One JSON object per line, without a trailing newline: docs/accesslog-format.md, "The JSON line". */
export class JsonLines extends ByteFormat {
  readonly #names = new PieceCache(jsonBytes, NAME_CACHE_LIMIT);

  maxBytes(r: AccessRecord): number {
    return (
      JSON_FIXED_BYTES +
      MAX_JSON_ESCAPE *
        (r.srcAddr.length +
          r.dstAddr.length +
          r.direction.length +
          r.state.length +
          lengthOf(r.srcWorkload) +
          lengthOf(r.srcNamespace) +
          lengthOf(r.dstService) +
          lengthOf(r.dstWorkload) +
          lengthOf(r.dstNamespace) +
          lengthOf(r.error) +
          lengthOf(r.command) +
          lengthOf(r.containerId) +
          lengthOf(r.containerName))
    );
  }

  /** JSON.stringify of a string that needs no escaping, else of any string, as UTF-8. */
  #string(text: string, at: number): number {
    const out = this.out;
    const n = text.length;
    out[at] = 0x22; // "
    for (let i = 0; i < n; i++) {
      const c = text.charCodeAt(i);
      if (c < 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) return this.put(this.#names.get(text), at);
      out[at + 1 + i] = c;
    }
    out[at + 1 + n] = 0x22;
    return at + n + 2;
  }

  #name(value: string | null, at: number): number {
    return this.put(value === null ? J_NULL : this.#names.get(value), at);
  }

  /** JSON.stringify(n): String(n), or null when not finite. */
  #number(n: number, at: number): number {
    return Number.isFinite(n) ? this.writeNumber(n, at) : this.put(J_NULL, at);
  }

  #time(t: WallTime | null, at: number): number {
    if (t === null) return this.put(J_NULL, at);
    this.out[at] = 0x22;
    const p = this.writeRfc3339(t, at + 1);
    this.out[p] = 0x22;
    return p + 1;
  }

  protected writeLine(r: AccessRecord, at: number): number {
    let p = this.put(J_TIME, at);
    p = this.#time(r.reportTime, p);
    p = this.put(J_SRC_ADDR, p);
    p = this.#string(r.srcAddr, p);
    p = this.put(J_SRC_PORT, p);
    p = this.#number(r.srcPort, p);
    if (r.srcWorkload === null && r.srcNamespace === null) {
      p = this.put(J_SRC_UNNAMED, p);
    } else {
      p = this.put(J_SRC_WORKLOAD, p);
      p = this.#name(r.srcWorkload, p);
      p = this.put(J_SRC_NAMESPACE, p);
      p = this.#name(r.srcNamespace, p);
      p = this.put(J_DST_ADDR, p);
    }
    p = this.#string(r.dstAddr, p);
    p = this.put(J_DST_PORT, p);
    p = this.#number(r.dstPort, p);
    if (r.dstService === null && r.dstWorkload === null && r.dstNamespace === null) {
      p = this.put(J_DST_UNNAMED, p);
    } else {
      p = this.put(J_DST_SERVICE, p);
      p = this.#name(r.dstService, p);
      p = this.put(J_DST_WORKLOAD, p);
      p = this.#name(r.dstWorkload, p);
      p = this.put(J_DST_NAMESPACE, p);
      p = this.#name(r.dstNamespace, p);
      p = this.put(J_START_TIME, p);
    }
    p = this.#time(r.startTime, p);
    if (r.state === CLOSE) {
      p = this.put(r.direction === "OUTBOUND" ? J_OUTBOUND_CLOSE : J_INBOUND_CLOSE, p);
    } else {
      p = this.put(J_DIRECTION, p);
      p = this.#string(r.direction, p);
      p = this.put(J_STATE, p);
      p = this.#string(r.state, p);
      p = this.put(J_SENT, p);
    }
    p = this.#number(r.sentBytes, p);
    p = this.put(J_RECEIVED, p);
    p = this.#number(r.receivedBytes, p);
    p = this.put(J_LOSS, p);
    p = this.#number(r.packetLoss, p);
    p = this.put(J_RETRANS, p);
    p = this.#number(r.retransmissions, p);
    p = this.put(J_SRTT, p);
    p = this.#number(r.srttUs, p);
    p = this.put(J_MIN_RTT, p);
    p = this.#number(r.minRttUs, p);
    p = this.put(J_DURATION, p);
    if (r.durationMs === null || !Number.isFinite(r.durationMs)) p = this.put(J_NULL, p);
    else p = this.writeDuration(r.durationMs, p);
    p = this.put(J_ERROR, p);
    p = this.#name(r.error, p);
    p = this.put(J_NETNS, p);
    p = this.#number(r.netns, p);
    if (r.pid === null && r.command === null && r.containerId === null && r.containerName === null) {
      p = this.put(J_NO_PROCESS, p);
    } else {
      p = this.put(J_PID, p);
      p = r.pid === null ? this.put(J_NULL, p) : this.#number(r.pid, p);
      p = this.put(J_COMMAND, p);
      p = this.#name(r.command, p);
      p = this.put(J_CONTAINER_ID, p);
      p = this.#name(r.containerId, p);
      p = this.put(J_CONTAINER_NAME, p);
      p = this.#name(r.containerName, p);
    }
    return this.put(J_END, p);
  }
}
