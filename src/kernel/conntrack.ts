// The conntrack hook's life (bpf/conntrack.bpf.c): open the embedded object → pick kprobe or
// fentry → load → attach; then the agent looks up, per OUTBOUND line to a ClusterIP, where the
// kernel's NAT sent that connection. Its own object, beside the probe's: nf_conntrack is often a
// module loaded after the agent starts, and a node where the hook cannot run keeps its access log.
import { existsSync, readFileSync } from "node:fs";
import { constants } from "node:os";
import type { Pointer } from "bun:ffi";
import objectPath from "../../bpf/conntrack.bpf.o" with { type: "file" };
import { ipBytes, ipv4Text, ipv6Text } from "../address.ts";
import { HOST_LE } from "./host.ts";
import { BpfObject, LibbpfError, type Libbpf, openLibbpf } from "./libbpf.ts";
import { AF_INET, AF_INET6 } from "./record.ts";

/** Mirrors of struct nat_key, struct nat_backend and struct nat_counters in bpf/conntrack.h. */
export const NAT_KEY_FIELDS = {
  saddr: { offset: 0, size: 16 },
  daddr: { offset: 16, size: 16 },
  sport: { offset: 32, size: 2 },
  dport: { offset: 34, size: 2 },
  family: { offset: 36, size: 2 },
  pad: { offset: 38, size: 2 },
} as const;
export const NAT_KEY_SIZE = 40;
export const NAT_BACKEND_FIELDS = {
  inserted_ns: { offset: 0, size: 8 },
  addr: { offset: 8, size: 16 },
  port: { offset: 24, size: 2 },
  pad: { offset: 26, size: 6 },
} as const;
export const NAT_BACKEND_SIZE = 32;
export const NAT_COUNTERS_FIELDS = { translations: { offset: 0, size: 8 } } as const;
export const NAT_COUNTERS_SIZE = 8;

/** The kernel function both programs hook. */
export const CONNTRACK_FUNCTION = "__nf_conntrack_hash_insert";

/** Whether nf_conntrack is in the kernel now (built in, or a module that is loaded). */
export function conntrackLoaded(): boolean {
  // /sys/module lists built-in modules that have parameters (nf_conntrack has); the sysctl
  // directory is there in every network namespace once the module is loaded (/sys may be absent).
  return existsSync("/sys/module/nf_conntrack") || existsSync("/proc/sys/net/netfilter/nf_conntrack_count");
}

/** kprobe where the kernel has them (a module function is fine); fentry where it has none. */
export type HookKind = "kprobe" | "fentry";

/** kprobe when the kernel has the kprobe event source, else fentry. */
export function hookKind(): HookKind {
  return existsSync("/sys/bus/event_source/devices/kprobe") ? "kprobe" : "fentry";
}

/** The hook could not be loaded or attached; the message says why, in a user's words, and `fix` what would let it. */
export class ConntrackHookError extends Error {
  override name = "ConntrackHookError";
  constructor(
    message: string,
    readonly fix: string,
  ) {
    super(message);
  }
}

const { EACCES, ENOENT, EPERM, ESRCH } = constants.errno;
const VERIFIER_LOG_BYTES = 256 * 1024;

/** Where a translated connection went: the backend's address and port, and when conntrack confirmed it. */
export interface NatBackend {
  addr: string;
  port: number;
  /** CLOCK_MONOTONIC ns */
  insertedNs: number;
}

export class ConntrackHook {
  #bpf: Libbpf;
  #object: BpfObject | null = null;
  #link: Pointer | null = null;
  #mapFd = -1;
  #countersFd = -1;
  readonly #key = new Uint8Array(NAT_KEY_SIZE);
  readonly #keyView = new DataView(this.#key.buffer);
  readonly #value = new Uint8Array(NAT_BACKEND_SIZE);
  readonly #valueView = new DataView(this.#value.buffer);
  readonly #counters = new Uint8Array(NAT_COUNTERS_SIZE);
  readonly #zeroKey = new Uint32Array(1);
  /** how it is attached */
  readonly kind: HookKind;

  private constructor(bpf: Libbpf, kind: HookKind) {
    this.#bpf = bpf;
    this.kind = kind;
  }

