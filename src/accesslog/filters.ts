// Which named reports are written: the filters of the flags and of PUT /filters, one model
// (options.ts declares each filter once, as a flag; what each keeps: README, "Filters"). A dropped
// report is counted under the first filter, in FILTER_ORDER, that drops it.
//
// The kernel applies the first of them, those a connection's direction, ports and failure decide
// (KERNEL_FILTERS in src/kernel/probe.ts, the same order), itself when it may (kernelRules): a
// connection they drop is never a record.
import { inNetwork, type Network, parseNetwork } from "../address.ts";
import { DIRECTION_INBOUND, DIRECTION_OUTBOUND } from "../kernel/record.ts";
import type { KernelRules } from "../kernel/probe.ts";
import type { FilterName, Filters } from "../options.ts";
import type { AccessRecord } from "./format.ts";

/** The order the filters are tried in: the cheap ones, by the connection alone, first. */
export const FILTER_ORDER = [
  "direction",
  "failedOnly",
  "port",
  "excludePort",
  "cidr",
  "excludeCidr",
  "minDuration",
  "namespace",
  "excludeNamespace",
  "pod",
  "excludePod",
] as const satisfies readonly FilterName[];

/** The /metrics label of each filter: its flag's name in snake_case. */
export const filterLabel = (name: FilterName): string => name.replaceAll(/([A-Z])/g, "_$1").toLowerCase();

type Test = (r: AccessRecord) => boolean;

const either = <T>(set: ReadonlySet<T>, a: T | null, b: T | null) => (a !== null && set.has(a)) || (b !== null && set.has(b));
const inAny = (networks: readonly Network[], address: string) => networks.some((n) => inNetwork(n, address));

/** Whether `r` passes the filter `name` set to `value` (which is not empty). */
function testOf(name: FilterName, filters: Filters): Test | null {
  switch (name) {
    case "direction": {
      const direction = filters.direction;
      return direction === null ? null : (r) => r.direction === direction;
    }
    case "failedOnly":
      return filters.failedOnly ? (r) => r.error !== null : null;
    case "minDuration": {
      const min = filters.minDuration;
      // A connection open before the agent started has no known duration: never dropped for it.
      return min === null || min === 0 ? null : (r) => r.durationMs === null || r.durationMs >= min * 1000;
    }
    case "cidr":
    case "excludeCidr": {
      const networks = filters[name].map((text) => parseNetwork(text)!);
      if (networks.length === 0) return null;
      const hit = (r: AccessRecord) => inAny(networks, r.srcAddr) || inAny(networks, r.dstAddr);
      return name === "cidr" ? hit : (r) => !hit(r);
    }
    case "port":
    case "excludePort": {
      const ports = new Set(filters[name]);
      if (ports.size === 0) return null;
      return name === "port" ? (r) => either(ports, r.srcPort, r.dstPort) : (r) => !either(ports, r.srcPort, r.dstPort);
    }
    case "namespace":
    case "excludeNamespace": {
      const namespaces = new Set(filters[name]);
      if (namespaces.size === 0) return null;
      const hit = (r: AccessRecord) => either(namespaces, r.srcNamespace, r.dstNamespace);
      return name === "namespace" ? hit : (r) => !hit(r);
    }
    case "pod":
    case "excludePod": {
      const pods = new Set(filters[name]);
      if (pods.size === 0) return null;
      const hit = (r: AccessRecord) => either(pods, r.srcWorkload, r.dstWorkload);
      return name === "pod" ? hit : (r) => !hit(r);
    }
  }
}

export class ReportFilter {
  readonly filters: Filters;
  readonly #tests: { name: FilterName; test: Test }[];

  constructor(filters: Filters) {
    this.filters = filters;
    this.#tests = FILTER_ORDER.flatMap((name) => {
      const test = testOf(name, filters);
      return test === null ? [] : [{ name, test }];
    });
  }

  /** The first filter that drops `r`, or null when it is kept. */
  drops(r: AccessRecord): FilterName | null {
    for (const { name, test } of this.#tests) if (!test(r)) return name;
    return null;
  }
}

/** What decides whether the kernel may apply the filters (kernelRules). */
export interface KernelFilterSituation {
  /** Close records become lines (the switches): no lines, nothing is filtered, nothing counted. */
  closeLines: boolean;
  /** Every record feeds the TCP metrics, which count every connection whatever the filters say. */
  tcpMetrics: boolean;
  /** Periodic reports become lines: a connection dropped in the kernel must still be tracked, so that its periodic reports are made (and filtered, and counted) here. */
  periodicReports: boolean;
  /**
   * Services are known (--kube-api, the feed): an OUTBOUND line to a ClusterIP may take its
   * backend's port (from conntrack or from the connection's INBOUND pair, which must then be
   * read), so the socket's ports and direction no longer decide a line alone.
   */
  servicesKnown: boolean;
}

/**
 * The rules the kernel applies for `filters`, or null when it applies none (no filter it can
 * decide, or a situation where only this side decides). The kernel tries KERNEL_FILTERS in their
 * order and counts a drop under the first that fails: they come first in FILTER_ORDER, so that is
 * the filter this side would name, and every later filter stays this side's.
 */
export function kernelRules(filters: Filters, situation: KernelFilterSituation): KernelRules | null {
  if (!situation.closeLines || situation.tcpMetrics || situation.servicesKnown) return null;
  const rules: KernelRules = {
    direction: filters.direction === null ? 0 : filters.direction === "OUTBOUND" ? DIRECTION_OUTBOUND : DIRECTION_INBOUND,
    failedOnly: filters.failedOnly,
    keepPorts: filters.port,
    dropPorts: filters.excludePort,
    atStart: !situation.periodicReports,
  };
  const set = rules.direction !== 0 || rules.failedOnly || rules.keepPorts.length > 0 || rules.dropPorts.length > 0;
  return set ? rules : null;
}
