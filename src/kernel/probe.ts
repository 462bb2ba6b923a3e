// The kernel probe's life: open the embedded object from memory → size the
// maps → load → attach → drain the ring buffer → detach and free, in reverse
// order, from one close() that is safe to call at any point. Links are
// anonymous fds owned by this process, so even kill -9 detaches everything.
import { ptr, type Pointer, toArrayBuffer } from "bun:ffi";
import { existsSync, readFileSync } from "node:fs";
import { constants, release } from "node:os";
import objectPath from "../../bpf/accesslog.bpf.o" with { type: "file" };
import { ExitError } from "../errors.ts";
import {
  BPF_ITER_ATTACH_OPTS,
  BPF_MAP_BATCH_OPTS,
  BPF_PROG_INFO,
  BPF_TEST_RUN_OPTS,
  BpfObject,
  LibbpfError,
  type Libbpf,
  type LibbpfOrigin,
  openLibbpf,
  OptionStruct,
} from "./libbpf.ts";
import { atLeast, BTF_PATH, effectiveCapabilities, HOST_LE, mayLoadBpf, parseKernelRelease } from "./host.ts";
import { libc } from "./libc.ts";
import { type PreemptionProbed, tracepointPreemption } from "./preemption.ts";
import { RECORD_FIELDS, RECORD_SIZE } from "./record.ts";
import { mapRingBuffer, type MappedRingBuffer, type RecordHandler, RingBufferReader } from "./ring-buffer.ts";

export interface ProbeOptions {
  /** Ring buffer size in bytes: a power of two, at least one page. */
  ringBufferBytes: number;
  /** How many open connections the kernel can track at once. */
  maxConnections: number;
  libbpfPath?: string | undefined;
  /** Where to keep each connection's state, where the kernel allows it (default "socket-table"; see StateKeeping). */
  connectionState?: "socket-table" | "hash-map" | "socket-storage";
  /**
   * Name the process that accepted each connection: attach the programs at accept()'s exit. Only
   * JSON lines and OTLP show it, and while they are attached every system call on the node takes
   * the kernel's syscall-tracing path (README, "The kernel's cost per connection"); without them
   * they are not loaded. The connecting side is named either way.
   */
  nameAcceptCallers: boolean;
}

/** Runs of the probe's two programs (Probe.runsSkipped, runsStoodIn, runsNotMade), by program. */
export interface RunsSkipped {
  /** the tracepoint program on each state change (a skipped close is written at the socket's end) */
  stateChange: number;
  /** the program at each socket's end (a skipped close whose end is skipped too has no line) */
  socketEnd: number;
}

/** All the runs in `r`. */
export function totalSkipped(r: RunsSkipped): number {
  return r.stateChange + r.socketEnd;
}

export interface ProbeCounters {
  /** Records the kernel could not queue (ring buffer full). */
  recordsLost: number;
  /** Connections not tracked from their start (connections map full). */
  trackingFailed: number;
  /** Tracked connections whose close never reached the probe, found when their socket was reused or by a periodic report. */
  closesMissed: number;
  /** Closes the tracepoint program missed, recorded when their socket ended (handle_destroy). */
  closesAtDestroy: number;
}

export type { RecordHandler };

/**
 * Where the kernel keeps each connection's state (bpf/accesslog.bpf.c): in a table indexed by a
 * hash of the socket's address, then a hash map keyed by it (from Linux 5.12); in the hash map
 * alone; or beside the socket (socket-local storage, from Linux 5.11).
 */
export type StateKeeping = "socket table" | "hash map" | "socket storage";

/**
 * The kernel would not let the agent keep state the way asked (its verifier refused the programs
 * that use it, or it refused to walk socket storage): the hash map is used instead.
 */
class KeepingRefused extends Error {}

/** Why classic tracepoint programs (the accept() programs, the stand-ins) did not attach, and what would attach them. */
export interface TracepointsUnattached {
  reason: string;
  fix: string;
}

/**
 * Tests and benchmarks only: "always" attaches the stand-ins whatever the kernel
 * (test/e2e/skipped-close.test.ts), "never" leaves them out (what they cost: scripts/bench/syscalls.ts).
 */
export const STAND_INS_ENV = "KMESH_ACCESSLOG_STAND_INS";

/** Where libbpf reads a tracepoint's id: tracefs, or tracefs inside debugfs. */
const TRACEFS_EVENTS = ["/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"];

/** The probe could not be loaded or attached; the message is the diagnosis. */
export class ProbeLoadError extends ExitError {
  override name = "ProbeLoadError";
  override readonly context = "cannot start the kernel probe";
}

/** Mirrors of struct probe_counters (.bss) and struct probe_switches (.data) in bpf/accesslog.h. */
export const PROBE_COUNTERS_FIELDS = {
  records_lost: { offset: 0, size: 8 },
  tracking_failed: { offset: 8, size: 8 },
  closes_missed: { offset: 16, size: 8 },
  closes_at_destroy: { offset: 24, size: 8 },
  in_map: { offset: 32, size: 8 },
  changes_stood_in: { offset: 40, size: 8 },
  ends_stood_in: { offset: 48, size: 8 },
} as const;
export const PROBE_COUNTERS_SIZE = 56;
export const PROBE_SWITCHES_FIELDS = {
  emit_enabled: { offset: 0, size: 4 },
  ignore_close_port: { offset: 4, size: 2 },
  stand_ins: { offset: 6, size: 1 },
  reserved: { offset: 7, size: 1 },
} as const;
export const PROBE_SWITCHES_SIZE = 8;

