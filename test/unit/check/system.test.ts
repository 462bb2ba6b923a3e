// `check`'s verdicts on what it read from the node, for conditions this machine cannot take on:
// old kernels, no BTF, seccomp kills and refusals, partial capability sets, a locked-memory limit
// on a pre-5.11 kernel, no cgroup2 mount. Every line is asserted whole, as a user reads it.
import { describe, expect, test } from "bun:test";
import { canRun, checkReportJson, formatCheckLine, verdict, type CheckResult } from "../../../src/check/report.ts";
import {
  bpfSyscallCheck,
  btfCheck,
  capabilitiesCheck,
  cgroupCheck,
  kernelCheck,
  memlockLimit,
} from "../../../src/check/system.ts";
import { cgroup2Mounts } from "../../../src/kernel/cgroups.ts";
import { effectiveCapabilities, parseKernelRelease } from "../../../src/kernel/host.ts";
import { ALLOW_BPF, GRANT } from "../../support/check-fixes.ts";

const line = (result: CheckResult) => formatCheckLine(result);
const bit = (cap: number) => 1n << BigInt(cap);
const BPF = bit(39);
const PERFMON = bit(38);
const SYS_ADMIN = bit(21);
const SYS_RESOURCE = bit(24);

describe("kernel", () => {
  test("5.10 and newer pass; older and unreadable fail with the fix", () => {
    expect(line(kernelCheck("6.18.44-fc-v669"))).toBe("✔ kernel: Linux 6.18.44-fc-v669 (5.10 or newer needed)");
    expect(line(kernelCheck("5.10.0-28-amd64"))).toBe("✔ kernel: Linux 5.10.0-28-amd64 (5.10 or newer needed)");
    expect(line(kernelCheck("5.4.0-150-generic"))).toBe("✘ kernel: Linux 5.4.0-150-generic is older than 5.10 — fix: run on Linux 5.10 or newer");
    expect(line(kernelCheck("4.19.0"))).toBe("✘ kernel: Linux 4.19.0 is older than 5.10 — fix: run on Linux 5.10 or newer");
    expect(line(kernelCheck("weird"))).toBe('✘ kernel: cannot read the version of Linux "weird" — fix: run on Linux 5.10 or newer');
    expect(parseKernelRelease("10.1-rc1")).toEqual({ major: 10, minor: 1 });
  });
});

describe("BTF", () => {
  const fix =
    "use a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distribution kernels from 5.10 on); in a container, mount the host's /sys/kernel/btf read-only";
  test("present, missing, unreadable, empty", () => {
    expect(line(btfCheck({ size: 5_600_000 }))).toBe("✔ BTF: /sys/kernel/btf/vmlinux (5.3 MiB)");
    expect(line(btfCheck({ error: "ENOENT" }))).toBe(`✘ BTF: /sys/kernel/btf/vmlinux not found — fix: ${fix}`);
    expect(line(btfCheck({ error: "EACCES" }))).toBe(`✘ BTF: /sys/kernel/btf/vmlinux cannot be read (EACCES) — fix: ${fix}`);
    expect(line(btfCheck({ size: 0 }))).toBe(`✘ BTF: /sys/kernel/btf/vmlinux is empty — fix: ${fix}`);
  });
});

describe("capabilities", () => {
  const kernel = { major: 6, minor: 1 };
  test("CapEff and the locked-memory limit are read from /proc texts", () => {
    expect(effectiveCapabilities("Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n")).toBe(0x1ffffffffffn);
    expect(effectiveCapabilities("Name:\tx\n")).toBe(0n);
    expect(memlockLimit("Max locked memory         8388608              8388608              bytes\n")).toBe(8388608);
    expect(memlockLimit("Max locked memory         unlimited            unlimited            bytes\n")).toBe(Number.POSITIVE_INFINITY);
    expect(memlockLimit("")).toBeNull();
  });

  test("CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN, is enough; CAP_NET_ADMIN is not asked for", () => {
    expect(line(capabilitiesCheck({ uid: 0, effective: 0x1ffffffffffn, kernel, memlock: 8 << 20 }))).toBe(
      "✔ capabilities: root with CAP_BPF and CAP_PERFMON",
    );
    expect(line(capabilitiesCheck({ uid: 0, effective: BPF | PERFMON, kernel, memlock: 8 << 20 }))).toBe(
      "✔ capabilities: root with CAP_BPF and CAP_PERFMON",
    );
    expect(line(capabilitiesCheck({ uid: 998, effective: SYS_ADMIN, kernel, memlock: 8 << 20 }))).toBe(
      "✔ capabilities: uid 998 with CAP_SYS_ADMIN",
    );
  });

  test("what is missing is named, with the fix", () => {
    expect(line(capabilitiesCheck({ uid: 65534, effective: 0n, kernel, memlock: 8 << 20 }))).toBe(
      `✘ capabilities: missing CAP_BPF and CAP_PERFMON (uid 65534, no effective capabilities) — fix: ${GRANT}`,
    );
    expect(line(capabilitiesCheck({ uid: 0, effective: BPF, kernel, memlock: 8 << 20 }))).toBe(
      `✘ capabilities: missing CAP_PERFMON (root, effective capabilities 0x8000000000) — fix: ${GRANT}`,
    );
  });

  test("before 5.11, a finite locked-memory limit needs CAP_SYS_RESOURCE (libbpf raises the limit)", () => {
    const old = { major: 5, minor: 10 };
    expect(line(capabilitiesCheck({ uid: 0, effective: BPF | PERFMON, kernel: old, memlock: 65536 }))).toBe(
      "✘ capabilities: this kernel charges BPF maps to the locked-memory limit (65536 bytes) and CAP_SYS_RESOURCE is missing to raise it " +
        "— fix: grant CAP_SYS_RESOURCE, or raise the limit (ulimit -l unlimited; systemd: LimitMEMLOCK=infinity)",
    );
    expect(capabilitiesCheck({ uid: 0, effective: BPF | PERFMON | SYS_RESOURCE, kernel: old, memlock: 65536 }).status).toBe("ok");
    expect(capabilitiesCheck({ uid: 0, effective: BPF | PERFMON, kernel: old, memlock: Number.POSITIVE_INFINITY }).status).toBe("ok");
    expect(capabilitiesCheck({ uid: 0, effective: BPF | PERFMON, kernel: { major: 5, minor: 11 }, memlock: 65536 }).status).toBe("ok");
  });
});

