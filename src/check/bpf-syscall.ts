// Tries the bpf() system call in a child process, so that a seccomp filter that kills the caller
// (systemd's SystemCallFilter= without SystemCallErrorNumber=, for one) kills the child, not
// `check`. The child is this same executable, run as the Bun CLI (self.ts). A child
// inherits the parent's seccomp filters, capabilities and security labels, so it meets the
// same rules the agent would.
import { runtimeCommand } from "../self.ts";
import type { BpfSyscallFacts } from "./system.ts";

const SYS_BPF: Partial<Record<string, number>> = { x64: 321, arm64: 280 };
const BPF_MAP_CREATE = 0;
/** No kernel has a command this high: the call gets as far as the dispatcher and no further. */
const BPF_NO_SUCH_COMMAND = 0x7fff;
const BPF_MAP_TYPE_ARRAY = 2;
const RLIMIT_MEMLOCK = 8;
const CHILD_TIMEOUT_MS = 10_000;

function childScript(nr: number): string {
  return `
const { dlopen, read } = require("bun:ffi");
const c = dlopen("libc.so.6", {
  syscall: { args: ["i64", "i64", "ptr", "u32"], returns: "i64" },
  __errno_location: { args: [], returns: "ptr" },
  close: { args: ["i32"], returns: "i32" },
  setrlimit: { args: ["i32", "ptr"], returns: "i32" },
}).symbols;
// As libbpf does before creating maps: before 5.11 they are charged to RLIMIT_MEMLOCK, which a
// running agent's maps (same user) may have used up. Without CAP_SYS_RESOURCE this fails, and the
// capabilities line says so.
c.setrlimit(${RLIMIT_MEMLOCK}, new BigUint64Array([0xffffffffffffffffn, 0xffffffffffffffffn]));
const errno = () => read.i32(c.__errno_location(), 0);
const invalid = Number(c.syscall(${nr}, ${BPF_NO_SUCH_COMMAND}, null, 0)) < 0 ? errno() : 0;
// union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries; the rest zero.
const attr = new Uint32Array(32);
attr.set([${BPF_MAP_TYPE_ARRAY}, 4, 4, 1]);
const fd = Number(c.syscall(${nr}, ${BPF_MAP_CREATE}, attr, attr.byteLength));
const mapCreate = fd < 0 ? errno() : 0;
if (fd >= 0) c.close(fd);
process.stdout.write(JSON.stringify({ invalid, mapCreate }));
`;
}

export function probeBpfSyscall(): BpfSyscallFacts {
  const nr = SYS_BPF[process.arch];
  if (nr === undefined) return { untested: `no bpf() system call number known for ${process.arch}` };
  let child: ReturnType<typeof Bun.spawnSync>;
  try {
    child = Bun.spawnSync({
      cmd: [...runtimeCommand(), "-e", childScript(nr)],
      env: { ...process.env, BUN_BE_BUN: "1" },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: CHILD_TIMEOUT_MS,
    });
  } catch (error) {
    return { untested: `cannot start a child process: ${error instanceof Error ? error.message : String(error)}` };
  }
  // SECCOMP_RET_KILL_* ends the caller with SIGSYS; any other signal is not the filter's doing.
  if (child.signalCode === "SIGSYS") return { signal: child.signalCode };
  if (child.signalCode) return { untested: `the child process was killed by ${child.signalCode}` };
  const text = child.stdout?.toString() ?? "";
  try {
    const facts = JSON.parse(text) as { invalid: unknown; mapCreate: unknown };
    if (typeof facts.invalid === "number" && typeof facts.mapCreate === "number") {
      return { invalid: facts.invalid, mapCreate: facts.mapCreate };
    }
  } catch {
    // fall through: say what the child said
  }
  const said = (child.stderr?.toString() ?? "").trim().split("\n").at(-1) ?? "";
  return { untested: `the child process exited ${child.exitCode}${said === "" ? "" : `: ${said}`}` };
}
