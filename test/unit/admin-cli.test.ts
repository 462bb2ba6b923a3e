// The runtime-control command line: run's switch, interval, address, lock and
// log-level flags; the kmeshctl-style accesslog / monitoring / status commands
// against an admin server in this process (the real routes, a fake agent
// behind them); every mistake one line on stderr with exit 2, every failure
// to reach or convince the agent one line with exit 1.
import { runCli } from "../support/cli.ts";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { parseCommandLine } from "../../src/cli.ts";
import { handleAdminRequest, type AdminBackend } from "../../src/admin/routes.ts";
import { changeSwitch, type Switches } from "../../src/admin/switches.ts";
import { MetricsRegistry } from "../../src/admin/metrics.ts";
import { versionInfo } from "../../src/admin/version.ts";

describe("run: runtime-control flags", () => {
  const options = (...args: string[]) => {
    const invocation = parseCommandLine(args);
    if (invocation.command !== "run") throw new Error("not run");
    return invocation.options;
  };

  test("defaults: monitoring on, accesslog and connection metrics as Kmesh starts them, admin API on 127.0.0.1:15200", () => {
    expect(options()).toMatchObject({
      monitoring: true,
      accesslog: undefined,
      connectionMetrics: undefined,
      reportInterval: 5,
      adminAddr: { host: "127.0.0.1", port: 15200 },
      lockFile: "/run/kmesh-accesslog/agent.lock",
      logLevel: "info",
    });
  });

  test.each([
    [["--accesslog=false"], { accesslog: false }],
    [["--accesslog"], { accesslog: true }],
    [["--accesslog", "F"], { accesslog: false }],
    [["--connection-metrics"], { connectionMetrics: true }],
    [["--connection-metrics=1"], { connectionMetrics: true }],
    [["--monitoring=False"], { monitoring: false }],
    [["--monitoring=false", "--accesslog=false"], { monitoring: false, accesslog: false }],
    [["--report-interval", "0.5"], { reportInterval: 0.5 }],
    [["--admin-addr", ""], { adminAddr: null }],
    [["--admin-addr="], { adminAddr: null }],
    [["--no-admin-api"], { adminAddr: null }],
    [["--no-admin-api", "--admin-addr", "[::1]:15201"], { adminAddr: null }],
    [["--admin-addr", "[::1]:15201"], { adminAddr: { host: "::1", port: 15201 } }],
    [["--admin-addr=localhost:9"], { adminAddr: { host: "localhost", port: 9 } }],
    [["--lock-file", "/tmp/x.lock"], { lockFile: "/tmp/x.lock" }],
    [["--log-level", "debug"], { logLevel: "debug" }],
  ])("%j", (args, expected) => {
    expect(options(...args)).toMatchObject(expected);
    expect(options("run", ...args)).toMatchObject(expected);
  });
});

describe("commands: what they send", () => {
  test.each([
    [["accesslog", "enable"], { command: "accesslog", enable: true, adminAddr: { host: "127.0.0.1", port: 15200 } }],
    [["accesslog", "disable", "--admin-addr", "[::1]:1"], { command: "accesslog", enable: false, adminAddr: { host: "::1", port: 1 } }],
    [["status"], { command: "status", json: false, adminAddr: { host: "127.0.0.1", port: 15200 } }],
    [["status", "--json"], { command: "status", json: true, adminAddr: { host: "127.0.0.1", port: 15200 } }],
  ])("%j", (args, expected) => {
    expect(parseCommandLine(args)).toEqual(expected as never);
  });

  test("monitoring sends kmeshctl's requests in kmeshctl's order: --all, --accesslog, --workloadMetrics, --connectionMetrics", () => {
    const args = ["monitoring", "--connectionMetrics", "enable", "--workloadMetrics", "disable", "--accesslog", "enable", "--all", "enable"];
    expect(parseCommandLine(args)).toEqual({
      command: "monitoring",
      adminAddr: { host: "127.0.0.1", port: 15200 },
      requests: [
        { path: "/monitoring", enable: true },
        { path: "/accesslog", enable: true },
        { path: "/workload_metrics", enable: false },
        { path: "/connection_metrics", enable: true },
      ],
    });
    // kebab-case spellings work too
    expect(parseCommandLine(["monitoring", "--connection-metrics", "disable"])).toMatchObject({
      requests: [{ path: "/connection_metrics", enable: false }],
    });
  });
});

