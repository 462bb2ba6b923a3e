// The C library, bound once for the whole agent: the few calls it makes outside libbpf, each with
// its C signature, and errno, read one way. (`check` probes bpf() from a child process, which binds
// its own: see src/check/bpf-syscall.ts.)
import { dlopen, FFIType, read } from "bun:ffi";

export const libc = dlopen("libc.so.6", {
  // int *__errno_location(void)
  __errno_location: { args: [], returns: "ptr" },
  // int clock_gettime(clockid_t clockid, struct timespec *tp)
  clock_gettime: { args: ["i32", "ptr"], returns: "i32" },
  // int flock(int fd, int operation)
  flock: { args: ["i32", "i32"], returns: "i32" },
  // int memfd_create(const char *name, unsigned int flags)
  memfd_create: { args: ["ptr", "u32"], returns: "i32" },
  // ssize_t read(int fd, void *buf, size_t count)
  read: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  // ssize_t write(int fd, const void *buf, size_t count)
  write: { args: ["i32", "ptr", "u64"], returns: FFIType.i64_fast },
  // int close(int fd)
  close: { args: ["i32"], returns: "i32" },
  // int socket(int domain, int type, int protocol)
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  // int listen(int sockfd, int backlog)
  listen: { args: ["i32", "i32"], returns: "i32" },
  // int getpagesize(void)
  getpagesize: { args: [], returns: "i32" },
  // void *mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset): MAP_FAILED is -1
  mmap: { args: ["ptr", "u64", "i32", "i32", "i32", "i64"], returns: "i64" },
  // int munmap(void *addr, size_t length)
  munmap: { args: ["ptr", "u64"], returns: "i32" },
}).symbols;

/** The calling thread's errno: read it at once after the call that failed, before any other. */
export function errno(): number {
  const where = libc.__errno_location();
  return where === null ? 0 : read.i32(where, 0);
}
