/**
 * Seccomp filters for tests, installed for real: `seccompExec(program)` is an argv prefix that
 * starts Bun, has it set no_new_privs and load the classic-BPF `program` with seccomp(2) on
 * itself, then execv the rest of argv, which inherits the filter (and so do its threads and
 * children). Used to make "bpf() refused / kills" (check.test.ts) and to enforce a systemd unit's
 * SystemCallFilter= allow list (deploy-systemd.test.ts).
 */
import { readFileSync } from "node:fs";

export interface Insn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

export const RET_ALLOW = 0x7fff0000;
export const RET_KILL_PROCESS = 0x80000000;
export const retErrno = (errno: number) => 0x00050000 | errno;

const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const RET_K = 0x06;
/** offsets in struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; } */
const NR = 0;
const ARCH = 4;
const ARG0_LOW = 16;

const AUDIT_ARCH: Partial<Record<string, number>> = { x64: 0xc000003e, arm64: 0xc00000b7 };
export const SYSCALLS: Partial<Record<string, { bpf: number; seccomp: number; socket: number }>> = {
  x64: { bpf: 321, seccomp: 317, socket: 41 },
  arm64: { bpf: 280, seccomp: 277, socket: 198 },
};
export const SECCOMP_AVAILABLE = SYSCALLS[process.arch] !== undefined;

const ins = (code: number, k: number, jt = 0, jf = 0): Insn => ({ code, jt, jf, k });

/** Everything allowed but system call `nr`, which gets `action`. */
export function denyOne(nr: number, action: number): Insn[] {
  return [ins(LD_W_ABS, NR), ins(JEQ_K, nr, 0, 1), ins(RET_K, action), ins(RET_K, RET_ALLOW)];
}

/**
 * Only `allowed` system calls of this architecture; socket() only for `families`; anything else
 * fails with `errno` (systemd's SystemCallErrorNumber=). Another architecture's calls kill
 * (SystemCallArchitectures=native).
 */
export function allowList(allowed: Iterable<number>, families: readonly number[], errno: number, eafnosupport = 97): Insn[] {
  const { socket } = SYSCALLS[process.arch]!;
  const program: Insn[] = [ins(LD_W_ABS, ARCH), ins(JEQ_K, AUDIT_ARCH[process.arch]!, 1, 0), ins(RET_K, RET_KILL_PROCESS)];
  // socket(family, ...): only the families given.
  program.push(ins(LD_W_ABS, NR), ins(JEQ_K, socket, 0, families.length * 2 + 2), ins(LD_W_ABS, ARG0_LOW));
  for (const family of families) program.push(ins(JEQ_K, family, 0, 1), ins(RET_K, RET_ALLOW));
  program.push(ins(RET_K, retErrno(eafnosupport)));
  program.push(ins(LD_W_ABS, NR));
  for (const nr of new Set(allowed)) program.push(ins(JEQ_K, nr, 0, 1), ins(RET_K, RET_ALLOW));
  program.push(ins(RET_K, retErrno(errno)));
  return program;
}

/** System call numbers by name, from the kernel headers (linux-libc-dev), for this architecture. */
export function syscallNumbers(): Map<string, number> | null {
  if (process.arch !== "x64") return null; // arm64's table is macro soup (asm-generic); x64 is enough here
  let header: string;
  try {
    header = readFileSync("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "utf8");
  } catch {
    return null;
  }
  return new Map([...header.matchAll(/^#define __NR_(\w+) (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
}

const SCRIPT = `
const { dlopen, ptr } = require("bun:ffi");
const c = dlopen("libc.so.6", {
  syscall: { args: ["i64", "i64", "i64", "ptr"], returns: "i64" },
  prctl: { args: ["i32", "u64", "u64", "u64", "u64"], returns: "i32" },
  execv: { args: ["ptr", "ptr"], returns: "i32" },
}).symbols;
const [nr, hex, ...command] = process.argv.slice(1);
const filter = Buffer.from(hex, "hex"); // struct sock_filter[]: { u16 code; u8 jt; u8 jf; u32 k; }
const program = new DataView(new ArrayBuffer(16)); // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
program.setUint16(0, filter.length / 8, true);
program.setBigUint64(8, BigInt(ptr(filter)), true);
if (c.prctl(38, 1, 0, 0, 0) !== 0) throw new Error("PR_SET_NO_NEW_PRIVS failed");
if (Number(c.syscall(Number(nr), 1, 0, program)) !== 0) throw new Error("seccomp(SECCOMP_SET_MODE_FILTER) failed");
const args = command.map((a) => Buffer.from(a + "\\0"));
const argv = new BigUint64Array(args.length + 1);
args.forEach((a, i) => { argv[i] = BigInt(ptr(a)); });
c.execv(args[0], argv);
throw new Error("execv " + command[0] + " failed");
`;

/** argv prefix that runs the rest of argv under `program`; `bun` is the Bun executable that loads it. */
export function seccompExec(program: Insn[], bun = process.execPath): string[] {
  const bytes = Buffer.alloc(program.length * 8);
  program.forEach((insn, i) => {
    bytes.writeUInt16LE(insn.code, i * 8);
    bytes.writeUInt8(insn.jt, i * 8 + 2);
    bytes.writeUInt8(insn.jf, i * 8 + 3);
    bytes.writeUInt32LE(insn.k >>> 0, i * 8 + 4);
  });
  return [bun, "-e", SCRIPT, String(SYSCALLS[process.arch]!.seccomp), bytes.toString("hex")];
}
