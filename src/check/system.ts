// The node's side of `check`, as pure functions of what was read (kernel release, /proc texts,
// the bpf() probe's answer), so that every verdict and fix can be tested without the condition.
import { constants } from "node:os";
import { cgroup2Mounts } from "../kernel/cgroups.ts";
import { atLeast, BTF_PATH, CAP, hasCapability as has, type KernelVersion, mayLoadBpf, parseKernelRelease } from "../kernel/host.ts";
import { type CheckResult, checkLine } from "./report.ts";

export const MIN_KERNEL = { major: 5, minor: 10 } as const;
/** Before 5.11 BPF maps are charged to RLIMIT_MEMLOCK instead of the memory cgroup. */
const MEMCG_ACCOUNTING_KERNEL = { major: 5, minor: 11 } as const;

export function kernelCheck(release: string): CheckResult {
  const kernelLine = checkLine("kernel", "kernel");
  const version = parseKernelRelease(release);
  const needed = `${MIN_KERNEL.major}.${MIN_KERNEL.minor}`;
  if (version === null) {
    return kernelLine.fail(`cannot read the version of Linux ${JSON.stringify(release)}`, `run on Linux ${needed} or newer`);
  }
  if (!atLeast(version, MIN_KERNEL)) {
    return kernelLine.fail(`Linux ${release} is older than ${needed}`, `run on Linux ${needed} or newer`);
  }
  return kernelLine.ok(`Linux ${release} (${needed} or newer needed)`);
}

/** What a look at the BTF file found: its size, or the errno code that stopped us. */
export type BtfFacts = { size: number } | { error: string };

export function btfCheck(facts: BtfFacts): CheckResult {
  const btfLine = checkLine("btf", "BTF");
  const fix =
    "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels from 5.10 on); " +
    "in a container, mount the host's /sys/kernel/btf read-only";
  if ("error" in facts) {
    const what = facts.error === "ENOENT" ? "not found" : `cannot be read (${facts.error})`;
    return btfLine.fail(`${BTF_PATH} ${what}`, fix);
  }
  if (facts.size === 0) return btfLine.fail(`${BTF_PATH} is empty`, fix);
  return btfLine.ok(`${BTF_PATH} (${(facts.size / 2 ** 20).toFixed(1)} MiB)`);
}

// ── Capabilities ────────────────────────────────────────────────────────────

/** "Max locked memory" soft limit from /proc/self/limits, in bytes; Infinity for unlimited; null when absent. */
export function memlockLimit(limits: string): number | null {
  const soft = /^Max locked memory\s+(\S+)/m.exec(limits)?.[1];
  if (soft === undefined) return null;
  return soft === "unlimited" ? Number.POSITIVE_INFINITY : Number(soft);
}

export interface CapabilityFacts {
  uid: number;
  /** CapEff */
  effective: bigint;
  kernel: KernelVersion | null;
  /** RLIMIT_MEMLOCK soft limit in bytes (Infinity: unlimited), null when unknown */
  memlock: number | null;
}

const GRANT =
  "run as root, or grant CAP_BPF and CAP_PERFMON " +
  "(systemd: AmbientCapabilities=CAP_BPF CAP_PERFMON; Kubernetes: securityContext.capabilities.add: [BPF, PERFMON])";

export function capabilitiesCheck(facts: CapabilityFacts): CheckResult {
  const capabilitiesLine = checkLine("capabilities", "capabilities");
  const { effective } = facts;
  const who = facts.uid === 0 ? "root" : `uid ${facts.uid}`;
  const bpfAndPerfmon = has(effective, CAP.BPF) && has(effective, CAP.PERFMON);
  if (!bpfAndPerfmon && !has(effective, CAP.SYS_ADMIN)) {
    const missing = [has(effective, CAP.BPF) ? null : "CAP_BPF", has(effective, CAP.PERFMON) ? null : "CAP_PERFMON"].filter((c) => c !== null);
    const held = effective === 0n ? "no effective capabilities" : `effective capabilities 0x${effective.toString(16)}`;
    return capabilitiesLine.fail(`missing ${missing.join(" and ")} (${who}, ${held})`, GRANT);
  }
  // Kernels before 5.11 charge maps to RLIMIT_MEMLOCK; libbpf raises it, which needs CAP_SYS_RESOURCE.
  if (
    facts.kernel !== null &&
    !atLeast(facts.kernel, MEMCG_ACCOUNTING_KERNEL) &&
    facts.memlock !== null &&
    facts.memlock !== Number.POSITIVE_INFINITY &&
    !has(effective, CAP.SYS_RESOURCE)
  ) {
    return capabilitiesLine.fail(
      `this kernel charges BPF maps to the locked-memory limit (${facts.memlock} bytes) and CAP_SYS_RESOURCE is missing to raise it`,
      "grant CAP_SYS_RESOURCE, or raise the limit (ulimit -l unlimited; systemd: LimitMEMLOCK=infinity)",
    );
  }
  const granted = bpfAndPerfmon ? "CAP_BPF and CAP_PERFMON" : "CAP_SYS_ADMIN";
  return capabilitiesLine.ok(`${who} with ${granted}`);
}

