// The TypeScript mirror of `struct conn_record` in bpf/accesslog.h, and the one place that turns
// the kernel's raw ring-buffer bytes into a typed ConnEvent. The header is the source of truth;
// RECORD_FIELDS is checked against the object's BTF by a separate layout test.
//
// This runs once per event: RecordView reads straight from the DataView and allocates nothing
// (address texts are cached, src/address.ts; times are written into two objects of the view).

import { AddressTexts, isV4Mapped } from "../address.ts";
import { monotonicFromHalves, type Timespec } from "./clock.ts";
import { HOST_LE } from "./host.ts";

/** Size of `struct conn_record` in bytes. */
export const RECORD_SIZE = 144;

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
  owner: { offset: 112, size: 32 },
} as const satisfies Record<string, { offset: number; size: number }>;

/** Offset and size of every field of `struct conn_owner` (the record's `owner`), under its C name. */
export const OWNER_FIELDS = {
  cgroup_id: { offset: 0, size: 8 },
  pid: { offset: 8, size: 4 },
  comm: { offset: 12, size: 16 },
  reserved: { offset: 28, size: 4 },
} as const satisfies Record<string, { offset: number; size: number }>;
export const OWNER_SIZE = 32;

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

/** `BPF_TCP_STATE_NAMES[n]` is the name of state n (BPF_TCP lists them in order from 1); index 0 is not a state. */
export const BPF_TCP_STATE_NAMES: readonly string[] = ["", ...Object.keys(BPF_TCP).map((name) => `BPF_TCP_${name}`)];

/** The `BPF_TCP_*` name of a state; `BPF_TCP_<n>` for a number outside the enum. */
export function tcpStateName(state: number): string {
  return (state >= 1 && BPF_TCP_STATE_NAMES[state]) || `BPF_TCP_${state}`;
}

/** One decoded record. Counters are numbers: exact up to 2^53, far beyond any real connection. */
export interface ConnEvent {
  /** CLOCK_MONOTONIC time when the connection began; null when it predates the probe. */
  start: Timespec | null;
  /** CLOCK_MONOTONIC time of this report. */
  report: Timespec;
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
  /** The process that called connect() or accept() (or held the socket when the agent started): thread group id in the node's PID namespace; 0 = unknown. */
  ownerPid: number;
  /** Its command name (the kernel's comm, up to 15 bytes); "" = unknown. */
  ownerCommand: string;
  /** Its cgroup v2 id (the inode number of the cgroup's directory); 0 = unknown. */
  ownerCgroupId: number;
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

const TWO_32 = 4294967296;

// The CLOCK_MONOTONIC time in the u64 at `at`, exactly, written into `into`.
function monotonicAt(view: DataView, at: number, into: Timespec): Timespec {
  return monotonicFromHalves(view.getUint32(at + (HOST_LE ? 4 : 0), HOST_LE), view.getUint32(at + (HOST_LE ? 0 : 4), HOST_LE), into);
}

// A u64 counter as a number, without BigInt: hi * 2^32 + lo is a single correctly rounded
// addition, so the result equals Number(u64): exact below 2^53 (8 PiB for a byte count). Times
// are not read this way (monotonicAt).
function u64(view: DataView, at: number): number {
  const lo = view.getUint32(at + (HOST_LE ? 0 : 4), HOST_LE);
  const hi = view.getUint32(at + (HOST_LE ? 4 : 0), HOST_LE);
  return hi * TWO_32 + lo;
}

// Where each field lies, from RECORD_FIELDS (module constants: the JIT folds them in).
const START_NS = RECORD_FIELDS.start_ns.offset;
const REPORT_NS = RECORD_FIELDS.report_ns.offset;
const SENT_BYTES = RECORD_FIELDS.sent_bytes.offset;
const RECEIVED_BYTES = RECORD_FIELDS.received_bytes.offset;
const SOCK_ID = RECORD_FIELDS.sock_id.offset;
const SRC_ADDR = RECORD_FIELDS.src_addr.offset;
const DST_ADDR = RECORD_FIELDS.dst_addr.offset;
const SRC_PORT = RECORD_FIELDS.src_port.offset;
const DST_PORT = RECORD_FIELDS.dst_port.offset;
const FAMILY = RECORD_FIELDS.family.offset;
const DIRECTION = RECORD_FIELDS.direction.offset;
const STATE = RECORD_FIELDS.state.offset;
const PACKETS_LOST = RECORD_FIELDS.packets_lost.offset;
const RETRANSMISSIONS = RECORD_FIELDS.retransmissions.offset;
const SRTT_US = RECORD_FIELDS.srtt_us.offset;
const MIN_RTT_US = RECORD_FIELDS.min_rtt_us.offset;
const NETNS = RECORD_FIELDS.netns.offset;
const ERROR = RECORD_FIELDS.error.offset;
const FLAGS = RECORD_FIELDS.flags.offset;
const OWNER_PID = RECORD_FIELDS.owner.offset + OWNER_FIELDS.pid.offset;
const OWNER_COMM = RECORD_FIELDS.owner.offset + OWNER_FIELDS.comm.offset;
const OWNER_CGROUP_ID = RECORD_FIELDS.owner.offset + OWNER_FIELDS.cgroup_id.offset;
const COMM_BYTES = OWNER_FIELDS.comm.size;

const EMPTY_VIEW = new DataView(new ArrayBuffer(0));

/**
 * One record of a ring-buffer batch, read where it lies. The agent reads every record through
 * one RecordView, moved from record to record by select(), instead of decoding each into a new
 * ConnEvent: no object and no BigInt per record. select() checks the record and decodes what
 * every line needs (family, addresses, direction, state, flags); the getters read the other
 * fields when asked. The fields are ConnEvent's, with the same meaning; `start` and `report` are
 * two objects of the view, written again at each read (keep a copy, not them).
 */
export class RecordView implements ConnEvent {
  readonly #texts = new AddressTexts();
  readonly #commands = new CommandTexts();
  readonly #start: Timespec = { sec: 0, nsec: 0 };
  readonly #report: Timespec = { sec: 0, nsec: 0 };
  #view: DataView = EMPTY_VIEW;
  #at = 0;
  family: 4 | 6 = 4;
  srcAddr = "";
  dstAddr = "";
  /** The IPv4 addresses as numbers (ipv4Number): the pod index's look-up key; -1 for IPv6. */
  srcV4 = -1;
  dstV4 = -1;
  direction: "OUTBOUND" | "INBOUND" = "OUTBOUND";
  state = 0;
  flags = 0;

