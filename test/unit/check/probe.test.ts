import { describe, expect, test } from "bun:test";
import { loadedProbeLine, processesLine, standInsLine } from "../../../src/check/probe.ts";
import { canRun, formatCheckLine } from "../../../src/check/report.ts";
import { runTimeAllocationAllowed, socketStorageFromTracing } from "../../../src/kernel/probe.ts";

const clean = { libbpfVersion: "1.1", preallocated: false, taintBefore: 0, taintAfter: 0, panicOnWarn: false };

describe("the probe line after a load", () => {
  test("a clean load", () => {
    expect(loadedProbeLine(clean)).toEqual({
      id: "probe",
      label: "probe",
      status: "ok",
      detail: "the hooks load and attach (libbpf 1.1); detached again; kernel taint 0, unchanged",
    });
  });

  test("a load that made the kernel WARN fails, naming both taints", () => {
    const line = loadedProbeLine({ ...clean, preallocated: true, taintBefore: 1, taintAfter: 1 | 512 });
    expect(line.status).toBe("fail");
    expect(line.detail).toBe(
      "the hooks load (libbpf 1.1; connections map preallocated, as kernels before 6.1 need), but loading them made the kernel WARN (tainted 1 → 513; see dmesg)",
    );
    expect(line.fix).toContain("do not run the agent on this kernel");
  });

  test("a WARN from before the load, or another taint, is not blamed on the load", () => {
    expect(loadedProbeLine({ ...clean, taintBefore: 512, taintAfter: 512 }).status).toBe("ok");
    expect(loadedProbeLine({ ...clean, taintBefore: 0, taintAfter: 4096 }).detail).toEndWith("kernel taint 4096");
    expect(loadedProbeLine({ ...clean, taintBefore: null, taintAfter: null }).detail).toEndWith("kernel taint not readable");
  });

  test("panic_on_warn is a warning even after a clean load", () => {
    const line = loadedProbeLine({ ...clean, panicOnWarn: true });
    expect(line.status).toBe("warn");
    expect(line.detail).toEndWith("; /proc/sys/kernel/panic_on_warn is 1: any kernel WARN reboots this node");
  });
});

describe("maps allocated at run time in a raw_tp program", () => {
  test.each([
    ["5.10.0-35-amd64", false],
    ["5.15.0-1-generic", false],
    ["6.0.19", false],
    ["6.1.0-41-amd64", true],
    ["6.12.57+deb13-amd64", true],
    ["6.18.44-fc-v769", true],
    ["7.2.13+deb14-amd64", true],
    ["not a version", false],
  ])("%s: %p", (release, allowed) => {
    expect(runTimeAllocationAllowed(release)).toBe(allowed);
  });
});

describe("connection state kept with each socket (socket storage from a tracing program)", () => {
  test.each([
    ["5.10.0-35-amd64", false],
    ["5.10.262", false],
    ["5.11.0", true],
    ["5.15.0-1-generic", true],
    ["6.1.0-41-amd64", true],
    ["6.18.44-fc-v769", true],
    ["not a version", false],
  ])("%s: %p", (release, allowed) => {
    expect(socketStorageFromTracing(release)).toBe(allowed);
  });
});

describe("processesLine", () => {
  test("both sides named, only the connecting side (no accept() tracepoints), or not tried", () => {
    expect(formatCheckLine(processesLine(null))).toBe(
      "✔ processes: the process that called connect() and the one that called accept() can be named (JSON lines and OTLP; the accept() programs are attached only with --output json or --otlp-endpoint)",
    );
    const missing = processesLine({
      reason: "cannot attach to the syscalls:sys_exit_accept4 and sys_exit_accept tracepoints (attach handle_accept4: No such file or directory)",
      fix: "a kernel built with CONFIG_FTRACE_SYSCALLS=y (as distributions build theirs) names both",
    });
    expect(formatCheckLine(missing)).toBe(
      "⚠ processes: only the process that called connect() can be named, not the one that called accept(): cannot attach to the " +
        "syscalls:sys_exit_accept4 and sys_exit_accept tracepoints (attach handle_accept4: No such file or directory) " +
        "— fix: a kernel built with CONFIG_FTRACE_SYSCALLS=y (as distributions build theirs) names both",
    );
    expect(canRun([missing])).toBe(true);
    expect(formatCheckLine(processesLine(undefined))).toBe("- processes: not tried (probe failed)");
  });
});

describe("standInsLine", () => {
  const probe = (answer: "yes" | "no" | "unknown", standIns: boolean, unattached: boolean) => ({
    tracepointPreemption: { answer, why: answer === "unknown" ? "load the preemption probe: No such file or directory" : null },
    standIns,
    standInsUnattached: unattached ? { reason: "cannot attach (attach classic_set_state: No such file or directory)", fix: "mount tracefs" } : null,
  });
  test.each([
    [probe("yes", true, false), undefined, "✔ stand-ins: attached behind the state-change and socket-end programs: this kernel's tracepoints run programs preemptibly, and a run the kernel skips is made by a stand-in"],
    [probe("unknown", true, false), "always", "✔ stand-ins: attached behind the state-change and socket-end programs: asked for (KMESH_ACCESSLOG_STAND_INS=always)"],
    [
      probe("yes", false, true),
      undefined,
      "⚠ stand-ins: not attached, though this kernel's tracepoints run programs preemptibly: cannot attach (attach classic_set_state: No such file or directory); " +
        "a connection whose runs the kernel skips may have no line — fix: mount tracefs",
    ],
    [
      probe("no", false, true),
      "always",
      "⚠ stand-ins: not attached, though asked for (KMESH_ACCESSLOG_STAND_INS=always): cannot attach (attach classic_set_state: No such file or directory); " +
        "a connection whose runs the kernel skips may have no line — fix: mount tracefs",
    ],
    [
      probe("yes", false, false),
      "never",
      "⚠ stand-ins: not attached (KMESH_ACCESSLOG_STAND_INS=never), though this kernel's tracepoints run programs preemptibly; " +
        "a connection whose runs the kernel skips may have no line — fix: unset KMESH_ACCESSLOG_STAND_INS",
    ],
    [probe("no", false, false), undefined, "✔ stand-ins: not needed: this kernel's tracepoints run programs with preemption off"],
    [
      probe("unknown", false, false),
      undefined,
      "- stand-ins: not attached: whether this kernel's tracepoints run programs preemptibly is unknown (load the preemption probe: No such file or directory)",
    ],
    [undefined, undefined, "- stand-ins: not tried (probe failed)"],
  ] as const)("%#", (facts, forced, line) => {
    expect(formatCheckLine(standInsLine(facts, forced))).toBe(line);
  });
  test("a warning lets the agent run", () => {
    expect(canRun([standInsLine(probe("yes", false, true), undefined)])).toBe(true);
  });
});
