// `kmesh-accesslog check` against the compiled binary, on this machine and under conditions made
// here for real: another user without capabilities, a --libbpf that does not exist, no kubelet,
// a local kubelet (listing, forbidding), and seccomp filters that refuse bpf() or kill its caller
// (installed by a small wrapper that then execs the binary). Lines are asserted whole; the parts
// that depend on the machine (kernel release, BTF size, cgroup2 mount, libbpf version) are read
// from the machine independently of the code under test.
import { describe, expect } from "bun:test";
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { release, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AGENT_BINARY, dynamicLoader, PREEMPTIBLE_TRACEPOINTS } from "./agent.ts";
import { socketTableFromTracing, STAND_INS_ENV } from "../../src/kernel/probe.ts";
import { kubeletUnavailableReason, startKubelet } from "../support/kubelet-server.ts";
import { pod } from "../support/kubelet-pods.ts";
import { hasCommand, IS_ROOT, testIf } from "../support/require.ts";
import { denyOne, RET_KILL_PROCESS, retErrno, SECCOMP_AVAILABLE, seccompExec, SYSCALLS } from "./check-seccomp.ts";
import {
  BPF_OK,
  btfLine,
  cgroupLine,
  check,
  KERNEL_LINE,
  NO_API,
  NO_CONNTRACK,
  PROCESSES_OK,
  PROCESSES_SKIPPED,
  preemptionCountReadable,
  probeOk,
  rootCheckLines,
  run,
  SKIPPED,
  STAND_INS_ATTACHED,
  STAND_INS_SKIPPED,
  standInsCheckLine,
  systemLibbpfVersion,
} from "./check-support.ts";
import { ALLOW_BPF, GRANT } from "../support/check-fixes.ts";

const it = testIf(
  IS_ROOT && existsSync(AGENT_BINARY) && ["setpriv", "unshare", "chroot", "ldd"].every(hasCommand),
  "needs root, setpriv, unshare, chroot, ldd and the compiled binary (scripts/build)",
);
const withKubelet = testIf(
  IS_ROOT && existsSync(AGENT_BINARY) && kubeletUnavailableReason() === null,
  `needs root, the compiled binary and a local kubelet (${kubeletUnavailableReason() ?? "ok"})`,
);
const withSeccomp = testIf(
  IS_ROOT && existsSync(AGENT_BINARY) && SECCOMP_AVAILABLE,
  `needs root, the compiled binary and a known system call table (x64 or arm64; this is ${process.arch})`,
);


