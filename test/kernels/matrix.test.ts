/**
 * The kernel matrix inside the one test command: one test per kernel, each running the runner of
 * scripts/test-kernels for that kernel (download once, boot under qemu, the e2e subset of
 * subset.ts against dist/kmesh-accesslog). A kernel that cannot be downloaded or booted fails its
 * test. About half a minute per kernel once cached (docs/kernels.md); the VM's console is passed
 * through, prefixed with the kernel's name.
 */
import { describe, expect } from "bun:test";
import { cpSync, existsSync, mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { join } from "node:path";
import { MATRIX } from "../../scripts/kernels/matrix.ts";
import { AGENT_BINARY, REPO_ROOT } from "../e2e/agent.ts";
import { hasCommand, IS_ROOT, testIf } from "../support/require.ts";

const TOOLS = ["qemu-system-x86_64", "busybox", "cpio", "depmod", "modprobe", "apt-get", "dpkg", "flock", "xz"];
const missing = TOOLS.filter((tool) => !hasCommand(tool));
const it = testIf(
  IS_ROOT && missing.length === 0 && existsSync(AGENT_BINARY),
  `the kernel matrix needs root, dist/kmesh-accesslog (scripts/build) and ${TOOLS.join(", ")} (scripts/setup)` +
    (missing.length > 0 ? `; missing: ${missing.join(", ")}` : ""),
);

// The subset runs inside the VMs by its own path; this file never runs there (it would nest VMs).
describe.skipIf(process.env.KAL_KERNEL_VM !== undefined)("kernel matrix", () => {
  for (const spec of MATRIX) {
    it(
      `${spec.about}: the e2e subset passes in a VM`,
      async () => {
        const proc = Bun.spawn([process.execPath, "scripts/kernels/main.ts", spec.id], {
          cwd: REPO_ROOT,
          stdin: "ignore",
          stdout: "pipe",
          stderr: "inherit",
        });
        let output = "";
        const decoder = new TextDecoder();
        for await (const chunk of proc.stdout) {
          process.stdout.write(chunk);
          output += decoder.decode(chunk, { stream: true });
        }
        const exitCode = await proc.exited;
        // the runner's verdict and every failed test of the subset, for the report
        const failures = output.split("\n").filter((line) => /^FAIL |\] \(fail\) /.test(line));
        expect({ exitCode, failures }).toEqual({ exitCode: 0, failures: [] });
      },
      25 * 60_000, // the VM's own limit is 20 minutes (scripts/kernels/main.ts)
    );
  }

  // A clone under /tmp must work too, though the guest mounts its own /tmp (scripts/kernels/init.sh).
  it(
    "a clone under /tmp: the guest runs the command in it",
    async () => {
      const clone = mkdtempSync("/tmp/kal-clone-");
      try {
        cpSync(join(REPO_ROOT, "scripts/kernels"), join(clone, "scripts/kernels"), { recursive: true });
        symlinkSync(join(REPO_ROOT, "node_modules"), join(clone, "node_modules"));
        const proc = Bun.spawn([process.execPath, "scripts/kernels/main.ts", "--run", 'echo "in $(pwd)"', MATRIX[0]!.id], {
          cwd: clone,
          stdin: "ignore",
          stdout: "pipe",
          stderr: "inherit",
        });
        const output = await new Response(proc.stdout).text();
        expect({ exitCode: await proc.exited, seen: output.includes(`] in ${clone}\n`) }).toEqual({ exitCode: 0, seen: true });
      } finally {
        rmSync(clone, { recursive: true, force: true });
      }
    },
    5 * 60_000,
  );
});
