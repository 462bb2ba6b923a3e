// The one place that talks to libbpf.so.1: every symbol the agent uses with its exact C signature,
// and the layouts of the option structs it passes (named fields, checked against libbpf's own
// headers by test/kernel/libbpf-layout.test.ts). Integer results that are -errno become
// LibbpfError with the strerror text, NULL pointers become LibbpfError with errno read at once.
// Only APIs present in libbpf 1.1 are used.
import { dlopen, ptr, type Pointer } from "bun:ffi";
import { atLeast, HOST_LE } from "./host.ts";
import { errno, libc } from "./libc.ts";

const LIBBPF_SYMBOLS = {
  libbpf_set_print: { args: ["ptr"], returns: "ptr" },
  libbpf_major_version: { args: [], returns: "u32" },
  libbpf_minor_version: { args: [], returns: "u32" },
  libbpf_strerror: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // struct bpf_object *bpf_object__open_mem(const void *, size_t, const struct bpf_object_open_opts *)
  bpf_object__open_mem: { args: ["ptr", "u64", "ptr"], returns: "ptr" },
  bpf_object__load: { args: ["ptr"], returns: "i32" },
  bpf_object__close: { args: ["ptr"], returns: "void" },
  bpf_object__find_map_by_name: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_object__find_program_by_name: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_program__attach: { args: ["ptr"], returns: "ptr" },
  bpf_program__fd: { args: ["ptr"], returns: "i32" },
  // int bpf_program__set_autoload(struct bpf_program *prog, bool autoload)
  bpf_program__set_autoload: { args: ["ptr", "bool"], returns: "i32" },
  // struct bpf_link *bpf_program__attach_iter(const struct bpf_program *, const struct bpf_iter_attach_opts *)
  bpf_program__attach_iter: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_link__fd: { args: ["ptr"], returns: "i32" },
  bpf_iter_create: { args: ["i32"], returns: "i32" },
  bpf_link__destroy: { args: ["ptr"], returns: "i32" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_map__set_max_entries: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__max_entries: { args: ["ptr"], returns: "u32" },
  bpf_map__map_flags: { args: ["ptr"], returns: "u32" },
  bpf_map__set_map_flags: { args: ["ptr", "u32"], returns: "i32" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value)
  bpf_map_lookup_elem: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
  // int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
  //                          __u32 *count, const struct bpf_map_batch_opts *opts)
  bpf_map_lookup_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  // int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts)
  bpf_prog_test_run_opts: { args: ["i32", "ptr"], returns: "i32" },
  // int libbpf_num_possible_cpus(void): the values a per-CPU map holds per key
  libbpf_num_possible_cpus: { args: [], returns: "i32" },
  // int bpf_obj_get_info_by_fd(int bpf_fd, void *info, __u32 *info_len)
  bpf_obj_get_info_by_fd: { args: ["i32", "ptr", "ptr"], returns: "i32" },
} as const;

// ── Option structs ───────────────────────────────────────────────────────────

/**
 * A libbpf option struct as libbpf 1.1 lays it out on 64-bit Linux: its size and the fields the
 * agent sets. Its first field, `sz`, holds the size: newer libbpf versions grew these structs and
 * accept the older size.
 */
export interface StructLayout {
  readonly size: number;
  readonly fields: Readonly<Record<string, { readonly offset: number; readonly size: 4 | 8 }>>;
}

/** struct bpf_object_open_opts (bpf/libbpf.h). */
export const BPF_OBJECT_OPEN_OPTS = {
  size: 80,
  fields: {
    sz: { offset: 0, size: 8 },
    object_name: { offset: 8, size: 8 },
    kernel_log_buf: { offset: 56, size: 8 },
    kernel_log_size: { offset: 64, size: 8 },
    kernel_log_level: { offset: 72, size: 4 },
  },
} as const satisfies StructLayout;

/** struct bpf_test_run_opts (bpf/bpf.h). */
export const BPF_TEST_RUN_OPTS = {
  size: 80,
  fields: {
    sz: { offset: 0, size: 8 },
    ctx_in: { offset: 32, size: 8 },
    ctx_size_in: { offset: 48, size: 4 },
  },
} as const satisfies StructLayout;

/** struct bpf_map_batch_opts (bpf/bpf.h). */
export const BPF_MAP_BATCH_OPTS = {
  size: 24,
  fields: {
    sz: { offset: 0, size: 8 },
    elem_flags: { offset: 8, size: 8 },
    flags: { offset: 16, size: 8 },
  },
} as const satisfies StructLayout;

/** struct bpf_iter_attach_opts (bpf/libbpf.h). */
export const BPF_ITER_ATTACH_OPTS = {
  size: 24,
  fields: {
    sz: { offset: 0, size: 8 },
    link_info: { offset: 8, size: 8 },
    link_info_len: { offset: 16, size: 4 },
  },
} as const satisfies StructLayout;

/**
 * struct bpf_prog_info (linux/bpf.h), up to the field the agent reads. Not an option struct: no
 * `sz`; the kernel fills as much of it as it knows and says how much (recursion_misses: Linux 5.12).
 */
export const BPF_PROG_INFO = {
  size: 216,
  fields: {
    recursion_misses: { offset: 208, size: 8 },
  },
} as const satisfies StructLayout;

/** An option struct's bytes, zeroed but for `sz`; set() writes a field by its name. */
export class OptionStruct<L extends StructLayout> {
  readonly bytes: Uint8Array;
  readonly #layout: L;
  readonly #view: DataView;

  constructor(layout: L) {
    this.#layout = layout;
    this.bytes = new Uint8Array(layout.size);
    this.#view = new DataView(this.bytes.buffer);
    this.set("sz", layout.size);
  }

  /** Writes a field in host byte order (the kernel's and libbpf's). */
  set(name: keyof L["fields"] & string, value: number): this {
    const field = this.#layout.fields[name]!;
    if (field.size === 8) this.#view.setBigUint64(field.offset, BigInt(value), HOST_LE);
    else this.#view.setUint32(field.offset, value, HOST_LE);
    return this;
  }
}


export class LibbpfError extends Error {
  constructor(
    readonly step: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${step}: ${detail}`);
    this.name = "LibbpfError";
  }
}

export class LibbpfNotFoundError extends Error {
  override name = "LibbpfNotFoundError";
}

function openLibrary(path: string) {
  try {
    return dlopen(path, LIBBPF_SYMBOLS);
  } catch (cause) {
    throw new LibbpfNotFoundError(
      `cannot load ${path} (${cause instanceof Error ? cause.message : String(cause)}): ` +
        "install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1)",
    );
  }
}

export type Libbpf = ReturnType<typeof bindLibbpf>;

/** Where the libbpf in use came from. */
export type LibbpfOrigin = "--libbpf" | "system" | "bundled";

/** The oldest libbpf whose API and struct layouts this code uses. */
export const MIN_LIBBPF = { major: 1, minor: 0 } as const;

/** A libbpf version (`1.1`) at least MIN_LIBBPF. */
export function recentEnough(version: string): boolean {
  const [major = 0, minor = 0] = version.split(".").map(Number);
  return atLeast({ major, minor }, MIN_LIBBPF);
}

/**
 * The libbpf to use: the one named by --libbpf; else the system's
 * libbpf.so.1 when it is recent enough; else the copy built into the binary
 * (with the libelf and zlib it links), loaded from anonymous memory files so
 * that nothing is written anywhere and nothing is left behind.
 */
export function openLibbpf(forcedPath?: string): Promise<OpenedLibbpf> {
  // Once per process: the probe and the conntrack hook share it (a second openLibbpf of the
  // built-in copy would load it again from a new memory file).
  const key = forcedPath ?? "";
  let opened = openedLibbpf.get(key);
  if (opened === undefined) {
    opened = findLibbpf(forcedPath);
    openedLibbpf.set(key, opened);
    opened.catch(() => openedLibbpf.delete(key));
  }
  return opened;
}

type OpenedLibbpf = { bpf: Libbpf; origin: LibbpfOrigin; notes: string[] };
const openedLibbpf = new Map<string, Promise<OpenedLibbpf>>();

async function findLibbpf(forcedPath?: string): Promise<OpenedLibbpf> {
  if (forcedPath !== undefined) return { bpf: bindLibbpf(forcedPath), origin: "--libbpf", notes: [] };
  const notes: string[] = [];
  try {
    const system = bindLibbpf("libbpf.so.1");
    if (recentEnough(system.version())) {
      return { bpf: system, origin: "system", notes };
    }
    notes.push(`the system's libbpf ${system.version()} is older than ${MIN_LIBBPF.major}.${MIN_LIBBPF.minor}`);
  } catch (error) {
    if (!(error instanceof LibbpfNotFoundError)) throw error;
    notes.push("the system has no libbpf.so.1");
  }
  const bundled = await bundledLibrary("libbpf.so.1");
  if (bundled === undefined) {
    throw new LibbpfNotFoundError(
      `${notes.join("; ")}, and this build carries none: install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1)`,
    );
  }
  // libbpf's own dependencies first: the dynamic linker then finds them
  // loaded (by soname) instead of searching the host for them.
  for (const [dependency, symbols] of BUNDLED_DEPENDENCIES) {
    const file = await bundledLibrary(dependency);
    if (file !== undefined) dlopen(memoryFile(dependency, file), symbols);
  }
  notes.push("using the libbpf built into this binary");
  return { bpf: bindLibbpf(memoryFile("libbpf.so.1", bundled)), origin: "bundled", notes };
}

/** What the bundled libbpf links, each with one symbol (bun:ffi's dlopen wants one). */
const BUNDLED_DEPENDENCIES = [
  ["libz.so.1", { zlibVersion: { args: [], returns: "ptr" } }],
  ["libelf.so.1", { elf_version: { args: ["u32"], returns: "u32" } }],
] as const;

/** A library embedded by scripts/build (--asset), by file name. */
async function bundledLibrary(name: string): Promise<Uint8Array | undefined> {
  const blob = Bun.embeddedFiles.find((file) => {
    const path = (file as Blob & { name?: string }).name ?? "";
    return path === name || path.endsWith(`/${name}`);
  });
  return blob === undefined ? undefined : await blob.bytes();
}

const MFD_CLOEXEC = 1;

/** Copies bytes into an anonymous memory file (memfd) and returns a path dlopen accepts. */
function memoryFile(name: string, bytes: Uint8Array): string {
  const fd = libc.memfd_create(Buffer.from(`${name}\0`), MFD_CLOEXEC);
  if (fd < 0) throw new LibbpfNotFoundError(`cannot create a memory file for the bundled ${name}`);
  for (let done = 0; done < bytes.byteLength; ) {
    const wrote = Number(libc.write(fd, bytes.subarray(done), bytes.byteLength - done));
    if (wrote <= 0) throw new LibbpfNotFoundError(`cannot write the bundled ${name} to a memory file`);
    done += wrote;
  }
  // Kept open for the life of the process: the path below names it.
  return `/proc/self/fd/${fd}`;
}

/** Opens libbpf; throws LibbpfNotFoundError when it is missing. */
export function bindLibbpf(path = "libbpf.so.1") {
  const lib = openLibrary(path).symbols;
  const errorText = new Uint8Array(256);

  function strerror(err: number): string {
    lib.libbpf_strerror(err, errorText, errorText.byteLength);
    const end = errorText.indexOf(0);
    return new TextDecoder().decode(errorText.subarray(0, end < 0 ? undefined : end));
  }

  /** A call that failed and set errno (a NULL pointer, -1 from libc). */
  function failed(step: string): never {
    const code = errno() || 1;
    throw new LibbpfError(step, code, strerror(-code));
  }

  return {
    lib,
    strerror,
    /** A pointer result: NULL becomes an error carrying errno. */
    pointer(step: string, result: Pointer | bigint | null): Pointer {
      return result === null ? failed(step) : (Number(result) as Pointer);
    },
    /** A libc result: -1 means look at errno. */
    libcStatus(step: string, result: number): number {
      return result >= 0 ? result : failed(step);
    },
    /** An int result: negative is -errno. */
    status(step: string, result: number): number {
      if (result >= 0) return result;
      throw new LibbpfError(step, -result, strerror(result));
    },
    version(): string {
      return `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`;
    },
    /** A NUL-terminated C string kept alive by the returned buffer. */
    cString(text: string): Buffer {
      return Buffer.from(`${text}\0`, "utf8");
    },
  };
}

/**
 * A BPF object opened from memory (an embedded .o), with a buffer for the verifier's log: the
 * probe's and the conntrack hook's. libbpf keeps pointers into the bytes given, so they live as
 * long as the object; close() frees it.
 */
export class BpfObject {
  readonly #bpf: Libbpf;
  #object: Pointer | null;
  #log: Uint8Array | null;
  #keepAlive: unknown[];

  /** Opens `bytes` (libbpf checks the ELF and BTF); throws LibbpfError at `step`. */
  constructor(bpf: Libbpf, bytes: Uint8Array, name: string, logBytes: number, step: string) {
    const cName = bpf.cString(name);
    const log = new Uint8Array(logBytes);
    const opts = new OptionStruct(BPF_OBJECT_OPEN_OPTS)
      .set("object_name", ptr(cName))
      .set("kernel_log_buf", ptr(log))
      .set("kernel_log_size", log.byteLength)
      .set("kernel_log_level", 0); // 0: libbpf retries a failed load with the log on
    this.#bpf = bpf;
    this.#log = log;
    // Not `bytes`: libbpf copies what it needs from the ELF while it opens it (a buffer zeroed
    // after the open still loads), and the probe's object is 0.6 MB.
    this.#keepAlive = [cName, opts.bytes];
    this.#object = bpf.pointer(step, bpf.lib.bpf_object__open_mem(bytes, bytes.byteLength, opts.bytes));
  }

  /** The struct bpf_object * (closed: NULL, which libbpf refuses). */
  get pointer(): Pointer | null {
    return this.#object;
  }

  program(name: string): Pointer {
    const { lib, pointer, cString } = this.#bpf;
    return pointer(`find program ${name}`, lib.bpf_object__find_program_by_name(this.#object, cString(name)));
  }

  map(name: string): Pointer {
    const { lib, pointer, cString } = this.#bpf;
    return pointer(`find map ${name}`, lib.bpf_object__find_map_by_name(this.#object, cString(name)));
  }

  /** What the verifier said at the last failed load ("" when nothing). */
  verifierLog(): string {
    const log = this.#log;
    if (log === null) return "";
    const end = log.indexOf(0);
    return new TextDecoder().decode(log.subarray(0, end < 0 ? undefined : end)).trim();
  }

  /** Frees the object (its programs, maps and any link still open to them); safe to call twice. */
  close(): void {
    if (this.#object !== null) this.#bpf.lib.bpf_object__close(this.#object);
    this.#object = null;
    this.#log = null;
    this.#keepAlive = [];
  }
}
