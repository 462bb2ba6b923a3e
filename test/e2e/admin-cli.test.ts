/**
 * The compiled binary as an operator meets it: the kmeshctl-style commands (accesslog, monitoring,
 * status) driving a running agent, one agent per node (refused with the running one's pid; the
 * lock released on exit and never stale after kill -9), and --log-level.
 *
 * Needs root and dist/kmesh-accesslog (scripts/build). Run: `bun test test/e2e/admin-cli.test.ts`.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { agentUnavailableReason, matchConnection, startAgent } from "./agent.ts";
import { freePort, metrics, privateLockFile, runBinary, startAdminAgent, switchStates, waitReady } from "./admin-support.ts";
import { exchange, waitUntilCapturing } from "./exchange.ts";
import { createTestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("admin CLI", netnsUnavailableReason() ?? agentUnavailableReason());

describe.skipIf(!ready)("kmeshctl-style commands against a running agent", () => {
  test("accesslog disable / enable: the lines stop and come back", async () => {
    await using node = await createTestNode({ pods: ["client", "server"] });
    const [a, b] = [node.pod("client"), node.pod("server")];
    await using agent = await startAdminAgent();
    const addr = agent.adminAddr;
    await waitUntilCapturing(agent.agent, a, b);

    expect(await runBinary(["accesslog", "disable", "--admin-addr", addr])).toEqual({ exitCode: 0, stdout: `accesslog disabled on ${addr}\n`, stderr: "" });
    await Bun.sleep(200);
    const before = (await metrics(addr)).get("kmesh_accesslog_records_read_total");
    const { client, server } = await exchange(a, b, { family: 4, clientSend: 10, serverSend: 20, closeFirst: "server" });
    await Bun.sleep(500);
    expect((await metrics(addr)).get("kmesh_accesslog_records_read_total")).toBe(before!);

    expect(await runBinary(["accesslog", "enable", "--admin-addr", addr])).toEqual({ exitCode: 0, stdout: `accesslog enabled on ${addr}\n`, stderr: "" });
    await waitUntilCapturing(agent.agent, a, b);
    const key = { srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: server.localAddress, dstPort: server.localPort };
    expect(agent.agent.filter(matchConnection(key))).toEqual([]);
  }, 60_000);

  test("monitoring: --all, refusals with the agent's words, kmeshctl's order", async () => {
    await using agent = await startAdminAgent({ args: ["--report-interval", "3600"] });
    const addr = agent.adminAddr;
    expect(await runBinary(["monitoring", "--all", "disable", "--admin-addr", addr])).toEqual({
      exitCode: 0,
      stdout: `monitoring (every switch) disabled on ${addr}\n`,
      stderr: "",
    });
    expect(await switchStates(addr)).toEqual({ monitoring: false, accesslog: false, connection_metrics: false, workload_metrics: false });
    expect(await runBinary(["monitoring", "--connectionMetrics", "enable", "--admin-addr", addr])).toEqual({
      exitCode: 1,
      stdout: "",
      stderr:
        `kmesh-accesslog: the agent on ${addr} refused to enable connection_metrics: Kmesh monitoring is disabled, cannot enable connection metrics. ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)\n",
    });
    // --all goes first whatever the order on the command line, as in kmeshctl
    expect(
      await runBinary(["monitoring", "--workloadMetrics", "disable", "--connectionMetrics", "disable", "--all", "enable", "--admin-addr", addr]),
    ).toEqual({
      exitCode: 0,
      stdout: `monitoring (every switch) enabled, workload_metrics disabled, connection_metrics disabled on ${addr}\n`,
      stderr: "",
    });
    expect(await switchStates(addr)).toEqual({ monitoring: true, accesslog: true, connection_metrics: false, workload_metrics: false });
    expect(await runBinary(["monitoring", "--accesslog", "disable", "--admin-addr", addr])).toMatchObject({ exitCode: 0 });
    expect((await switchStates(addr)).accesslog).toBe(false);
    // a refusal after a change: the one line says both
    expect(await runBinary(["monitoring", "--all", "disable", "--accesslog", "enable", "--admin-addr", addr])).toEqual({
      exitCode: 1,
      stdout: "",
      stderr:
        `kmesh-accesslog: monitoring (every switch) disabled on ${addr}; then the agent on ${addr} refused to enable accesslog: Kmesh monitoring is disabled, cannot enable accesslog. ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)\n",
    });
  });

  test("status: switches, readiness and counters, as tables and as JSON; over IPv6", async () => {
    const addr = `[::1]:${freePort("::1")}`;
    await using agent = await startAdminAgent({ adminAddr: addr, args: ["--connection-metrics", "--report-interval", "0.2"] });
    await Bun.sleep(500); // a few periodic runs
    const tables = await runBinary(["status", "--admin-addr", addr]);
    expect({ exitCode: tables.exitCode, stderr: tables.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(tables.stdout).toContain(`address   ${addr}\n`);
    expect(tables.stdout).toContain(`pid ${agent.agent.pid}\n`);
    expect(tables.stdout).toMatch(/^ready\s+yes$/m);
    expect(tables.stdout).toMatch(/^writing\s+close reports and periodic reports$/m);
    expect(tables.stdout).toMatch(/^connection_metrics\s+enabled$/m);
    expect(tables.stdout).toMatch(/^workload_metrics\s+disabled$/m);
    expect(tables.stdout).toMatch(/^periodic report runs\s+[1-9]\d*$/m);
    for (const counter of ["records read", "lines written", "lines dropped", "kernel records lost", "records malformed", "connections untracked", "connections open"]) {
      expect(tables.stdout).toMatch(new RegExp(`^${counter}\\s+\\d+$`, "m"));
    }
    const json = await runBinary(["status", "--json", "--admin-addr", addr]);
    expect(JSON.parse(json.stdout)).toMatchObject({
      address: addr,
      program: "kmesh-accesslog",
      pid: agent.agent.pid,
      ready: true,
      switches: { monitoring: true, accesslog: true, connection_metrics: true, workload_metrics: false },
      kernelEmit: true,
      periodicReports: true,
      metrics: { kmesh_accesslog_records_read_total: expect.any(Number), kmesh_accesslog_periodic_report_runs_total: expect.any(Number) },
    });
  });

  test.each([[["accesslog", "enable"]], [["monitoring", "--all", "enable"]], [["status"]], [["status", "--json"]]])(
    "%j with no agent listening: one line naming the address, exit 1",
    async (args) => {
      const addr = `127.0.0.1:${freePort()}`;
      expect(await runBinary([...args, "--admin-addr", addr])).toEqual({
        exitCode: 1,
        stdout: "",
        stderr: `kmesh-accesslog: no agent is listening on ${addr} (start one with \`kmesh-accesslog run\`, or name another with --admin-addr)\n`,
      });
    },
  );

  test("a bad argument: exit 2, nothing sent", async () => {
    expect(await runBinary(["accesslog", "maybe"])).toEqual({
      exitCode: 2,
      stdout: "",
      stderr: 'kmesh-accesslog: invalid value for accesslog: "maybe" (expected enable or disable)\n',
    });
  });
});

describe.skipIf(!ready)("one agent per node", () => {
  const refusal = (pid: number, api: string, lock: string) =>
    `kmesh-accesslog: another kmesh-accesslog agent is already running on this node (pid ${pid}, ${api}; lock ${lock}): one agent per node, stop it first\n`;

  test("a second agent is refused before it loads anything, naming the first, with or without an admin API", async () => {
    await using first = await startAdminAgent();
    for (const api of [`127.0.0.1:${freePort()}`, ""]) {
      const started = performance.now();
      const second = await runBinary(["run", "--admin-addr", api, "--lock-file", first.lockFile, "--duration", "30"]);
      expect(second).toEqual({ exitCode: 1, stdout: "", stderr: refusal(first.agent.pid, `admin API on ${first.adminAddr}`, first.lockFile) });
      expect(performance.now() - started).toBeLessThan(5_000);
    }
    expect(first.agent.proc.exitCode).toBeNull();
  });

  test("the first agent without an admin API is still found", async () => {
    await using first = await startAdminAgent({ adminAddr: "", waitReady: false });
    for (let i = 0; i < 100 && !existsSync(first.lockFile); i++) await Bun.sleep(20);
    const second = await runBinary(["run", "--admin-addr", "", "--lock-file", first.lockFile, "--duration", "30"]);
    expect(second).toEqual({ exitCode: 1, stdout: "", stderr: refusal(first.agent.pid, "admin API off", first.lockFile) });
  });

  test("the default lock file, /run/kmesh-accesslog/agent.lock", async () => {
    const lock = "/run/kmesh-accesslog/agent.lock";
    // Named here only because the harness gives every agent a private lock unless told; the
    // second agent below uses the default.
    await using first = startAgent({ args: ["--admin-addr", "", "--lock-file", lock] });
    // A file left empty by an earlier agent may exist before this one writes its pid: wait for the pid.
    const owner = `${first.pid}\n\n`;
    const contents = () => (existsSync(lock) ? readFileSync(lock, "utf8") : "");
    for (let i = 0; i < 100 && contents() !== owner; i++) await Bun.sleep(20);
    expect(contents()).toBe(owner);
    const second = await runBinary(["run", "--admin-addr", "", "--duration", "30"]);
    expect(second).toEqual({ exitCode: 1, stdout: "", stderr: refusal(first.pid, "admin API off", lock) });
    const stopped = await first.stop("SIGTERM");
    expect(stopped.exitCode).toBe(0);
    expect(existsSync(lock)).toBe(false);
  });

  test("an agent on our admin port under another lock is named through /version", async () => {
    await using first = await startAdminAgent();
    const second = await runBinary(["run", "--admin-addr", first.adminAddr, "--lock-file", privateLockFile(), "--duration", "30"]);
    expect(second).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `kmesh-accesslog: another kmesh-accesslog agent (pid ${first.agent.pid}) already serves the admin API on ${first.adminAddr}: stop it first\n`,
    });
  });

  test("a port held by another program says so", async () => {
    const other = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("hello") });
    try {
      const lockFile = privateLockFile();
      const result = await runBinary(["run", "--admin-addr", `127.0.0.1:${other.port}`, "--lock-file", lockFile, "--duration", "30"]);
      expect(result).toEqual({
        exitCode: 1,
        stdout: "",
        stderr:
          `kmesh-accesslog: cannot serve the admin API on 127.0.0.1:${other.port}: the address is in use by another program ` +
          '(choose another with --admin-addr, or disable the API with --admin-addr "")\n',
      });
      expect(existsSync(lockFile)).toBe(false); // the lock it took is given back
    } finally {
      await other.stop(true);
    }
  });

  test("SIGTERM releases the lock; kill -9 leaves the file but never a stale lock", async () => {
    const lockFile = privateLockFile();
    const first = await startAdminAgent({ lockFile });
    expect((await first.agent.stop("SIGTERM")).exitCode).toBe(0);
    expect(existsSync(lockFile)).toBe(false);

    const second = await startAdminAgent({ lockFile });
    second.agent.proc.kill("SIGKILL");
    await second.agent.proc.exited;
    expect(readFileSync(lockFile, "utf8").split("\n")[0]).toBe(String(second.agent.pid));

    await using third = await startAdminAgent({ lockFile });
    expect(readFileSync(lockFile, "utf8").split("\n")[0]).toBe(String(third.agent.pid));
    await waitReady(third.agent, third.adminAddr);
  });
});

describe.skipIf(!ready)("--log-level", () => {
  test("error: nothing on stderr for a clean run; debug: the periodic reports too", async () => {
    const quiet = startAgent({ args: ["--admin-addr", "", "--lock-file", privateLockFile(), "--log-level", "error"], duration: 1 });
    const q = await quiet.stop("SIGCONT", 15_000); // let --duration end it
    expect({ exitCode: q.exitCode, stderr: q.stderr }).toEqual({ exitCode: 0, stderr: "" });

    const chatty = startAgent({
      args: ["--admin-addr", "", "--lock-file", privateLockFile(), "--log-level", "debug", "--connection-metrics", "--report-interval", "0.2"],
      duration: 1.5,
    });
    const c = await chatty.stop("SIGCONT", 15_000);
    expect(c.exitCode).toBe(0);
    expect(c.stderr).toContain("kmesh-accesslog: capturing TCP connections");
    expect(c.stderr).toMatch(/^kmesh-accesslog: debug: periodic report: \d+ open connections$/m);
  });
});
