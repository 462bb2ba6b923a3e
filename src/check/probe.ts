// The libbpf and probe lines of `check`: the libbpf `run` would pick (src/kernel/libbpf.ts
// decides), and a real load and attach of the probe (Probe.open, the agent's own path) with small
// maps, closed at once: links are this process's fds, so nothing stays attached.
import { existsSync, readFileSync } from "node:fs";
import { MIN_LIBBPF, openLibbpf, recentEnough, type LibbpfOrigin } from "../kernel/libbpf.ts";
import { release } from "node:os";
import { type TracepointsUnattached, Probe, ProbeLoadError, runTimeAllocationAllowed, STAND_INS_ENV } from "../kernel/probe.ts";
import { type CheckResult, checkLine } from "./report.ts";

/** Small, but a whole number of pages on 4K, 16K and 64K page kernels. */
const TRY_RING_BUFFER_BYTES = 64 * 1024;
const TRY_MAX_CONNECTIONS = 1024;

const ORIGIN: Record<LibbpfOrigin, string> = {
  system: "the system's libbpf.so.1",
  bundled: "the copy built into this binary",
  "--libbpf": "--libbpf",
};

export async function libbpfCheck(forcedPath: string | undefined): Promise<CheckResult> {
  const libbpfLine = checkLine("libbpf", "libbpf");
  if (forcedPath !== undefined && !existsSync(forcedPath)) {
    return libbpfLine.fail(
      `--libbpf ${forcedPath}: no such file`,
      "point --libbpf at a libbpf 1.x shared object, or leave it out to use the system's or the built-in one",
    );
  }
  try {
    const { bpf, origin, notes } = await openLibbpf(forcedPath);
    const version = bpf.version();
    const from = origin === "--libbpf" ? `--libbpf ${forcedPath}` : ORIGIN[origin];
    if (!recentEnough(version)) {
      return libbpfLine.fail(`${version} (${from}) is older than ${MIN_LIBBPF.major}.${MIN_LIBBPF.minor}`, "use libbpf 1.x");
    }
    // openLibbpf's notes say why it took the built-in one; its last note repeats the choice.
    const why = origin === "bundled" ? notes.filter((note) => !note.startsWith("using ")) : [];
    return libbpfLine.ok(`${version} (${from}${why.length > 0 ? `: ${why.join("; ")}` : ""})`);
  } catch (error) {
    return libbpfLine.fail(
      error instanceof Error ? error.message : String(error),
      forcedPath === undefined ? "install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1)" : "point --libbpf at a libbpf 1.x shared object",
    );
  }
}

/**
 * Loads and attaches the probe and closes it again: its line, then the processes and stand-ins
 * lines (what the load showed of naming each connection's process, and of the programs that make
 * the runs a kernel skips). `blockers` are the earlier failed lines: the
 * load is not tried after a failed BTF, libbpf or bpf() line, and a failed capabilities line is
 * named as the likely cause.
 */
export async function probeCheck(
  libbpfPath: string | undefined,
  blockers: readonly CheckResult[],
): Promise<[CheckResult, CheckResult, CheckResult]> {
  const probeLine = checkLine("probe", "probe");
  const notLoaded = (line: CheckResult): [CheckResult, CheckResult, CheckResult] => [line, processesLine(undefined), standInsLine(undefined, undefined)];
  // Without BTF or libbpf there is nothing to load; and a bpf() that a seccomp filter answers
  // with SIGSYS would kill this process rather than fail.
  const needed = blockers.filter((line) => line.id === "btf" || line.id === "libbpf" || line.id === "bpf-syscall");
  if (needed.length > 0) {
    const labels = needed.map((line) => line.label).join(" and ");
    return notLoaded(probeLine.fail(`not tried (${labels} failed)`, `see the ${labels} line${needed.length > 1 ? "s" : ""} above`));
  }
  const taintBefore = readProcNumber("/proc/sys/kernel/tainted");
  let probe: Probe;
  try {
    // With the accept() programs, which `run` attaches with --output json or --otlp-endpoint: the node's capability.
    probe = await Probe.open({ ringBufferBytes: TRY_RING_BUFFER_BYTES, maxConnections: TRY_MAX_CONNECTIONS, libbpfPath, nameAcceptCallers: true });
  } catch (error) {
    if (!(error instanceof ProbeLoadError)) throw error;
    // The verifier's log follows the first line: --json keeps it, the text line does not.
    const [first = "", ...rest] = error.message.split("\n");
    const prior = blockers.filter((line) => line.id === "capabilities" || line.id === "bpf-syscall");
    const fix =
      prior.length > 0
        ? `see the ${prior.map((line) => line.label).join(" and ")} line${prior.length > 1 ? "s" : ""} above`
        : rest.length > 0
          ? "the kernel's verifier refused the probe: `kmesh-accesslog check --json` shows its log; report it with the kernel version"
          : "the message names the step that failed";
    if (rest.length === 0) return notLoaded(probeLine.fail(first, fix));
    return notLoaded(probeLine.fail(`${first} (${rest.length} lines of verifier log in --json)`, fix, rest.join("\n")));
  }
  const libbpfVersion = probe.libbpfVersion;
  probe.close();
  const line = loadedProbeLine({
    libbpfVersion,
    preallocated: !runTimeAllocationAllowed(release()),
    taintBefore,
    taintAfter: readProcNumber("/proc/sys/kernel/tainted"),
    panicOnWarn: readProcNumber("/proc/sys/kernel/panic_on_warn") === 1,
  });
  if (line.status === "fail") return notLoaded(line);
  return [line, processesLine(probe.acceptCallersUnknown), standInsLine(probe, process.env[STAND_INS_ENV])];
}