/** Mirror of struct conn_state in bpf/accesslog.bpf.c: the connections map's value. */
export const CONN_STATE_FIELDS = {
  start_ns: { offset: 0, size: 8 },
  remote_addr: { offset: 8, size: 4 },
  remote_port: { offset: 12, size: 2 },
  local_port: { offset: 14, size: 2 },
  direction: { offset: 16, size: 1 },
  flags: { offset: 17, size: 1 },
  pad: { offset: 18, size: 6 },
  owner: { offset: 24, size: 32 },
} as const;
export const CONN_STATE_SIZE = 56;

/**
 * Mirrors of the kernel's run-time filters in bpf/accesslog.h: struct filter_use, struct
 * filter_rules (FILTER_SLOTS of them) and struct filter_drops, whose counters are indexed by
 * FILTER_* in KERNEL_FILTERS' order.
 */
export const FILTER_USE_FIELDS = {
  slot: { offset: 0, size: 4 },
  reserved: { offset: 4, size: 4 },
} as const;
export const FILTER_USE_SIZE = 8;
export const FILTER_RULES_FIELDS = {
  direction: { offset: 0, size: 1 },
  failed_only: { offset: 1, size: 1 },
  keep_ports_set: { offset: 2, size: 1 },
  at_start: { offset: 3, size: 1 },
  reserved: { offset: 4, size: 4 },
  keep_ports: { offset: 8, size: 8192 },
  drop_ports: { offset: 8200, size: 8192 },
} as const;
export const FILTER_RULES_SIZE = 16392;
export const FILTER_SLOTS = 2;
export const KERNEL_FILTERS = ["direction", "failedOnly", "port", "excludePort"] as const;
export type KernelFilterName = (typeof KERNEL_FILTERS)[number];
export const FILTER_DROPS_SIZE = KERNEL_FILTERS.length * 8;

/** What the kernel drops (struct filter_rules); src/accesslog/filters.ts decides what it may. */
export interface KernelRules {
  /** keep only this direction (DIRECTION_OUTBOUND or DIRECTION_INBOUND); 0: either */
  direction: number;
  failedOnly: boolean;
  /** keep only connections with either port here; empty: no such filter */
  keepPorts: readonly number[];
  /** drop connections with either port here */
  dropPorts: readonly number[];
  /** decide at a connection's start too, so that no state is kept for it */
  atStart: boolean;
}

/** Mirror of REPORT_BATCH in bpf/accesslog.h: records in one struct report_batch. */
export const REPORT_BATCH = 256;
const BPF_F_NO_PREALLOC = 1;
const BPF_F_MMAPABLE = 0x400;
const PROT_READ = 1;
const MAP_SHARED = 1;
const MAP_FAILED = -1n;
/**
 * Socket keys read from the connections map per system call. The lookup also copies each key's
 * value, which no report reads: 1,024 keep that buffer at 56 KiB (4,096: 0.4 MB more own memory
 * in the footprint benchmark, README).
 */
const KEYS_PER_LOOKUP = 1024;
const { EACCES, ENOENT, EPERM } = constants.errno;
const VERIFIER_LOG_BYTES = 1 << 20;
/** Records handed over per read of the ring buffer before the kernel is told their space is free. */
const RECORDS_PER_READ = 4096;
/** seed_open writes a byte per connection it adds; read this many at a time. */
const SEED_READ_BYTES = 64 << 10;
/** Periodic reports over socket storage: bytes read from the iterator at a time (its own buffer is 8 pages). */
const REPORT_READ_BYTES = 64 << 10;
/**
 * The programs of each way of keeping state; the others are not loaded. `end`: at each socket's
 * end. `standIns`: behind `track` and `end` where tracepoints are preemptible (bpf/accesslog.bpf.c):
 * a classic tracepoint program then two tp_btf ones for each, three tp_btf ones for socket storage
 * (which classic programs may not use). `report`: periodic
 * reports (with the socket table: its entries, then the hash map's keys).
 */
const PROGRAMS: Record<
  StateKeeping,
  { track: string; end: string; standIns: readonly string[]; seed: string; report: readonly string[]; accept: readonly string[] }
> = {
  "socket table": {
    track: "handle_set_state_table",
    end: "handle_destroy_table",
    standIns: [
      "classic_set_state_table",
      "classic_destroy_table",
      "stand_in2_set_state_table",
      "stand_in2_destroy_table",
      "stand_in3_set_state_table",
      "stand_in3_destroy_table",
    ],
    seed: "seed_open_table",
    report: ["report_table", "report_open"],
    accept: ["handle_accept4_table", "handle_accept_table"],
  },
  "hash map": {
    track: "handle_set_state",
    end: "handle_destroy",
    standIns: ["classic_set_state", "classic_destroy", "stand_in2_set_state", "stand_in2_destroy", "stand_in3_set_state", "stand_in3_destroy"],
    seed: "seed_open",
    report: ["report_open"],
    accept: ["handle_accept4", "handle_accept"],
  },
  "socket storage": {
    track: "handle_set_state_sk",
    end: "handle_destroy_sk",
    standIns: [
      "stand_in_set_state_sk",
      "stand_in_destroy_sk",
      "stand_in2_set_state_sk",
      "stand_in2_destroy_sk",
      "stand_in3_set_state_sk",
      "stand_in3_destroy_sk",
    ],
    seed: "seed_open_sk",
    report: ["report_sk"],
    accept: ["handle_accept4_sk", "handle_accept_sk"],
  },
};
/** report_open's second argument: where its keys' states are (KEEP_* in bpf/accesslog.bpf.c). */
const KEEP: Record<Exclude<StateKeeping, "socket storage">, bigint> = { "hash map": 0n, "socket table": 2n };
/** Owners of accepted connections waiting for their socket's state (socket storage only; bpf/accesslog.bpf.c). */
const ACCEPT_OWNERS_WITH_STORAGE = 16384;

