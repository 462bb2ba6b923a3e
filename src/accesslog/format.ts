// AccessRecord → one output line, in Kmesh's text layout or as JSON. See
// /work/shared/docs/accesslog-format.md for what each field means.
//
// This runs once per event, and turning a line into bytes used to cost as much as building it
// (a JS string of ~40 pieces, flattened, then UTF-8 encoded for the write). So a line is written
// as bytes, straight into the output chunk the sink hands it: fixed text and the date-time of the
// current second are pre-encoded, names are escaped and encoded once and cached, addresses are
// copied character by character, integers are written digit by digit. The string forms
// (formatKmeshLine, formatJsonLine, formatGoTime, escapeValue) decode those same bytes, so each
// layout has one implementation.

import type { WallTime } from "../kernel/clock.ts";

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
  /** errno name of a failed connection attempt, e.g. "ECONNREFUSED"; null otherwise */
  error: string | null;
  family: 4 | 6;
}

/** A line layout, written as bytes. */
export interface LineFormat {
  /** At least as many bytes as write() uses for `r` (the newline is not part of a line). */
  maxBytes(r: AccessRecord): number;
  /** Writes the line of `r` into `out` from `at` on, without a newline; returns where it ends. */
  write(r: AccessRecord, out: Uint8Array, at: number): number;
}

// ── Bytes ────────────────────────────────────────────────────────────────────

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Bytes of ASCII text. */
const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

// A JS loop beats TypedArray.prototype.set for the short pieces a line is made of.
function copy(bytes: Uint8Array, out: Uint8Array, at: number): number {
  const n = bytes.length;
  for (let i = 0; i < n; i++) out[at + i] = bytes[i]!;
  return at + n;
}

/** A string as UTF-8 (what writing the string itself would give). */
function writeRaw(text: string, out: Uint8Array, at: number): number {
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c >= 0x80) return copy(utf8.encode(text), out, at);
    out[at + i] = c;
  }
  return at + n;
}

/** Encoded forms of strings, each computed once; forgotten wholesale when there are too many. */
class ByteCache {
  readonly #map = new Map<string, Uint8Array>();
  constructor(
    readonly encode: (text: string) => Uint8Array,
    readonly limit: number,
  ) {}

