// Today's string formatter, kept verbatim (from commit 15c0d25, src/accesslog/format.ts) as the
// reference the byte formatter is checked against: format-bytes.test.ts compares the bytes of both
// on many random records. Not used by the agent. Since then one change: the text line's duration
// is Go's %v (goFloat below, written apart from src/accesslog/go-float.ts on purpose).
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import type { WallTime } from "../../../src/kernel/clock.ts";

const UNKNOWN = "-";

// "00".."99"
const PAD2: readonly string[] = Array.from({ length: 100 }, (_, i) => (i < 10 ? "0" : "") + i);

// Two cached "YYYY-MM-DD hh:mm:ss" texts, least recently used replaced first: a line formats its
// report time (the same second for a whole burst) and a start time (anything), so one slot stays
// on the report second while the other follows the start times.
let cacheSecA = NaN;
let cacheTextA = "";
let cacheSecB = NaN;
let cacheTextB = "";

function dateTimeText(sec: number): string {
  if (sec === cacheSecA) return cacheTextA;
  if (sec === cacheSecB) {
    // promote B to most recently used
    const text = cacheTextB;
    cacheSecB = cacheSecA;
    cacheTextB = cacheTextA;
    cacheSecA = sec;
    cacheTextA = text;
    return text;
  }
  const text = civilText(sec);
  cacheSecB = cacheSecA;
  cacheTextB = cacheTextA;
  cacheSecA = sec;
  cacheTextA = text;
  return text;
}

// UTC calendar text of Unix seconds, from days-since-epoch arithmetic (H. Hinnant's
// civil_from_days), without a Date object.
function civilText(sec: number): string {
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
  return (
    yearText + "-" + PAD2[month]! + "-" + PAD2[day]! + " " + PAD2[hour]! + ":" + PAD2[minute]! + ":" + PAD2[second]!
  );
}

/**
 * Go's time.Time.String() of a UTC time: `2006-01-02 15:04:05.999999999 +0000 UTC`, the fraction
 * without trailing zeros and without the dot when it is zero.
 */
function formatGoTime(t: WallTime): string {
  const head = dateTimeText(t.sec);
  let n = t.nsec;
  if (n === 0) return head + " +0000 UTC";
  let digits = 9;
  while (n % 10 === 0) {
    n /= 10;
    digits--;
  }
  let fraction = String(n);
  while (fraction.length < digits) fraction = "0" + fraction;
  return head + "." + fraction + " +0000 UTC";
}

/**
 * RFC 3339 in UTC with nine fraction digits (the JSON line's times since Go's layout gave way
 * there), from Date's own calendar: a second implementation, independent of civilText above.
 */
function formatRfc3339(t: WallTime): string {
  return `${new Date(t.sec * 1000).toISOString().slice(0, 19)}.${String(t.nsec).padStart(9, "0")}Z`;
}

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

const HEX = "0123456789ABCDEF";
const utf8 = new TextEncoder();

/** The value as it appears in a text line (see the escaping rules above). */
function escapeValue(value: string): string {
  let i = 0;
  while (i < value.length && isPlainCode(value.charCodeAt(i))) i++;
  if (i === value.length) return value === UNKNOWN ? "%2D" : value;

  let out = value.slice(0, i);
  for (const byte of utf8.encode(value.slice(i))) {
    out += isPlainCode(byte) ? String.fromCharCode(byte) : "%" + HEX[byte >> 4] + HEX[byte & 15];
  }
  return out;
}

function textValue(value: string | null): string {
  return value === null ? UNKNOWN : escapeValue(value);
}

function hostPort(addr: string, port: number, family: 4 | 6): string {
  return family === 6 ? "[" + addr + "]:" + port : addr + ":" + port;
}

/**
 * Go's %v of a float64 (strconv.FormatFloat(x, 'g', -1, 64)): the fewest digits that read back as
 * x (the nearest such, the even one on a tie), in the exponent form (`d.ddde±XX`, at least two
 * exponent digits) when the exponent of the first digit is below -4 or at least 6 (strconv/ftoa.go
 * decides with precision 6 for the shortest digits), else as a plain decimal.
 */
function goFloat(x: number): string {
  if (Number.isNaN(x)) return "NaN";
  if (!Number.isFinite(x)) return x > 0 ? "+Inf" : "-Inf";
  if (x === 0) return Object.is(x, -0) ? "-0" : "0";
  const sign = x < 0 ? "-" : "";
  const abs = Math.abs(x);
  let precision = 1;
  while (Number(abs.toExponential(precision - 1)) !== abs) precision++;
  // toExponential rounds a tie up; Go takes the nearest digits that read back, even on a tie.
  const [mantissa, power] = abs.toExponential(precision - 1).split("e") as [string, string];
  const k = Number(power) - (precision - 1); // the value is n * 10^k
  let n = BigInt(mantissa.replace(".", ""));
  const [m, q] = exactBinary(abs); // abs = m * 2^q
  const distance = (c: bigint) => {
    const left = c * 10n ** BigInt(Math.max(k, 0)) * 2n ** BigInt(Math.max(-q, 0));
    const right = m * 2n ** BigInt(Math.max(q, 0)) * 10n ** BigInt(Math.max(-k, 0));
    return left > right ? left - right : right - left;
  };
  for (const c of [n - 1n, n + 1n]) {
    if (Number(`${c}e${k}`) !== abs) continue;
    const [dc, dn] = [distance(c), distance(n)];
    if (dc < dn || (dc === dn && c % 2n === 0n)) n = c;
  }
  let digits = n.toString();
  const exponent = k + digits.length - 1;
  digits = digits.replace(/0+$/, "");
  if (exponent < -4 || exponent >= 6) {
    const e = Math.abs(exponent);
    return sign + digits[0] + (digits.length > 1 ? "." + digits.slice(1) : "") + "e" + (exponent < 0 ? "-" : "+") + (e < 10 ? "0" + e : String(e));
  }
  if (exponent < 0) return sign + "0." + "0".repeat(-exponent - 1) + digits;
  const whole = digits.slice(0, exponent + 1).padEnd(exponent + 1, "0");
  const fraction = digits.slice(exponent + 1);
  return sign + whole + (fraction === "" ? "" : "." + fraction);
}

