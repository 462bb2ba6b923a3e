// scripts/deploy/kmesh-accesslog.service: systemd accepts it (`systemd-analyze verify`), rates its
// exposure low (`systemd-analyze security --offline`), and none of its hardening keeps the agent
// from loading BPF. This machine's PID 1 is not systemd, so the unit cannot be started here;
// instead the agent runs under what the unit's directives do, each made for real from the
// unit's own text: its dynamic user's kind of uid, ambient and bounding capabilities,
// no_new_privs, the SystemCallFilter= allow list (expanded by systemd-analyze, enforced by a
// seccomp filter answering SystemCallErrorNumber=), RestrictAddressFamilies=, ProtectSystem=strict
// (every mount read-only), PrivateTmp=, RuntimeDirectory=, ProtectProc= and ProcSubset=. The
// directives not made here change nothing bpf() needs: ProtectKernelTunables/-Modules/-Logs,
// ProtectControlGroups, ProtectClock, ProtectHostname and PrivateDevices make /proc/sys, /sys,
// cgroupfs and /dev read-only or hidden and drop capabilities we do not hold; RestrictNamespaces,
// RestrictRealtime, RestrictSUIDSGID and LockPersonality forbid calls the agent never makes;
// IPAddressDeny/Allow filter the service's own packets; LimitMEMLOCK only matters before 5.11.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, copyFileSync, existsSync, linkSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DEFAULT_LOCK_FILE } from "../src/options.ts";
import { AGENT_BINARY } from "./e2e/agent.ts";
import { curlAs } from "./e2e/admin-support.ts";
import { allowList, seccompExec, syscallNumbers } from "./e2e/check-seccomp.ts";
import { hasCommand, IS_ROOT, testIf } from "./support/require.ts";

/** The uid the emulation runs the unit's dynamic user as (DynamicUser= picks one from 61184-65519). */
const DYNAMIC_UID = 61_234;
const UNIT_PATH = new URL("../scripts/deploy/kmesh-accesslog.service", import.meta.url).pathname;
const UNIT_TEXT = readFileSync(UNIT_PATH, "utf8");

/** [section] → key → values, in order (a repeated key adds a value). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(\w+)\]$/.exec(line);
    if (section) {
      current = new Map();
      sections.set(section[1]!, current);
      continue;
    }
    const pair = /^(\w+)=(.*)$/.exec(line);
    if (!pair || current === undefined) throw new Error(`not a unit-file line: ${raw}`);
    current.set(pair[1]!, [...(current.get(pair[1]!) ?? []), pair[2]!]);
  }
  return sections;
}

const unit = parseUnit(UNIT_TEXT);
const service = unit.get("Service")!;
const one = (key: string) => {
  const values = service.get(key);
  if (values?.length !== 1) throw new Error(`[Service] ${key}= should be set once, is ${JSON.stringify(values)}`);
  return values[0]!;
};
const words = (key: string) => (service.get(key) ?? []).flatMap((value) => value.split(/\s+/)).filter((w) => w !== "");

/** A copy of the unit whose ExecStart names an executable that exists here. */
function unitCopy(dir: string): string {
  const path = join(dir, "kmesh-accesslog.service");
  const executable = existsSync(AGENT_BINARY) ? AGENT_BINARY : process.execPath;
  writeFileSync(path, UNIT_TEXT.replace(/^ExecStart=\S+/m, `ExecStart=${executable}`));
  return path;
}