  get(text: string): Uint8Array {
    let bytes = this.#map.get(text);
    if (bytes === undefined) {
      if (this.#map.size >= this.limit) this.#map.clear();
      bytes = this.encode(text);
      this.#map.set(text, bytes);
    }
    return bytes;
  }
}

// Pod, namespace and service names repeat from line to line; a node has some thousands at most.
const NAME_CACHE_LIMIT = 16_384;

// ── Numbers ──────────────────────────────────────────────────────────────────

const POW10: readonly number[] = Array.from({ length: 16 }, (_, i) => 10 ** i);

/**
 * String(n) as bytes. Integers 0..2^53 are written digit by digit; anything else (never from
 * the decoder) goes through String so that the digits stay exactly those of the string form.
 */
function writeNumber(n: number, out: Uint8Array, at: number): number {
  if (n < 10 && n >= 0 && (n | 0) === n) {
    out[at] = 48 + n;
    return at + 1;
  }
  if (!(n >= 0 && n <= Number.MAX_SAFE_INTEGER && Math.floor(n) === n)) return writeRaw(String(n), out, at);
  let length = 1;
  while (length < 16 && n >= POW10[length]!) length++;
  let p = at + length;
  if (n < 0x80000000) {
    let m = n | 0;
    do {
      const q = (m / 10) | 0;
      out[--p] = 48 + m - q * 10;
      m = q;
    } while (m !== 0);
  } else {
    let m = n;
    do {
      const q = Math.floor(m / 10); // exact: m < 2^53, so m / 10 never rounds up to the next integer
      out[--p] = 48 + m - q * 10;
      m = q;
    } while (m !== 0);
  }
  return at + length;
}

/** `digits` decimal digits of n (0 <= n < 10^digits < 2^31), zero-padded on the left. */
function writePadded(n: number, digits: number, out: Uint8Array, at: number): number {
  let p = at + digits;
  let m = n;
  while (p > at) {
    const q = (m / 10) | 0;
    out[--p] = 48 + m - q * 10;
    m = q;
  }
  return at + digits;
}

/**
 * A duration in milliseconds as String(ms), the digits of Go's %v. The decoder's durations are
 * whole nanoseconds divided by 1e6: for such a value under 1e15 ns (11.5 days) the exact decimal
 * n/1e6 has at most 15 significant digits, and no shorter decimal rounds to the same double (two
 * decimals of 15 digits or fewer never do), so String(ms) is that exact decimal without trailing
 * zeros, which is written here digit by digit. Anything else goes through String.
 */
function writeDuration(ms: number, out: Uint8Array, at: number): number {
  const ns = Math.round(ms * 1e6);
  if (!(ns >= 0 && ns < 1e15 && ns / 1e6 === ms)) return writeRaw(String(ms), out, at);
  const whole = Math.floor(ns / 1e6);
  let fraction = ns - whole * 1e6; // 0..999999, exact (all integers below 2^53)
  let p = writeNumber(whole, out, at);
  if (fraction === 0) return p;
  let digits = 6;
  while (fraction % 10 === 0) {
    fraction /= 10;
    digits--;
  }
  out[p++] = 0x2e; // .
  return writePadded(fraction, digits, out, p);
}

// ── Time ─────────────────────────────────────────────────────────────────────

// "YYYY-MM-DD hh:mm:ss" of Unix seconds, in UTC, from days-since-epoch arithmetic (H. Hinnant's
// civil_from_days), without a Date object. Returns where it ends; years outside 0..9999 take
// more or fewer digits, as Go writes them.
function writeDateTime(sec: number, out: Uint8Array, at: number): number {
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
  let p = year >= 0 && year < 10000 ? writePadded(year, 4, out, at) : writeRaw(String(year), out, at);
  out[p++] = 0x2d; // -
  p = writePadded(month, 2, out, p);
  out[p++] = 0x2d;
  p = writePadded(day, 2, out, p);
  out[p++] = 0x20;
  p = writePadded(Math.floor(secOfDay / 3600), 2, out, p);
  out[p++] = 0x3a; // :
  p = writePadded(Math.floor((secOfDay % 3600) / 60), 2, out, p);
  out[p++] = 0x3a;
  return writePadded(secOfDay % 60, 2, out, p);
}

// The date-time texts of recent seconds, direct-mapped by second: a burst of lines shares its
// report second, and the start times of connections younger than an hour or so stay cached
// too. Only 19-byte texts (years 0..9999) are cached.
const DATE_TIME_BYTES = 19;
const DATE_TIME_SLOTS = 4096;
const dateTimeSecs = new Float64Array(DATE_TIME_SLOTS).fill(Number.NaN);
const dateTimeTexts = new Uint8Array(DATE_TIME_SLOTS * DATE_TIME_BYTES);
/** 0000-01-01 00:00:00 and 10000-01-01 00:00:00 UTC in Unix seconds. */
const YEAR_0_SEC = -62_167_219_200;
const YEAR_10000_SEC = 253_402_300_800;

function writeCachedDateTime(sec: number, out: Uint8Array, at: number): number {
  const slot = sec & (DATE_TIME_SLOTS - 1);
  const from = slot * DATE_TIME_BYTES;
  if (dateTimeSecs[slot] !== sec) {
    if (!(sec >= YEAR_0_SEC && sec < YEAR_10000_SEC)) return writeDateTime(sec, out, at);
    writeDateTime(sec, dateTimeTexts, from);
    dateTimeSecs[slot] = sec;
  }
  for (let i = 0; i < DATE_TIME_BYTES; i++) out[at + i] = dateTimeTexts[from + i]!;
  return at + DATE_TIME_BYTES;
}

const UTC = ascii(" +0000 UTC");
/** The longest time writeGoTime writes for years of up to 12 digits. */
const MAX_TIME_BYTES = 48;

/**
 * Go's time.Time.String() of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`, the fraction
 * without trailing zeros and without the dot when it is zero. `t.nsec` is an integer 0..999999999.
 */
function writeGoTime(t: WallTime, out: Uint8Array, at: number): number {
  let p = writeCachedDateTime(t.sec, out, at);
  let n = t.nsec;
  if (n !== 0) {
    let digits = 9;
    while (n % 10 === 0) {
      n /= 10;
      digits--;
    }
    out[p++] = 0x2e; // .
    p = writePadded(n, digits, out, p);
  }
  return copy(UTC, out, p);
}

// ── Kmesh's text line ────────────────────────────────────────────────────────

// Escaping of values that come from outside (pod, namespace and service names, the error text).
//
// A value is written as is when every character is printable ASCII (0x21..0x7E) other than
// `,` `=` `\` and `%`. Otherwise each offending character is replaced by the percent-encoding of
// its UTF-8 bytes (`%` followed by two uppercase hex digits, as in RFC 3986): a space becomes
// `%20`, `,` `%2C`, `=` `%3D`, `\` `%5C`, `%` `%25`, `é` `%C3%A9`. A value that is exactly `-`
// is written `%2D` so that it cannot be read as "unknown". JavaScript's decodeURIComponent (or
// Go's url.PathUnescape) gives back the original value. A lone UTF-16 surrogate, which has no
// UTF-8 form, is written as U+FFFD (`%EF%BF%BD`).
function isPlainCode(c: number): boolean {
  return c > 0x20 && c < 0x7f && c !== 0x2c /* , */ && c !== 0x3d /* = */ && c !== 0x5c /* \ */ && c !== 0x25 /* % */;
}

const HEX = ascii("0123456789ABCDEF");
const UNKNOWN = ascii("-");
const ESCAPED_DASH = ascii("%2D");
/** Bytes per UTF-16 unit at most: 3 UTF-8 bytes, each `%XX`. */
const MAX_ESCAPE = 9;

function escapedBytes(value: string): Uint8Array {
  if (value === "-") return ESCAPED_DASH;
  const encoded = utf8.encode(value); // lone surrogates become U+FFFD
  let length = 0;
  for (const byte of encoded) length += isPlainCode(byte) ? 1 : 3;
  if (length === encoded.length) return encoded;
  const out = new Uint8Array(length);
  let p = 0;
  for (const byte of encoded) {
    if (isPlainCode(byte)) {
      out[p++] = byte;
    } else {
      out[p++] = 0x25; // %
      out[p++] = HEX[byte >> 4]!;
      out[p++] = HEX[byte & 15]!;
    }
  }
  return out;
}

const escapedNames = new ByteCache(escapedBytes, NAME_CACHE_LIMIT);

/** The value as it appears in a text line (see the escaping rules above). */
export function escapeValue(value: string): string {
  return fromUtf8.decode(escapedNames.get(value));
}

function writeTextValue(value: string | null, out: Uint8Array, at: number): number {
  return copy(value === null ? UNKNOWN : escapedNames.get(value), out, at);
}

function writeHostPort(addr: string, port: number, family: 4 | 6, out: Uint8Array, at: number): number {
  let p = at;
  if (family === 6) out[p++] = 0x5b; // [
  p = writeRaw(addr, out, p);
  if (family === 6) out[p++] = 0x5d; // ]
  out[p++] = 0x3a; // :
  return writeNumber(port, out, p);
}

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

/**
 * Every fixed piece (about 260 bytes), two times (48 each), and two ports, six counters and a
 * duration of at most 25 characters each (the longest String(number)), with room to spare.
 */
const TEXT_FIXED_BYTES = 768;

/**
 * The line Kmesh writes, without a trailing newline:
 * `accesslog: <report time> src.addr=<ip:port>, src.workload=<pod>, ..., duration=<ms>ms`,
 * followed by `, error=<errno name>` for a failed connection attempt. Unknown values are `-`;
 * with no service known, dst.service is the destination IP, as Kmesh does.
 */
function writeKmeshLine(r: AccessRecord, out: Uint8Array, at: number): number {
  let p = copy(T_HEAD, out, at);
  p = writeGoTime(r.reportTime, out, p);
  p = copy(T_SRC_ADDR, out, p);
  p = writeHostPort(r.srcAddr, r.srcPort, r.family, out, p);
  p = copy(T_SRC_WORKLOAD, out, p);
  p = writeTextValue(r.srcWorkload, out, p);
  p = copy(T_SRC_NAMESPACE, out, p);
  p = writeTextValue(r.srcNamespace, out, p);
  p = copy(T_DST_ADDR, out, p);
  p = writeHostPort(r.dstAddr, r.dstPort, r.family, out, p);
  p = copy(T_DST_SERVICE, out, p);
  p = r.dstService === null ? writeRaw(r.dstAddr, out, p) : copy(escapedNames.get(r.dstService), out, p);
  p = copy(T_DST_WORKLOAD, out, p);
  p = writeTextValue(r.dstWorkload, out, p);
  p = copy(T_DST_NAMESPACE, out, p);
  p = writeTextValue(r.dstNamespace, out, p);
  p = copy(T_START_TIME, out, p);
  p = r.startTime === null ? copy(UNKNOWN, out, p) : writeGoTime(r.startTime, out, p);
  p = copy(T_DIRECTION, out, p);
  p = writeRaw(r.direction, out, p);
  p = copy(T_STATE, out, p);
  p = writeRaw(r.state, out, p);
  p = copy(T_SENT, out, p);
  p = writeNumber(r.sentBytes, out, p);
  p = copy(T_RECEIVED, out, p);
  p = writeNumber(r.receivedBytes, out, p);
  p = copy(T_LOSS, out, p);
  p = writeNumber(r.packetLoss, out, p);
  p = copy(T_RETRANS, out, p);
  p = writeNumber(r.retransmissions, out, p);
  p = copy(T_SRTT, out, p);
  p = writeNumber(r.srttUs, out, p);
  p = copy(T_MIN_RTT, out, p);
  p = writeNumber(r.minRttUs, out, p);
  p = copy(T_DURATION, out, p);
  if (r.durationMs === null) {
    p = copy(UNKNOWN, out, p);
  } else {
    p = writeDuration(r.durationMs, out, p);
    p = copy(T_MS, out, p);
  }
  if (r.error !== null) {
    p = copy(T_ERROR, out, p);
    p = copy(escapedNames.get(r.error), out, p);
  }
  return p;
}

const lengthOf = (value: string | null) => (value === null ? 0 : value.length);

function maxKmeshLineBytes(r: AccessRecord): number {
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

/** Kmesh's access-log line. */
export const KMESH_TEXT: LineFormat = { maxBytes: maxKmeshLineBytes, write: writeKmeshLine };

// ── JSON line ────────────────────────────────────────────────────────────────

/** JSON.stringify(value) as UTF-8 (quotes included). */
const jsonBytes = (value: string): Uint8Array => utf8.encode(JSON.stringify(value));
const jsonNames = new ByteCache(jsonBytes, NAME_CACHE_LIMIT);
const J_NULL = ascii("null");
/** Bytes per UTF-16 unit at most: `\uXXXX`. */
const MAX_JSON_ESCAPE = 6;

/** JSON.stringify of a string that needs no escaping, else of any string, as UTF-8. */
function writeJsonString(text: string, out: Uint8Array, at: number): number {
  const n = text.length;
  out[at] = 0x22; // "
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c >= 0x7f || c === 0x22 || c === 0x5c) return copy(jsonNames.get(text), out, at);
    out[at + 1 + i] = c;
  }
  out[at + 1 + n] = 0x22;
  return at + n + 2;
}

