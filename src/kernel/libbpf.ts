// The one place that talks to libbpf.so.1 (and the bits of libc it needs).
// Every symbol has its exact C signature; integer results that are -errno
// become LibbpfError with the strerror text, NULL pointers become LibbpfError
// with errno read at once. Only APIs present in libbpf 1.1 are used.
import { dlopen, FFIType, type Pointer, CString, read } from "bun:ffi";

const LIBBPF_SYMBOLS = {
  libbpf_set_print: { args: [FFIType.ptr], returns: FFIType.ptr },
  libbpf_major_version: { args: [], returns: FFIType.u32 },
  libbpf_minor_version: { args: [], returns: FFIType.u32 },
  libbpf_num_possible_cpus: { args: [], returns: FFIType.i32 },
  libbpf_strerror: { args: [FFIType.i32, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // struct bpf_object *bpf_object__open_mem(const void *, size_t, const struct bpf_object_open_opts *)
  bpf_object__open_mem: { args: [FFIType.ptr, FFIType.u64, FFIType.ptr], returns: FFIType.ptr },
  bpf_object__load: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_object__close: { args: [FFIType.ptr], returns: FFIType.void },
  bpf_object__find_map_by_name: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_object__next_program: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  bpf_program__name: { args: [FFIType.ptr], returns: FFIType.ptr },
  bpf_program__attach: { args: [FFIType.ptr], returns: FFIType.ptr },
  bpf_link__destroy: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_map__fd: { args: [FFIType.ptr], returns: FFIType.i32 },
  bpf_map__set_max_entries: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
  bpf_map__value_size: { args: [FFIType.ptr], returns: FFIType.u32 },
  // int bpf_map_lookup_elem(int fd, const void *key, void *value)
  bpf_map_lookup_elem: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr], returns: FFIType.i32 },
  // int bpf_map_update_elem(int fd, const void *key, const void *value, __u64 flags)
  bpf_map_update_elem: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.i32 },
  // struct ring_buffer *ring_buffer__new(int map_fd, ring_buffer_sample_fn, void *ctx, const struct ring_buffer_opts *)
  ring_buffer__new: { args: [FFIType.i32, FFIType.ptr, FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  ring_buffer__consume: { args: [FFIType.ptr], returns: FFIType.i32 },
  ring_buffer__free: { args: [FFIType.ptr], returns: FFIType.void },
} as const;

const LIBC_SYMBOLS = {
  __errno_location: { args: [], returns: FFIType.ptr },
  memcpy: { args: [FFIType.ptr, FFIType.ptr, FFIType.u64], returns: FFIType.ptr },
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
  function pointer(step: string, result: Pointer | null): Pointer {
    if (result !== null) return result;
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
    strerror,
    version(): string {
      return `${lib.libbpf_major_version()}.${lib.libbpf_minor_version()}`;
    },
    /** A NUL-terminated C string kept alive by the returned buffer. */
    cString(text: string): Buffer {
      return Buffer.from(`${text}\0`, "utf8");
    },
    readCString(p: Pointer | null): string {
      return p === null ? "" : new CString(p).toString();
    },
  };
}
