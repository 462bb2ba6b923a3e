// A burst of connection closes: `--pairs` loopback connections (default 100,000: 200,000 sockets)
// are opened while the agent runs, then all closed at once, in about a second. Every socket's
// close is one record (both ends of each connection are on this node), so the kernel queues
// 200,000 records faster than any steady load would. Reported: the ring buffer size, how long the
// closes took, records lost in the kernel (the agent's stop summary), and whether there is
// exactly one line per socket: the lines are diffed against every socket opened (4-tuple and
// side), and the sockets without one are printed by side, holder and place in the close order,
// with the agent's stderr. Each size given in --ring-buffer-sizes is one run. BURST_DEBUG=1 keeps
// the lines, the list of sockets without one and an `ss` snapshot, and says where.
//
// The kernel skips the tracepoint program when it is already running on that CPU (a socket
// closed in a softirq that interrupted it, which a burst makes common) and counts that as the
// program's recursion_misses, shown here from bpftool for the state-change program and for the
// one at each socket's end (which writes the closes the first one missed), and for each level of
// their stand-ins where they are attached (README, "A burst of closes"). A socket without a
// line is one whose close reached neither: skipped by both, or run by neither with no skip
// counted; its state is then left in the socket table or the hash map, and counted here.
// --witness records every close in the kernel's own trace (a tracefs instance, no BPF; tracefs is
// mounted when missing) and says in which task's context the closes of the sockets without a line
// ran: on this project's test machine, those the ring buffer did not lose closed in a softirq on
// top of a thread of the VM's init (process 1), where the kernel runs no BPF program (README, "A
// burst of closes").
// --agent-cpu 50m,1000m runs the agent and the closing side (this script and its holders) in two
// sibling CPU cgroups, as on a node where the agent's pod or unit has a cgroup of its own: the
// agent's weighted as a pod requesting that much CPU, the closers' as one requesting 1000m (the
// kubelet's conversion: cgroup v1 cpu.shares, v2 cpu.weight); "none" leaves both in this
// script's cgroup, where nice ranks them. Each value is one run; --rounds repeats the list, so
// that values alternate. Exit status 1 means the agent's part failed: records
// lost in the ring buffer, lines dropped, or fewer lines than records read.
//
//   bun scripts/bench/burst.ts [--pairs 100000] [--ring-buffer-sizes 8M] [--agent-cpu none] [--rounds 1] [--connection-state socket-table] [--binary <build>] [--witness] [--short]
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureBinary, ensureTracefs, option, table } from "./common.ts";
import { type OpenConnections, openConnections } from "./connections.ts";
import { RECORD_SIZE } from "../../src/kernel/record.ts";

const short = process.argv.includes("--short");
const witnessing = process.argv.includes("--witness");
const pairs = option("pairs", short ? 5_000 : 100_000);
const sizesAt = process.argv.indexOf("--ring-buffer-sizes");
const sizes = sizesAt > 0 ? (process.argv[sizesAt + 1] ?? "8M").split(",") : ["8M"];
const stateAt = process.argv.indexOf("--connection-state");
const connectionState = stateAt > 0 ? (process.argv[stateAt + 1] ?? "socket-table") : "socket-table";
const cpuAt = process.argv.indexOf("--agent-cpu");
const agentCpus = cpuAt > 0 ? (process.argv[cpuAt + 1] ?? "none").split(",") : ["none"];
const rounds = option("rounds", 1);
const RECORD_BYTES = RECORD_SIZE + 8; // conn_record and the ring buffer's own header per record

const binaryAt = process.argv.indexOf("--binary");
// --binary: another build of the agent (another commit), for a before/after
const binary = binaryAt > 0 && process.argv[binaryAt + 1] !== undefined ? resolve(process.argv[binaryAt + 1]!) : ensureBinary();
const dir = mkdtempSync(join(tmpdir(), "kal-burst-"));