function writeJsonName(value: string | null, out: Uint8Array, at: number): number {
  return copy(value === null ? J_NULL : jsonNames.get(value), out, at);
}

/** JSON.stringify(n): String(n), or null when not finite. */
function writeJsonNumber(n: number, out: Uint8Array, at: number): number {
  return Number.isFinite(n) ? writeNumber(n, out, at) : copy(J_NULL, out, at);
}

function writeJsonTime(t: WallTime | null, out: Uint8Array, at: number): number {
  if (t === null) return copy(J_NULL, out, at);
  out[at] = 0x22;
  const p = writeGoTime(t, out, at + 1);
  out[p] = 0x22;
  return p + 1;
}

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
const J_END = ascii("}");

/** As TEXT_FIXED_BYTES: about 290 bytes of keys, two quoted times, nine numbers. */
const JSON_FIXED_BYTES = 896;

/**
 * One JSON object per line, without a trailing newline. Keys, always present and in this order:
 *   time            string  report time, Go layout as in the text line
 *   src_addr        string  address without port (IPv6 without brackets)
 *   src_port        number
 *   src_workload    string | null
 *   src_namespace   string | null
 *   dst_addr        string
 *   dst_port        number
 *   dst_service     string | null  (null when unknown: no IP stand-in as in the text line)
 *   dst_workload    string | null
 *   dst_namespace   string | null
 *   start_time      string | null  Go layout
 *   direction       "OUTBOUND" | "INBOUND"
 *   state           string  BPF_TCP_*
 *   sent_bytes, received_bytes, packet_loss, retransmissions, srtt_us, min_rtt_us   number
 *   duration_ms     number | null
 *   error           string | null  errno name of a failed attempt
 * Values are not percent-escaped here: JSON's own escaping keeps them on one line. The bytes are
 * those of JSON.stringify of that object.
 */
