// `check`: can the agent run on this node? One line per prerequisite (✔ ok, ✘ missing, ⚠ the
// agent runs without it, - not checked or not used) with the fix, then the verdict; exit 0 only when nothing
// is missing. Text lines are written as each check ends, so a slow kubelet shows where it waits.
// Touches nothing it does not undo: the probe is loaded and closed, no lock is taken, and it can
// run beside a running agent.
import { openSync, closeSync, fstatSync, readFileSync } from "node:fs";
import { release } from "node:os";
import type { CheckOptions } from "../options.ts";
import { writeStdout } from "../output.ts";
import { apiServerCheck } from "../check/api-server.ts";
import { probeBpfSyscall } from "../check/bpf-syscall.ts";
import { kubeletCheck } from "../check/kubelet.ts";
import { libbpfCheck, probeCheck } from "../check/probe.ts";
import { conntrackCheck } from "../check/conntrack.ts";
import { canRun, checkReportJson, formatCheckLine, verdict, type CheckResult } from "../check/report.ts";
import { btfCheck, bpfSyscallCheck, capabilitiesCheck, cgroupCheck, kernelCheck, memlockLimit, type BtfFacts } from "../check/system.ts";
import { BTF_PATH, effectiveCapabilities, parseKernelRelease } from "../kernel/host.ts";

function readText(path: string): string | null {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return null;
  }
}

function btfFacts(): BtfFacts {
  try {
    const fd = openSync(BTF_PATH, "r");
    try {
      return { size: fstatSync(fd).size };
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    return { error: (error as NodeJS.ErrnoException).code ?? String(error) };
  }
}

export async function checkCommand(options: CheckOptions): Promise<number> {
  const results: CheckResult[] = [];
  const add = (result: CheckResult) => {
    results.push(result);
    if (!options.json) writeStdout(`${formatCheckLine(result)}\n`);
    return result;
  };
  const failed = () => results.filter((result) => result.status === "fail");

  const kernelRelease = release();
  add(kernelCheck(kernelRelease));
  add(btfCheck(btfFacts()));
  const capabilities = effectiveCapabilities(readText("/proc/self/status") ?? "");
  add(
    capabilitiesCheck({
      uid: process.geteuid?.() ?? -1,
      effective: capabilities,
      kernel: parseKernelRelease(kernelRelease),
      memlock: memlockLimit(readText("/proc/self/limits") ?? ""),
    }),
  );
  add(bpfSyscallCheck(probeBpfSyscall(), capabilities));
  add(cgroupCheck(readText("/proc/mounts")));
  add(await libbpfCheck(options.libbpf));
  for (const line of await probeCheck(options.libbpf, failed())) add(line);
  add(await kubeletCheck(options));
  add(await apiServerCheck(options));
  add(await conntrackCheck(options.libbpf, results));

  if (options.json) writeStdout(checkReportJson(results));
  else writeStdout(`${verdict(results)}\n`);
  return canRun(results) ? 0 : 1;
}