function bytesOf(size: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(size);
  if (!m) throw new Error(`not a size: ${size}`);
  return Number(m[1]) * ({ "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase()] ?? 1);
}

async function readUntil(stream: ReadableStream<Uint8Array>, needle: string, sink: { text: string }): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the agent exited before "${needle}": ${sink.text}`);
    sink.text += decoder.decode(value, { stream: true });
    if (sink.text.includes(needle)) break;
  }
  // Keep collecting, for the stop summary.
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      sink.text += decoder.decode(value, { stream: true });
    }
  })();
}

/** The agent's BPF objects of one kind ("prog" or "map"), each once, by id, from its file descriptors. */
function agentObjects(pid: number, kind: "prog" | "map"): number[] {
  const ids = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    } catch {
      continue;
    }
    // a program's fd and its link's both name the program: counted once
    const id = new RegExp(`^${kind}_id:\\s*(\\d+)`, "m").exec(info)?.[1];
    if (id !== undefined) ids.add(Number(id));
  }
  return [...ids];
}

/**
 * How often the kernel skipped the agent's programs because they were already running on that
 * CPU (a close in a softirq that interrupted one, or a task preempted in one where tracepoints are
 * preemptible: its recursion guard), read with bpftool: the state-change program's and the
 * socket-end program's, then each level of their stand-ins where they are attached (README, "A
 * burst of closes"); null without bpftool.
 */
function recursionMisses(pid: number): { stateChange: number[]; socketEnd: number[] } | null {
  if (Bun.which("bpftool") === null) return null;
  const misses = { stateChange: [0], socketEnd: [0] };
  for (const id of agentObjects(pid, "prog")) {
    const shown = Bun.spawnSync(["bpftool", "-j", "prog", "show", "id", String(id)], { stdout: "pipe", stderr: "ignore" });
    const prog = JSON.parse(shown.stdout.toString() || "{}") as { name?: string; recursion_misses?: number };
    // handle_set_state*, classic_destroy*, stand_in2_…: bpftool may show the kernel's 15-character name
    const named = /^(handle|classic|stand_in|stand_in2|stand_in3)_(set_s|destr)/.exec(prog.name ?? "");
    if (named === null) continue;
    const level = named[1] === "handle" ? 0 : named[1] === "stand_in2" ? 2 : named[1] === "stand_in3" ? 3 : 1;
    const kind = named[2] === "set_s" ? misses.stateChange : misses.socketEnd;
    while (kind.length <= level) kind.push(0);
    kind[level]! += prog.recursion_misses ?? 0;
  }
  return misses;
}

/**
 * States the kernel still keeps for the agent (the socket table's taken entries and the hash map's
 * elements) once every socket of the burst has closed: beside the node's other open connections,
 * each is a close that reached neither the state-change program nor the socket-end one (skipped
 * or not, they would have taken it out). null without bpftool or with socket storage (freed with
 * its socket: nothing left).
 */
function statesLeft(pid: number): number | null {
  if (Bun.which("bpftool") === null || connectionState === "socket-storage") return null;
  let left = 0;
  for (const id of agentObjects(pid, "map")) {
    const shown = JSON.parse(Bun.spawnSync(["bpftool", "-j", "map", "show", "id", String(id)]).stdout.toString() || "{}") as { name?: string };
    if (shown.name !== "connections" && shown.name !== "conn_table") continue;
    const dumped = Bun.spawnSync(["bpftool", "-j", "map", "dump", "id", String(id)], { stdout: "pipe", stderr: "ignore" });
    // each entry's value as bytes ("0x2a"), beside BTF's "formatted" form
    const entries = JSON.parse(dumped.stdout.toString() || "[]") as { value: string[] }[];
    // The table's entries all exist: a taken one holds its socket's address in its first 8 bytes.
    const taken = (value: string[]) => value.slice(0, 8).some((byte) => Number(byte) !== 0);
    left += shown.name === "connections" ? entries.length : entries.filter((e) => taken(e.value)).length;
  }
  return left;
}

/**
 * Waits until no socket of the connections to `ports` is left but in TIME-WAIT (whose own socket
 * has closed already): every close has happened in the kernel. Returns when; throws after `timeoutMs`.
 */
async function allClosed(ports: number[], timeoutMs: number): Promise<number> {
  const filter = ports.map((p) => `sport = :${p} or dport = :${p}`).join(" or ");
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const shown = Bun.spawnSync(["ss", "-Htan", `( ${filter} )`], { stdout: "pipe", stderr: "pipe" });
    if (shown.exitCode !== 0) throw new Error(`ss failed: ${shown.stderr.toString()}`);
    const open = shown.stdout.toString().split("\n").filter((l) => l.trim() !== "" && !l.startsWith("TIME-WAIT")).length;
    if (open === 0) return performance.now();
    if (performance.now() > deadline) throw new Error(`${open} sockets still not closed after ${timeoutMs} ms`);
    await Bun.sleep(50);
  }
}

/**
 * The kernel's own record of every close (sock:inet_sock_set_state to TCP_CLOSE) in a tracefs
 * instance of our own: which task was current when each socket closed, and whether in a softirq.
 * Nothing of BPF: it sees the closes BPF programs do not.
 */
class Witness {
  static readonly dir = "/sys/kernel/tracing/instances/kal-burst";
  readonly #event = `${Witness.dir}/events/sock/inet_sock_set_state`;

  constructor() {
    ensureTracefs();
    if (!existsSync(Witness.dir)) mkdirSync(Witness.dir);
    writeFileSync(`${Witness.dir}/buffer_size_kb`, "65536"); // per CPU: 200,000 closes fit
    writeFileSync(`${this.#event}/filter`, "newstate == 7");
    writeFileSync(`${this.#event}/enable`, "1");
    writeFileSync(`${Witness.dir}/trace`, "");
  }

  /** Stops recording; the closes by local and remote port ("local>remote"), and events the buffer lost. */
  stop(): { closes: Map<string, { task: string; softirq: boolean }>; overrun: number } {
    writeFileSync(`${Witness.dir}/tracing_on`, "0");
    let overrun = 0;
    for (const cpu of readdirSync(`${Witness.dir}/per_cpu`)) {
      overrun += Number(/^overrun: (\d+)/m.exec(readFileSync(`${Witness.dir}/per_cpu/${cpu}/stats`, "utf8"))?.[1] ?? 0);
    }
    const closes = new Map<string, { task: string; softirq: boolean }>();
    // "   <comm>-<tid>   [cpu] <flags> <time>: inet_sock_set_state: ... sport=A dport=B ..."; the
    // flags' third character is "s" in a softirq
    const line = /^\s*(.+-\d+)\s+\[\d+\]\s+\S\S(\S)\S*\s+[\d.]+: inet_sock_set_state: .*? sport=(\d+) dport=(\d+) /;
    for (const text of readFileSync(`${Witness.dir}/trace`, "utf8").split("\n")) {
      const m = line.exec(text);
      if (m) closes.set(`${m[3]}>${m[4]}`, { task: m[1]!, softirq: m[2] === "s" });
    }
    return { closes, overrun };
  }

  /** Leaves nothing behind (also after a failure). */
  static remove(): void {
    if (!existsSync(Witness.dir)) return;
    writeFileSync(`${Witness.dir}/events/sock/inet_sock_set_state/enable`, "0");
    rmdirSync(Witness.dir);
  }
}

/**
 * Two sibling CPU cgroups under one of our own, "agent" and "closers", on the machine's cpu
 * controller: cgroup v1's cpu hierarchy (cpu.shares) or cgroup v2 with cpu enabled (cpu.weight).
 * Weights as the kubelet sets a pod's from its CPU request (shares = millicores * 1024 / 1000,
 * at least 2; v2 weight = 1 + (shares - 2) * 9999 / 262142, the long-standing conversion: newer
 * container runtimes map shares to weight on a curve instead, 1000m to 100 and 50m to 11).
 */
class CpuGroups {
  readonly root: string;
  readonly v2: boolean;
  /** what the closers' group was weighed, e.g. "cpu.shares 1024" */
  readonly closers: string;
  readonly #home: string;
  readonly #mount: string;
  readonly #enabled: boolean;

  constructor() {
    const mounts = readFileSync("/proc/mounts", "utf8").split("\n").map((l) => l.split(" "));
    const v1 = mounts.find((m) => m[2] === "cgroup" && m[3]!.split(",").includes("cpu"));
    const v2 = mounts.find((m) => m[2] === "cgroup2" && readFileSync(`${m[1]}/cgroup.controllers`, "utf8").split(/\s+/).includes("cpu"));
    const mount = v1?.[1] ?? v2?.[1];
    if (mount === undefined) throw new Error("--agent-cpu: no cpu controller here (neither cgroup v1's cpu nor cgroup2's)");
    this.v2 = v1 === undefined;
    this.#mount = mount;
    this.root = `${mount}/kal-burst`;
    // this script's own group, to go back to: "N:cpu,cpuacct:/path" (v1) or "0::/path" (v2)
    const own = readFileSync("/proc/self/cgroup", "utf8").split("\n").map((l) => l.split(":"));
    const path = (this.v2 ? own.find((l) => l[0] === "0") : own.find((l) => l[1]?.split(",").includes("cpu")))?.[2] ?? "/";
    this.#home = `${mount}${path === "/" ? "" : path}`;
    CpuGroups.remove(this.root, this.#home); // left by a run killed before its cleanup
    // v2: the controller enabled in the mount's root (for our group; disabled again at the end if
    // it was not) and in our group (for its two)
    this.#enabled = this.v2 && !readFileSync(`${mount}/cgroup.subtree_control`, "utf8").split(/\s+/).includes("cpu");
    if (this.#enabled) writeFileSync(`${mount}/cgroup.subtree_control`, "+cpu");
    mkdirSync(this.root);
    if (this.v2) writeFileSync(`${this.root}/cgroup.subtree_control`, "+cpu");
    for (const group of ["agent", "closers"]) mkdirSync(`${this.root}/${group}`);
    this.closers = this.weigh("closers", "1000m");
    // the holders this script starts inherit its group
    writeFileSync(`${this.root}/closers/cgroup.procs`, String(process.pid));
  }

  /** Weighs a group as a pod with this CPU request; says what was written. */
  weigh(group: "agent" | "closers", request: string): string {
    const m = /^(\d+)m$/.exec(request);
    if (!m) throw new Error(`--agent-cpu takes millicores (50m) or none, got ${request}`);
    const shares = Math.max(2, Math.floor((Number(m[1]) * 1024) / 1000));
    const [file, value] = this.v2 ? ["cpu.weight", 1 + Math.floor(((shares - 2) * 9999) / 262142)] : ["cpu.shares", shares];
    writeFileSync(`${this.root}/${group}/${file}`, String(value));
    return `${file} ${value}`;
  }

  /** The command, moved into the agent's group before it runs. */
  wrap(command: string[]): string[] {
    return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', `${this.root}/agent/cgroup.procs`, ...command];
  }

  /** This script back in its own group, and whatever else is left; the groups removed. */
  dispose(): void {
    CpuGroups.remove(this.root, this.#home);
    if (this.#enabled) writeFileSync(`${this.#mount}/cgroup.subtree_control`, "-cpu");
  }

  static remove(root: string, home: string): void {
    if (!existsSync(root)) return;
    for (const group of ["agent", "closers"].map((g) => `${root}/${g}`).filter((g) => existsSync(g))) {
      for (const pid of readFileSync(`${group}/cgroup.procs`, "utf8").split("\n").filter(Boolean)) {
        try {
          writeFileSync(`${home}/cgroup.procs`, pid);
        } catch {
          // exited meanwhile
        }
      }
      rmdirSync(group);
    }
    rmdirSync(root);
  }
}

/**
 * Where the closes of the sockets without a line ran, by the task that was current (and its
 * process): how many of that task's closes in the burst had no line.
 */
function witnessed(unlined: Socket[], connections: OpenConnections, seen: ReturnType<Witness["stop"]>): string[] {
  const keyOf = (s: Socket) => {
    const port = connections.ports[s.holder]!;
    return s.side === "connecting" ? `${s.clientPort}>${port}` : `${port}>${s.clientPort}`;
  };
  const burst = new Set<string>();
  connections.clientPorts.forEach((clientPorts, holder) => {
    for (const clientPort of clientPorts) burst.add(`${clientPort}>${connections.ports[holder]}`).add(`${connections.ports[holder]}>${clientPort}`);
  });
  const closesBy = new Map<string, number>();
  let recorded = 0;
  for (const [key, close] of seen.closes) {
    if (burst.has(key)) recorded++;
    const where = `${close.task}${close.softirq ? " (softirq)" : ""}`;
    if (burst.has(key)) closesBy.set(where, (closesBy.get(where) ?? 0) + 1);
  }
  const unlinedBy = new Map<string, number>();
  for (const s of unlined) {
    const close = seen.closes.get(keyOf(s));
    const where = close === undefined ? "not in the record" : `${close.task}${close.softirq ? " (softirq)" : ""}`;
    unlinedBy.set(where, (unlinedBy.get(where) ?? 0) + 1);
  }
  const processOf = (task: string) => {
    const tid = /-(\d+)$/.exec(task)?.[1];
    try {
      return ` of process ${/^Tgid:\s*(\d+)/m.exec(readFileSync(`/proc/${tid}/status`, "utf8"))?.[1]}`;
    } catch {
      return "";
    }
  };
  return [
    `  the kernel's record (tracefs): ${recorded} of the burst's ${burst.size} closes (${seen.overrun} events lost)${unlined.length > 0 ? "; the sockets without a line closed on top of" : ""}`,
    ...[...unlinedBy].map(([where, n]) => `    ${where}${where === "not in the record" ? "" : processOf(where.replace(/ \(softirq\)$/, ""))}: ${n} (of its ${closesBy.get(where) ?? 0} closes in the burst)`),
  ];
}

/** Waits until the file stops growing for `quietMs`; returns when it last grew. */
async function settled(path: string, quietMs: number, timeoutMs: number): Promise<number> {
  let size = -1;
  let grewAt = performance.now();
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const now = statSync(path).size;
    if (now !== size) {
      size = now;
      grewAt = performance.now();
    } else if (performance.now() - grewAt >= quietMs) {
      break;
    }
    await Bun.sleep(20);
  }
  return grewAt;
}

/** A socket of the burst: which side of which holder's connection, and where in its close order. */
interface Socket {
  side: "connecting" | "accepting";
  holder: number;
  /** the connection's place in its holder's order (connected in it; clients closed in it, then servers) */
  index: number;
  clientPort: number;
}

/**
 * Our lines (both ends of connections to the holders' ports, on loopback) against the sockets
 * opened, by 4-tuple and side: how many lines, the sockets without one, and lines beyond one a
 * socket.
 */
function diff(output: string, connections: OpenConnections): { lines: number; unlined: Socket[]; duplicates: number } {
  const holderOf = new Map(connections.ports.map((port, holder) => [port, holder]));
  const seen = new Map<string, number>();
  let lines = 0;
  const line = /src\.addr=127\.0\.0\.1:(\d+),.* dst\.addr=127\.0\.0\.1:(\d+),.* direction=(INBOUND|OUTBOUND),/;
  for (const text of output.split("\n")) {
    const m = line.exec(text);
    if (!m || !holderOf.has(Number(m[2]))) continue;
    lines++;
    const key = `${m[1]}>${m[2]} ${m[3]}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  const unlined: Socket[] = [];
  let duplicates = 0;
  connections.clientPorts.forEach((clientPorts, holder) => {
    const port = connections.ports[holder]!;
    clientPorts.forEach((clientPort, index) => {
      for (const [side, direction] of [["connecting", "OUTBOUND"], ["accepting", "INBOUND"]] as const) {
        const n = seen.get(`${clientPort}>${port} ${direction}`) ?? 0;
        if (n === 0) unlined.push({ side, holder, index, clientPort });
        duplicates += Math.max(0, n - 1);
      }
    });
  });
  return { lines, unlined, duplicates };
}

/** The sockets without a line, grouped by side and holder: how many, and where in the close order. */
function pattern(unlined: Socket[], connections: OpenConnections): string[] {
  const groups = new Map<string, Socket[]>();
  for (const s of unlined) {
    const key = `${s.side} side, holder ${s.holder} (port ${connections.ports[s.holder]}, ${connections.clientPorts[s.holder]!.length} pairs)`;
    groups.set(key, [...(groups.get(key) ?? []), s]);
  }
  return [...groups].map(([key, sockets]) => {
    const indexes = sockets.map((s) => s.index);
    const shown = sockets.slice(0, 8).map((s) => `#${s.index} :${s.clientPort}`).join(", ");
    return `  ${sockets.length} on the ${key}: connections #${Math.min(...indexes)}-#${Math.max(...indexes)} (${shown}${sockets.length > 8 ? ", ..." : ""})`;
  });
}

async function run(size: string, agentCpu: string) {
  const out = join(dir, `lines-${size}.txt`);
  const command = [binary, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", join(dir, "agent.lock"), "--ring-buffer-size", size, "--connection-state", connectionState];
  // "none": in the closers' group (or this script's), beside them
  const weight = cpuGroups === null || agentCpu === "none" ? null : cpuGroups.weigh("agent", agentCpu);
  const agent = Bun.spawn(weight === null ? command : cpuGroups!.wrap(command), { stdin: "ignore", stdout: Bun.file(out), stderr: "pipe" });
  const stderr = { text: "" };
  try {
    await readUntil(agent.stderr, "capturing TCP connections", stderr);
    const connections = await openConnections(pairs);
    let close: { closed: number; closeSeconds: number };
    let drained: number;
    let kernelClosed: number;
    const witness = witnessing ? new Witness() : null;
    let seen: ReturnType<Witness["stop"]> | null = null;
    const closing = performance.now();
    try {
      close = await connections.closeAll();
      // close() returns before TCP is done: a FIN the loopback dropped in the burst is sent again
      // after a timeout. The agent is stopped only once every socket has reached its close.
      kernelClosed = ((await allClosed(connections.ports, 120_000)) - closing) / 1000;
      seen = witness?.stop() ?? null;
      drained = ((await settled(out, 1000, 60_000)) - closing) / 1000;
      if (process.env.BURST_DEBUG) await Bun.write(join(dir, "ss.txt"), Bun.spawnSync(["ss", "-taneoi"]).stdout);
    } finally {
      if (witness !== null) Witness.remove();
      await connections.dispose();
    }
    const missed = recursionMisses(agent.pid);
    const left = statesLeft(agent.pid);
    agent.kill("SIGTERM");
    const code = await agent.exited;
    if (code !== 0) throw new Error(`the agent exited with ${code}: ${stderr.text}`);
    const lost = Number(/(\d+) records lost in the kernel/.exec(stderr.text)?.[1] ?? Number.NaN);
    const dropped = Number(/(\d+) lines dropped/.exec(stderr.text)?.[1] ?? Number.NaN);
    const read = Number(/(\d+) records read/.exec(stderr.text)?.[1] ?? Number.NaN);
    // said at stop when not 0 (and by builds that write them)
    const atEnd = Number(/(\d+) closes the kernel skipped the probe for were written when their socket ended/.exec(stderr.text)?.[1] ?? 0);
    const usage = agent.resourceUsage();
    const { lines, unlined, duplicates } = diff(await Bun.file(out).text(), connections);
    if (process.env.BURST_DEBUG) await Bun.write(join(dir, `unlined-${size}.json`), JSON.stringify(unlined));
    return {
      size,
      share: weight === null ? "none (beside the closers)" : `${agentCpu}: ${weight}, closers' ${cpuGroups!.closers}`,
      closed: close.closed,
      closeSeconds: close.closeSeconds,
      drained,
      kernelClosed,
      lost,
      dropped,
      read,
      missed,
      left,
      atEnd,
      lines,
      connections,
      unlined,
      witnessed: seen === null ? [] : witnessed(unlined, connections, seen),
      duplicates,
      stderr: stderr.text,
      agentCpu: usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN,
    };
  } finally {
    if (agent.exitCode === null) agent.kill("SIGKILL");
    await agent.exited;
  }
}

const cpuGroups = agentCpus.some((c) => c !== "none") ? new CpuGroups() : null;
// Ctrl-C or a kill: the groups go too (the finally below does not run then).
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.on(signal, () => {
    cpuGroups?.dispose();
    process.exit(130);
  });
}
try {
  const rows: string[][] = [];
  const reports: string[] = [];
  let failed = false;
  const runs = Array.from({ length: rounds }, () => sizes.flatMap((size) => agentCpus.map((agentCpu) => ({ size, agentCpu })))).flat();
  for (const { size, agentCpu } of runs) {
    const r = await run(size, agentCpu);
    const exact = r.lines === r.closed && r.unlined.length === 0 && r.duplicates === 0;
    reports.push(
      `${size}, agent's CPU ${r.share}: ${r.unlined.length} sockets without a line, ${r.duplicates} lines beyond one a socket`,
      ...pattern(r.unlined, r.connections),
      ...r.witnessed,
      "  the agent's stderr:",
      ...r.stderr.trimEnd().split("\n").map((l) => `    ${l}`),
    );
    // The agent's part: nothing lost in the ring buffer, a line for every record it read (the
    // records read include other connections on the node, hence at least our lines).
    failed ||= r.lost !== 0 || r.dropped !== 0 || r.read < r.lines;
    rows.push([
      `${size} (${Math.floor(bytesOf(size) / RECORD_BYTES).toLocaleString("en-US")} records)`,
      r.share,
      r.closed.toLocaleString("en-US"),
      `${r.closeSeconds.toFixed(2)} s (${Math.round(r.closed / r.closeSeconds).toLocaleString("en-US")}/s)`,
      `${r.kernelClosed.toFixed(2)} s`,
      `${r.drained.toFixed(2)} s`,
      String(r.lost),
      String(r.dropped),
      `${exact ? "yes" : "NO"} (${r.lines.toLocaleString("en-US")}/${r.closed.toLocaleString("en-US")})`,
      r.missed === null ? "? (no bpftool)" : `${r.missed.stateChange.join(", ")} / ${r.missed.socketEnd.join(", ")}`,
      r.atEnd.toLocaleString("en-US"),
      r.left === null ? "-" : r.left.toLocaleString("en-US"),
      r.agentCpu.toFixed(2),
    ]);
  }
  console.log(
    `burst: ${pairs.toLocaleString("en-US")} loopback connections opened, then every socket closed at once (one record each); --connection-state ${connectionState}`,
  );
  console.log(
    table(
      [
        "ring buffer",
        "agent's CPU weight",
        "sockets closed",
        "closes took",
        "all closed in the kernel after",
        "all lines out after",
        "records lost",
        "lines dropped",
        "one line per socket",
        "runs skipped (recursion): state change / socket end (each stand-in's after a comma)",
        "closes written at the socket's end",
        "states left in the kernel",
        "agent CPU s",
      ],
      rows,
    ),
  );
  console.log(reports.join("\n"));
  process.exitCode = failed ? 1 : 0;
} finally {
  cpuGroups?.dispose();
  if (process.env.BURST_DEBUG) console.error(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