function writeJsonLine(r: AccessRecord, out: Uint8Array, at: number): number {
  let p = copy(J_TIME, out, at);
  p = writeJsonTime(r.reportTime, out, p);
  p = copy(J_SRC_ADDR, out, p);
  p = writeJsonString(r.srcAddr, out, p);
  p = copy(J_SRC_PORT, out, p);
  p = writeJsonNumber(r.srcPort, out, p);
  p = copy(J_SRC_WORKLOAD, out, p);
  p = writeJsonName(r.srcWorkload, out, p);
  p = copy(J_SRC_NAMESPACE, out, p);
  p = writeJsonName(r.srcNamespace, out, p);
  p = copy(J_DST_ADDR, out, p);
  p = writeJsonString(r.dstAddr, out, p);
  p = copy(J_DST_PORT, out, p);
  p = writeJsonNumber(r.dstPort, out, p);
  p = copy(J_DST_SERVICE, out, p);
  p = writeJsonName(r.dstService, out, p);
  p = copy(J_DST_WORKLOAD, out, p);
  p = writeJsonName(r.dstWorkload, out, p);
  p = copy(J_DST_NAMESPACE, out, p);
  p = writeJsonName(r.dstNamespace, out, p);
  p = copy(J_START_TIME, out, p);
  p = writeJsonTime(r.startTime, out, p);
  p = copy(J_DIRECTION, out, p);
  p = writeJsonString(r.direction, out, p);
  p = copy(J_STATE, out, p);
  p = writeJsonString(r.state, out, p);
  p = copy(J_SENT, out, p);
  p = writeJsonNumber(r.sentBytes, out, p);
  p = copy(J_RECEIVED, out, p);
  p = writeJsonNumber(r.receivedBytes, out, p);
  p = copy(J_LOSS, out, p);
  p = writeJsonNumber(r.packetLoss, out, p);
  p = copy(J_RETRANS, out, p);
  p = writeJsonNumber(r.retransmissions, out, p);
  p = copy(J_SRTT, out, p);
  p = writeJsonNumber(r.srttUs, out, p);
  p = copy(J_MIN_RTT, out, p);
  p = writeJsonNumber(r.minRttUs, out, p);
  p = copy(J_DURATION, out, p);
  if (r.durationMs === null || !Number.isFinite(r.durationMs)) p = copy(J_NULL, out, p);
  else p = writeDuration(r.durationMs, out, p);
  p = copy(J_ERROR, out, p);
  p = writeJsonName(r.error, out, p);
  return copy(J_END, out, p);
}