describe("check", () => {
  it("as root on this machine: every prerequisite is there, exit 0", async () => {
    const result = await check(["--no-kubelet"]);
    expect(result.lines).toEqual(rootCheckLines());
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
  });

  it("started through the dynamic loader (as on a noexec mount): the same lines, bpf() tried in a child started the same way", async () => {
    const result = await check(["--no-kubelet"], [dynamicLoader()]);
    expect(result.lines).toEqual(rootCheckLines());
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
  });

  it("without tracefs (a pod that does not mount it): the accept() side is a warning whose fix is to mount it, exit 0", async () => {
    // A mount namespace of the check's own, tracefs unmounted there (wherever it is) and only there.
    const unmount = "for m in /sys/kernel/debug/tracing /sys/kernel/tracing; do while umount $m 2>/dev/null; do :; done; done; exec \"$@\"";
    const result = await check(["--no-kubelet"], ["unshare", "--mount", "--propagation", "private", "sh", "-c", unmount, "sh"]);
    const expected = rootCheckLines();
    // check loads the default way of keeping state: the socket table's programs where the kernel has it
    const acceptProgram = socketTableFromTracing(release()) ? "handle_accept4_table" : "handle_accept4";
    expected[expected.indexOf(PROCESSES_OK)] =
      "⚠ processes: only the process that called connect() can be named, not the one that called accept(): cannot attach to the " +
      "syscalls:sys_exit_accept4 and sys_exit_accept tracepoints: tracefs is not mounted, and libbpf finds tracepoints there " +
      `(attach ${acceptProgram}: No such file or directory) — fix: mount -t tracefs nodev /sys/kernel/tracing (in a pod: the node's ` +
      "/sys/kernel/tracing, as scripts/deploy/20-daemonset.yaml mounts it)";
    expected[expected.length - 1] = "the agent can run on this node (1 warning, ⚠ above)";
    expect(result.lines).toEqual(expected);
    expect(result.exitCode).toBe(0);
  });

  // What a node whose tracepoints run programs preemptibly gets (docs/kernels.md); here the stand-ins are asked for.
  it(`with the stand-ins asked for (${STAND_INS_ENV}=always): attached behind the first programs, exit 0`, async () => {
    const result = await check(["--no-kubelet"], ["env", `${STAND_INS_ENV}=always`]);
    const expected = rootCheckLines();
    expected[expected.indexOf(PROCESSES_OK) + 1] = PREEMPTIBLE_TRACEPOINTS
      ? standInsCheckLine()
      : `${STAND_INS_ATTACHED}: asked for (${STAND_INS_ENV}=always)`;
    expect(result.lines).toEqual(expected);
    expect(result.exitCode).toBe(0);
  });

  it("the stand-ins asked for without tracefs: a warning whose fix is to mount it, exit 0", async () => {
    // As the agent's own test (skipped-close.test.ts): debugfs too, whose tracing directory mounts tracefs again.
    const mounts = "/sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug";
    const unmount = `for m in ${mounts}; do while umount $m 2>/dev/null; do :; done; done; exec "$@"`;
    const result = await check(["--no-kubelet"], ["unshare", "--mount", "--propagation", "private", "env", `${STAND_INS_ENV}=always`, "sh", "-c", unmount, "sh"]);
    const table = socketTableFromTracing(release()) ? "_table" : "";
    const mountIt = "mount -t tracefs nodev /sys/kernel/tracing (in a pod: the node's /sys/kernel/tracing, as scripts/deploy/20-daemonset.yaml mounts it)";
    const wanted = PREEMPTIBLE_TRACEPOINTS ? "this kernel's tracepoints run programs preemptibly" : `asked for (${STAND_INS_ENV}=always)`;
    expect(result.lines.slice(7, 9)).toEqual([
      "⚠ processes: only the process that called connect() can be named, not the one that called accept(): cannot attach to the " +
        "syscalls:sys_exit_accept4 and sys_exit_accept tracepoints: tracefs is not mounted, and libbpf finds tracepoints there " +
        `(attach handle_accept4${table}: No such file or directory) — fix: ${mountIt}`,
      `⚠ stand-ins: not attached, though ${wanted}: cannot attach to the sock:inet_sock_set_state and tcp:tcp_destroy_sock tracepoints: ` +
        `tracefs is not mounted, and libbpf finds tracepoints there (attach classic_set_state${table}: No such file or directory); ` +
        `a connection whose runs the kernel skips may have no line — fix: ${mountIt}`,
    ]);
    expect(result.lines.at(-1)).toBe("the agent can run on this node (2 warnings, ⚠ above)");
    expect(result.exitCode).toBe(0);
  });

  it("--json: one object, the same verdicts", () => {
    const proc = Bun.spawnSync([AGENT_BINARY, "check", "--json", "--no-kubelet"], { stdout: "pipe", stderr: "pipe" });
    expect(proc.exitCode).toBe(0);
    const report = JSON.parse(proc.stdout.toString()) as { ok: boolean; verdict: string; checks: { id: string; status: string }[] };
    expect(report.ok).toBe(true);
    expect(report.verdict).toBe("the agent can run on this node");
    expect(report.checks.map((c) => `${c.id}=${c.status}`)).toEqual([
      "kernel=ok",
      "btf=ok",
      "capabilities=ok",
      "bpf-syscall=ok",
      "cgroup2=ok",
      "libbpf=ok",
      "probe=ok",
      "processes=ok",
      `stand-ins=${preemptionCountReadable() ? "ok" : "skip"}`,
      "kubelet=skip",
      "api-server=skip",
      "conntrack=skip",
    ]);
  });

  it("a user who is not root: capabilities and probe fail with the fix, exit 1", async () => {
    const libbpf = systemLibbpfVersion();
    const result = await check(["--no-kubelet"], ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]);
    expect(result.lines).toHaveLength(13);
    expect(result.lines[2]).toBe(`✘ capabilities: missing CAP_BPF and CAP_PERFMON (uid 65534, no effective capabilities) — fix: ${GRANT}`);
    // Newer kernels let anyone reach bpf()'s dispatcher; older ones with unprivileged BPF off refuse at the entry.
    expect(result.lines[3]).toBeOneOf([
      "✔ bpf() system call: allowed (no map created without CAP_BPF)",
      `✘ bpf() system call: refused (EPERM) to a caller without CAP_BPF — fix: ${GRANT}`,
    ]);
    const others = [...result.lines.slice(0, 2), ...result.lines.slice(4)];
    const probe = result.lines[3]!.startsWith("✔")
      ? "✘ probe: load the BPF object: Operation not permitted (not running as root): run as root, or grant CAP_BPF and CAP_PERFMON " +
        "(CAP_SYS_ADMIN on kernels before 5.8) — fix: see the capabilities line above"
      : "✘ probe: not tried (bpf() system call failed) — fix: see the bpf() system call line above";
    const failed = result.lines[3]!.startsWith("✔") ? 2 : 3;
    expect(others).toEqual([
      KERNEL_LINE,
      btfLine(),
      cgroupLine(),
      `✔ libbpf: ${libbpf} (the system's libbpf.so.1)`,
      probe,
      PROCESSES_SKIPPED,
      STAND_INS_SKIPPED,
      SKIPPED,
      NO_API,
      NO_CONNTRACK,
      `the agent cannot run on this node: ${failed} prerequisites missing (✘ above)`,
    ]);
    expect(result.exitCode).toBe(1);
  });

  it("--libbpf naming a missing file: libbpf fails, the probe is not tried, exit 1", async () => {
    const result = await check(["--no-kubelet", "--libbpf", "/nonexistent/libbpf.so.1"]);
    expect(result.lines.slice(5)).toEqual([
      "✘ libbpf: --libbpf /nonexistent/libbpf.so.1: no such file — fix: point --libbpf at a libbpf 1.x shared object, " +
        "or leave it out to use the system's or the built-in one",
      "✘ probe: not tried (libbpf failed) — fix: see the libbpf line above",
      PROCESSES_SKIPPED,
      STAND_INS_SKIPPED,
      SKIPPED,
      NO_API,
      NO_CONNTRACK,
      "the agent cannot run on this node: 2 prerequisites missing (✘ above)",
    ]);
    expect(result.exitCode).toBe(1);
  });

  it("no kubelet where it is looked for: a warning, and the agent can still run (exit 0)", async () => {
    // A port that was just free: nothing listens there.
    const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const port = server.port;
    server.stop(true);
    const url = `https://127.0.0.1:${port}/pods`;
    const result = await check(["--kubelet-url", url]);
    expect(result.lines.slice(0, 8).every((line) => line.startsWith("✔ "))).toBe(true);
    expect(result.lines[8]).toEqual(standInsCheckLine());
    expect(result.lines.slice(9)).toEqual([
      `⚠ kubelet: cannot reach ${url} (ECONNREFUSED: Unable to connect. Is the computer able to access the url?); pod names will be - ` +
        "— fix: name the kubelet (NODE_IP, --kubelet-host or --kubelet-url) and let this host reach its port 10250, or run with --no-kubelet",
      NO_API,
      NO_CONNTRACK,
      "the agent can run on this node (1 warning, ⚠ above)",
    ]);
    expect(result.exitCode).toBe(0);
  });

  withKubelet("a kubelet that lists pods is reachable and authorized; one that forbids them is a warning naming the RBAC", async () => {
    await using kubelet = await startKubelet({ pods: [pod({ name: "web-0", ip4: "10.244.1.2" }), pod({ name: "web-1", ip4: "10.244.1.3" })] });
    const args = ["--kubelet-url", kubelet.url, "--kubelet-ca-file", kubelet.caFile, "--kubelet-token-file", kubelet.tokenFile];
    const good = await check(args);
    expect(good.lines.slice(9)).toEqual([`✔ kubelet: ${kubelet.url} lists 2 pods`, NO_API, NO_CONNTRACK, "the agent can run on this node"]);
    expect(good.exitCode).toBe(0);
    expect(kubelet.authorized).toBe(1);

    kubelet.mode = "forbidden";
    const forbidden = await check(args);
    expect(forbidden.lines.slice(9)).toEqual([
      `⚠ kubelet: pod list forbidden (403) by ${kubelet.url} (403 Forbidden: Forbidden (user=system:serviceaccount:kmesh-system:kmesh-accesslog, ` +
        "verb=get, resource=nodes, subresource(s)=[pods])); pod names will be - " +
        '— fix: grant the service account RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and nodes/proxy (older): scripts/deploy/10-rbac.yaml',
      NO_API,
      NO_CONNTRACK,
      "the agent can run on this node (1 warning, ⚠ above)",
    ]);
    expect(forbidden.exitCode).toBe(0);
  });

  it("in a read-only root file system holding only the binary and glibc (the container image): the built-in libbpf, the bpf() child, the probe", async () => {
    const root = mkdtempSync(join(tmpdir(), "kal-check-rootfs-"));
    try {
      for (const dir of ["bin", "proc", "sys", "dev", "run", "tmp"]) mkdirSync(join(root, dir));
      copyFileSync(AGENT_BINARY, join(root, "bin/kmesh-accesslog"));
      chmodSync(join(root, "bin/kmesh-accesslog"), 0o755);
      for (const lib of Bun.spawnSync(["ldd", AGENT_BINARY]).stdout.toString().match(/\/\S+/g) ?? []) {
        mkdirSync(join(root, dirname(lib)), { recursive: true });
        copyFileSync(lib, join(root, lib));
      }
      const script = [
        'r="$1"',
        'mount --bind "$r" "$r" && mount -o remount,bind,ro "$r"',
        'mount --rbind /proc "$r/proc" && mount --rbind /sys "$r/sys" && mount --rbind /dev "$r/dev"',
        'exec chroot "$r" /bin/kmesh-accesslog check --no-kubelet',
      ].join(" && ");
      const result = await run(["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", root]);
      const libbpf = systemLibbpfVersion();
      expect(result.lines.slice(5)).toEqual([
        `✔ libbpf: ${libbpf} (the copy built into this binary: the system has no libbpf.so.1)`,
        probeOk(libbpf),
        PROCESSES_OK,
        standInsCheckLine(),
        SKIPPED,
        NO_API,
        NO_CONNTRACK,
        "the agent can run on this node",
      ]);
      expect(result.lines[3]).toBe(BPF_OK); // the bpf() child is the binary itself: no shell, no Bun needed
      expect(result.exitCode).toBe(0);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  withSeccomp("a seccomp filter that refuses bpf() with EPERM, as container runtimes' profiles do: named, exit 1", async () => {
    const result = await check(["--no-kubelet"], seccompExec(denyOne(SYSCALLS[process.arch]!.bpf, retErrno(1))));
    expect(result.stderr).toBe("");
    expect(result.lines[3]).toBe(
      `✘ bpf() system call: refused (EPERM) although CAP_BPF is effective: a seccomp filter or a security module denies it — fix: ${ALLOW_BPF}`,
    );
    expect(result.lines[6]).toBe("✘ probe: not tried (bpf() system call failed) — fix: see the bpf() system call line above");
    expect(result.lines.at(-1)).toBe("the agent cannot run on this node: 2 prerequisites missing (✘ above)");
    expect(result.exitCode).toBe(1);
  });

  withSeccomp("a seccomp filter that kills on bpf(), as systemd's SystemCallFilter= does by default: check survives to name it", async () => {
    const result = await check(["--no-kubelet"], seccompExec(denyOne(SYSCALLS[process.arch]!.bpf, RET_KILL_PROCESS)));
    expect(result.lines[3]).toBe(`✘ bpf() system call: calling bpf() killed the process (SIGSYS): a seccomp filter forbids it — fix: ${ALLOW_BPF}`);
    expect(result.lines[6]).toBe("✘ probe: not tried (bpf() system call failed) — fix: see the bpf() system call line above");
    expect(result.lines.at(-1)).toBe("the agent cannot run on this node: 2 prerequisites missing (✘ above)");
    expect(result.exitCode).toBe(1);
  });
});