describe("mistakes: one line on stderr, exit 2", () => {
  const cases: [string[], string][] = [
    [["--accesslog=yes"], 'invalid value for --accesslog: "yes" (expected true or false: 1, t, T, TRUE, true, True, 0, f, F, FALSE, false, False)'],
    [["--monitoring=false", "--accesslog"], "--accesslog cannot be on while --monitoring is off"],
    [["--monitoring=false", "--connection-metrics"], "--connection-metrics cannot be on while --monitoring is off"],
    [["--report-interval", "0"], 'invalid value for --report-interval: "0" (expected a number of seconds from 0.1 to 86400)'],
    [["--report-interval", "5s"], 'invalid value for --report-interval: "5s" (expected a number of seconds from 0.1 to 86400)'],
    [["--admin-addr"], 'missing value for --admin-addr (expected host:port, or "" for no admin API)'],
    [["--admin-addr", "--output", "json"], 'missing value for --admin-addr (expected host:port, or "" for no admin API)'],
    [["--admin-addr", "15200"], 'invalid value for --admin-addr: "15200" (expected host:port, e.g. 127.0.0.1:15200 or [::1]:15200, or "" for no admin API)'],
    [["--admin-addr", "::1:15200"], 'invalid value for --admin-addr: "::1:15200" (expected host:port, e.g. 127.0.0.1:15200 or [::1]:15200, or "" for no admin API)'],
    [["--log-level", "trace"], 'invalid value for --log-level: "trace" (expected error, warn, info, debug)'],
    [["--lock-file", "agent.lock"], 'invalid value for --lock-file: "agent.lock" (expected an absolute path)'],
    [["accesslog"], "missing argument: accesslog enable or accesslog disable"],
    [["accesslog", "on"], 'invalid value for accesslog: "on" (expected enable or disable)'],
    [["accesslog", "kmesh-pod", "enable"], 'unexpected argument "kmesh-pod" (this command drives one agent: name it with --admin-addr)'],
    [["accesslog", "enable", "x"], 'unexpected argument "x" (this command drives one agent: name it with --admin-addr)'],
    [["accesslog", "enable", "--admin-addr", ""], "missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)"],
    [["accesslog", "enable", "--admin-addr"], "missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)"],
    [["accesslog", "enable", "--bogus"], "unknown flag --bogus"],
    [["monitoring"], "nothing to switch: give --accesslog, --workloadMetrics, --connectionMetrics or --all, each enable or disable"],
    [["monitoring", "--all", "on"], 'invalid value for --all: "on" (expected enable or disable)'],
    [["monitoring", "--accesslog"], "missing value for --accesslog (expected enable or disable)"],
    [["monitoring", "kmesh-pod", "--all", "enable"], 'unexpected argument "kmesh-pod" (this command drives one agent: name it with --admin-addr)'],
    [["monitoring", "--workloadMetric", "enable"], "unknown flag --workloadMetric (did you mean --workloadMetrics?)"],
    [["status", "--jsn"], "unknown flag --jsn (did you mean --json?)"],
    [["status", "now"], 'unexpected argument "now"'],
  ];
  test.concurrent.each(cases)("%j", async (args, message) => {
    expect(await runCli(...args)).toEqual({ exitCode: 2, stderr: `kmesh-accesslog: ${message}\n`, stdout: "" });
  });
});

// ── Against an admin server ───────────────────────────────────────────────────

/** A fake agent behind the real routes, recording what it is asked. */
class FakeAgent implements AdminBackend {
  state: Switches = { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: false };
  requests: string[] = [];
  metrics = new MetricsRegistry();
  constructor() {
    this.metrics.register({
      name: "kmesh_accesslog_switch_enabled",
      type: "gauge",
      help: "Switches.",
      read: () => Object.entries({ monitoring: this.state.monitoring, accesslog: this.state.accesslog, connection_metrics: this.state.connectionMetrics, workload_metrics: this.state.workloadMetrics }).map(([k, on]) => ({ labels: { switch: k }, value: on ? 1 : 0 })),
    });
    this.metrics.register({ name: "kmesh_accesslog_kernel_emit_enabled", type: "gauge", help: "k", read: () => (this.state.monitoring && this.state.accesslog ? 1 : 0) });
    this.metrics.register({ name: "kmesh_accesslog_periodic_reports_enabled", type: "gauge", help: "p", read: () => 0 });
    this.metrics.register({ name: "kmesh_accesslog_records_read_total", type: "counter", help: "r", read: () => 12 });
    this.metrics.register({ name: "kmesh_accesslog_kubelet_refreshes_total", type: "counter", help: "k", read: () => 3 });
  }
  switches() {
    return this.state;
  }
  setSwitches(next: Switches) {
    this.state = next;
  }
  readiness() {
    return { ready: true } as const;
  }
  metricsText() {
    return this.metrics.render();
  }
  version() {
    return versionInfo();
  }
}