/** A positive finite double as m * 2^q exactly (BigInt m). */
function exactBinary(x: number): [bigint, number] {
  const view = new DataView(new ArrayBuffer(8));
  view.setFloat64(0, x);
  const bits = view.getBigUint64(0);
  const biased = Number((bits >> 52n) & 0x7ffn);
  const fraction = bits & ((1n << 52n) - 1n);
  return biased === 0 ? [fraction, -1074] : [fraction | (1n << 52n), biased - 1075];
}

/**
 * The line Kmesh writes, without a trailing newline:
 * `accesslog: <report time> src.addr=<ip:port>, src.workload=<pod>, ..., duration=<ms>ms`,
 * followed by `, error=<errno name>` for a failed connection attempt. Unknown values are `-`;
 * with no service known, dst.service is the destination IP, as Kmesh does.
 */
function formatKmeshLine(r: AccessRecord): string {
  let line =
    "accesslog: " +
    formatGoTime(r.reportTime) +
    " src.addr=" +
    hostPort(r.srcAddr, r.srcPort, r.family) +
    ", src.workload=" +
    textValue(r.srcWorkload) +
    ", src.namespace=" +
    textValue(r.srcNamespace) +
    ", dst.addr=" +
    hostPort(r.dstAddr, r.dstPort, r.family) +
    ", dst.service=" +
    (r.dstService === null ? r.dstAddr : escapeValue(r.dstService)) +
    ", dst.workload=" +
    textValue(r.dstWorkload) +
    ", dst.namespace=" +
    textValue(r.dstNamespace) +
    ", start_time=" +
    (r.startTime === null ? UNKNOWN : formatGoTime(r.startTime)) +
    ", direction=" +
    r.direction +
    ", state=" +
    r.state +
    ", sent_bytes=" +
    r.sentBytes +
    ", received_bytes=" +
    r.receivedBytes +
    ", packet_loss=" +
    r.packetLoss +
    ", retransmissions=" +
    r.retransmissions +
    ", srtt=" +
    r.srttUs +
    "us, min_rtt=" +
    r.minRttUs +
    "us, duration=" +
    (r.durationMs === null ? UNKNOWN : `${goFloat(r.durationMs)}ms`);
  if (r.error !== null) line += ", error=" + escapeValue(r.error);
  return line;
}

/**
 * One JSON object per line, without a trailing newline. Keys, always present and in this order:
 *   time            string  report time, RFC 3339 in UTC with nine fraction digits
 *   src_addr        string  address without port (IPv6 without brackets)
 *   src_port        number
 *   src_workload    string | null
 *   src_namespace   string | null
 *   dst_addr        string
 *   dst_port        number
 *   dst_service     string | null  (null when unknown: no IP stand-in as in the text line)
 *   dst_workload    string | null
 *   dst_namespace   string | null
 *   start_time      string | null  RFC 3339, as time
 *   direction       "OUTBOUND" | "INBOUND"
 *   state           string  BPF_TCP_*
 *   sent_bytes, received_bytes, packet_loss, retransmissions, srtt_us, min_rtt_us   number
 *   duration_ms     number | null
 *   error           string | null  errno name of a failed attempt
 *   netns           number  inode number of the reporting socket's network namespace
 * Values are not percent-escaped here: JSON's own escaping keeps them on one line.
 */
function formatJsonLine(r: AccessRecord): string {
  return JSON.stringify({
    time: formatRfc3339(r.reportTime),
    src_addr: r.srcAddr,
    src_port: r.srcPort,
    src_workload: r.srcWorkload,
    src_namespace: r.srcNamespace,
    dst_addr: r.dstAddr,
    dst_port: r.dstPort,
    dst_service: r.dstService,
    dst_workload: r.dstWorkload,
    dst_namespace: r.dstNamespace,
    start_time: r.startTime === null ? null : formatRfc3339(r.startTime),
    direction: r.direction,
    state: r.state,
    sent_bytes: r.sentBytes,
    received_bytes: r.receivedBytes,
    packet_loss: r.packetLoss,
    retransmissions: r.retransmissions,
    srtt_us: r.srttUs,
    min_rtt_us: r.minRttUs,
    duration_ms: r.durationMs,
    error: r.error,
    netns: r.netns,
    process_pid: r.pid,
    process_command: r.command,
    container_id: r.containerId,
    container_name: r.containerName,
  });
}


export const reference = { formatKmeshLine, formatJsonLine, formatGoTime, formatRfc3339, escapeValue, goFloat };
