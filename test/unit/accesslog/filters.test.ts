// Which reports the filters keep (src/accesslog/filters.ts): each kind on its own, either end,
// keep and drop, kinds combined with AND, and which filter a dropped report is counted under.
import { describe, expect, test } from "bun:test";
import { FILTER_ORDER, filterLabel, kernelRules, ReportFilter } from "../../../src/accesslog/filters.ts";
import { KERNEL_FILTERS } from "../../../src/kernel/probe.ts";
import type { AccessRecord } from "../../../src/accesslog/format.ts";
import { FILTER_NAMES, type Filters, filtersOf } from "../../../src/options.ts";
import { SEED_RECORD } from "../fixtures.ts";

/** A report from 10.244.1.2:41000 (pod a-0 of alpha) to 10.244.1.3:8080 (pod b-0 of beta), OUTBOUND, 12 ms. */
const base: AccessRecord = {
  ...SEED_RECORD,
  srcAddr: "10.244.1.2",
  srcPort: 41000,
  srcWorkload: "a-0",
  srcNamespace: "alpha",
  dstAddr: "10.244.1.3",
  dstPort: 8080,
  dstWorkload: "b-0",
  dstNamespace: "beta",
  direction: "OUTBOUND",
  durationMs: 12,
  error: null,
};
const at = (over: Partial<AccessRecord>): AccessRecord => ({ ...base, ...over });
const drops = (filters: Partial<Filters>, r: AccessRecord = base) => new ReportFilter(filtersOf(filters)).drops(r);

describe("each filter", () => {
  test("port: either end's port; excludePort: neither", () => {
    expect(drops({ port: [8080] })).toBeNull();
    expect(drops({ port: [41000] })).toBeNull();
    expect(drops({ port: [80, 443] })).toBe("port");
    expect(drops({ excludePort: [8080] })).toBe("excludePort");
    expect(drops({ excludePort: [41000] })).toBe("excludePort");
    expect(drops({ excludePort: [80] })).toBeNull();
  });
  test("cidr: either end's address in one of the networks; IPv4 networks never match IPv6 addresses", () => {
    expect(drops({ cidr: ["10.244.1.3/32"] })).toBeNull();
    expect(drops({ cidr: ["10.244.1.2"] })).toBeNull();
    expect(drops({ cidr: ["10.0.0.0/8"] })).toBeNull();
    expect(drops({ cidr: ["10.244.2.0/24", "192.168.0.0/16"] })).toBe("cidr");
    expect(drops({ cidr: ["10.244.1.0/30"] })).toBeNull(); // .0-.3 hold both ends
    expect(drops({ cidr: ["10.244.1.4/30"] })).toBe("cidr");
    expect(drops({ excludeCidr: ["10.244.1.3/32"] })).toBe("excludeCidr");
    expect(drops({ excludeCidr: ["0.0.0.0/0"] })).toBe("excludeCidr");
    const v6 = at({ srcAddr: "fd00:1::2", dstAddr: "fd00:1::3" });
    expect(drops({ cidr: ["0.0.0.0/0"] }, v6)).toBe("cidr");
    expect(drops({ cidr: ["fd00:1::/64"] }, v6)).toBeNull();
    expect(drops({ cidr: ["fd00:1::3/128"] }, v6)).toBeNull();
    expect(drops({ cidr: ["fd00:2::/64"] }, v6)).toBe("cidr");
    expect(drops({ excludeCidr: ["fd00::/8"] }, v6)).toBe("excludeCidr");
    expect(drops({ cidr: ["::/0"] })).toBe("cidr");
  });
  test("direction", () => {
    expect(drops({ direction: "OUTBOUND" })).toBeNull();
    expect(drops({ direction: "INBOUND" })).toBe("direction");
    expect(drops({ direction: "INBOUND" }, at({ direction: "INBOUND" }))).toBeNull();
  });
  test("failedOnly: only lines with an error", () => {
    expect(drops({ failedOnly: true })).toBe("failedOnly");
    expect(drops({ failedOnly: true }, at({ error: "ECONNREFUSED" }))).toBeNull();
    expect(drops({ failedOnly: false })).toBeNull();
  });
  test("minDuration, seconds: shorter connections dropped; the limit itself kept; an unknown duration kept", () => {
    expect(drops({ minDuration: 0.012 })).toBeNull();
    expect(drops({ minDuration: 0.0121 })).toBe("minDuration");
    expect(drops({ minDuration: 5 }, at({ durationMs: null }))).toBeNull();
    expect(drops({ minDuration: 0 })).toBeNull();
  });
  test("namespace, pod: either end; the exclude forms: neither; unnamed ends never match", () => {
    expect(drops({ namespace: ["beta"] })).toBeNull();
    expect(drops({ namespace: ["gamma"] })).toBe("namespace");
    expect(drops({ excludeNamespace: ["alpha"] })).toBe("excludeNamespace");
    expect(drops({ pod: ["a-0"] })).toBeNull();
    expect(drops({ pod: ["c-0"] })).toBe("pod");
    expect(drops({ excludePod: ["b-0"] })).toBe("excludePod");
    const unnamed = at({ srcWorkload: null, srcNamespace: null, dstWorkload: null, dstNamespace: null });
    expect(drops({ namespace: ["alpha"] }, unnamed)).toBe("namespace");
    expect(drops({ excludeNamespace: ["alpha"] }, unnamed)).toBeNull();
  });
});