export class Probe {
  #bpf: Libbpf;
  #object: BpfObject | null = null;
  #links: Pointer[] = [];
  #reportProgramFd = -1;
  /** With the socket table: report_table's fd. */
  #reportTableFd = -1;
  /** Periodic reports over socket storage: the iterator link of report_sk. */
  #reportLink: Pointer | null = null;
  #reportRead = new Uint8Array(REPORT_READ_BYTES);
  #reportReadView = new DataView(this.#reportRead.buffer);
  #connectionsFd = -1;
  #reportBatchFd = -1;
  #mappedRing: MappedRingBuffer | null = null;
  #ring: RingBufferReader | null = null;
  #countersFd = -1;
  #switchesFd = -1;
  #filterUseFd = -1;
  #filterRulesFd = -1;
  #filterDropsFd = -1;
  /** the slot of filter_rules in force (1 or 2), 0 for none */
  #filterSlot = 0;
  #filterUse = new Uint32Array(FILTER_USE_SIZE / 4);
  #filterRules = new Uint8Array(FILTER_RULES_SIZE);
  #filterKey = new Uint32Array(1);
  #filterDrops = new BigUint64Array(0);
  #zeroKey = new Uint32Array(1);
  #countersBytes = new Uint8Array(PROBE_COUNTERS_SIZE);
  /** The counters: the kernel's own memory when .bss could be mapped, else a copy read by a system call. */
  #countersValue = new DataView(this.#countersBytes.buffer);
  #countersMapping: { at: Pointer; bytes: number } | null = null;
  #switchesBytes = new Uint8Array(PROBE_SWITCHES_SIZE);
  #switchesValue = new DataView(this.#switchesBytes.buffer);
  // Periodic reports: keys read from the connections map, the batch report_open fills.
  #keys = new BigUint64Array(KEYS_PER_LOOKUP);
  #keyValues = new Uint8Array(KEYS_PER_LOOKUP * CONN_STATE_SIZE);
  #keyCount = new Uint32Array(1);
  #batchTokens = [new BigUint64Array(1), new BigUint64Array(1)] as const;
  #batchOpts = new OptionStruct(BPF_MAP_BATCH_OPTS).bytes;
  #reportBytes = new Uint8Array(RECORD_SIZE * REPORT_BATCH);
  #reportView = new DataView(this.#reportBytes.buffer);
  #reportArgs = new BigUint64Array(2);
  #testRunOpts = new OptionStruct(BPF_TEST_RUN_OPTS);
  /** The state-change and socket-end programs' fds, in that order, for their run counts (struct bpf_prog_info). */
  #attachedFds: number[] = [];
  #progInfo = new Uint8Array(BPF_PROG_INFO.size);
  #progInfoView = new DataView(this.#progInfo.buffer);
  #progInfoLength = new Uint32Array(1);

  /** Connections already open at start-up that were added to the kernel's tracking. */
  seededConnections = 0;

  /** Where the kernel keeps each connection's state. */
  stateKeeping: StateKeeping = "hash map";
  /** The socket table's entries; 0 without it. */
  tableEntries = 0;
  /** Why the way asked for is not used on a kernel that has it (the kernel refused its programs or iterator), or null. */
  keepingRefusal: string | null = null;

  /** Whether tracepoints run their programs preemptibly here ("yes": the stand-ins are attached), and why not known. */
  tracepointPreemption: PreemptionProbed = { answer: "unknown", why: "not probed yet" };
  /** Whether the stand-ins are attached (bpf/accesslog.bpf.c): where tracepoints are preemptible. */
  standIns = false;
  /** Why the stand-ins are not attached where tracepoints are preemptible (they could not attach), or null. */
  standInsUnattached: TracepointsUnattached | null = null;

  /**
   * Why the process that accepted a connection is not known though ProbeOptions.nameAcceptCallers
   * asked for it (its accept() tracepoints could not be attached: only the connecting side names
   * its process), or null: attached, or not asked for.
   */
  acceptCallersUnknown: TracepointsUnattached | null = null;

  /** Where the libbpf in use came from (system, bundled, --libbpf). */
  readonly libbpfOrigin: LibbpfOrigin;

  private constructor(bpf: Libbpf, origin: LibbpfOrigin) {
    this.#bpf = bpf;
    this.libbpfOrigin = origin;
  }

  /** Opens, loads and attaches the probe; throws ProbeLoadError with a diagnosis. */
  static async open(options: ProbeOptions): Promise<Probe> {
    if (!existsSync(BTF_PATH)) {
      throw new ProbeLoadError(
        `no kernel BTF at ${BTF_PATH}: the probe needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.10 or newer)`,
      );
    }
    let opened: Awaited<ReturnType<typeof openLibbpf>>;
    try {
      opened = await openLibbpf(options.libbpfPath);
    } catch (error) {
      throw new ProbeLoadError(error instanceof Error ? error.message : String(error));
    }
    const probe = new Probe(opened.bpf, opened.origin);
    try {
      await probe.#load(options);
      return probe;
    } catch (error) {
      const verifierLog = probe.#object?.verifierLog() ?? "";
      probe.close();
      throw new ProbeLoadError(diagnose(error, verifierLog));
    }
  }