/**
 * The processes line: whether the process behind each connection can be named on both sides on
 * this node (`acceptCallersUnknown`: Probe's, loaded with the accept() programs; undefined when
 * the probe did not load).
 */
export function processesLine(acceptCallersUnknown: TracepointsUnattached | null | undefined): CheckResult {
  const processes = checkLine("processes", "processes");
  if (acceptCallersUnknown === undefined) return processes.skip("not tried (probe failed)");
  if (acceptCallersUnknown === null) {
    // `run` attaches the accept() side only for the outputs that show processes.
    return processes.ok("the process that called connect() and the one that called accept() can be named (JSON lines and OTLP; the accept() programs are attached only with --output json or --otlp-endpoint)");
  }
  return processes.warn(
    `only the process that called connect() can be named, not the one that called accept(): ${acceptCallersUnknown.reason}`,
    acceptCallersUnknown.fix,
  );
}

const PREEMPTIBLE = "this kernel's tracepoints run programs preemptibly";

/**
 * The stand-ins line: whether programs stand behind the state-change and socket-end programs to
 * make the runs the kernel skips where tracepoints are preemptible (docs/kernels.md). `probe`: the
 * loaded probe's facts, undefined when it did not load; `forced`: STAND_INS_ENV's value.
 */
export function standInsLine(
  probe: Pick<Probe, "standIns" | "standInsUnattached" | "tracepointPreemption"> | undefined,
  forced: string | undefined,
): CheckResult {
  const standIns = checkLine("stand-ins", "stand-ins");
  if (probe === undefined) return standIns.skip("not tried (probe failed)");
  const { answer, why } = probe.tracepointPreemption;
  const wanted = answer === "yes" ? PREEMPTIBLE : `asked for (${STAND_INS_ENV}=${forced})`;
  const attached = "attached behind the state-change and socket-end programs";
  if (probe.standIns) return standIns.ok(answer === "yes" ? `${attached}: ${PREEMPTIBLE}, and a run the kernel skips is made by a stand-in` : `${attached}: ${wanted}`);
  const lost = "a connection whose runs the kernel skips may have no line";
  if (probe.standInsUnattached !== null) {
    return standIns.warn(`not attached, though ${wanted}: ${probe.standInsUnattached.reason}; ${lost}`, probe.standInsUnattached.fix);
  }
  if (answer === "yes") return standIns.warn(`not attached (${STAND_INS_ENV}=${forced}), though ${PREEMPTIBLE}; ${lost}`, `unset ${STAND_INS_ENV}`);
  if (answer === "no") return standIns.ok("not needed: this kernel's tracepoints run programs with preemption off");
  return standIns.skip(`not attached: whether this kernel's tracepoints run programs preemptibly is unknown (${why})`);
}

/** What was seen around a successful load. Taints are null where /proc could not be read. */
export interface LoadFacts {
  libbpfVersion: string;
  /** the connections map was preallocated (kernels before 6.1) */
  preallocated: boolean;
  taintBefore: number | null;
  taintAfter: number | null;
  panicOnWarn: boolean;
}

/** The kernel's taint flag for a WARN (TAINT_WARN), as /proc/sys/kernel/tainted shows it. */
const TAINT_WARN = 1 << 9;

/**
 * The probe line after a load that worked: a load that made the kernel WARN fails (a node with
 * panic_on_warn would have rebooted; a PREEMPT_RT kernel would have refused it), and
 * panic_on_warn is worth a warning even when the load was clean.
 */
export function loadedProbeLine(facts: LoadFacts): CheckResult {
  const probeLine = checkLine("probe", "probe");
  const how = `libbpf ${facts.libbpfVersion}${facts.preallocated ? "; connections map preallocated, as kernels before 6.1 need" : ""}`;
  const before = facts.taintBefore;
  const after = facts.taintAfter;
  if (before !== null && after !== null && (after & TAINT_WARN) !== 0 && (before & TAINT_WARN) === 0) {
    return probeLine.fail(
      `the hooks load (${how}), but loading them made the kernel WARN (tainted ${before} → ${after}; see dmesg)`,
      "do not run the agent on this kernel: report the dmesg lines and the kernel version (uname -r)",
    );
  }
  const tainted = after === null ? "kernel taint not readable" : `kernel taint ${after}${before === after ? ", unchanged" : ""}`;
  const detail = `the hooks load and attach (${how}); detached again; ${tainted}`;
  if (facts.panicOnWarn) {
    return probeLine.warn(
      `${detail}; /proc/sys/kernel/panic_on_warn is 1: any kernel WARN reboots this node`,
      "nothing the agent needs; loading it here logged no WARN (a WARN already in the taint could not be told apart: check dmesg)",
    );
  }
  return probeLine.ok(detail);
}

function readProcNumber(path: string): number | null {
  try {
    const value = Number(readFileSync(path, "utf8").trim());
    return Number.isInteger(value) ? value : null;
  } catch {
    return null;
  }
}