  /** Loads and attaches the hook; throws ConntrackHookError with the reason. */
  static async open(libbpfPath: string | undefined, kind: HookKind = hookKind()): Promise<ConntrackHook> {
    let bpf: Libbpf;
    try {
      ({ bpf } = await openLibbpf(libbpfPath));
    } catch (error) {
      throw new ConntrackHookError(error instanceof Error ? error.message : String(error), "install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1)");
    }
    const hook = new ConntrackHook(bpf, kind);
    try {
      await hook.#load();
      return hook;
    } catch (error) {
      const log = hook.#object?.verifierLog() ?? "";
      hook.close();
      const { message, fix } = diagnose(error, hook.kind, log);
      throw new ConntrackHookError(message, fix);
    }
  }

  async #load(): Promise<void> {
    const { lib, pointer, status } = this.#bpf;
    lib.libbpf_set_print(null); // failures are reported by diagnose()
    const object = (this.#object = new BpfObject(this.#bpf, await Bun.file(objectPath).bytes(), "kmesh_conntrack", VERIFIER_LOG_BYTES, "open the conntrack object"));
    const used = `conntrack_insert_${this.kind}`;
    const unused = this.kind === "kprobe" ? "conntrack_insert_fentry" : "conntrack_insert_kprobe";
    status(`leave ${unused} out`, lib.bpf_program__set_autoload(object.program(unused), false));
    status("load the conntrack hook", lib.bpf_object__load(object.pointer));
    this.#link = pointer(`attach a ${this.kind} to ${CONNTRACK_FUNCTION}`, lib.bpf_program__attach(object.program(used)));
    this.#mapFd = status("find the NAT translations map", lib.bpf_map__fd(object.map("nat_backends")));
    this.#countersFd = status("find the conntrack counters", lib.bpf_map__fd(object.map(".bss")));
  }

