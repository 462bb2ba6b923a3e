// The TypeScript mirrors must match what clang laid out in the committed
// object: field names, offsets and sizes, read from the object's BTF.
import { describe, expect } from "bun:test";
import { OWNER_FIELDS, OWNER_SIZE, RECORD_FIELDS, RECORD_SIZE } from "../../src/kernel/record.ts";
import {
  CONN_STATE_FIELDS,
  CONN_STATE_SIZE,
  FILTER_DROPS_SIZE,
  FILTER_RULES_FIELDS,
  FILTER_RULES_SIZE,
  FILTER_USE_FIELDS,
  FILTER_USE_SIZE,
  PROBE_COUNTERS_FIELDS,
  PROBE_COUNTERS_SIZE,
  PROBE_SWITCHES_FIELDS,
  PROBE_SWITCHES_SIZE,
  REPORT_BATCH,
} from "../../src/kernel/probe.ts";
import {
  NAT_BACKEND_FIELDS,
  NAT_BACKEND_SIZE,
  NAT_COUNTERS_FIELDS,
  NAT_COUNTERS_SIZE,
  NAT_KEY_FIELDS,
  NAT_KEY_SIZE,
} from "../../src/kernel/conntrack.ts";
import { PREEMPTION_SEEN_FIELDS, PREEMPTION_SEEN_SIZE } from "../../src/kernel/preemption.ts";
import { readBtf } from "../support/btf.ts";
import { hasCommand, testIf } from "../support/require.ts";

const OBJECT = new URL("../../bpf/accesslog.bpf.o", import.meta.url).pathname;
const CONNTRACK_OBJECT = new URL("../../bpf/conntrack.bpf.o", import.meta.url).pathname;
const PREEMPTION_OBJECT = new URL("../../bpf/preemption.bpf.o", import.meta.url).pathname;
const it = testIf(hasCommand("bpftool"), "bpftool is not installed (scripts/setup installs it)");

describe("record layout", () => {
  it("struct conn_record matches RECORD_FIELDS field by field", async () => {
    const btf = await readBtf(OBJECT);
    const record = btf.struct("conn_record");
    expect(record.size).toBe(RECORD_SIZE);
    expect(record.layout).toEqual(structuredClone(RECORD_FIELDS) as never);
  });

  it("struct conn_owner (the record's and the state's owner) matches OWNER_FIELDS", async () => {
    const btf = await readBtf(OBJECT);
    const owner = btf.struct("conn_owner");
    expect(owner.size).toBe(OWNER_SIZE);
    expect(owner.layout).toEqual(structuredClone(OWNER_FIELDS) as never);
  });

  it("struct report_batch holds REPORT_BATCH records, back to back", async () => {
    const btf = await readBtf(OBJECT);
    const batch = btf.struct("report_batch");
    expect(batch.size).toBe(REPORT_BATCH * RECORD_SIZE);
    expect(batch.layout).toEqual({ records: { offset: 0, size: REPORT_BATCH * RECORD_SIZE } } as never);
  });

  it("struct conn_state (the connections map's value) matches CONN_STATE_FIELDS", async () => {
    const btf = await readBtf(OBJECT);
    const state = btf.struct("conn_state");
    expect(state.size).toBe(CONN_STATE_SIZE);
    expect(state.layout).toEqual(structuredClone(CONN_STATE_FIELDS) as never);
  });

  it("struct filter_use, filter_rules and filter_drops (the kernel's filters) match their mirrors", async () => {
    const btf = await readBtf(OBJECT);
    const use = btf.struct("filter_use");
    const rules = btf.struct("filter_rules");
    const drops = btf.struct("filter_drops");
    expect({ use: use.size, rules: rules.size, drops: drops.size }).toEqual({ use: FILTER_USE_SIZE, rules: FILTER_RULES_SIZE, drops: FILTER_DROPS_SIZE });
    expect(use.layout).toEqual(structuredClone(FILTER_USE_FIELDS) as never);
    expect(rules.layout).toEqual(structuredClone(FILTER_RULES_FIELDS) as never);
    expect(drops.layout).toEqual({ by_filter: { offset: 0, size: FILTER_DROPS_SIZE } } as never);
  });

  it("the counters are the only .bss variable and match their mirror", async () => {
    const btf = await readBtf(OBJECT);
    expect(btf.section(".bss")).toEqual([{ name: "counters", offset: 0, size: PROBE_COUNTERS_SIZE, type: "probe_counters" }]);
    const counters = btf.struct("probe_counters");
    expect(counters.size).toBe(PROBE_COUNTERS_SIZE);
    expect(counters.layout).toEqual(structuredClone(PROBE_COUNTERS_FIELDS) as never);
  });

  it("the switches are the only .data variable and match their mirror", async () => {
    const btf = await readBtf(OBJECT);
    expect(btf.section(".data")).toEqual([{ name: "switches", offset: 0, size: PROBE_SWITCHES_SIZE, type: "probe_switches" }]);
    const switches = btf.struct("probe_switches");
    expect(switches.size).toBe(PROBE_SWITCHES_SIZE);
    expect(switches.layout).toEqual(structuredClone(PROBE_SWITCHES_FIELDS) as never);
  });
});

describe("conntrack layout", () => {
  it("struct nat_key and struct nat_backend (the translations map) match their mirrors", async () => {
    const btf = await readBtf(CONNTRACK_OBJECT);
    const key = btf.struct("nat_key");
    const backend = btf.struct("nat_backend");
    expect({ key: key.size, backend: backend.size }).toEqual({ key: NAT_KEY_SIZE, backend: NAT_BACKEND_SIZE });
    expect(key.layout).toEqual(structuredClone(NAT_KEY_FIELDS) as never);
    expect(backend.layout).toEqual(structuredClone(NAT_BACKEND_FIELDS) as never);
  });

  it("the counters are the only .bss variable and match their mirror", async () => {
    const btf = await readBtf(CONNTRACK_OBJECT);
    expect(btf.section(".bss")).toEqual([{ name: "nat_counters", offset: 0, size: NAT_COUNTERS_SIZE, type: "nat_counters" }]);
    const counters = btf.struct("nat_counters");
    expect(counters.size).toBe(NAT_COUNTERS_SIZE);
    expect(counters.layout).toEqual(structuredClone(NAT_COUNTERS_FIELDS) as never);
  });
});

describe("preemption probe layout", () => {
  it("what it saw is the only .bss variable and matches its mirror", async () => {
    const btf = await readBtf(PREEMPTION_OBJECT);
    expect(btf.section(".bss")).toEqual([{ name: "seen", offset: 0, size: PREEMPTION_SEEN_SIZE, type: "preemption_seen" }]);
    const seen = btf.struct("preemption_seen");
    expect(seen.size).toBe(PREEMPTION_SEEN_SIZE);
    expect(seen.layout).toEqual(structuredClone(PREEMPTION_SEEN_FIELDS) as never);
  });
});
