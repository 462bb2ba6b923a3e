// The TypeScript mirror of `struct conn_record` in bpf/accesslog.h, and the one place that turns
// the kernel's raw ring-buffer bytes into a typed ConnEvent. The header is the source of truth;
// RECORD_FIELDS is checked against the object's BTF by a separate layout test.
//
// This runs once per event, so it reads straight from the DataView and allocates nothing but the
// result object, the two address strings and the socket id.

/** Size of `struct conn_record` in bytes. */
export const RECORD_SIZE = 112;

/** Offset and size of every field of `struct conn_record`, under its C name. */
export const RECORD_FIELDS = {
  start_ns: { offset: 0, size: 8 },
  report_ns: { offset: 8, size: 8 },
  sent_bytes: { offset: 16, size: 8 },
  received_bytes: { offset: 24, size: 8 },
  sock_id: { offset: 32, size: 8 },
  src_addr: { offset: 40, size: 16 },
  dst_addr: { offset: 56, size: 16 },
  src_port: { offset: 72, size: 2 },
  dst_port: { offset: 74, size: 2 },
  family: { offset: 76, size: 2 },
  direction: { offset: 78, size: 1 },
  state: { offset: 79, size: 1 },
  packets_lost: { offset: 80, size: 4 },
  retransmissions: { offset: 84, size: 4 },
  srtt_us: { offset: 88, size: 4 },
  min_rtt_us: { offset: 92, size: 4 },
  netns: { offset: 96, size: 4 },
  error: { offset: 100, size: 4 },
  flags: { offset: 104, size: 4 },
  reserved: { offset: 108, size: 4 },
} as const satisfies Record<string, { offset: number; size: number }>;

export type RecordFieldName = keyof typeof RECORD_FIELDS;

export const DIRECTION_OUTBOUND = 1;
export const DIRECTION_INBOUND = 2;

export const RECORD_START_UNKNOWN = 0x1;
export const RECORD_ESTABLISHED = 0x2;

export const AF_INET = 2;
export const AF_INET6 = 10;

/** The kernel's `enum { BPF_TCP_ESTABLISHED = 1, ... }` (include/uapi/linux/bpf.h). */
export const BPF_TCP = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
  NEW_SYN_RECV: 12,
} as const;

/** `BPF_TCP_STATE_NAMES[n]` is the name of state n; index 0 is not a state. */
export const BPF_TCP_STATE_NAMES: readonly string[] = [
  "",
  "BPF_TCP_ESTABLISHED",
  "BPF_TCP_SYN_SENT",
  "BPF_TCP_SYN_RECV",
  "BPF_TCP_FIN_WAIT1",
  "BPF_TCP_FIN_WAIT2",
  "BPF_TCP_TIME_WAIT",
  "BPF_TCP_CLOSE",
  "BPF_TCP_CLOSE_WAIT",
  "BPF_TCP_LAST_ACK",
  "BPF_TCP_LISTEN",
  "BPF_TCP_CLOSING",
  "BPF_TCP_NEW_SYN_RECV",
];

/** The `BPF_TCP_*` name of a state; `BPF_TCP_<n>` for a number outside the enum. */
export function tcpStateName(state: number): string {
  return (state >= 1 && BPF_TCP_STATE_NAMES[state]) || `BPF_TCP_${state}`;
}

/** One decoded record. Counters are numbers: exact up to 2^53, far beyond any real connection. */
export interface ConnEvent {
  /** CLOCK_MONOTONIC ns when the connection began; null when it predates the probe. */
  startNs: number | null;
  /** CLOCK_MONOTONIC ns of this report. */
  reportNs: number;
  sentBytes: number;
  receivedBytes: number;
  /** Kernel address of the socket: ties the reports of one connection together. */
  sockId: bigint;
  /** 4 also for IPv4-mapped IPv6 addresses (a dual-stack socket talking IPv4). */
  family: 4 | 6;
  srcAddr: string;
  dstAddr: string;
  srcPort: number;
  dstPort: number;
  direction: "OUTBOUND" | "INBOUND";
  /** BPF_TCP_* state number (1..12). */
  state: number;
  packetsLost: number;
  retransmissions: number;
  srttUs: number;
  minRttUs: number;
  netns: number;
  /** errno of an attempt that never became established, else 0. */
  error: number;
  /** RECORD_* bits. */
  flags: number;
}

export type RecordErrorKind = "short" | "family" | "direction" | "state";

/** A record that cannot be decoded. The consumer counts it (by `kind`) and skips it. */
export class RecordError extends Error {
  override name = "RecordError";
  constructor(
    readonly kind: RecordErrorKind,
    message: string,
  ) {
    super(message);
  }
}

// The kernel writes the record in host byte order; the addresses are in network byte order.
const LE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;

const TWO_32 = 4294967296;

// Decimal text of 0..255, so that IPv4 text costs only the concatenation.
const DEC_BYTE: readonly string[] = Array.from({ length: 256 }, (_, i) => String(i));

// A u64 as a number, without BigInt: hi * 2^32 + lo is a single correctly rounded addition, so the
// result equals Number(u64). Exact below 2^53 (for CLOCK_MONOTONIC ns: 104 days of uptime); above,
// the rounding error is at most half a unit in the last place: 1 ns up to 2^54 ns (208 days),
// 128 ns up to 2^60 ns (36 years), far below the microsecond the log prints.
function u64(view: DataView, at: number): number {
  const lo = view.getUint32(at + (LE ? 0 : 4), LE);
  const hi = view.getUint32(at + (LE ? 4 : 0), LE);
  return hi * TWO_32 + lo;
}