  /**
   * Moves to the record of `length` bytes at `offset` in `view`. Throws RecordError for a record
   * that is too short or carries an unknown family, direction or state (the view then points
   * nowhere useful). Bytes beyond RECORD_SIZE are ignored (a newer kernel side may append fields).
   */
  select(view: DataView, offset = 0, length: number = view.byteLength - offset): this {
    if (!(length >= RECORD_SIZE)) {
      throw new RecordError("short", `record too short: ${length} bytes, expected ${RECORD_SIZE}`);
    }
    if (!(offset >= 0) || offset + RECORD_SIZE > view.byteLength) {
      throw new RecordError("short", `record at offset ${offset} runs past the end of its ${view.byteLength}-byte buffer`);
    }
    const rawFamily = view.getUint16(offset + FAMILY, HOST_LE);
    const rawDirection = view.getUint8(offset + DIRECTION);
    const state = view.getUint8(offset + STATE);

    if (rawDirection === DIRECTION_OUTBOUND) this.direction = "OUTBOUND";
    else if (rawDirection === DIRECTION_INBOUND) this.direction = "INBOUND";
    else throw new RecordError("direction", `unknown direction ${rawDirection}`);

    if (state < BPF_TCP.ESTABLISHED || state > BPF_TCP.NEW_SYN_RECV) {
      throw new RecordError("state", `unknown TCP state ${state}`);
    }

    const src = offset + SRC_ADDR;
    const dst = offset + DST_ADDR;
    if (rawFamily === AF_INET) {
      this.#ipv4(view, src, dst);
    } else if (rawFamily === AF_INET6) {
      if (isMappedPair(view, src, dst)) {
        this.#ipv4(view, src + 12, dst + 12);
      } else {
        this.family = 6;
        this.srcAddr = this.#texts.ipv6(view, src);
        this.dstAddr = this.#texts.ipv6(view, dst);
        this.srcV4 = -1;
        this.dstV4 = -1;
      }
    } else {
      throw new RecordError("family", `unknown address family ${rawFamily}`);
    }
    this.state = state;
    this.flags = view.getUint32(offset + FLAGS, HOST_LE);
    this.#view = view;
    this.#at = offset;
    return this;
  }

