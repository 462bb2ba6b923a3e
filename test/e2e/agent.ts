/**
 * Runs the compiled agent (`dist/kmesh-accesslog run ...`) as a child process, parses every line
 * it prints (Kmesh text lines or JSON lines) into one `AccessLogEntry` shape, and lets a test wait
 * for the lines of its own connections.
 *
 *   await using agent = await startAgent({ output: "text" });
 *   const [out] = await agent.waitForLines(matchConnection(client, "OUTBOUND"));
 *   const { exitCode, stderr } = await agent.stop();
 */
import { atRunEnd } from "../support/cleanup.ts";
import { accessSync, closeSync, constants, existsSync, openSync, readSync, rmSync } from "node:fs";
import { release } from "node:os";
import { resolve } from "node:path";
import { expect } from "bun:test";
import { parseKernelRelease } from "../../src/kernel/host.ts";
import { socketStorageFromTracing, socketTableFromTracing } from "../../src/kernel/probe.ts";
import type { Subprocess } from "bun";
import * as v from "valibot";
import { indented, LineCollector } from "./lines.ts";

/**
 * Whether this kernel's tracepoints run their programs preemptibly, so that the agent attaches its
 * stand-ins (docs/kernels.md): from Linux 7 (the matrix's 7.2), not before. The tests' oracle; the
 * agent itself probes.
 */
export const PREEMPTIBLE_TRACEPOINTS = (parseKernelRelease(release())?.major ?? 0) >= 7;

export const REPO_ROOT = resolve(import.meta.dir, "../..");
export const AGENT_BINARY = resolve(REPO_ROOT, "dist/kmesh-accesslog");

/**
 * The dynamic loader the binary names (its ELF header's PT_INTERP): `<loader> <binary> ...` runs
 * it as one on a noexec mount is run.
 */
export function dynamicLoader(binary = AGENT_BINARY): string {
  const head = Buffer.alloc(65536);
  const fd = openSync(binary, "r");
  try {
    readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  const [table, entrySize, entries] = [Number(head.readBigUInt64LE(0x20)), head.readUInt16LE(0x36), head.readUInt16LE(0x38)];
  for (let at = table; at < table + entries * entrySize; at += entrySize) {
    if (head.readUInt32LE(at) !== 3 /* PT_INTERP */) continue;
    const from = Number(head.readBigUInt64LE(at + 8));
    return head.toString("latin1", from, from + Number(head.readBigUInt64LE(at + 32)) - 1); // without its NUL
  }
  throw new Error(`${binary} names no dynamic loader (no PT_INTERP)`);
}

/** Field names of a text line, in the order Kmesh prints them; `error` is optional and last. */
export const TEXT_FIELDS = [
  "src.addr",
  "src.workload",
  "src.namespace",
  "dst.addr",
  "dst.service",
  "dst.workload",
  "dst.namespace",
  "start_time",
  "direction",
  "state",
  "sent_bytes",
  "received_bytes",
  "packet_loss",
  "retransmissions",
  "srtt",
  "min_rtt",
  "duration",
] as const;

/** One report, whatever the output format. Times are epoch milliseconds; `null` where `-`. */
export interface AccessLogEntry {
  format: "text" | "json";
  raw: string;
  time: string;
  timeNs: bigint | null;
  srcAddr: string;
  srcPort: number | null;
  srcWorkload: string;
  srcNamespace: string;
  dstAddr: string;
  dstPort: number | null;
  dstService: string;
  dstWorkload: string;
  dstNamespace: string;
  startTime: string;
  startNs: bigint | null;
  direction: string;
  state: string;
  sentBytes: number | null;
  receivedBytes: number | null;
  packetLoss: number | null;
  retransmissions: number | null;
  srttUs: number | null;
  minRttUs: number | null;
  durationMs: number | null;
  error: string | null;
  /** the process behind the socket and its container: JSON lines only (null in text lines, which never say) */
  processPid: number | null;
  processCommand: string | null;
  containerId: string | null;
  containerName: string | null;
  /** text lines: the fields in printed order (for format checks) */
  fieldOrder: string[];
}

const GO_TIME = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))? \+0000 UTC$/;
/** RFC 3339's date-time (section 5.6) as the JSON line writes it: UTC ("Z"), all nine fraction digits. */
const RFC3339_NANO_UTC = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{9})Z$/;