describe("together", () => {
  test("every kind given must pass; the report is counted under the first that drops it, in FILTER_ORDER", () => {
    const all: Partial<Filters> = { port: [8080], cidr: ["10.244.0.0/16"], direction: "OUTBOUND", namespace: ["alpha"], minDuration: 0.001 };
    expect(drops(all)).toBeNull();
    expect(drops(all, at({ direction: "INBOUND", dstPort: 9 }))).toBe("direction");
    expect(drops(all, at({ dstPort: 9 }))).toBe("port");
    expect(drops(all, at({ srcNamespace: "x" }))).toBe("namespace");
    expect(drops({ ...all, excludePod: ["a-0"] })).toBe("excludePod");
  });
  test("no filter: keeps everything", () => {
    const none = new ReportFilter(filtersOf({}));
    expect(none.drops(base)).toBeNull();
  });
  test("FILTER_ORDER names every filter of the flag table once; labels are snake_case", () => {
    expect([...FILTER_ORDER].sort()).toEqual([...FILTER_NAMES].sort());
    expect(FILTER_ORDER.map(filterLabel)).toEqual([
      "direction",
      "failed_only",
      "port",
      "exclude_port",
      "cidr",
      "exclude_cidr",
      "min_duration",
      "namespace",
      "exclude_namespace",
      "pod",
      "exclude_pod",
    ]);
  });
});

describe("the filters the kernel decides (kernelRules)", () => {
  const lines = { closeLines: true, tcpMetrics: false, periodicReports: false, servicesKnown: false };

  test("KERNEL_FILTERS begin FILTER_ORDER, and accesslog.h numbers them in that order", async () => {
    expect(FILTER_ORDER.slice(0, KERNEL_FILTERS.length)).toEqual([...KERNEL_FILTERS]);
    const header = await Bun.file(new URL("../../../bpf/accesslog.h", import.meta.url)).text();
    const defined = [...header.matchAll(/^#define FILTER_([A-Z_]+) (\d+)$/gm)].flatMap(([, name, value]) => (name === "SLOTS" ? [] : [[name, Number(value)]]));
    expect(defined).toEqual([...KERNEL_FILTERS.map((name, i) => [filterLabel(name).toUpperCase(), i]), ["KINDS", KERNEL_FILTERS.length]]);
  });

  test("ports, direction and failed attempts go to the kernel; the rest stays here", () => {
    const filters = filtersOf({ port: [80, 443], excludePort: [22], direction: "INBOUND", failedOnly: true, cidr: ["10.0.0.0/8"], minDuration: 1 });
    expect(kernelRules(filters, lines)).toEqual({ direction: 2, failedOnly: true, keepPorts: [80, 443], dropPorts: [22], atStart: true });
    expect(kernelRules(filtersOf({ direction: "OUTBOUND" }), lines)?.direction).toBe(1);
  });

  test("none when no such filter is set, or when this side must see every record", () => {
    expect(kernelRules(filtersOf({ cidr: ["10.0.0.0/8"], minDuration: 1 }), lines)).toBeNull();
    const ports = filtersOf({ excludePort: [22] });
    expect(kernelRules(ports, { ...lines, closeLines: false })).toBeNull();
    expect(kernelRules(ports, { ...lines, tcpMetrics: true })).toBeNull();
    expect(kernelRules(ports, { ...lines, servicesKnown: true })).toBeNull();
    // Periodic reports on: decided at the close only, so that each connection is still tracked.
    expect(kernelRules(ports, { ...lines, periodicReports: true })?.atStart).toBe(false);
  });
});