describe("commands against an agent", () => {
  const agent = new FakeAgent();
  let server: Server<undefined>;
  let notAgent: Server<undefined>;
  let addr: string;
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request) {
        agent.requests.push(`${request.method} ${new URL(request.url).pathname}${new URL(request.url).search}`);
        return handleAdminRequest(agent, request.method, request.url);
      },
    });
    addr = `127.0.0.1:${server.port}`;
    notAgent = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("nope\n", { status: 404 }) });
  });
  afterAll(async () => {
    await server.stop(true);
    await notAgent.stop(true);
  });

  test("accesslog disable / enable: kmeshctl's request, one line of confirmation", async () => {
    agent.requests = [];
    expect(await runCli("accesslog", "disable", "--admin-addr", addr)).toEqual({ exitCode: 0, stdout: `accesslog disabled on ${addr}\n`, stderr: "" });
    expect(agent.state.accesslog).toBe(false);
    expect(await runCli("accesslog", "enable", "--admin-addr", addr)).toEqual({ exitCode: 0, stdout: `accesslog enabled on ${addr}\n`, stderr: "" });
    expect(agent.requests).toEqual(["POST /accesslog?enable=false", "POST /accesslog?enable=true"]);
  });

  test("monitoring: in order, stopping at the first refusal with the agent's words", async () => {
    agent.requests = [];
    const result = await runCli("monitoring", "--all", "disable", "--accesslog", "enable", "--connectionMetrics", "enable", "--admin-addr", addr);
    expect(result).toEqual({
      exitCode: 1,
      stdout: `monitoring (every switch) disabled on ${addr}\n`,
      stderr:
        `kmesh-accesslog: the agent on ${addr} refused to enable accesslog: Kmesh monitoring is disabled, cannot enable accesslog. ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)\n",
    });
    expect(agent.requests).toEqual(["POST /monitoring?enable=false", "POST /accesslog?enable=true"]);
    const back = await runCli("monitoring", "--all", "enable", "--connectionMetrics", "disable", "--admin-addr", addr);
    expect(back).toEqual({
      exitCode: 0,
      stdout: `monitoring (every switch) enabled on ${addr}\nconnection_metrics disabled on ${addr}\n`,
      stderr: "",
    });
    expect(agent.state).toEqual({ monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: true });
    const next = changeSwitch(agent.state, "workloadMetrics", false);
    if (next.ok) agent.state = next.next;
  });

  test("status: tables, and --json", async () => {
    const tables = await runCli("status", "--admin-addr", addr);
    expect({ exitCode: tables.exitCode, stderr: tables.stderr }).toEqual({ exitCode: 0, stderr: "" });
    expect(tables.stdout).toContain(`address   ${addr}\n`);
    expect(tables.stdout).toMatch(/^accesslog\s+enabled$/m);
    expect(tables.stdout).toMatch(/^workload_metrics\s+disabled$/m);
    expect(tables.stdout).toMatch(/^records read\s+12$/m);
    expect(tables.stdout).toMatch(/^kubelet refreshes\s+3$/m);
    const json = await runCli("status", "--json", "--admin-addr", addr);
    expect(JSON.parse(json.stdout)).toEqual({
      address: addr,
      program: "kmesh-accesslog",
      version: versionInfo().gitVersion,
      pid: process.pid,
      ready: true,
      switches: { monitoring: true, accesslog: true, connection_metrics: false, workload_metrics: false },
      kernelEmit: true,
      periodicReports: false,
      metrics: { kmesh_accesslog_records_read_total: 12, kmesh_accesslog_kubelet_refreshes_total: 3 },
    });
  });

  test.concurrent.each([[["accesslog", "enable"]], [["monitoring", "--all", "enable"]], [["status"]]])(
    "%j with no agent listening: one line naming the address, exit 1",
    async (args: string[]) => {
      const port = 1; // nothing listens on tcp/1 here
      expect(await runCli(...args, "--admin-addr", `127.0.0.1:${port}`)).toEqual({
        exitCode: 1,
        stdout: "",
        stderr: `kmesh-accesslog: no agent is listening on 127.0.0.1:${port} (start one with \`kmesh-accesslog run\`, or name another with --admin-addr)\n`,
      });
    },
  );

  test("something else on the port is named as such", async () => {
    const other = `127.0.0.1:${notAgent.port}`;
    expect(await runCli("accesslog", "enable", "--admin-addr", other)).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `kmesh-accesslog: what answers on ${other} has no /accesslog (HTTP 404): is it a kmesh-accesslog or Kmesh agent?\n`,
    });
    expect(await runCli("status", "--admin-addr", other)).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: `kmesh-accesslog: what answers on ${other} is not a kmesh-accesslog agent (its /version is not ours)\n`,
    });
  });
});