/** Epoch seconds of a calendar date and time; throws unless each part is in range (no Feb 30, no hour 24). */
function utcSeconds(text: string, [y, mo, d, h, mi, s]: number[]): bigint {
  const ms = Date.UTC(y!, mo! - 1, d!, h!, mi!, s!);
  const back = new Date(ms);
  const parts = [back.getUTCFullYear(), back.getUTCMonth() + 1, back.getUTCDate(), back.getUTCHours(), back.getUTCMinutes(), back.getUTCSeconds()];
  if (parts.join() !== [y, mo, d, h, mi, s].join()) throw new Error(`not a real UTC date and time: ${JSON.stringify(text)}`);
  return BigInt(ms / 1000);
}

/**
 * Parses Go's `time.Time.String()` layout in UTC (`2006-01-02 15:04:05.999999999 +0000 UTC`,
 * trailing fraction zeros dropped) to epoch nanoseconds. Throws on anything else, including a
 * fraction that ends in 0.
 */
export function parseTime(value: string): bigint {
  const m = GO_TIME.exec(value);
  if (!m) throw new Error(`not a UTC time in Go's layout: ${JSON.stringify(value)}`);
  if (m[7]?.endsWith("0")) throw new Error(`time fraction has trailing zeros: ${JSON.stringify(value)}`);
  const seconds = utcSeconds(value, m.slice(1, 7).map(Number));
  return seconds * 1_000_000_000n + BigInt((m[7] ?? "").padEnd(9, "0"));
}

/**
 * Parses a JSON line's time strictly, to epoch nanoseconds: RFC 3339 in UTC with exactly nine
 * fraction digits (`2026-12-01T12:22:18.152687231Z`), a date and time that exist. Throws on
 * anything else: Go's layout, an offset other than Z, fewer digits, a lower-case t or z.
 */
export function parseRfc3339(value: string): bigint {
  const m = RFC3339_NANO_UTC.exec(value);
  if (!m) throw new Error(`not RFC 3339 in UTC with nine fraction digits: ${JSON.stringify(value)}`);
  return utcSeconds(value, m.slice(1, 7).map(Number)) * 1_000_000_000n + BigInt(m[7]!);
}

export function nsToMs(ns: bigint): number {
  return Number(ns / 1000n) / 1000;
}

/** Splits `ip:port` / `[ip6]:port`; a bare IPv6 with a port (Kmesh's ambiguous form) is rejected. */
export function parseAddr(value: string): { addr: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(value) ?? /^(\d+\.\d+\.\d+\.\d+):(\d+)$/.exec(value);
  if (!m) throw new Error(`not ip:port or [ip6]:port: ${JSON.stringify(value)}`);
  return { addr: m[1]!, port: Number(m[2]) };
}

const dash = <T>(value: string, parse: (s: string) => T): T | null => (value === "-" ? null : parse(value));

function uint(value: string, suffix = ""): number {
  const m = new RegExp(`^(\\d+)${suffix}$`).exec(value);
  if (!m) throw new Error(`not an unsigned integer${suffix ? ` with ${suffix}` : ""}: ${JSON.stringify(value)}`);
  return Number(m[1]);
}

function durationMs(value: string): number {
  const m = /^(\d+(?:\.\d+)?(?:e[+-]?\d+)?)ms$/.exec(value);
  if (!m) throw new Error(`not a duration in ms: ${JSON.stringify(value)}`);
  return Number(m[1]);
}

