// The kmeshctl-style commands against an admin server in this process (the real routes, a fake
// agent behind them), through `bun src/main.ts`: what they send, what they print, and every
// failure to reach or convince the agent one line with exit 1.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import type { Server } from "bun";
import { chooseTarget } from "../../../src/admin/client.ts";
import { handleAdminRequest } from "../../../src/admin/routes.ts";
import { changeSwitch } from "../../../src/admin/switches.ts";
import { versionInfo } from "../../../src/admin/version.ts";
import { runCli } from "../../support/cli.ts";
import { FakeBackend } from "../fixtures.ts";

test("which agent: --admin-addr, else --admin-socket, else the node's socket when this user may open it, else Kmesh's address", () => {
  const may = () => true;
  const mayNot = () => false;
  expect(chooseTarget({ adminAddr: { host: "::1", port: 1 } }, may)).toEqual({ addr: { host: "::1", port: 1 } });
  expect(chooseTarget({ adminSocket: "/tmp/a.sock" }, mayNot)).toEqual({ socket: "/tmp/a.sock" });
  expect(chooseTarget({}, may)).toEqual({ socket: "/run/kmesh-accesslog/agent.sock" });
  expect(chooseTarget({}, mayNot)).toEqual({ addr: { host: "127.0.0.1", port: 15200 } });
});

/** A fake agent behind the real routes, with the metrics `status` shows. */
function fakeAgent(): FakeBackend {
  const agent = new FakeBackend();
  const on = (value: boolean) => (value ? 1 : 0);
  agent.metrics.register({
    name: "kmesh_accesslog_switch_enabled",
    type: "gauge",
    help: "Switches.",
    read: () => Object.entries({ monitoring: agent.state.monitoring, accesslog: agent.state.accesslog, connection_metrics: agent.state.connectionMetrics, workload_metrics: agent.state.workloadMetrics }).map(([k, enabled]) => ({ labels: { switch: k }, value: on(enabled) })),
  });
  agent.metrics.register({ name: "kmesh_accesslog_kernel_emit_enabled", type: "gauge", help: "k", read: () => on(agent.state.monitoring && agent.state.accesslog) });
  agent.metrics.register({ name: "kmesh_accesslog_periodic_reports_enabled", type: "gauge", help: "p", read: () => 0 });
  agent.metrics.register({ name: "kmesh_accesslog_records_read_total", type: "counter", help: "r", read: () => 12 });
  agent.metrics.register({ name: "kmesh_accesslog_kubelet_refreshes_total", type: "counter", help: "k", read: () => 3 });
  return agent;
}

describe("commands against an agent", () => {
  const agent = fakeAgent();
  /** What the agent was asked, in order. */
  let requests: string[] = [];
  let server: Server<undefined>;
  let notAgent: Server<undefined>;
  let addr: string;
  beforeAll(() => {
    server = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch(request) {
        requests.push(`${request.method} ${new URL(request.url).pathname}${new URL(request.url).search}`);
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
    requests = [];
    expect(await runCli("accesslog", "disable", "--admin-addr", addr)).toEqual({ exitCode: 0, stdout: `accesslog disabled on ${addr}\n`, stderr: "" });
    expect(agent.state.accesslog).toBe(false);
    expect(await runCli("accesslog", "enable", "--admin-addr", addr)).toEqual({ exitCode: 0, stdout: `accesslog enabled on ${addr}\n`, stderr: "" });
    expect(requests).toEqual(["POST /accesslog?enable=false", "POST /accesslog?enable=true"]);
  });

  test("monitoring: in order, stopping at the first refusal with the agent's words", async () => {
    requests = [];
    const result = await runCli("monitoring", "--all", "disable", "--accesslog", "enable", "--connectionMetrics", "enable", "--admin-addr", addr);
    expect(result).toEqual({
      exitCode: 1,
      stdout: "",
      stderr:
        `kmesh-accesslog: monitoring (every switch) disabled on ${addr}; then the agent on ${addr} refused to enable accesslog: Kmesh monitoring is disabled, cannot enable accesslog. ` +
        "(turn monitoring on first: kmesh-accesslog monitoring --all enable)\n",
    });
    expect(requests).toEqual(["POST /monitoring?enable=false", "POST /accesslog?enable=true"]);
    const back = await runCli("monitoring", "--all", "enable", "--connectionMetrics", "disable", "--admin-addr", addr);
    expect(back).toEqual({
      exitCode: 0,
      stdout: `monitoring (every switch) enabled, connection_metrics disabled on ${addr}\n`,
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

  test("a 403 is said in the agent's own words; a socket nobody listens on is named", async () => {
    const refusing = Bun.serve({
      hostname: "127.0.0.1",
      port: 0,
      fetch: () => new Response("only root may change this agent's switches, and this request came from uid 1000: send it as root (sudo)\n", { status: 403 }),
    });
    try {
      const where = `127.0.0.1:${refusing.port}`;
      expect(await runCli("monitoring", "--all", "disable", "--admin-addr", where)).toEqual({
        exitCode: 1,
        stdout: "",
        stderr:
          `kmesh-accesslog: the agent on ${where} refused to disable monitoring: ` +
          "only root may change this agent's switches, and this request came from uid 1000: send it as root (sudo)\n",
      });
    } finally {
      await refusing.stop(true);
    }
    expect(await runCli("status", "--admin-socket", "/nonexistent/agent.sock")).toEqual({
      exitCode: 1,
      stdout: "",
      stderr: "kmesh-accesslog: no agent is listening on /nonexistent/agent.sock (start one with `kmesh-accesslog run`, or name another with --admin-socket)\n",
    });
  });

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