/**
 * Decode the record of `length` bytes at `offset` in `view`. Throws RecordError for a record
 * that is too short or carries an unknown family, direction or state. Bytes beyond RECORD_SIZE
 * are ignored (a newer kernel side may append fields).
 */
export function decodeRecord(
  view: DataView,
  offset = 0,
  length: number = view.byteLength - offset,
): ConnEvent {
  if (!(length >= RECORD_SIZE)) {
    throw new RecordError("short", `record too short: ${length} bytes, expected ${RECORD_SIZE}`);
  }
  if (!(offset >= 0) || offset + RECORD_SIZE > view.byteLength) {
    throw new RecordError(
      "short",
      `record at offset ${offset} runs past the end of its ${view.byteLength}-byte buffer`,
    );
  }

  const rawFamily = view.getUint16(offset + 76, LE);
  const rawDirection = view.getUint8(offset + 78);
  const state = view.getUint8(offset + 79);

  let direction: "OUTBOUND" | "INBOUND";
  if (rawDirection === DIRECTION_OUTBOUND) direction = "OUTBOUND";
  else if (rawDirection === DIRECTION_INBOUND) direction = "INBOUND";
  else throw new RecordError("direction", `unknown direction ${rawDirection}`);

  if (state < BPF_TCP.ESTABLISHED || state > BPF_TCP.NEW_SYN_RECV) {
    throw new RecordError("state", `unknown TCP state ${state}`);
  }

  let family: 4 | 6;
  let srcAddr: string;
  let dstAddr: string;
  const src = offset + 40;
  const dst = offset + 56;
  if (rawFamily === AF_INET) {
    family = 4;
    srcAddr = ipv4Text(view, src);
    dstAddr = ipv4Text(view, dst);
  } else if (rawFamily === AF_INET6) {
    if (isMappedPair(view, src, dst)) {
      family = 4;
      srcAddr = ipv4Text(view, src + 12);
      dstAddr = ipv4Text(view, dst + 12);
    } else {
      family = 6;
      srcAddr = ipv6Text(view, src);
      dstAddr = ipv6Text(view, dst);
    }
  } else {
    throw new RecordError("family", `unknown address family ${rawFamily}`);
  }

  const flags = view.getUint32(offset + 104, LE);
  const startNs = u64(view, offset);

  return {
    startNs: startNs === 0 || flags & RECORD_START_UNKNOWN ? null : startNs,
    reportNs: u64(view, offset + 8),
    sentBytes: u64(view, offset + 16),
    receivedBytes: u64(view, offset + 24),
    sockId: view.getBigUint64(offset + 32, LE),
    family,
    srcAddr,
    dstAddr,
    srcPort: view.getUint16(offset + 72, LE),
    dstPort: view.getUint16(offset + 74, LE),
    direction,
    state,
    packetsLost: view.getUint32(offset + 80, LE),
    retransmissions: view.getUint32(offset + 84, LE),
    srttUs: view.getUint32(offset + 88, LE),
    minRttUs: view.getUint32(offset + 92, LE),
    netns: view.getUint32(offset + 96, LE),
    error: view.getInt32(offset + 100, LE),
    flags,
  };
}

/** Dotted-quad text of the 4 bytes at `at`. */
export function ipv4Text(view: DataView, at: number): string {
  return (
    DEC_BYTE[view.getUint8(at)]! +
    "." +
    DEC_BYTE[view.getUint8(at + 1)]! +
    "." +
    DEC_BYTE[view.getUint8(at + 2)]! +
    "." +
    DEC_BYTE[view.getUint8(at + 3)]!
  );
}

function isV4Mapped(view: DataView, at: number): boolean {
  return (
    view.getUint32(at, false) === 0 &&
    view.getUint32(at + 4, false) === 0 &&
    view.getUint32(at + 8, false) === 0xffff
  );
}

function isUnspecified(view: DataView, at: number): boolean {
  return (
    view.getUint32(at, false) === 0 &&
    view.getUint32(at + 4, false) === 0 &&
    view.getUint32(at + 8, false) === 0 &&
    view.getUint32(at + 12, false) === 0
  );
}

// A dual-stack socket talking IPv4 has both addresses IPv4-mapped, except that an attempt which
// failed before a source address was chosen leaves the source all zero (::, shown as 0.0.0.0).
function isMappedPair(view: DataView, src: number, dst: number): boolean {
  const srcMapped = isV4Mapped(view, src);
  const dstMapped = isV4Mapped(view, dst);
  return (
    (srcMapped && (dstMapped || isUnspecified(view, dst))) ||
    (dstMapped && isUnspecified(view, src))
  );
}

/**
 * RFC 5952 text of the 16 bytes at `at`: lowercase hex, no leading zeros, the longest run of two
 * or more zero groups (the first one on a tie) replaced by `::`. An IPv4-mapped address on its
 * own is written `::ffff:a.b.c.d` (RFC 5952 section 5); decodeRecord turns a mapped pair into
 * IPv4 before it gets here.
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