/** Parses one Kmesh text line strictly (field names, order, value forms). Throws on any deviation. */
export function parseTextLine(line: string): AccessLogEntry {
  const prefix = "accesslog: ";
  if (!line.startsWith(prefix)) throw new Error(`no "${prefix}" prefix`);
  const body = line.slice(prefix.length);
  const timeEnd = body.indexOf(" UTC ");
  if (timeEnd < 0) throw new Error("no report time");
  const time = body.slice(0, timeEnd + 4);
  const fields = new Map<string, string>();
  const order: string[] = [];
  for (const part of body.slice(timeEnd + 5).split(", ")) {
    const eq = part.indexOf("=");
    if (eq <= 0) throw new Error(`field without '=': ${JSON.stringify(part)}`);
    const key = part.slice(0, eq);
    if (fields.has(key)) throw new Error(`duplicate field ${key}`);
    fields.set(key, part.slice(eq + 1));
    order.push(key);
  }
  const expected = fields.has("error") ? [...TEXT_FIELDS, "error"] : [...TEXT_FIELDS];
  if (order.join(",") !== expected.join(",")) {
    throw new Error(`fields are [${order.join(", ")}], expected [${expected.join(", ")}]`);
  }
  const f = (k: string) => fields.get(k)!;
  const src = parseAddr(f("src.addr"));
  const dst = parseAddr(f("dst.addr"));
  return {
    format: "text",
    raw: line,
    time,
    timeNs: parseTime(time),
    srcAddr: src.addr,
    srcPort: src.port,
    srcWorkload: f("src.workload"),
    srcNamespace: f("src.namespace"),
    dstAddr: dst.addr,
    dstPort: dst.port,
    dstService: f("dst.service"),
    dstWorkload: f("dst.workload"),
    dstNamespace: f("dst.namespace"),
    startTime: f("start_time"),
    startNs: dash(f("start_time"), parseTime),
    direction: f("direction"),
    state: f("state"),
    sentBytes: dash(f("sent_bytes"), (s) => uint(s)),
    receivedBytes: dash(f("received_bytes"), (s) => uint(s)),
    packetLoss: dash(f("packet_loss"), (s) => uint(s)),
    retransmissions: dash(f("retransmissions"), (s) => uint(s)),
    srttUs: dash(f("srtt"), (s) => uint(s, "us")),
    minRttUs: dash(f("min_rtt"), (s) => uint(s, "us")),
    // `-ms` is read as unknown too, so that such a line is still found; tests check the text.
    durationMs: f("duration") === "-ms" ? null : dash(f("duration"), durationMs),
    error: fields.get("error") ?? null,
    processPid: null,
    processCommand: null,
    containerId: null,
    containerName: null,
    fieldOrder: order,
  };
}

const Num = v.nullable(v.number());
const Time = v.string();
/** null (JSON's "unknown") is read as the text form's `-` */
const Text = v.nullable(v.string());
/** The JSON line: numbers must be JSON numbers, not strings. */
export const JsonLineSchema = v.strictObject({
  time: Time,
  src_addr: v.string(),
  src_port: Num,
  src_workload: Text,
  src_namespace: Text,
  dst_addr: v.string(),
  dst_port: Num,
  dst_service: Text,
  dst_workload: Text,
  dst_namespace: Text,
  start_time: v.nullable(Time),
  direction: v.string(),
  state: v.string(),
  sent_bytes: Num,
  received_bytes: Num,
  packet_loss: Num,
  retransmissions: Num,
  srtt_us: Num,
  min_rtt_us: Num,
  duration_ms: Num,
  error: v.nullish(v.string()),
  netns: v.number(),
  process_pid: v.nullable(v.pipe(v.number(), v.integer(), v.minValue(1))),
  process_command: Text,
  container_id: v.nullable(v.pipe(v.string(), v.regex(/^[0-9a-f]{64}$/))),
  container_name: Text,
});

export function parseJsonLine(line: string): AccessLogEntry {
  const result = v.safeParse(JsonLineSchema, JSON.parse(line));
  if (!result.success) throw new Error(v.summarize(result.issues));
  const j = result.output;
  const bare = (a: string) => a.replace(/^\[(.*)\]$/, "$1");
  const text = (t: string | null) => t ?? "-";
  const start = j.start_time === null ? null : parseRfc3339(j.start_time);
  return {
    format: "json",
    raw: line,
    time: j.time,
    timeNs: parseRfc3339(j.time),
    srcAddr: bare(j.src_addr),
    srcPort: j.src_port,
    srcWorkload: text(j.src_workload),
    srcNamespace: text(j.src_namespace),
    dstAddr: bare(j.dst_addr),
    dstPort: j.dst_port,
    dstService: text(j.dst_service),
    dstWorkload: text(j.dst_workload),
    dstNamespace: text(j.dst_namespace),
    startTime: String(j.start_time),
    startNs: start,
    direction: j.direction,
    state: j.state,
    sentBytes: j.sent_bytes,
    receivedBytes: j.received_bytes,
    packetLoss: j.packet_loss,
    retransmissions: j.retransmissions,
    srttUs: j.srtt_us,
    minRttUs: j.min_rtt_us,
    durationMs: j.duration_ms,
    error: j.error ?? null,
    processPid: j.process_pid,
    processCommand: j.process_command,
    containerId: j.container_id,
    containerName: j.container_name,
    fieldOrder: Object.keys(JSON.parse(line) as object),
  };
}