  #ipv4(view: DataView, src: number, dst: number): void {
    this.family = 4;
    this.srcAddr = this.#texts.ipv4(view, src);
    this.dstAddr = this.#texts.ipv4(view, dst);
    this.srcV4 = view.getUint32(src, false);
    this.dstV4 = view.getUint32(dst, false);
  }

  get start(): Timespec | null {
    const at = this.#at + START_NS;
    const unknown = (this.#view.getUint32(at, HOST_LE) === 0 && this.#view.getUint32(at + 4, HOST_LE) === 0) || this.flags & RECORD_START_UNKNOWN;
    return unknown ? null : monotonicAt(this.#view, at, this.#start);
  }
  get report(): Timespec {
    return monotonicAt(this.#view, this.#at + REPORT_NS, this.#report);
  }
  /** The report time as one nanosecond number (rounded above 2^53 ns, as toNs): for ordering and timers. */
  get reportNs(): number {
    return u64(this.#view, this.#at + REPORT_NS);
  }
  get sentBytes(): number {
    return u64(this.#view, this.#at + SENT_BYTES);
  }
  get receivedBytes(): number {
    return u64(this.#view, this.#at + RECEIVED_BYTES);
  }
  get sockId(): bigint {
    return this.#view.getBigUint64(this.#at + SOCK_ID, HOST_LE);
  }
  get srcPort(): number {
    return this.#view.getUint16(this.#at + SRC_PORT, HOST_LE);
  }
  get dstPort(): number {
    return this.#view.getUint16(this.#at + DST_PORT, HOST_LE);
  }
  get packetsLost(): number {
    return this.#view.getUint32(this.#at + PACKETS_LOST, HOST_LE);
  }
  get retransmissions(): number {
    return this.#view.getUint32(this.#at + RETRANSMISSIONS, HOST_LE);
  }
  get srttUs(): number {
    return this.#view.getUint32(this.#at + SRTT_US, HOST_LE);
  }
  get minRttUs(): number {
    return this.#view.getUint32(this.#at + MIN_RTT_US, HOST_LE);
  }
  get netns(): number {
    return this.#view.getUint32(this.#at + NETNS, HOST_LE);
  }
  get error(): number {
    return this.#view.getInt32(this.#at + ERROR, HOST_LE);
  }
  get ownerPid(): number {
    return this.#view.getUint32(this.#at + OWNER_PID, HOST_LE);
  }
  get ownerCommand(): string {
    return this.#commands.text(this.#view, this.#at + OWNER_COMM);
  }
  get ownerCgroupId(): number {
    return u64(this.#view, this.#at + OWNER_CGROUP_ID);
  }
}

/**
 * Command names as text, cached by their bytes in a direct-mapped table (no object made on a hit):
 * a node runs some hundreds of distinct ones, and most records repeat one. The kernel's comm is
 * NUL-padded bytes that need not be UTF-8 (bad bytes become U+FFFD).
 */
class CommandTexts {
  readonly #words = new Uint32Array(COMMAND_SLOTS * 4);
  readonly #texts: string[] = new Array<string>(COMMAND_SLOTS).fill("");
  readonly #decoder = new TextDecoder();

  text(view: DataView, at: number): string {
    const a = view.getUint32(at, true);
    if (a === 0) return "";
    const b = view.getUint32(at + 4, true);
    const c = view.getUint32(at + 8, true);
    const d = view.getUint32(at + 12, true);
    const slot = (Math.imul(a ^ Math.imul(b, 31) ^ Math.imul(c, 17) ^ d, 0x9e3779b1) >>> 24) & (COMMAND_SLOTS - 1);
    const words = this.#words;
    const w = slot * 4;
    if (words[w] === a && words[w + 1] === b && words[w + 2] === c && words[w + 3] === d) return this.#texts[slot]!;
    const bytes = new Uint8Array(view.buffer, view.byteOffset + at, COMM_BYTES);
    const end = bytes.indexOf(0);
    const text = this.#decoder.decode(bytes.subarray(0, end < 0 ? COMM_BYTES : end));
    words[w] = a;
    words[w + 1] = b;
    words[w + 2] = c;
    words[w + 3] = d;
    this.#texts[slot] = text;
    return text;
  }
}

/** A power of two, at most 256 (the slot is the hash's top byte). */
const COMMAND_SLOTS = 256;

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