// ── cgroup v2 ───────────────────────────────────────────────────────────────

/** The cgroup v2 line, from /proc/mounts (null: it could not be read). */
export function cgroupCheck(mounts: string | null): CheckResult {
  const cgroupLine = checkLine("cgroup2", "cgroup v2");
  const found = mounts === null ? [] : cgroup2Mounts(mounts);
  if (found.length > 0) return cgroupLine.ok(`mounted at ${found.join(", ")}`);
  // The hooks see every socket whatever its cgroup: the agent runs without it, but cannot tell the
  // container of a connection's process (kernel/cgroups.ts).
  return cgroupLine.warn(
    mounts === null
      ? "cannot read /proc/mounts (the agent runs without it, but names no process's container)"
      : "no cgroup2 file system in /proc/mounts (the agent runs without it, but names no process's container)",
    "boot with systemd.unified_cgroup_hierarchy=1, or mount one: mount -t cgroup2 none /sys/fs/cgroup",
  );
}

// ── The bpf() system call ───────────────────────────────────────────────────

/**
 * What a child process saw calling bpf(): `invalid` is the errno of a command no kernel knows
 * (EINVAL: the call reached the kernel's dispatcher), `mapCreate` that of creating a one-entry
 * array map (0: created). `signal` when the child was killed (SIGSYS: a seccomp filter that kills).
 */
export type BpfSyscallFacts =
  | { invalid: number; mapCreate: number }
  | { signal: string }
  | { untested: string };

const { EACCES, EINVAL, ENOSYS, EPERM } = constants.errno;
/** The errnos this line names; any other is `errno <n>`. */
const NAMED = new Map((["EPERM", "EACCES", "EINVAL", "ENOSYS", "ENOMEM"] as const).map((name) => [constants.errno[name], name]));
const errnoName = (errno: number) => NAMED.get(errno) ?? `errno ${errno}`;

const ALLOW_BPF =
  "allow bpf() in the seccomp profile (Kubernetes: seccompProfile RuntimeDefault of a runtime that knows CAP_BPF, or a " +
  "Localhost profile allowing bpf; systemd: add bpf to SystemCallFilter=) and in the security module's policy (AppArmor, SELinux)";

export function bpfSyscallCheck(facts: BpfSyscallFacts, capabilities: bigint): CheckResult {
  const bpfSyscallLine = checkLine("bpf-syscall", "bpf() system call");
  if ("untested" in facts) {
    return bpfSyscallLine.warn(`not tested (${facts.untested})`, "see the probe line below");
  }
  if ("signal" in facts) {
    return bpfSyscallLine.fail(`calling bpf() killed the process (${facts.signal}): a seccomp filter forbids it`, ALLOW_BPF);
  }
  const capable = mayLoadBpf(capabilities);
  if (facts.invalid === ENOSYS) {
    return bpfSyscallLine.fail(
      "bpf() answers ENOSYS: a kernel without CONFIG_BPF_SYSCALL, or a seccomp filter",
      `use a kernel with CONFIG_BPF_SYSCALL=y; ${ALLOW_BPF}`,
    );
  }
  if (facts.invalid !== EINVAL) {
    if ((facts.invalid === EPERM || facts.invalid === EACCES) && !capable) {
      // Older kernels refuse every bpf() command at its entry to callers without CAP_BPF
      // when kernel.unprivileged_bpf_disabled is set: the capabilities line says what to do.
      return bpfSyscallLine.fail(`refused (${errnoName(facts.invalid)}) to a caller without CAP_BPF`, GRANT);
    }
    return bpfSyscallLine.fail(
      `refused (${errnoName(facts.invalid)})${capable ? " although CAP_BPF is effective" : ""}: a seccomp filter or a security module denies it`,
      ALLOW_BPF,
    );
  }
  if (!capable) return bpfSyscallLine.ok("allowed (no map created without CAP_BPF)");
  if (facts.mapCreate === 0) return bpfSyscallLine.ok("allowed (created and closed a one-entry map)");
  return bpfSyscallLine.fail(
    `allowed, but creating a one-entry map is refused (${errnoName(facts.mapCreate)}) although CAP_BPF is effective`,
    facts.mapCreate === EPERM || facts.mapCreate === EACCES ? ALLOW_BPF : "check the kernel log (dmesg) for the reason",
  );
}