describe("the systemd unit", () => {
  test("runs the installed binary without a kubelet, with the capabilities and hardening the README names", () => {
    expect(one("ExecStart")).toBe("/usr/local/bin/kmesh-accesslog run --no-kubelet");
    expect(one("Type")).toBe("exec");
    expect(one("DynamicUser")).toBe("yes");
    expect(words("AmbientCapabilities")).toEqual(["CAP_BPF", "CAP_PERFMON"]);
    expect(words("CapabilityBoundingSet")).toEqual(["CAP_BPF", "CAP_PERFMON"]);
    expect(one("NoNewPrivileges")).toBe("yes");
    expect(one("ProtectSystem")).toBe("strict");
    expect(words("SystemCallFilter")).toEqual(["@system-service", "bpf"]);
    expect(one("SystemCallErrorNumber")).toBe("EPERM");
    // The lock's directory is the runtime directory systemd creates and removes.
    expect(`/run/${one("RuntimeDirectory")}`).toBe(dirname(DEFAULT_LOCK_FILE));
    // What would break BPF or the admin API is absent.
    for (const key of ["PrivateUsers", "PrivateNetwork", "MemoryDenyWriteExecute", "User"]) expect(service.has(key)).toBe(false);
    expect(unit.get("Install")?.get("WantedBy")).toEqual(["multi-user.target"]);
  });

  test("weighs the agent in a cpu cgroup of its own, twice a default service's weight, without Nice=", () => {
    // README, "A burst of closes": between cgroups the weight decides, nice does not.
    expect(one("CPUWeight")).toBe("200");
    expect(service.has("Nice")).toBe(false);
  });

  const withAnalyze = testIf(hasCommand("systemd-analyze"), "needs systemd-analyze (Debian: systemd)");

  withAnalyze("systemd-analyze verify accepts it", () => {
    const dir = mkdtempSync(join(tmpdir(), "kal-unit-"));
    try {
      const result = Bun.spawnSync(["systemd-analyze", "verify", unitCopy(dir)], { stdout: "pipe", stderr: "pipe" });
      expect(result.stderr.toString()).toBe("");
      expect(result.exitCode).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  withAnalyze("systemd-analyze security rates its exposure OK (at most 2.0 of 10)", () => {
    const dir = mkdtempSync(join(tmpdir(), "kal-unit-"));
    try {
      const result = Bun.spawnSync(["systemd-analyze", "security", "--offline=yes", unitCopy(dir)], { stdout: "pipe", stderr: "pipe" });
      const level = /Overall exposure level for kmesh-accesslog\.service: (\d+\.\d+)/.exec(result.stdout.toString())?.[1];
      expect(level).toBeDefined();
      expect(Number(level)).toBeLessThanOrEqual(2.0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  const numbers = syscallNumbers();
  const emulate = testIf(
    IS_ROOT && existsSync(AGENT_BINARY) && numbers !== null && ["systemd-analyze", "unshare", "setpriv", "nsenter", "curl"].every(hasCommand),
    "needs root, the compiled binary (scripts/build), x86-64 kernel headers (linux-libc-dev), systemd-analyze, unshare, setpriv, nsenter and curl",
  );

  // The unit's private /tmp and /run hide whatever lies there, a clone of this repository
  // (`git clone … /tmp/x`) with its Bun and its agent included: the emulation runs copies kept
  // elsewhere.
  let staged: { bun: string; agent: string } | undefined;
  const executables = () => (staged ??= stageExecutables());
  afterAll(() => {
    if (staged !== undefined) rmSync(dirname(staged.agent), { recursive: true, force: true });
  });

  emulate("under the unit's user, capabilities, system-call filter, read-only root and private /tmp, /run and /proc, the agent captures", async () => {
    const port = await freePort();
    await using agent = Bun.spawn(underTheUnit(words("SystemCallFilter"), ["--duration", "4", "--admin-addr", `127.0.0.1:${port}`]), {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      timeout: 30_000,
      killSignal: "SIGKILL",
    });
    const stdout = new Response(agent.stdout).text();
    const stderr = new Response(agent.stderr).text();
    // A connection of our own to its admin API, once it answers: the agent must log it.
    let answered = false;
    for (let i = 0; i < 60 && !answered; i++) {
      await Bun.sleep(50);
      answered = await fetch(`http://127.0.0.1:${port}/debug/ready`, { headers: { connection: "close" } })
        .then((response) => response.ok)
        .catch(() => false);
    }
    const exitCode = await agent.exited;
    const [out, err] = await Promise.all([stdout, stderr]);
    expect(err).toContain("kmesh-accesslog: capturing TCP connections");
    expect(err).not.toContain("Operation not permitted");
    expect(answered).toBe(true);
    expect(exitCode).toBe(0);
    const lines = out.split("\n").filter((line) => line.includes(`dst.addr=127.0.0.1:${port},`));
    expect(lines.some((line) => line.includes("direction=INBOUND"))).toBe(true);
    expect(lines.some((line) => line.includes("direction=OUTBOUND"))).toBe(true);
  }, 30_000);

  emulate("under the unit, root changes a switch over TCP and another user cannot; the socket is the dynamic user's, 0600, in the runtime directory", async () => {
    const port = await freePort();
    const addr = `127.0.0.1:${port}`;
    // Not Kmesh's :15020: the workload_metrics switch below opens the TCP metrics' address.
    const metricsAddr = `127.0.0.1:${await freePort()}`;
    await using agent = Bun.spawn(underTheUnit(words("SystemCallFilter"), ["--duration", "6", "--admin-addr", addr, "--metrics-addr", metricsAddr]), {
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      timeout: 30_000,
      killSignal: "SIGKILL",
    });
    const stderr = new Response(agent.stderr).text();
    let answered = false;
    for (let i = 0; i < 100 && !answered; i++) {
      await Bun.sleep(50);
      answered = await fetch(`http://${addr}/debug/ready`).then((response) => response.ok, () => false);
    }
    expect(answered).toBe(true);
    // The unit's /run is the agent's own (a mount namespace): look at the socket from inside it.
    const socket = `/run/${one("RuntimeDirectory")}/agent.sock`;
    const inside = (argv: string[]) => Bun.spawnSync(["nsenter", "--mount", `--target=${agent.pid}`, ...argv], { stdout: "pipe", stderr: "pipe" });
    expect(inside(["stat", "--format=%F %a %u", socket]).stdout.toString()).toBe(`socket 600 ${DYNAMIC_UID}\n`);
    expect(inside(["curl", "--silent", "--unix-socket", socket, "--request", "POST", "--write-out", "%{http_code}", "http://localhost/workload_metrics?enable=true"]).stdout.toString()).toBe("200");
    expect((await fetch(`http://${metricsAddr}/status/metric`)).status).toBe(200);

    const nobodyPort = await freePort();
    const nobody = await curlAs({ uid: 65534, localPort: nobodyPort }, "POST", `http://${addr}/monitoring?enable=false`);
    expect(nobody.status).toBe(403);
    const rootPort = await freePort();
    const root = await curlAs({ uid: 0, localPort: rootPort }, "POST", `http://${addr}/accesslog?enable=false`);
    expect(root.status).toBe(200);
    expect(await agent.exited).toBe(0);
    // ProtectProc=invisible: the agent sees the socket table's owners, not other users' processes.
    expect((await stderr).split("\n").filter((line) => line.startsWith("kmesh-accesslog: admin API: "))).toEqual([
      `kmesh-accesslog: admin API: accepted (200) POST "/workload_metrics?enable=true" from unix socket ${socket}: workload_metrics false -> true; writing close reports (periodic reports off); TCP metrics on`,
      `kmesh-accesslog: admin API: refused (403) POST "/monitoring?enable=false" from uid 65534, pid unknown, command unknown, 127.0.0.1:${nobodyPort}: ` +
        "monitoring stays true; only root may change this agent's switches, and this request came from uid 65534: send it as root (sudo), or start the agent with --admin-allow-uid 65534",
      `kmesh-accesslog: admin API: accepted (200) POST "/accesslog?enable=false" from uid 0, pid unknown, command unknown, 127.0.0.1:${rootPort}: ` +
        "accesslog true -> false; writing nothing (accesslog off); TCP metrics on",
    ]);
  }, 30_000);

  emulate("the control: the same filter without bpf stops the agent at its first bpf() (so the filter is enforced, and bpf is why it is listed)", () => {
    const filter = words("SystemCallFilter").filter((entry) => entry !== "bpf");
    const result = Bun.spawnSync(underTheUnit(filter, ["--duration", "1", "--admin-addr", ""]), { stdout: "pipe", stderr: "pipe", timeout: 30_000 });
    expect(result.exitCode).toBe(1);
    expect(result.stderr.toString()).toContain("kmesh-accesslog: cannot start the kernel probe:");
    expect(result.stderr.toString()).toContain("Operation not permitted");
  }, 30_000);

  /** argv: the agent as the unit starts it (plus `extraArgs`), under the unit's directives, with `syscallFilter`. */
  function underTheUnit(syscallFilter: string[], extraArgs: string[]): string[] {
    const allowed = expandSyscallFilter(syscallFilter);
    const allowedNumbers = [...allowed].flatMap((name) => (numbers!.has(name) ? [numbers!.get(name)!] : []));
    const FAMILIES: Record<string, number> = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10 };
    const families = words("RestrictAddressFamilies").map((name) => FAMILIES[name]!);
    const ERRNO: Record<string, number> = { EPERM: 1 };
    const filter = allowList(allowedNumbers, families, ERRNO[one("SystemCallErrorNumber")]!);

    const uid = DYNAMIC_UID;
    const capNames = (key: string) => words(key).map((cap) => `+${cap.replace(/^CAP_/, "").toLowerCase()}`).join(",");
    const runtimeDir = `/run/${one("RuntimeDirectory")}`;
    // The mounts, in a mount namespace of its own (nothing outside it changes).
    const setup = [
      "set -e",
      // ProtectSystem=strict: every mount read-only but the API file systems.
      "awk '{print $2}' /proc/self/mounts | sort -u | while read -r m; do case \"$m\" in /proc*|/sys*|/dev*) ;; " +
        '*) mount -o remount,bind,ro "$m" 2>/dev/null || true ;; esac; done',
      "if [ -w / ]; then echo 'the root is still writable' >&2; exit 99; fi",
      one("PrivateTmp") === "yes" ? "mount -t tmpfs -o mode=1777 tmpfs /tmp" : ":",
      `mount -t tmpfs -o mode=0755 tmpfs /run && mkdir -m ${one("RuntimeDirectoryMode")} ${runtimeDir} && chown ${uid}:${uid} ${runtimeDir}`,
      `mount -t proc -o hidepid=${one("ProtectProc")},subset=${one("ProcSubset")} proc /proc`,
      'exec "$@"',
    ].join("\n");
    return [
      ...["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh"],
      "setpriv",
      `--reuid=${uid}`,
      `--regid=${uid}`,
      "--clear-groups",
      ...(one("NoNewPrivileges") === "yes" ? ["--no-new-privs"] : []),
      `--inh-caps=-all,${capNames("AmbientCapabilities")}`,
      `--ambient-caps=-all,${capNames("AmbientCapabilities")}`,
      `--bounding-set=-all,${capNames("CapabilityBoundingSet")}`,
      ...seccompExec(filter, executables().bun),
      executables().agent,
      ...one("ExecStart").split(/\s+/).slice(1),
      ...extraArgs,
    ];
  }
});

/**
 * Bun and the agent, hard-linked (or copied) into a new directory under /var/tmp that the unit's
 * user can read: outside /tmp and /run, which the emulated unit replaces.
 */
function stageExecutables(): { bun: string; agent: string } {
  const dir = mkdtempSync("/var/tmp/kal-unit-exec-");
  chmodSync(dir, 0o755);
  const stage = (from: string, name: string) => {
    const to = join(dir, name);
    try {
      linkSync(from, to);
    } catch {
      copyFileSync(from, to);
      chmodSync(to, 0o755);
    }
    return to;
  };
  return { bun: stage(process.execPath, "bun"), agent: stage(AGENT_BINARY, "kmesh-accesslog") };
}

/** SystemCallFilter= allow-list entries → system call names, @groups expanded by systemd. */
function expandSyscallFilter(entries: string[]): Set<string> {
  const names = new Set<string>();
  const seen = new Set<string>();
  const visit = (entry: string) => {
    if (entry.startsWith("~")) throw new Error(`deny lists are not emulated: ${entry}`);
    if (!entry.startsWith("@")) {
      names.add(entry);
      return;
    }
    if (seen.has(entry)) return;
    seen.add(entry);
    const listing = Bun.spawnSync(["systemd-analyze", "syscall-filter", entry], { stdout: "pipe", stderr: "pipe" }).stdout.toString();
    for (const line of listing.split("\n").slice(1)) {
      const item = line.trim();
      if (item !== "" && !item.startsWith("#")) visit(item);
    }
  };
  entries.forEach(visit);
  return names;
}

async function freePort(): Promise<number> {
  const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
  const port = server.port!;
  await server.stop(true);
  return port;
}