export interface Malformed {
  line: string;
  problem: string;
}

export interface StopResult {
  exitCode: number | null;
  signalCode: string | null;
  stderr: string;
  lines: string[];
  entries: AccessLogEntry[];
  /** true if it did not exit within the timeout and had to be killed */
  killed: boolean;
}

export interface AgentOptions {
  output?: "text" | "json";
  duration?: number;
  /** further arguments after `run` */
  args?: string[];
  env?: Record<string, string>;
  /** run inside this network namespace (`ip netns exec`, which execs: the pid is the agent's) */
  netns?: string;
  /** words before the binary that exec it, the same pid (a dynamic loader, a shell) */
  prefix?: string[];
  /** another copy of the agent's binary */
  binary?: string;
}

/** A lock path no other agent uses (the directory is created by the agent); its admin socket goes beside it. */
export function privateLockFile(): string {
  return `/tmp/kal-e2e-locks/${process.pid}-${Math.random().toString(36).slice(2, 10)}.lock`;
}

/** The agent's default admin socket for a lock file (`.sock` for `.lock`, as the agent does). */
export const socketBeside = (lockFile: string) => `${lockFile.replace(/\.lock$/, "")}.sock`;

const liveAgents = new Set<Subprocess>();
let exitHookInstalled = false;

export class Agent implements AsyncDisposable {
  readonly proc: Subprocess<"ignore", "pipe", "pipe">;
  readonly argv: string[];
  readonly #out: LineCollector<AccessLogEntry>;
  /** lines that are neither valid text nor valid JSON lines, with the reason */
  readonly malformed: Malformed[] = [];
  readonly #err: LineCollector<string>;
  #lockFile: string | null = null;

  constructor(options: AgentOptions) {
    this.argv = [
      ...(options.netns === undefined ? [] : ["ip", "netns", "exec", options.netns]),
      ...(options.prefix ?? []),
      options.binary ?? AGENT_BINARY,
      "run",
    ];
    if (options.output) this.argv.push("--output", options.output);
    if (options.duration !== undefined) this.argv.push("--duration", String(options.duration));
    const args = options.args ?? [];
    // Test agents run side by side (and beside other test runs): each gets its
    // own single-agent lock and no admin port unless the test asks for them.
    if (!args.some((a) => a.startsWith("--lock-file"))) {
      this.#lockFile = privateLockFile();
      this.argv.push("--lock-file", this.#lockFile);
    }
    if (!args.some((a) => a.startsWith("--admin-addr"))) this.argv.push("--admin-addr", "");
    // Nor a metrics address (:15020 when workload metrics are turned on) unless asked for.
    if (!args.some((a) => a.startsWith("--metrics-addr"))) this.argv.push("--metrics-addr", "");
    this.argv.push(...args);
    this.proc = Bun.spawn(this.argv, {
      cwd: REPO_ROOT,
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, ...options.env },
    });
    liveAgents.add(this.proc);
    void this.proc.exited.then(() => {
      liveAgents.delete(this.proc);
      // An agent killed with SIGKILL cannot remove its lock file and socket: do it for it.
      if (this.#lockFile !== null) for (const file of [this.#lockFile, socketBeside(this.#lockFile)]) rmSync(file, { force: true });
    });
    const format = options.output ?? "text";
    this.#out = new LineCollector(
      this.proc.stdout,
      (line) => {
        try {
          return format === "json" ? parseJsonLine(line) : parseTextLine(line);
        } catch (e) {
          this.malformed.push({ line, problem: (e as Error).message });
          return undefined;
        }
      },
      (entry) => entry.raw,
    );
    this.#out.setEndReason("the agent's stdout closed (did it exit?)");
    this.#err = new LineCollector(this.proc.stderr, (line) => line, (line) => line);
    this.#err.setEndReason("the agent's stderr closed (did it exit?)");
    this.#out.setFailureContext(() => `\nthe agent's stderr, last lines:\n${indented(this.#err.lines.slice(-10))}`);
  }

  get pid(): number {
    return this.proc.pid;
  }
  /** every stdout line so far */
  get lines(): string[] {
    return this.#out.lines;
  }
  /** every parsed entry so far */
  get entries(): AccessLogEntry[] {
    return this.#out.items;
  }
  /** stderr; complete once the agent has exited */
  async stderr(): Promise<string> {
    await this.#err.done;
    return this.#err.lines.map((line) => `${line}\n`).join("");
  }