  async #load(options: ProbeOptions): Promise<void> {
    // libbpf's printer is a varargs callback bun:ffi cannot implement; silence
    // it and report failures ourselves (errno text and the verifier log).
    this.#bpf.lib.libbpf_set_print(null);
    const objectBytes = await Bun.file(objectPath).bytes();
    this.tracepointPreemption = await tracepointPreemption(this.#bpf);
    const forced = process.env[STAND_INS_ENV];
    this.standIns = forced === "always" || (forced !== "never" && this.tracepointPreemption.answer === "yes");
    const asked = options.connectionState ?? "socket-table";
    const preferred: StateKeeping | null =
      asked === "socket-storage" && socketStorageFromTracing(release())
        ? "socket storage"
        : asked === "socket-table" && socketTableFromTracing(release())
          ? "socket table"
          : null;
    if (preferred !== null) {
      try {
        this.#loadAs(preferred, objectBytes, options);
        return;
      } catch (error) {
        if (!(error instanceof KeepingRefused)) throw error;
        this.keepingRefusal = error.message;
        this.close();
      }
    }
    this.#loadAs("hash map", objectBytes, options);
  }

  #loadAs(keeping: StateKeeping, objectBytes: Uint8Array, options: ProbeOptions): void {
    const { lib, pointer, status } = this.#bpf;
    this.#object = new BpfObject(this.#bpf, objectBytes, "kmesh_accesslog", VERIFIER_LOG_BYTES, "open the BPF object");
    this.stateKeeping = keeping;
    // Ways share programs: each is loaded when the way in use has it.
    const wanted = new Set<string>();
    for (const [role, names] of Object.entries(PROGRAMS[keeping])) {
      const used = role === "accept" ? options.nameAcceptCallers : role === "standIns" ? this.standIns : true;
      if (used) for (const program of [names].flat()) wanted.add(program);
    }
    for (const programs of Object.values(PROGRAMS)) {
      for (const program of Object.values(programs).flat()) {
        status(`choose program ${program}`, lib.bpf_program__set_autoload(this.#program(program), wanted.has(program)));
      }
    }
    status(
      "size the ring buffer",
      lib.bpf_map__set_max_entries(this.#map("events"), options.ringBufferBytes),
    );
    // With socket storage the hash map is not used, and the table only with the table: one entry.
    const connections = this.#map("connections");
    const entries = keeping === "socket storage" ? 1 : options.maxConnections;
    status("size the connections map", lib.bpf_map__set_max_entries(connections, entries));
    const table = this.#map("conn_table");
    if (keeping !== "socket table") status("size the socket table", lib.bpf_map__set_max_entries(table, 1));
    this.tableEntries = keeping === "socket table" ? lib.bpf_map__max_entries(table) : 0;
    if (!runTimeAllocationAllowed(release())) {
      const flags = lib.bpf_map__map_flags(connections) & ~BPF_F_NO_PREALLOC;
      status("preallocate the connections map", lib.bpf_map__set_map_flags(connections, flags));
    }
    // With the hash map the accept programs write the connection's entry itself, and without them
    // nothing writes it: one entry.
    const acceptOwners = keeping === "socket storage" && options.nameAcceptCallers ? ACCEPT_OWNERS_WITH_STORAGE : 1;
    status("size the accept owners map", lib.bpf_map__set_max_entries(this.#map("accept_owners"), acceptOwners));
    try {
      status("load the BPF object", lib.bpf_object__load(this.#object.pointer));
    } catch (error) {
      // Some kernels' verifiers refuse the socket behind an open file as socket storage's key;
      // a kernel's may lack what the socket table needs.
      const reason = verifierReason(this.#object.verifierLog());
      if (keeping === "hash map" || reason === null) throw error;
      throw new KeepingRefused(`its verifier refused the programs that use it: ${reason}`);
    }
    const programs = PROGRAMS[keeping];
    // Before anything is attached: a kernel that refuses the iterator gets the hash map instead.
    if (keeping === "socket storage") this.#reportLink = this.#attachReportIterator(programs.report[0]!);

    this.#switchesFd = status("find the switches", lib.bpf_map__fd(this.#map(".data")));
    status("read the switches", lib.bpf_map_lookup_elem(this.#switchesFd, this.#zeroKey, this.#switchesBytes));
    const bss = this.#map(".bss");
    this.#countersFd = status("find the counters", lib.bpf_map__fd(bss));
    // Before the programs that claim their runs attach (bpf/accesslog.bpf.c).
    if (this.standIns) this.#setStandIns(true);

    // Before the state changes: an accept() that returns a connection tracked from its start names its caller.
    if (options.nameAcceptCallers) {
      this.acceptCallersUnknown = this.#attachTracepoints(
        programs.accept,
        "the syscalls:sys_exit_accept4 and sys_exit_accept tracepoints",
        "a kernel built with CONFIG_FTRACE_SYSCALLS=y (as distributions build theirs) names both",
      );
    }
    for (const name of [programs.track, programs.end]) {
      this.#links.push(pointer(`attach ${name}`, lib.bpf_program__attach(this.#program(name))));
      this.#attachedFds.push(status(`find program ${name}`, lib.bpf_program__fd(this.#program(name))));
    }
    // Behind the programs they stand in for: a tracepoint runs its programs in the order they attached.
    if (this.standIns) {
      this.standInsUnattached = this.#attachTracepoints(
        programs.standIns,
        "the sock:inet_sock_set_state and tcp:tcp_destroy_sock tracepoints",
        // tracefs is there and the first programs attached to both: nothing to set, so say so
        "none known: the state-change and socket-end programs attached there, so report this line to the project",
      );
      if (this.standInsUnattached !== null) this.#setStandIns(false);
    }
    if (keeping !== "socket storage") {
      // report_open and report_table are never attached: reportOpenConnections() runs them.
      this.#reportProgramFd = status("find program report_open", lib.bpf_program__fd(this.#program("report_open")));
      if (keeping === "socket table") this.#reportTableFd = status("find program report_table", lib.bpf_program__fd(this.#program("report_table")));
      this.#reportArgs[1] = KEEP[keeping];
      this.#connectionsFd = status("find the connections map", lib.bpf_map__fd(connections));
      this.#reportBatchFd = status("find the report batch", lib.bpf_map__fd(this.#map("report_batch")));
      // report_open's and report_table's arguments
      this.#testRunOpts.set("ctx_in", ptr(this.#reportArgs)).set("ctx_size_in", this.#reportArgs.byteLength);
    }
    this.seededConnections = this.#seedOpenConnections(programs.seed);

    this.#filterUseFd = status("find the filter in use", lib.bpf_map__fd(this.#map("filter_use")));
    this.#filterRulesFd = status("find the filter rules", lib.bpf_map__fd(this.#map("filter_rules")));
    this.#filterDropsFd = status("find the filter counters", lib.bpf_map__fd(this.#map("filter_drops")));
    this.#filterDrops = new BigUint64Array(KERNEL_FILTERS.length * status("count the CPUs", lib.libbpf_num_possible_cpus()));
    // The counters are read at every drain: where the kernel allows, straight from its memory.
    if (lib.bpf_map__map_flags(bss) & BPF_F_MMAPABLE) this.#mapCounters();

    const eventsFd = status("find the ring buffer", lib.bpf_map__fd(this.#map("events")));
    this.#mappedRing = mapRingBuffer(eventsFd, options.ringBufferBytes);
    if (this.#mappedRing === null) this.#bpf.libcStatus("map the ring buffer", -1);
    this.#ring = new RingBufferReader(this.#mappedRing!.area);
  }

  /**
   * The iterator that walks the socket storage for periodic reports, tried once (an empty walk):
   * never assumed, since some kernels refuse map-element iterators even to root. A refusal is a
   * KeepingRefused, and the hash map is used instead.
   */
  #attachReportIterator(program: string): Pointer {
    const { lib, status, libcStatus, pointer } = this.#bpf;
    const mapFd = status("find the connection storage", lib.bpf_map__fd(this.#map("conn_storage")));
    // union bpf_iter_link_info { struct { __u32 map_fd; } map; ... }
    const linkInfo = Uint32Array.of(mapFd);
    const opts = new OptionStruct(BPF_ITER_ATTACH_OPTS).set("link_info", ptr(linkInfo)).set("link_info_len", linkInfo.byteLength);
    let link: Pointer;
    let fd = -1;
    try {
      link = pointer(`attach ${program} to the connection storage`, lib.bpf_program__attach_iter(this.#program(program), opts.bytes));
    } catch (error) {
      throw new KeepingRefused(`it refused to walk it: ${error instanceof Error ? error.message : String(error)}`);
    }
    try {
      fd = status("walk the connection storage", lib.bpf_iter_create(lib.bpf_link__fd(link)));
      libcStatus("read the walk of the connection storage", Number(libc.read(fd, this.#reportRead, this.#reportRead.byteLength)));
      return link;
    } catch (error) {
      lib.bpf_link__destroy(link);
      throw new KeepingRefused(`it refused to walk it: ${error instanceof Error ? error.message : String(error)}`);
    } finally {
      if (fd >= 0) libc.close(fd);
    }
  }

  /**
   * Attaches programs all or none, some of them classic tracepoint programs (libbpf finds those
   * tracepoints in tracefs); when they cannot attach, says why (null: attached). `tracepoints`
   * names the tracepoints; `fix`: what makes a kernel have them, where tracefs is there.
   */
  #attachTracepoints(names: readonly string[], tracepoints: string, fix: string): TracepointsUnattached | null {
    const { lib, pointer } = this.#bpf;
    const attached: Pointer[] = [];
    try {
      for (const name of names) attached.push(pointer(`attach ${name}`, lib.bpf_program__attach(this.#program(name))));
    } catch (error) {
      for (const link of attached) lib.bpf_link__destroy(link);
      const why = error instanceof Error ? error.message : String(error);
      if (!TRACEFS_EVENTS.some((dir) => existsSync(dir))) {
        return {
          reason: `cannot attach to ${tracepoints}: tracefs is not mounted, and libbpf finds tracepoints there (${why})`,
          fix: "mount -t tracefs nodev /sys/kernel/tracing (in a pod: the node's /sys/kernel/tracing, as scripts/deploy/20-daemonset.yaml mounts it)",
        };
      }
      return { reason: `cannot attach to ${tracepoints} (${why})`, fix };
    }
    this.#links.push(...attached);
    return null;
  }

  #mapCounters(): void {
    const bytes = libc.getpagesize();
    const at = libc.mmap(null, bytes, PROT_READ, MAP_SHARED, this.#countersFd, 0n);
    if (at === MAP_FAILED) return; // read by a system call instead
    const pointer = Number(at) as Pointer;
    this.#countersMapping = { at: pointer, bytes };
    this.#countersValue = new DataView(toArrayBuffer(pointer, 0, PROBE_COUNTERS_SIZE));
  }

  // Runs seed_open over every process's open files once: the connections open
  // before the probe was attached become tracked (and periodically reported).
  // It writes one byte per connection added.
  #seedOpenConnections(program: string): number {
    const { lib, pointer, status, libcStatus } = this.#bpf;
    const link = pointer(`attach ${program}`, lib.bpf_program__attach_iter(this.#program(program), null));
    try {
      const fd = status("start seeding open connections", lib.bpf_iter_create(lib.bpf_link__fd(link)));
      try {
        let added = 0;
        const buffer = new Uint8Array(SEED_READ_BYTES);
        for (;;) {
          const got = libcStatus("read the seeding of open connections", Number(libc.read(fd, buffer, buffer.byteLength)));
          if (got === 0) return added;
          added += got;
        }
      } finally {
        libc.close(fd);
      }
    } finally {
      lib.bpf_link__destroy(link);
    }
  }

  #program(name: string): Pointer {
    return this.#object!.program(name);
  }

  #map(name: string): Pointer {
    return this.#object!.map(name);
  }

  /**
   * Hands every record queued now to `onRecord`, where it lies in the ring buffer, and returns how
   * many. Never blocks: it is called from the event loop's timer. Space is given back to the kernel
   * every RECORDS_PER_READ records.
   */
  drain(onRecord: RecordHandler): number {
    const ring = this.#ring;
    if (ring === null) return 0;
    let total = 0;
    for (;;) {
      const read = ring.read(onRecord, RECORDS_PER_READ);
      total += read;
      if (read < RECORDS_PER_READ) return total;
    }
  }

  /** Bytes queued in the ring buffer and not read yet. */
  pendingBytes(): number {
    return this.#ring?.pending() ?? 0;
  }

  /**
   * Has the kernel report every open, established connection now (state and
   * cumulative counters as they are), through the same handler as the ring
   * buffer. Returns how many were reported. Over socket storage the kernel
   * walks every socket holding a state (report_sk) and the records are read
   * from the iterator, 64 KiB at a time. With the socket table, report_table
   * fills the records of REPORT_BATCH of its entries per run (64 runs of two
   * system calls each for its 16,384 entries). Then the hash map's keys are
   * read KEYS_PER_LOOKUP at a time, and report_open fills the records of
   * REPORT_BATCH of them per run: for 20,000 sockets in the map alone, 20
   * lookups and 79 runs of three system calls each. On the calling thread.
   */
  reportOpenConnections(onRecord: RecordHandler): number {
    if (this.#reportLink !== null) return this.#reportFromStorage(this.#reportLink, onRecord);
    if (this.#reportProgramFd < 0) return 0;
    let total = 0;
    for (let first = 0; first < this.tableEntries; first += REPORT_BATCH) total += this.#reportTable(first, onRecord);
    let [token, nextToken] = this.#batchTokens;
    for (let first = true; ; first = false) {
      this.#keyCount[0] = KEYS_PER_LOOKUP;
      const result = this.#bpf.lib.bpf_map_lookup_batch(
        this.#connectionsFd,
        first ? null : token,
        nextToken,
        this.#keys,
        this.#keyValues,
        this.#keyCount,
        this.#batchOpts,
      );
      // -ENOENT: the last keys (if any) are in; any other failure is one.
      if (result < 0 && result !== -ENOENT) this.#bpf.status("read the open connections", result);
      const got = this.#keyCount[0]!;
      for (let start = 0; start < got; start += REPORT_BATCH) {
        total += this.#reportKeys(start, Math.min(REPORT_BATCH, got - start), onRecord);
      }
      if (result === -ENOENT) return total;
      [token, nextToken] = [nextToken, token];
    }
  }

  #reportFromStorage(link: Pointer, onRecord: RecordHandler): number {
    const { lib, status, libcStatus } = this.#bpf;
    const buffer = this.#reportRead;
    const view = this.#reportReadView;
    const at = ptr(buffer);
    const fd = status("walk the open connections", lib.bpf_iter_create(lib.bpf_link__fd(link)));
    try {
      let total = 0;
      let have = 0; // bytes in the buffer; a record cut by a read is completed by the next
      for (;;) {
        const got = libcStatus("read the open connections", Number(libc.read(fd, at + have, buffer.byteLength - have)));
        if (got === 0) return total;
        have += got;
        let next = 0;
        for (; next + RECORD_SIZE <= have; next += RECORD_SIZE) {
          total++;
          onRecord(view, next, RECORD_SIZE);
        }
        buffer.copyWithin(0, next, have);
        have -= next;
      }
    } finally {
      libc.close(fd);
    }
  }

  // Runs report_open on keys[start, start + count) and hands over the
  // records it filled (a slot left with state 0 had no connection to report).
  #reportKeys(start: number, count: number, onRecord: RecordHandler): number {
    const { lib, status } = this.#bpf;
    const view = this.#reportView;
    const keys = this.#keys;
    for (let i = 0; i < count; i++) view.setBigUint64(i * RECORD_SIZE + RECORD_FIELDS.sock_id.offset, keys[start + i]!, true);
    status("hand the open connections to the kernel", lib.bpf_map_update_elem(this.#reportBatchFd, this.#zeroKey, this.#reportBytes, 0));
    this.#reportArgs[0] = BigInt(count);
    status("run report_open", lib.bpf_prog_test_run_opts(this.#reportProgramFd, this.#testRunOpts.bytes));
    return this.#handReport(count, onRecord);
  }

  // Runs report_table on the socket table's entries [first, first + REPORT_BATCH).
  #reportTable(first: number, onRecord: RecordHandler): number {
    const { lib, status } = this.#bpf;
    this.#reportArgs[0] = BigInt(first);
    status("run report_table", lib.bpf_prog_test_run_opts(this.#reportTableFd, this.#testRunOpts.bytes));
    return this.#handReport(REPORT_BATCH, onRecord);
  }

  // Reads the batch the last run filled and hands over its first `count` records but those left
  // with state 0 (no connection to report).
  #handReport(count: number, onRecord: RecordHandler): number {
    const { lib, status } = this.#bpf;
    const bytes = this.#reportBytes;
    const view = this.#reportView;
    status("read the report of open connections", lib.bpf_map_lookup_elem(this.#reportBatchFd, this.#zeroKey, bytes));
    let reported = 0;
    for (let i = 0; i < count; i++) {
      if (bytes[i * RECORD_SIZE + RECORD_FIELDS.state.offset] === 0) continue;
      reported++;
      onRecord(view, i * RECORD_SIZE, RECORD_SIZE);
    }
    return reported;
  }

  counters(): ProbeCounters {
    const value = this.#readCounters();
    return {
      recordsLost: u64(value, PROBE_COUNTERS_FIELDS.records_lost.offset),
      trackingFailed: u64(value, PROBE_COUNTERS_FIELDS.tracking_failed.offset),
      closesMissed: u64(value, PROBE_COUNTERS_FIELDS.closes_missed.offset),
      closesAtDestroy: u64(value, PROBE_COUNTERS_FIELDS.closes_at_destroy.offset),
    };
  }

  /**
   * Runs of the state-change and socket-end programs the kernel skipped because the same program
   * was already running on that CPU (its recursion guard: a softirq interrupted it, or, where
   * tracepoints run their programs preemptibly, as on Linux 7, its task was preempted in it); null
   * where the kernel does not count them (before Linux 5.12). Two system calls.
   */
  runsSkipped(): RunsSkipped | null {
    const { lib, status } = this.#bpf;
    const field = BPF_PROG_INFO.fields.recursion_misses;
    const skipped: number[] = [];
    for (const fd of this.#attachedFds) {
      this.#progInfo.fill(0);
      this.#progInfoLength[0] = this.#progInfo.byteLength;
      status("read a program's run counts", lib.bpf_obj_get_info_by_fd(fd, this.#progInfo, this.#progInfoLength));
      if (this.#progInfoLength[0]! < field.offset + field.size) return null;
      skipped.push(u64(this.#progInfoView, field.offset));
    }
    return { stateChange: skipped[0] ?? 0, socketEnd: skipped[1] ?? 0 };
  }

  /** Runs the kernel skipped that a stand-in made (0 where none is attached). */
  runsStoodIn(): RunsSkipped {
    const counters = this.#readCounters();
    return {
      stateChange: u64(counters, PROBE_COUNTERS_FIELDS.changes_stood_in.offset),
      socketEnd: u64(counters, PROBE_COUNTERS_FIELDS.ends_stood_in.offset),
    };
  }

  /** Runs the kernel skipped that no stand-in made: their work was not done; null as for runsSkipped. */
  runsNotMade(): RunsSkipped | null {
    // The stand-ins' first: each run one made was counted skipped before (but where one runs in
    // front of the first program, it makes every run: bpf/accesslog.bpf.c).
    const stoodIn = this.runsStoodIn();
    const skipped = this.runsSkipped();
    if (skipped === null) return null;
    const notMade = (skips: number, made: number) => Math.max(0, skips - made);
    return { stateChange: notMade(skipped.stateChange, stoodIn.stateChange), socketEnd: notMade(skipped.socketEnd, stoodIn.socketEnd) };
  }

  /** Records the kernel could not queue so far (read at every drain: no system call where .bss is mapped). */
  recordsLost(): number {
    return u64(this.#readCounters(), PROBE_COUNTERS_FIELDS.records_lost.offset);
  }

  #readCounters(): DataView {
    if (this.#countersMapping === null) {
      const { lib, status } = this.#bpf;
      status("read the probe counters", lib.bpf_map_lookup_elem(this.#countersFd, this.#zeroKey, this.#countersBytes));
    }
    return this.#countersValue;
  }

  /** Turns record output in the kernel on or off (nothing is queued while off). */
  setEmitEnabled(enabled: boolean): void {
    this.#switchesValue.setUint32(PROBE_SWITCHES_FIELDS.emit_enabled.offset, enabled ? 1 : 0, true);
    this.#writeSwitches();
  }

  /** Whether the programs claim their runs for the stand-ins (bpf/accesslog.bpf.c). */
  #setStandIns(on: boolean): void {
    this.standIns = on;
    this.#switchesValue.setUint8(PROBE_SWITCHES_FIELDS.stand_ins.offset, on ? 1 : 0);
    this.#writeSwitches();
  }

  #writeSwitches(): void {
    const { lib, status } = this.#bpf;
    status("set the probe switches", lib.bpf_map_update_elem(this.#switchesFd, this.#zeroKey, this.#switchesBytes, 0));
  }

  /**
   * Makes the kernel drop what `rules` drop (null: nothing), from the next connection on. The
   * rules are written whole into the slot not in use, then that slot is put in use: a connection
   * starting meanwhile meets the old rules or the new, never a mix.
   */
  setFilterRules(rules: KernelRules | null): void {
    const { lib, status } = this.#bpf;
    if (this.#filterUseFd < 0) return;
    let slot = 0;
    if (rules !== null) {
      slot = this.#filterSlot === 1 ? 2 : 1;
      const bytes = this.#filterRules;
      const f = FILTER_RULES_FIELDS;
      bytes.fill(0);
      bytes[f.direction.offset] = rules.direction;
      bytes[f.failed_only.offset] = rules.failedOnly ? 1 : 0;
      bytes[f.keep_ports_set.offset] = rules.keepPorts.length > 0 ? 1 : 0;
      bytes[f.at_start.offset] = rules.atStart ? 1 : 0;
      for (const [set, ports] of [
        [f.keep_ports.offset, rules.keepPorts],
        [f.drop_ports.offset, rules.dropPorts],
      ] as const) {
        for (const port of ports) bytes[set + (port >> 3)] = bytes[set + (port >> 3)]! | (1 << (port & 7));
      }
      this.#filterKey[0] = slot - 1;
      status("write the filter rules", lib.bpf_map_update_elem(this.#filterRulesFd, this.#filterKey, bytes, 0));
    }
    this.#filterUse[0] = slot;
    status("put the filter rules in use", lib.bpf_map_update_elem(this.#filterUseFd, this.#zeroKey, this.#filterUse, 0));
    this.#filterSlot = slot;
  }

  /** Connections the kernel's filters dropped so far, by filter (summed over the CPUs). */
  filterDrops(): Record<KernelFilterName, number> {
    const { lib, status } = this.#bpf;
    const values = this.#filterDrops;
    const drops = Object.fromEntries(KERNEL_FILTERS.map((name) => [name, 0])) as Record<KernelFilterName, number>;
    if (this.#filterDropsFd < 0) return drops;
    status("read the filter counters", lib.bpf_map_lookup_elem(this.#filterDropsFd, this.#zeroKey, values));
    for (let at = 0; at < values.length; at++) drops[KERNEL_FILTERS[at % KERNEL_FILTERS.length]!] += Number(values[at]!);
    return drops;
  }

  get libbpfVersion(): string {
    return this.#bpf.version();
  }

  /** Stops the kernel side; what is already queued can still be drained. */
  detach(): void {
    this.#reportProgramFd = -1;
    if (this.#reportLink !== null) this.#bpf.lib.bpf_link__destroy(this.#reportLink);
    this.#reportLink = null;
    for (const link of this.#links.splice(0).reverse()) this.#bpf.lib.bpf_link__destroy(link);
    this.#attachedFds = [];
  }

  /** Detaches and frees everything, in reverse order; safe to call twice. */
  close(): void {
    const { lib } = this.#bpf;
    this.detach();
    // Nothing may read the mapped memory after this: the views are dropped with it.
    this.#ring = null;
    this.#mappedRing?.unmap();
    this.#mappedRing = null;
    if (this.#countersMapping !== null) {
      libc.munmap(this.#countersMapping.at, this.#countersMapping.bytes);
      this.#countersMapping = null;
      this.#countersValue = new DataView(this.#countersBytes.buffer);
    }
    this.#object?.close();
    this.#object = null;
    this.#filterDropsFd = -1;
    this.#filterUseFd = -1;
  }
}

/**
 * Whether a raw_tp program (report_open) may use a map allocated at run time
 * on this kernel. Before 6.1 the verifier takes it with a WARN (tainting the
 * kernel; a node with panic_on_warn reboots) and PREEMPT_RT kernels refuse
 * it: there the connections map is preallocated instead (memory for every
 * entry of --max-connections, taken at load). `release` is uname -r's (os.release():
 * /proc may be hidden from the agent).
 */
export function runTimeAllocationAllowed(release: string): boolean {
  const version = parseKernelRelease(release);
  return version !== null && atLeast(version, { major: 6, minor: 1 });
}

/**
 * Whether the socket table may be used on this kernel: its programs claim entries with BPF's
 * compare-and-exchange (Linux 5.12). `release` as for runTimeAllocationAllowed.
 */
export function socketTableFromTracing(release: string): boolean {
  const version = parseKernelRelease(release);
  return version !== null && atLeast(version, { major: 5, minor: 12 });
}

/**
 * Whether tracing programs may keep state in socket-local storage on this kernel
 * (bpf_sk_storage_get from a tp_btf program: Linux 5.11). `release` as for runTimeAllocationAllowed.
 */
export function socketStorageFromTracing(release: string): boolean {
  const version = parseKernelRelease(release);
  return version !== null && atLeast(version, { major: 5, minor: 11 });
}

/** A u64 counter as a number (exact below 2^53). */
function u64(view: DataView, at: number): number {
  return Number(view.getBigUint64(at, HOST_LE));
}

function ownStatus(): string {
  try {
    return readFileSync("/proc/self/status", "utf8");
  } catch {
    return "";
  }
}

/** The verifier's reason in its log: the line before its closing count ("processed N insns ..."). */
function verifierReason(verifierLog: string): string | null {
  const lines = verifierLog.trimEnd().split("\n");
  const end = lines.findLastIndex((line) => line.startsWith("processed "));
  return end > 0 ? lines[end - 1]!.trim() : null;
}

/** One line (plus the verifier's own words when it refused) a user can act on. */
function diagnose(error: unknown, verifierLog: string): string {
  if (!(error instanceof LibbpfError)) return error instanceof Error ? error.message : String(error);
  if ((error.errno === EPERM || error.errno === EACCES) && !mayLoadBpf(effectiveCapabilities(ownStatus()))) {
    const who = process.geteuid?.() === 0 ? "running as root but without CAP_BPF and CAP_PERFMON" : "not running as root";
    return `${error.message} (${who}): run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)`;
  }
  if (verifierLog !== "") {
    const tail = verifierLog.split("\n").slice(-20).join("\n");
    return `${error.message}: the kernel's verifier refused the probe; its log ends with:\n${tail}`;
  }
  return error.message;
}
