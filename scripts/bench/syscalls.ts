// What the agent's syscall tracepoints cost every process on the node. The accept programs are on
// syscalls:sys_exit_accept4 and sys_exit_accept (bpf/accesslog.bpf.c), and while any syscall
// tracepoint is in use the kernel sends every system call of every task through its slow path (the
// syscall-tracing work at entry and exit): a cost outside the programs' own run time, which churn's
// --bpf-stats reads. The agent attaches them only when an output names processes (--output json,
// OTLP): --json runs it with --output json, to time what that costs. This times three calls in a
// loop, in alternating rounds of no agent and the agent attached with --accesslog=false (the kernel
// hooks alone):
// - getppid(), which none of our programs runs at: what every system call pays;
// - accept4() on an empty non-blocking listener (EAGAIN): what an accept() pays besides, the
//   tracepoint's dispatch to a program that returns at once;
// - socket() + listen() + close(), a listener's life: two state changes (CLOSE → LISTEN → CLOSE)
//   and a socket end, each tracepoint calling every program on it. With --compare and a script
//   that runs the build with KMESH_ACCESSLOG_STAND_INS=always (or =never, where the kernel's
//   tracepoints are preemptible): what the stand-ins (docs/kernels.md) cost.
// Each round's figure is the best of five loops (the least disturbed by the machine's other work);
// the table gives the medians of the rounds.
//
// --compare <binary> adds rounds of another build (another commit, a variant), alternating.
//
//   bun scripts/bench/syscalls.ts [--rounds 7] [--calls 2000000] [--json] [--compare <binary>] [--short]
import { dlopen, ptr } from "bun:ffi";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureBinary, median, option, table } from "./common.ts";

const short = process.argv.includes("--short");
const rounds = option("rounds", short ? 1 : 7);
const calls = option("calls", short ? 100_000 : 2_000_000);
/** accept4() costs some 15 times a getppid(): fewer calls keep the loops' time alike */
const acceptCalls = Math.max(1, Math.round(calls / 10));
/** a listener's life costs some 100 times a getppid() */
const listenerCalls = Math.max(1, Math.round(calls / 100));
/** The agent's output: json attaches the accept programs, text (the default) does not. */
const output = process.argv.includes("--json") ? "json" : "text";
const compareAt = process.argv.indexOf("--compare");
const compared = compareAt > 0 && process.argv[compareAt + 1] !== undefined ? resolve(process.argv[compareAt + 1]!) : undefined;

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const libc = dlopen("libc.so.6", {
  getppid: { args: [], returns: "i32" },
  socket: { args: ["i32", "i32", "i32"], returns: "i32" },
  bind: { args: ["i32", "ptr", "u32"], returns: "i32" },
  listen: { args: ["i32", "i32"], returns: "i32" },
  accept4: { args: ["i32", "ptr", "ptr", "i32"], returns: "i32" },
  close: { args: ["i32"], returns: "i32" },
}).symbols;

// An empty listener on 127.0.0.1 (a port the kernel picks): accept4() on it fails with EAGAIN.
const listener = libc.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
const address = new Uint8Array(16); // struct sockaddr_in
new DataView(address.buffer).setUint16(0, AF_INET, true);
address.set([127, 0, 0, 1], 4);
if (listener < 0 || libc.bind(listener, ptr(address), address.byteLength) !== 0 || libc.listen(listener, 1) !== 0) {
  throw new Error("could not open a listener on 127.0.0.1");
}

/** Nanoseconds a call, the best of five loops of `n` calls. */
function best(n: number, call: () => number): number {
  let fastest = Number.POSITIVE_INFINITY;
  for (let loop = 0; loop < 5; loop++) {
    const start = Bun.nanoseconds();
    for (let i = 0; i < n; i++) call();
    fastest = Math.min(fastest, (Bun.nanoseconds() - start) / n);
  }
  return fastest;
}

type Mode = "off" | "hooks" | "hooks'";
const modes: Mode[] = ["off", "hooks", ...(compared === undefined ? [] : (["hooks'"] as const))];
const dir = mkdtempSync(join(tmpdir(), "kal-syscalls-"));
const binary = ensureBinary();

/** The agent attached with --accesslog=false, once it says it captures. */
async function startAgent(program: string): Promise<Bun.Subprocess<"ignore", "ignore", "pipe">> {
  const agent = Bun.spawn([program, "run", "--accesslog=false", "--output", output, "--no-kubelet", "--admin-addr", "", "--lock-file", join(dir, "agent.lock")], {
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  const reader = agent.stderr.getReader();
  const timer = setTimeout(() => agent.kill("SIGKILL"), 30_000);
  let said = "";
  try {
    while (!said.includes("capturing TCP connections")) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`${program} exited (or took 30 s) before it attached: ${said}`);
      said += new TextDecoder().decode(value);
    }
  } finally {
    clearTimeout(timer);
  }
  reader.releaseLock();
  return agent;
}

/** A listener's life; listen() binds the socket to a free port, and close() frees it. */
function listenerLife(): number {
  const fd = libc.socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || libc.listen(fd, 1) !== 0) throw new Error("could not open a listener (socket() or listen() failed)");
  return libc.close(fd);
}

const results = new Map<Mode, { getppid: number[]; accept4: number[]; listener: number[] }>(
  modes.map((m) => [m, { getppid: [], accept4: [], listener: [] }]),
);
try {
  for (let round = 0; round < rounds; round++) {
    for (const mode of modes) {
      const agent = mode === "off" ? null : await startAgent(mode === "hooks" ? binary : compared!);
      try {
        results.get(mode)!.getppid.push(best(calls, () => libc.getppid()));
        results.get(mode)!.accept4.push(best(acceptCalls, () => libc.accept4(listener, null, null, SOCK_NONBLOCK)));
        results.get(mode)!.listener.push(best(listenerCalls, listenerLife));
      } finally {
        agent?.kill("SIGTERM");
        await agent?.exited;
      }
    }
  }
} finally {
  libc.close(listener);
  rmSync(dir, { recursive: true, force: true });
}

const off = results.get("off")!;
const rows = modes.map((mode) => {
  const r = results.get(mode)!;
  const name = mode === "off" ? "off" : `hooks only (--accesslog=false --output ${output})${mode === "hooks'" ? `, ${compared}` : ""}`;
  const delta = (mine: number[], base: number[]) => {
    const ns = median(mine) - median(base);
    return mode === "off" ? "-" : `${ns < 0 ? "" : "+"}${ns.toFixed(1)}`;
  };
  return [
    name,
    median(r.getppid).toFixed(1),
    delta(r.getppid, off.getppid),
    median(r.accept4).toFixed(1),
    delta(r.accept4, off.accept4),
    median(r.listener).toFixed(1),
    delta(r.listener, off.listener),
  ];
});
console.log(
  `syscalls: ${rounds} alternating rounds, ${calls} getppid(), ${acceptCalls} accept4() (EAGAIN) and ${listenerCalls} listeners a loop, best of 5 loops`,
);
console.log(
  table(["agent", "getppid ns", "vs off", "accept4 (EAGAIN) ns", "vs off", "socket + listen + close ns", "vs off"], rows),
);
