/**
 * `kmesh-accesslog check` as the e2e tests run it (check.test.ts, and test/kernels/subset.ts on each
 * kernel of the matrix), and the lines it must print on the machine it runs on, read from the
 * machine independently of the code under test.
 */
import { readFileSync, realpathSync, statSync } from "node:fs";
import { release } from "node:os";
import { expect } from "bun:test";
import { runTimeAllocationAllowed } from "../../src/kernel/probe.ts";
import { AGENT_BINARY, PREEMPTIBLE_TRACEPOINTS } from "./agent.ts";

export interface Run {
  exitCode: number | null;
  lines: string[];
  stderr: string;
}

/**
 * Runs `check` with a clean Kubernetes environment (no NODE_IP, HOST_IP, in-cluster or KUBECONFIG
 * variables from the caller): no API server is used. Not
 * spawnSync: the local kubelet answers from this process's event loop.
 */
export function check(args: string[], prefix: string[] = []): Promise<Run> {
  return run([...prefix, AGENT_BINARY, "check", ...args]);
}

export async function run(argv: string[]): Promise<Run> {
  const env = { ...process.env };
  for (const name of ["NODE_IP", "HOST_IP", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBECONFIG"]) delete env[name];
  await using proc = Bun.spawn(argv, {
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    cwd: "/",
    env,
    timeout: 30_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, lines: stdout.split("\n").filter((line) => line !== ""), stderr };
}

// ── What this machine is, read independently of the code under test ────────

export const KERNEL_LINE = `✔ kernel: Linux ${release()} (5.10 or newer needed)`;
export const btfLine = () => `✔ BTF: /sys/kernel/btf/vmlinux (${(statSync("/sys/kernel/btf/vmlinux").size / 2 ** 20).toFixed(1)} MiB)`;
export function cgroupLine(): string {
  const mounts = readFileSync("/proc/mounts", "utf8")
    .split("\n")
    .map((line) => line.split(" "))
    .filter((fields) => fields[2] === "cgroup2")
    .map((fields) => fields[1]);
  return `✔ cgroup v2: mounted at ${mounts.join(", ")}`;
}
/** The system libbpf's major.minor, from the file ldconfig names (libbpf.so.1.1.0 → 1.1). */
export function systemLibbpfVersion(): string {
  const ldconfig = Bun.spawnSync(["ldconfig", "-p"]).stdout.toString();
  const path = /\blibbpf\.so\.1 \(.*\) => (\S+)/.exec(ldconfig)?.[1];
  if (path === undefined) throw new Error("no system libbpf.so.1: scripts/setup installs libbpf1");
  const version = /libbpf\.so\.(\d+\.\d+)/.exec(realpathSync(path))?.[1];
  if (version === undefined) throw new Error(`cannot read a version from ${realpathSync(path)}`);
  return version;
}
export const BPF_OK = "✔ bpf() system call: allowed (created and closed a one-entry map)";
/** The probe line of a clean load here (kernels before 6.1 get a preallocated map). */
export function probeOk(libbpf: string): string {
  const taint = readFileSync("/proc/sys/kernel/tainted", "utf8").trim();
  const prealloc = runTimeAllocationAllowed(release()) ? "" : "; connections map preallocated, as kernels before 6.1 need";
  return `✔ probe: the hooks load and attach (libbpf ${libbpf}${prealloc}); detached again; kernel taint ${taint}, unchanged`;
}
export const CAPS_OK = "✔ capabilities: root with CAP_BPF and CAP_PERFMON";
/** Every kernel of the matrix has the accept() tracepoints (docs/kernels.md). */
export const PROCESSES_OK = "✔ processes: the process that called connect() and the one that called accept() can be named (JSON lines and OTLP; the accept() programs are attached only with --output json or --otlp-endpoint)";
export const PROCESSES_SKIPPED = "- processes: not tried (probe failed)";
export const STAND_INS_SKIPPED = "- stand-ins: not tried (probe failed)";
export const STAND_INS_ATTACHED = "✔ stand-ins: attached behind the state-change and socket-end programs";
/**
 * The stand-ins line here. The preemption probe reads x86's per-CPU `__preempt_count` as a typed
 * kernel symbol, which loads where the kernel's BTF has the variable (not 5.10's, nor 6.2 to 6.14's,
 * which keep the count elsewhere) and /proc/kallsyms lists it (docs/kernels.md); and Linux 7 is the
 * first to run tracepoint programs preemptibly (PREEMPTIBLE_TRACEPOINTS). Elsewhere the line gives
 * the probe's failure in the kernel's own words.
 */
export function standInsCheckLine(): string {
  if (!preemptionCountReadable()) {
    // an asymmetric matcher, which toEqual takes in a string's place
    return expect.stringMatching(/^- stand-ins: not attached: whether this kernel's tracepoints run programs preemptibly is unknown \(.+\)$/) as unknown as string;
  }
  return PREEMPTIBLE_TRACEPOINTS
    ? `${STAND_INS_ATTACHED}: this kernel's tracepoints run programs preemptibly, and a run the kernel skips is made by a stand-in`
    : "✔ stand-ins: not needed: this kernel's tracepoints run programs with preemption off";
}

let countReadable: boolean | undefined;
/**
 * Whether the preemption probe can read the count here (standInsCheckLine): its line is ✔ then, -
 * otherwise. Read once: the BTF's dump takes seconds under TCG.
 */
export function preemptionCountReadable(): boolean {
  if (countReadable !== undefined) return countReadable;
  const dump = Bun.spawnSync(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux"]);
  if (dump.exitCode !== 0) throw new Error(`bpftool btf dump failed (${dump.exitCode ?? dump.signalCode}): ${dump.stderr.toString()}`);
  const symbols = readFileSync("/proc/kallsyms", "utf8");
  countReadable = dump.stdout.toString().includes("VAR '__preempt_count'") && /^[0-9a-f]+ \S+ __preempt_count$/m.test(symbols);
  return countReadable;
}

export const SKIPPED = "- kubelet: skipped (--no-kubelet): pod names will be -";
export const NO_API = "- API server: not used (not in a cluster; --kube-api or --kubeconfig to use one): services will be addresses and remote pods -";
export const NO_CONNTRACK = "- conntrack: not used without the API server (no line is known to go to a ClusterIP)";

/** Every line of `check --no-kubelet` as root on a machine that has everything. */
export function rootCheckLines(): string[] {
  const libbpf = systemLibbpfVersion();
  return [
    KERNEL_LINE,
    btfLine(),
    CAPS_OK,
    BPF_OK,
    cgroupLine(),
    `✔ libbpf: ${libbpf} (the system's libbpf.so.1)`,
    probeOk(libbpf),
    PROCESSES_OK,
    standInsCheckLine(),
    SKIPPED,
    NO_API,
    NO_CONNTRACK,
    "the agent can run on this node",
  ];
}