describe("bpf() system call", () => {
  const capable = BPF | PERFMON;
  test("EINVAL for an unknown command means the call is allowed; a map is created when capable", () => {
    expect(line(bpfSyscallCheck({ invalid: 22, mapCreate: 0 }, capable))).toBe(
      "✔ bpf() system call: allowed (created and closed a one-entry map)",
    );
    expect(line(bpfSyscallCheck({ invalid: 22, mapCreate: 1 }, 0n))).toBe("✔ bpf() system call: allowed (no map created without CAP_BPF)");
  });

  test("a seccomp filter that kills, refuses or answers ENOSYS is named, with the fix", () => {
    expect(line(bpfSyscallCheck({ signal: "SIGSYS" }, capable))).toBe(
      `✘ bpf() system call: calling bpf() killed the process (SIGSYS): a seccomp filter forbids it — fix: ${ALLOW_BPF}`,
    );
    expect(line(bpfSyscallCheck({ invalid: 1, mapCreate: 1 }, capable))).toBe(
      `✘ bpf() system call: refused (EPERM) although CAP_BPF is effective: a seccomp filter or a security module denies it — fix: ${ALLOW_BPF}`,
    );
    expect(line(bpfSyscallCheck({ invalid: 38, mapCreate: 38 }, capable))).toBe(
      "✘ bpf() system call: bpf() answers ENOSYS: a kernel without CONFIG_BPF_SYSCALL, or a seccomp filter " +
        `— fix: use a kernel with CONFIG_BPF_SYSCALL=y; ${ALLOW_BPF}`,
    );
    expect(line(bpfSyscallCheck({ invalid: 22, mapCreate: 13 }, capable))).toBe(
      "✘ bpf() system call: allowed, but creating a one-entry map is refused (EACCES) although CAP_BPF is effective " +
        `— fix: ${ALLOW_BPF}`,
    );
  });

  test("on older kernels, a caller without CAP_BPF is refused at the entry when unprivileged BPF is off: the fix is the capabilities", () => {
    expect(line(bpfSyscallCheck({ invalid: 1, mapCreate: 1 }, 0n))).toBe(
      `✘ bpf() system call: refused (EPERM) to a caller without CAP_BPF — fix: ${GRANT}`,
    );
  });

  test("a child that could not say is a warning pointing at the probe line", () => {
    expect(line(bpfSyscallCheck({ untested: "the child process exited 1" }, capable))).toBe(
      "⚠ bpf() system call: not tested (the child process exited 1) — fix: see the probe line below",
    );
  });
});

describe("cgroup v2", () => {
  const hybrid = [
    "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0",
    "cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0",
    "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0",
  ].join("\n");
  test("found wherever /proc/mounts says, never at an assumed path", () => {
    expect(cgroup2Mounts(hybrid)).toEqual(["/sys/fs/cgroup/unified"]);
    expect(cgroup2Mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n")).toEqual(["/sys/fs/cgroup"]);
    expect(cgroup2Mounts("none /mnt/with\\040space cgroup2 rw 0 0\n")).toEqual(["/mnt/with space"]);
    expect(line(cgroupCheck(hybrid))).toBe("✔ cgroup v2: mounted at /sys/fs/cgroup/unified");
  });

  test("none is a warning: the hooks see every socket whatever its cgroup", () => {
    const result = cgroupCheck("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n");
    expect(line(result)).toBe(
      "⚠ cgroup v2: no cgroup2 file system in /proc/mounts (the agent runs without it, but names no process's container) " +
        "— fix: boot with systemd.unified_cgroup_hierarchy=1, or mount one: mount -t cgroup2 none /sys/fs/cgroup",
    );
    expect(canRun([result])).toBe(true);
  });
});

describe("verdict and exit", () => {
  const ok: CheckResult = { id: "a", label: "a", status: "ok", detail: "fine" };
  const warn: CheckResult = { id: "b", label: "b", status: "warn", detail: "meh", fix: "x" };
  const skip: CheckResult = { id: "c", label: "c", status: "skip", detail: "skipped" };
  const fail: CheckResult = { id: "d", label: "d", status: "fail", detail: "bad", fix: "y" };
  test("only a failure stops the agent", () => {
    expect(canRun([ok, warn, skip])).toBe(true);
    expect(canRun([ok, fail])).toBe(false);
    expect(verdict([ok, skip])).toBe("the agent can run on this node");
    expect(verdict([ok, warn, warn])).toBe("the agent can run on this node (2 warnings, ⚠ above)");
    expect(verdict([fail, warn])).toBe("the agent cannot run on this node: 1 prerequisite missing (✘ above)");
    expect(line(skip)).toBe("- c: skipped");
  });

  test("--json is one object with the verdict and every line", () => {
    expect(JSON.parse(checkReportJson([ok, fail]))).toEqual({
      ok: false,
      verdict: "the agent cannot run on this node: 1 prerequisite missing (✘ above)",
      checks: [ok, fail],
    });
  });
});
