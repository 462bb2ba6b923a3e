// The one place that talks to libbpf.so.1 (and the bits of libc it needs).
// Every symbol has its exact C signature; integer results that are -errno
// become LibbpfError with the strerror text, NULL pointers become LibbpfError
// with errno read at once. Only APIs present in libbpf 1.1 are used.
import { dlopen, FFIType, type Pointer, CString, read } from "bun:ffi";

const LIBBPF_SYMBOLS = {
  libbpf_set_print: { args: ["ptr"], returns: "ptr" },
  libbpf_major_version: { args: [], returns: "u32" },
  libbpf_minor_version: { args: [], returns: "u32" },
  libbpf_num_possible_cpus: { args: [], returns: "i32" },
  libbpf_strerror: { args: ["i32", "ptr", "u64"], returns: "i32" },
  // struct bpf_object *bpf_object__open_mem(const void *, size_t, const struct bpf_object_open_opts *)
  bpf_object__open_mem: { args: ["ptr", "u64", "ptr"], returns: "ptr" },
  bpf_object__load: { args: ["ptr"], returns: "i32" },
  bpf_object__close: { args: ["ptr"], returns: "void" },
  bpf_object__find_map_by_name: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_object__next_program: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_program__name: { args: ["ptr"], returns: "ptr" },
  bpf_object__find_program_by_name: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_program__attach: { args: ["ptr"], returns: "ptr" },
  bpf_program__fd: { args: ["ptr"], returns: "i32" },
  // struct bpf_link *bpf_program__attach_iter(const struct bpf_program *, const struct bpf_iter_attach_opts *)
  bpf_program__attach_iter: { args: ["ptr", "ptr"], returns: "ptr" },
  bpf_link__fd: { args: ["ptr"], returns: "i32" },
  bpf_iter_create: { args: ["i32"], returns: "i32" },
  bpf_link__destroy: { args: ["ptr"], returns: "i32" },
  bpf_map__fd: { args: ["ptr"], returns: "i32" },
  bpf_map__set_max_entries: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__map_flags: { args: ["ptr"], returns: "u32" },
  bpf_map__set_map_flags: { args: ["ptr", "u32"], returns: "i32" },
  bpf_map__value_size: { args: ["ptr"], returns: "u32" },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value)
  bpf_map_lookup_elem: { args: ["i32", "ptr", "ptr"], returns: "i32" },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
  bpf_map_update_elem: { args: ["i32", "ptr", "ptr", "u64"], returns: "i32" },
  // int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values,
  //                          __u32 *count, const struct bpf_map_batch_opts *opts)
  bpf_map_lookup_batch: { args: ["i32", "ptr", "ptr", "ptr", "ptr", "ptr", "ptr"], returns: "i32" },
  // int bpf_prog_test_run_opts(int prog_fd, struct bpf_test_run_opts *opts)
  bpf_prog_test_run_opts: { args: ["i32", "ptr"], returns: "i32" },
  // struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn, void *ctx, const struct ring_buffer_opts *)
  ring_buffer__new: { args: ["i32", "ptr", "ptr", "ptr"], returns: "ptr" },
  ring_buffer__consume: { args: ["ptr"], returns: "i32" },
  ring_buffer__free: { args: ["ptr"], returns: "void" },
} as const;

const LIBC_SYMBOLS = {
  __errno_location: { args: [], returns: "ptr" },
  memfd_create: { args: ["ptr", "u32"], returns: "i32" },
  write: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  memcpy: { args: ["ptr", "ptr", "u64"], returns: "ptr" },
  read: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  close: { args: ["i32"], returns: "i32" },
} as const;

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
const MIN_LIBBPF = { major: 1, minor: 0 };

/**
 * The libbpf to use: the one named by --libbpf; else the system's
 * libbpf.so.1 when it is recent enough; else the copy built into the binary
 * (with the libelf and zlib it links), loaded from anonymous memory files so
 * that nothing is written anywhere and nothing is left behind.
 */
export async function openLibbpf(forcedPath?: string): Promise<{ bpf: Libbpf; origin: LibbpfOrigin; notes: string[] }> {
  if (forcedPath !== undefined) return { bpf: bindLibbpf(forcedPath), origin: "--libbpf", notes: [] };
  const notes: string[] = [];
  try {
    const system = bindLibbpf("libbpf.so.1");
    const [major, minor] = system.version().split(".").map(Number) as [number, number];
    if (major > MIN_LIBBPF.major || (major === MIN_LIBBPF.major && minor >= MIN_LIBBPF.minor)) {
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
let libcForFiles: ReturnType<typeof dlopen<typeof LIBC_SYMBOLS>>["symbols"] | undefined;

/** Copies bytes into an anonymous memory file (memfd) and returns a path dlopen accepts. */
function memoryFile(name: string, bytes: Uint8Array): string {
  libcForFiles ??= dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  const fd = libcForFiles.memfd_create(Buffer.from(`${name}\0`), MFD_CLOEXEC);
  if (fd < 0) throw new LibbpfNotFoundError(`cannot create a memory file for the bundled ${name}`);
  for (let done = 0; done < bytes.byteLength; ) {
    const wrote = Number(libcForFiles.write(fd, bytes.subarray(done), bytes.byteLength - done));
    if (wrote <= 0) throw new LibbpfNotFoundError(`cannot write the bundled ${name} to a memory file`);
    done += wrote;
  }
  // Kept open for the life of the process: the path below names it.
  return `/proc/self/fd/${fd}`;
}

/** Opens libbpf and libc; throws LibbpfNotFoundError when libbpf is missing. */
export function bindLibbpf(path = "libbpf.so.1") {
  const lib = openLibrary(path).symbols;
  const libc = dlopen("libc.so.6", LIBC_SYMBOLS).symbols;
  const errorText = new Uint8Array(256);

  function strerror(err: number): string {
    lib.libbpf_strerror(err, errorText, errorText.byteLength);
    const end = errorText.indexOf(0);
    return new TextDecoder().decode(errorText.subarray(0, end < 0 ? undefined : end));
  }

  function lastErrno(): number {
    const where = libc.__errno_location();
    return where === null ? 0 : read.i32(where, 0);
  }

  /** A pointer result: NULL becomes an error carrying errno. */
  function pointer(step: string, result: Pointer | bigint | null): Pointer {
    if (result !== null) return Number(result) as Pointer;
    const errno = lastErrno() || 1;
    throw new LibbpfError(step, errno, strerror(-errno));
  }

  /** A libc result: -1 means look at errno. */
  function libcStatus(step: string, result: number): number {
    if (result >= 0) return result;
    const errno = lastErrno() || 1;
    throw new LibbpfError(step, errno, strerror(-errno));
  }

  /** An int result: negative is -errno. */
  function status(step: string, result: number): number {
    if (result >= 0) return result;
    throw new LibbpfError(step, -result, strerror(result));
  }

  return {
    lib,
    libc,
    pointer,
    status,
    libcStatus,
    strerror,
    version(): string {
      return `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`;
    },
    /** A NUL-terminated C string kept alive by the returned buffer. */
    cString(text: string): Buffer {
      return Buffer.from(`${text}\0`, "utf8");
    },
    readCString(p: Pointer | bigint | null): string {
      return p === null ? "" : new CString(Number(p) as Pointer).toString();
    },
  };
}
