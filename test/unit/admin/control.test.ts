// AgentControl without a kernel: the switches applied to a fake probe, the
// periodic-report timer following them, readiness, metrics, and the lock it
// takes and gives back.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, lstatSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AgentControl, type KernelControls } from "../../../src/admin/control.ts";
import type { Outputs, Switches } from "../../../src/admin/switches.ts";
import { createLogger } from "../../../src/log.ts";
import { type Filters, filtersOf } from "../../../src/options.ts";

const ON: Switches = { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: false };
let dir: string;
let logged: string[];
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "kal-control-"));
  logged = [];
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

class FakeKernel implements KernelControls {
  emit: boolean[] = [];
  applied: Outputs[] = [];
  reports = 0;
  fail = false;
  apply(outputs: Outputs) {
    if (this.fail) throw new Error("set the probe switches: Bad file descriptor");
    this.emit.push(outputs.kernelEmit);
    this.applied.push(outputs);
  }
  reportOpenConnections() {
    this.reports++;
    return 3;
  }
  countOpenConnections() {
    return 7;
  }
  filters: Filters[] = [];
  applyFilters(filters: Filters) {
    this.filters.push(filters);
  }
}

const start = (switches: Switches, reportIntervalMs = 20) =>
  AgentControl.start({
    switches,
    filters: filtersOf({}),
    reportIntervalMs,
    adminAddr: null,
    adminSocket: null,
    access: { uids: [], gids: [] },
    lockFile: join(dir, "agent.lock"),
    log: createLogger("debug", (line) => logged.push(line)),
  });

test("not ready until attached; attach applies the switches to the kernel; detach and stop", async () => {
  const control = await start(ON);
  expect(existsSync(join(dir, "agent.lock"))).toBe(true);
  expect(control.readiness()).toEqual({ ready: false, reason: "loading the kernel probe" });
  const kernel = new FakeKernel();
  control.attach(kernel);
  expect(control.readiness()).toEqual({ ready: true });
  expect(kernel.emit).toEqual([true]);
  expect(logged).toContain("kmesh-accesslog: admin API off; writing close reports (periodic reports off)\n");
  control.detach();
  expect(control.readiness()).toEqual({ ready: false, reason: "stopping" });
  await control.stop();
  expect(existsSync(join(dir, "agent.lock"))).toBe(false);
});

test("the periodic timer runs exactly while monitoring, accesslog and connection metrics are on", async () => {
  const control = await start({ ...ON, connectionMetrics: true });
  const kernel = new FakeKernel();
  control.attach(kernel);
  await Bun.sleep(110);
  const whileOn = kernel.reports;
  expect(whileOn).toBeGreaterThanOrEqual(3);
  control.setSwitches({ ...ON, connectionMetrics: true, accesslog: false });
  expect(kernel.emit.at(-1)).toBe(false);
  await Bun.sleep(80);
  expect(kernel.reports).toBe(whileOn);
  control.setSwitches({ ...ON, connectionMetrics: true });
  await Bun.sleep(80);
  expect(kernel.reports).toBeGreaterThan(whileOn);
  const text = control.metricsText();
  expect(text).toContain('kmesh_accesslog_switch_enabled{switch="connection_metrics"} 1\n');
  expect(text).toContain("kmesh_accesslog_periodic_reports_enabled 1\n");
  expect(text).toContain(`kmesh_accesslog_periodic_reports_total ${kernel.reports * 3}\n`);
  expect(text).toContain("kmesh_accesslog_connections_open 7\n");
  expect(logged.some((l) => /^kmesh-accesslog: debug: periodic report: 3 open connections\n$/.test(l))).toBe(true);
  await control.stop();
  const stopped = kernel.reports;
  await Bun.sleep(60);
  expect(kernel.reports).toBe(stopped);
});

test("workload metrics alone: the kernel writes and the timer runs (for the metrics), no line is asked for", async () => {
  const control = await start({ ...ON, accesslog: false, workloadMetrics: true });
  const kernel = new FakeKernel();
  control.attach(kernel);
  expect(kernel.applied).toEqual([
    { kernelEmit: true, closeLines: false, periodicReports: false, tcpMetrics: true, connectionSeries: false, reportTimer: true },
  ]);
  await Bun.sleep(70);
  expect(kernel.reports).toBeGreaterThanOrEqual(2);
  expect(control.metricsText()).toContain("kmesh_accesslog_tcp_metrics_enabled 1\n");
  expect(logged).toContain("kmesh-accesslog: admin API off; writing nothing (accesslog off); TCP metrics on\n");
  control.setSwitches({ ...ON, accesslog: false, workloadMetrics: false });
  expect(kernel.applied.at(-1)).toMatchObject({ kernelEmit: false, tcpMetrics: false, reportTimer: false });
  const stopped = kernel.reports;
  await Bun.sleep(60);
  expect(kernel.reports).toBe(stopped);
  await control.stop();
});

test("a kernel that refuses a change leaves the state as it was", async () => {
  const control = await start(ON);
  const kernel = new FakeKernel();
  control.attach(kernel);
  kernel.fail = true;
  expect(() => control.setSwitches({ ...ON, accesslog: false })).toThrow("Bad file descriptor");
  expect(control.switches()).toEqual(ON);
  await control.stop();
});

test("switches changed while the probe loads are applied when it is attached", async () => {
  const control = await start(ON);
  control.setSwitches({ ...ON, monitoring: false, accesslog: false });
  const kernel = new FakeKernel();
  control.attach(kernel);
  expect(kernel.emit).toEqual([false]);
  await control.stop();
});

test("a second control on the same lock is refused", async () => {
  const first = await start(ON);
  await expect(start(ON)).rejects.toThrow(`another kmesh-accesslog agent is already running on this node (pid ${process.pid}, admin API off;`);
  await first.stop();
});

test("the admin socket: made 0600 beside the lock, its clients change the switches with an audit line, refusals counted, removed at stop", async () => {
  const socket = join(dir, "agent.sock");
  const control = await AgentControl.start({
    filters: filtersOf({}),
    switches: ON,
    reportIntervalMs: 20,
    adminAddr: null,
    adminSocket: socket,
    access: { uids: [1000], gids: [] },
    lockFile: join(dir, "agent.lock"),
    log: createLogger("info", (line) => logged.push(line)),
  });
  const kernel = new FakeKernel();
  control.attach(kernel);
  expect(lstatSync(socket).mode & 0o777).toBe(0o600);
  expect(logged).toContain(
    `kmesh-accesslog: admin API on unix socket ${socket} (only root and uid 1000 may change the switches); writing close reports (periodic reports off)\n`,
  );
  const response = await fetch("http://localhost/accesslog?enable=false", { method: "POST", unix: socket });
  expect(response.status).toBe(200);
  expect(kernel.emit).toEqual([true, false]);
  expect(logged.at(-1)).toBe(
    `kmesh-accesslog: admin API: accepted (200) POST "/accesslog?enable=false" from unix socket ${socket}: accesslog true -> false; writing nothing (accesslog off)\n`,
  );
  expect(control.metricsText()).toContain(
    'kmesh_accesslog_admin_requests_refused_total{reason="not_allowed"} 0\nkmesh_accesslog_admin_requests_refused_total{reason="unidentified"} 0\n',
  );
  await control.stop();
  expect(existsSync(socket)).toBe(false);
});
