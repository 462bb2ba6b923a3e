// ConnEvent (what the kernel measured) → AccessRecord (what a line says). Names are left null
// here: the pod index fills them in afterwards.
//
// The agent passes a RecordView (kernel/record.ts), which reads each field where the kernel wrote
// it, and fills AccessRecords of a pool: no object is made per record on the way to the line.

import { constants } from "node:os";
import { type Clock, nsBetween, type WallTime } from "../kernel/clock.ts";
import { type ConnEvent, RECORD_ESTABLISHED, tcpStateName } from "../kernel/record.ts";
import type { AccessRecord } from "./format.ts";

/** The fields of a record a line is made of: a ConnEvent, or a RecordView on the record itself. */
export type RecordFields = Readonly<Omit<ConnEvent, "sockId">>;

export function toAccessRecord(ev: RecordFields, clock: Clock): AccessRecord {
  return fillAccessRecord(blankAccessRecord(), ev, clock, { sec: 0, nsec: 0 });
}

/** A record with every field (in the order fillAccessRecord writes them), to be filled. */
function blankAccessRecord(): AccessRecord {
  return {
    reportTime: { sec: 0, nsec: 0 },
    startTime: null,
    srcAddr: "",
    srcPort: 0,
    srcWorkload: null,
    srcNamespace: null,
    srcPod: undefined,
    dstAddr: "",
    dstPort: 0,
    dstService: null,
    dstWorkload: null,
    dstNamespace: null,
    dstPod: undefined,
    direction: "OUTBOUND",
    state: "",
    sentBytes: 0,
    receivedBytes: 0,
    packetLoss: 0,
    retransmissions: 0,
    srttUs: 0,
    minRttUs: 0,
    durationMs: null,
    error: null,
    family: 4,
    netns: 0,
    pid: null,
    command: null,
    containerId: null,
    containerName: null,
    connection: undefined,
  };
}

/**
 * Writes the line's view of `ev` into `r` (every field; names null) and returns it: no new object.
 * The start time, when known, is written into `startTime` and put in the record. Without
 * `processes` the process behind the socket is left unknown (null), unread.
 */
export function fillAccessRecord(r: AccessRecord, ev: RecordFields, clock: Clock, startTime: WallTime, processes = true): AccessRecord {
  const report = ev.report;
  const start = ev.start;
  clock.toWallInto(report, r.reportTime);
  r.startTime = start === null ? null : clock.toWallInto(start, startTime);
  r.srcAddr = ev.srcAddr;
  r.srcPort = ev.srcPort;
  r.srcWorkload = null;
  r.srcNamespace = null;
  r.srcPod = undefined;
  r.dstAddr = ev.dstAddr;
  r.dstPort = ev.dstPort;
  r.dstService = null;
  r.dstWorkload = null;
  r.dstNamespace = null;
  r.dstPod = undefined;
  r.direction = ev.direction;
  r.state = tcpStateName(ev.state);
  r.sentBytes = ev.sentBytes;
  r.receivedBytes = ev.receivedBytes;
  r.packetLoss = ev.packetsLost;
  r.retransmissions = ev.retransmissions;
  r.srttUs = ev.srttUs;
  r.minRttUs = ev.minRttUs;
  // The difference is an exact integer of ns, so the division by 1e6 prints as the shortest
  // decimal, like Go's %v: 50052734827 → 50052.734827.
  r.durationMs = start === null ? null : nsBetween(start, report) / 1e6;
  // A connection that never reached ESTABLISHED is a failed attempt: say how it failed.
  r.error = ev.flags & RECORD_ESTABLISHED ? null : errnoName(ev.error);
  r.family = ev.family;
  r.netns = ev.netns;
  const pid = processes ? ev.ownerPid : 0;
  r.pid = pid === 0 ? null : pid;
  r.command = pid === 0 ? null : ev.ownerCommand;
  // The container is the agent's to find (from the cgroup id: kernel/cgroups.ts), its name the pod list's.
  r.containerId = null;
  r.containerName = null;
  r.connection = undefined;
  return r;
}

/** A record of its own, for one that must outlive the pool slot it was filled in. */
export function copyAccessRecord(r: AccessRecord): AccessRecord {
  return { ...r, reportTime: { ...r.reportTime }, startTime: r.startTime === null ? null : { ...r.startTime } };
}

/**
 * Records named as one batch (enrich.ts) at most: the agent's pool holds this many. 256 rather
 * than 1,024: about 0.35 MB less with a periodic report of 40,000 records, at no cost shown per
 * line; 64 gave nothing more (README, "Footprint").
 */
export const BATCH_RECORDS = 256;

/**
 * AccessRecords filled again and again, so that the line path makes no object per record: the
 * records of one batch, each lent (to the sink, to the enricher) until reset(). Whoever keeps one
 * past that keeps a copy (copyAccessRecord). `processes`: whether the records name the process
 * behind the socket (only outputs that show it need it: fillAccessRecord).
 */
export class AccessRecordPool {
  readonly #records: AccessRecord[] = [];
  readonly #startTimes: WallTime[] = [];
  #used = 0;

  constructor(
    readonly capacity: number,
    readonly processes = true,
  ) {}

  /** Every record of the batch is out: reset() before the next fill(). */
  get full(): boolean {
    return this.#used >= this.capacity;
  }

  /** The batch's next record, filled from `ev`. */
  fill(ev: RecordFields, clock: Clock): AccessRecord {
    const i = this.#used++;
    if (i === this.#records.length) {
      this.#records.push(blankAccessRecord());
      this.#startTimes.push({ sec: 0, nsec: 0 });
    }
    return fillAccessRecord(this.#records[i]!, ev, clock, this.#startTimes[i]!, this.processes);
  }

  /** A new batch: every record may be filled again. */
  reset(): void {
    this.#used = 0;
  }
}

/** The errnos a failed connection attempt is named by in its line; any other is `errno<N>`. */
const ATTEMPT_ERRNOS = new Map(
  (["EPERM", "EACCES", "EPIPE", "ENETUNREACH", "ECONNABORTED", "ECONNRESET", "ETIMEDOUT", "ECONNREFUSED", "EHOSTUNREACH"] as const).map(
    (name) => [constants.errno[name], name],
  ),
);

/**
 * Name of the errno a failed connection attempt ended with (a negative -errno is read as errno).
 * 0 means the application closed the socket before the connection was established: ECONNABORTED.
 */
export function errnoName(n: number): string {
  if (n === 0) return "ECONNABORTED";
  const errno = Math.abs(n);
  return ATTEMPT_ERRNOS.get(errno) ?? `errno${errno}`;
}
