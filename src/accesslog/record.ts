// ConnEvent (what the kernel measured) → AccessRecord (what a line says). Names are left null
// here: the pod index fills them in afterwards.
//
// The agent passes a RecordView (kernel/record.ts), which reads each field where the kernel wrote
// it: the AccessRecord is the only object made per record on the way to the line.

import { constants } from "node:os";
import { type Clock, nsBetween } from "../kernel/clock.ts";
import { type ConnEvent, RECORD_ESTABLISHED, tcpStateName } from "../kernel/record.ts";
import type { AccessRecord } from "./format.ts";

/** The fields of a record a line is made of: a ConnEvent, or a RecordView on the record itself. */
export type RecordFields = Readonly<Omit<ConnEvent, "sockId">>;

export function toAccessRecord(ev: RecordFields, clock: Clock): AccessRecord {
  const report = ev.report;
  const start = ev.start;
  return {
    reportTime: clock.toWall(report),
    startTime: start === null ? null : clock.toWall(start),
    srcAddr: ev.srcAddr,
    srcPort: ev.srcPort,
    srcWorkload: null,
    srcNamespace: null,
    dstAddr: ev.dstAddr,
    dstPort: ev.dstPort,
    dstService: null,
    dstWorkload: null,
    dstNamespace: null,
    direction: ev.direction,
    state: tcpStateName(ev.state),
    sentBytes: ev.sentBytes,
    receivedBytes: ev.receivedBytes,
    packetLoss: ev.packetsLost,
    retransmissions: ev.retransmissions,
    srttUs: ev.srttUs,
    minRttUs: ev.minRttUs,
    // The difference is an exact integer of ns, so the division by 1e6 prints as the shortest
    // decimal, like Go's %v: 50052734827 → 50052.734827.
    durationMs: start === null ? null : nsBetween(start, report) / 1e6,
    // A connection that never reached ESTABLISHED is a failed attempt: say how it failed.
    error: ev.flags & RECORD_ESTABLISHED ? null : errnoName(ev.error),
    family: ev.family,
    netns: ev.netns,
  };
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