  /**
   * The backend conntrack translated the connection src:srcPort → dst:dstPort to, if it did (and
   * still remembers it). Addresses are the texts the record decoder writes.
   */
  lookup(family: 4 | 6, src: string, srcPort: number, dst: string, dstPort: number): NatBackend | undefined {
    if (this.#mapFd < 0) return undefined;
    const srcBytes = ipBytes(src);
    const dstBytes = ipBytes(dst);
    const size = family === 4 ? 4 : 16;
    if (srcBytes?.length !== size || dstBytes?.length !== size) return undefined;
    const key = this.#key;
    const view = this.#keyView;
    key.fill(0);
    key.set(srcBytes, NAT_KEY_FIELDS.saddr.offset);
    key.set(dstBytes, NAT_KEY_FIELDS.daddr.offset);
    view.setUint16(NAT_KEY_FIELDS.sport.offset, srcPort, HOST_LE);
    view.setUint16(NAT_KEY_FIELDS.dport.offset, dstPort, HOST_LE);
    view.setUint16(NAT_KEY_FIELDS.family.offset, family === 4 ? AF_INET : AF_INET6, HOST_LE);
    if (this.#bpf.lib.bpf_map_lookup_elem(this.#mapFd, key, this.#value) !== 0) return undefined;
    const value = this.#valueView;
    const at = NAT_BACKEND_FIELDS.addr.offset;
    const addr = family === 4 ? ipv4Text(value, at) : ipv6Text(value, at);
    return {
      addr,
      port: value.getUint16(NAT_BACKEND_FIELDS.port.offset, HOST_LE),
      insertedNs: Number(value.getBigUint64(NAT_BACKEND_FIELDS.inserted_ns.offset, HOST_LE)),
    };
  }

  /** TCP connections whose destination the kernel's NAT changed, since the hook was attached. */
  translations(): number {
    const { lib } = this.#bpf;
    if (this.#countersFd < 0 || lib.bpf_map_lookup_elem(this.#countersFd, this.#zeroKey, this.#counters) !== 0) return 0;
    return Number(new DataView(this.#counters.buffer).getBigUint64(NAT_COUNTERS_FIELDS.translations.offset, HOST_LE));
  }

  /** Detaches and frees everything; safe to call twice. */
  close(): void {
    if (this.#link !== null) this.#bpf.lib.bpf_link__destroy(this.#link);
    this.#link = null;
    this.#object?.close();
    this.#object = null;
    this.#mapFd = -1;
    this.#countersFd = -1;
  }
}

/** The kernel's perf_event_paranoid, or null when it cannot be read. */
function perfEventParanoid(): number | null {
  try {
    return Number(readFileSync("/proc/sys/kernel/perf_event_paranoid", "utf8").trim());
  } catch {
    return null;
  }
}

/** Why the hook could not run, and what would let it, in a user's words. */
function diagnose(error: unknown, kind: HookKind, verifierLog: string): { message: string; fix: string } {
  const elsewhere = "a kernel with kprobes (CONFIG_KPROBES=y), or one that allows fentry programs on nf_conntrack";
  if (!(error instanceof LibbpfError)) return { message: error instanceof Error ? error.message : String(error), fix: elsewhere };
  // fentry is the second choice: say why it was taken.
  const why = kind === "fentry" ? "this kernel has no kprobes; " : "";
  const says = (detail: string, fix = elsewhere) => ({ message: `${why}${error.message}: ${detail}`, fix });
  if (error.step.startsWith("attach") && error.errno === ENOENT) return says(`this kernel has no ${CONNTRACK_FUNCTION} to hook`);
  if (verifierLog !== "") return says(`the kernel's verifier refused it; its log ends with: ${verifierLog.split("\n").slice(-3).join(" | ")}`);
  if (kind === "fentry" && error.errno === ESRCH) return says(`${CONNTRACK_FUNCTION} is not in the kernel's BTF (a module's BTF can be read only with CAP_SYS_ADMIN)`);
  const paranoid = perfEventParanoid();
  if (kind === "kprobe" && error.step.startsWith("attach") && error.errno === EACCES && paranoid !== null && paranoid > 2) {
    // Debian's and Ubuntu's kernels add a level 3 (their default) at which perf_event_open, which
    // creates the kprobe, is for CAP_SYS_ADMIN only, CAP_PERFMON or not.
    return says(
      `kernel.perf_event_paranoid is ${paranoid}, at which this kernel lets only CAP_SYS_ADMIN create a kprobe`,
      "set kernel.perf_event_paranoid=2 on the node (the kernel's own default), or grant CAP_SYS_ADMIN",
    );
  }
  if (error.errno === EPERM || error.errno === EACCES) return says("the kernel refused it (capabilities, or a security policy)");
  return { message: `${why}${error.message}`, fix: elsewhere };
}

/** How often a running agent looks whether nf_conntrack is loaded yet (one stat), until it is. */
const WATCH_INTERVAL_MS = 1_000;

/**
 * The hook for a running agent: attached as soon as nf_conntrack is in the kernel, at start or
 * when a first NAT rule loads the module, and tried once (a kernel that refuses it refuses it
 * again). Closed by stop().
 */
export class ConntrackWatch {
  #hook: ConntrackHook | null = null;
  #timer: Timer | null = null;
  #stopped = false;

  constructor(
    readonly libbpfPath: string | undefined,
    readonly on: { hooked(hook: ConntrackHook): void; failed(error: ConntrackHookError): void; waiting(): void },
  ) {}

  get hook(): ConntrackHook | null {
    return this.#hook;
  }

  start(): void {
    if (conntrackLoaded()) {
      void this.#attach();
      return;
    }
    this.on.waiting();
    this.#timer = setInterval(() => {
      if (!conntrackLoaded()) return;
      clearInterval(this.#timer!);
      this.#timer = null;
      void this.#attach();
    }, WATCH_INTERVAL_MS);
  }

  async #attach(): Promise<void> {
    try {
      const hook = await ConntrackHook.open(this.libbpfPath);
      if (this.#stopped) {
        hook.close();
        return;
      }
      this.#hook = hook;
      this.on.hooked(hook);
    } catch (error) {
      // open() turns every failure into a ConntrackHookError
      if (!this.#stopped) this.on.failed(error as ConntrackHookError);
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#hook?.close();
    this.#hook = null;
  }
}