  /** stderr lines so far */
  get stderrLines(): string[] {
    return this.#err.lines;
  }

  /** Resolves with the first stderr line matching `predicate` (it may have come already). */
  async waitForStderr(predicate: (line: string) => boolean, timeoutMs = 10_000): Promise<string> {
    return (await this.#err.waitFor(predicate, 1, timeoutMs))[0]!;
  }

  filter(predicate: (e: AccessLogEntry) => boolean): AccessLogEntry[] {
    return this.#out.filter(predicate);
  }

  /** Resolves with all matching entries once `count` have arrived; rejects on timeout or exit. */
  waitForLines(predicate: (e: AccessLogEntry) => boolean, count = 1, timeoutMs = 10_000): Promise<AccessLogEntry[]> {
    return this.#out.waitFor(predicate, count, timeoutMs);
  }

  /** Sends `signal` (SIGTERM by default) and waits for exit; SIGKILL after `timeoutMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<StopResult> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill(signal);
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      this.proc.kill("SIGKILL");
    }, timeoutMs);
    await this.proc.exited;
    clearTimeout(timer);
    await this.#out.done;
    return {
      exitCode: this.proc.exitCode,
      signalCode: this.proc.signalCode === null ? null : String(this.proc.signalCode),
      stderr: await this.stderr(),
      lines: this.#out.lines,
      entries: this.#out.items,
      killed,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL");
    await this.proc.exited;
  }
}

/** Why the agent cannot be run here, or null if it can. */
/**
 * Whether an agent asked for --connection-state socket-storage got it: from Linux 5.11 on, unless
 * it said the kernel refused it (some kernels' verifiers refuse its programs), in exactly the form
 * it says that.
 */
export function keptWithEachSocket(stderrLines: readonly string[]): boolean {
  const refusals = stderrLines.filter((line) => line.includes("the kernel refused socket storage"));
  for (const line of refusals) {
    expect(line).toMatch(
      /^kmesh-accesslog: connection state kept in a hash map, not with each socket: the kernel refused socket storage \((its verifier refused the programs that use it|it refused to walk it): .+\)$/,
    );
  }
  return socketStorageFromTracing(release()) && refusals.length === 0;
}

/**
 * Whether an agent asked for --connection-state socket-table (the default) got it: from Linux 5.12
 * on, unless it said the kernel refused it, in exactly the form it says that. The start-up line
 * says which, either way.
 */
export function keptInTable(stderrLines: readonly string[]): boolean {
  const refusals = stderrLines.filter((line) => line.includes("not in the socket table"));
  for (const line of refusals) {
    expect(line).toMatch(/^kmesh-accesslog: connection state kept in a hash map, not in the socket table: the kernel refused it \(its verifier refused the programs that use it: .+\)$/);
  }
  const inTable = socketTableFromTracing(release()) && refusals.length === 0;
  const capturing = stderrLines.find((line) => line.includes("capturing TCP connections")) ?? "";
  expect(capturing.includes("open connections tracked (in a table of 16384 entries, then a hash map)")).toBe(inTable);
  return inTable;
}

export function agentUnavailableReason(): string | null {
  if (process.getuid?.() !== 0) return "end-to-end tests need root (BPF programs and network namespaces)";
  if (!existsSync(AGENT_BINARY)) return `the agent binary ${AGENT_BINARY} does not exist: run scripts/build first`;
  try {
    accessSync(AGENT_BINARY, constants.X_OK);
  } catch {
    return `the agent binary ${AGENT_BINARY} is not executable`;
  }
  return null;
}

/** Starts the agent. Not yet capturing when this returns: see waitUntilCapturing in exchange.ts. */
export function startAgent(options: AgentOptions = {}): Agent {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    atRunEnd(() => {
      for (const p of liveAgents) p.kill("SIGKILL");
    });
  }
  return new Agent(options);
}

/** Matches the lines of one connection by its 4-tuple (and optionally the direction). */
export function matchConnection(
  c: { srcAddr: string; srcPort: number; dstAddr: string; dstPort: number },
  direction?: "OUTBOUND" | "INBOUND",
): (e: AccessLogEntry) => boolean {
  return (e) =>
    e.srcAddr === c.srcAddr &&
    e.srcPort === c.srcPort &&
    e.dstAddr === c.dstAddr &&
    e.dstPort === c.dstPort &&
    (direction === undefined || e.direction === direction);
}
