// A probe that cannot load says why, in words a user can act on, and exits 1:
// not root, root without the capabilities, no kernel BTF, libbpf missing.
// Each condition is made for real (another user, a reduced capability set, a
// mount namespace hiding /sys/kernel/btf) and the compiled binary is run in it.
import { describe, expect } from "bun:test";
import { AGENT_BINARY } from "./agent.ts";
import { existsSync } from "node:fs";
import { hasCommand, IS_ROOT, testIf } from "../support/require.ts";

const it = testIf(
  IS_ROOT && existsSync(AGENT_BINARY) && hasCommand("setpriv") && hasCommand("unshare"),
  "needs root, setpriv, unshare and the compiled binary (scripts/build)",
);

function run(prefix: string[], args: string[] = []) {
  const proc = Bun.spawnSync([...prefix, AGENT_BINARY, "run", "--duration", "1", ...args], {
    stdout: "pipe",
    stderr: "pipe",
    cwd: "/",
  });
  return { exitCode: proc.exitCode, stdout: proc.stdout.toString(), stderr: proc.stderr.toString() };
}

describe("load failures", () => {
  it("a user who is not root is told to run as root or grant CAP_BPF and CAP_PERFMON", () => {
    const result = run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    expect(result.exitCode).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toBe(
      "kmesh-accesslog: cannot start the kernel probe: load the BPF object: Operation not permitted " +
        "(not running as root): run as root, or grant CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on kernels before 5.8)\n",
    );
  });

  it("root without CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN is told which capabilities are missing", () => {
    const result = run(["setpriv", "--inh-caps=-all", "--bounding-set=-bpf,-perfmon,-sys_admin"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toContain("(running as root but without CAP_BPF and CAP_PERFMON): run as root, or grant CAP_BPF and CAP_PERFMON");
  });

  it("a kernel without BTF is named as such", () => {
    const result = run(["unshare", "--mount", "--", "sh", "-c", 'mount -t tmpfs none /sys/kernel/btf && exec "$@"', "sh"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toBe(
      "kmesh-accesslog: cannot start the kernel probe: no kernel BTF at /sys/kernel/btf/vmlinux: " +
        "the probe needs a kernel built with CONFIG_DEBUG_INFO_BTF=y (Linux 5.10 or newer)\n",
    );
  });

  it("a missing libbpf says which file and how to install it", () => {
    const result = run([], ["--libbpf", "/nonexistent/libbpf.so.1"]);
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toStartWith("kmesh-accesslog: cannot start the kernel probe: cannot load /nonexistent/libbpf.so.1 (");
    expect(result.stderr).toEndWith("): install libbpf 1.x (Debian/Ubuntu: apt-get install libbpf1)\n");
    expect(result.stderr.split("\n")).toHaveLength(2);
  });
});