function maxJsonLineBytes(r: AccessRecord): number {
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
        lengthOf(r.error))
  );
}

/** One JSON object per line. */
export const JSON_LINES: LineFormat = { maxBytes: maxJsonLineBytes, write: writeJsonLine };

// ── The same as strings ──────────────────────────────────────────────────────

let scratch: Uint8Array = new Uint8Array(4096);

function asString(format: LineFormat, r: AccessRecord): string {
  const need = format.maxBytes(r);
  if (need > scratch.length) scratch = new Uint8Array(need);
  return fromUtf8.decode(scratch.subarray(0, format.write(r, scratch, 0)));
}

/** Kmesh's line of `r` as a string (the bytes KMESH_TEXT writes). */
export function formatKmeshLine(r: AccessRecord): string {
  return asString(KMESH_TEXT, r);
}

/** The JSON line of `r` as a string (the bytes JSON_LINES writes). */
export function formatJsonLine(r: AccessRecord): string {
  return asString(JSON_LINES, r);
}

/** Go's time.Time.String() of a UTC time (see writeGoTime). */
export function formatGoTime(t: WallTime): string {
  const bytes = new Uint8Array(MAX_TIME_BYTES);
  return fromUtf8.decode(bytes.subarray(0, writeGoTime(t, bytes, 0)));
}

// ── errno names ──────────────────────────────────────────────────────────────

const ERRNO_NAMES: ReadonlyMap<number, string> = new Map([
  [1, "EPERM"],
  [13, "EACCES"],
  [32, "EPIPE"],
  [101, "ENETUNREACH"],
  [103, "ECONNABORTED"],
  [104, "ECONNRESET"],
  [110, "ETIMEDOUT"],
  [111, "ECONNREFUSED"],
  [113, "EHOSTUNREACH"],
]);

/**
 * Name of the errno a failed connection attempt ended with (Linux numbers; a negative -errno is
 * read as errno). 0 means the application closed the socket before the connection was
 * established: ECONNABORTED. Others are `errno<N>`.
 */
export function errnoName(n: number): string {
  if (n === 0) return "ECONNABORTED";
  const errno = Math.abs(n);
  return ERRNO_NAMES.get(errno) ?? `errno${errno}`;
}
