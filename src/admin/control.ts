// Running the agent like Kmesh: the node's single-agent lock, the switches
// and what they do to the kernel, the periodic-report timer, the metrics
// registry and the admin server. The Agent starts this before the probe
// (so a second agent is refused before it loads anything, and /debug/ready
// answers 503 while the probe loads), attaches the probe to it, and stops it
// last.
import type { Logger, LogLevel } from "../log.ts";
import { formatHostPort, type HostPort } from "../address.ts";
import { AccessGate, type AccessPolicy, REFUSAL_REASONS, whoMayChange } from "./access.ts";
import { InstanceLock, LockPermissionError } from "./instance-lock.ts";
import { MetricsRegistry } from "./metrics.ts";
import { type AdminBackend, handleAdminRequest, type Readiness } from "./routes.ts";
import { ADMIN_LISTENER, ADMIN_SOCKET_LISTENER, type Handler, HttpServer, SocketPermissionError } from "./server.ts";
import { SWITCH_LABELS, SWITCH_NAMES, describeOutputs, outputsOf, type Outputs, type Switches } from "./switches.ts";
import { versionInfo } from "./version.ts";
import { NAME_FILTERS, type Filters } from "../options.ts";
import { FiltersRefused } from "./filters.ts";

export interface ControlOptions {
  switches: Switches;
  /** the filters at start-up (the flags) */
  filters: Filters;
  reportIntervalMs: number;
  /** null: no admin API on TCP */
  adminAddr: HostPort | null;
  /** null: no admin API on a Unix socket */
  adminSocket: string | null;
  /** who may change state besides root */
  access: AccessPolicy;
  lockFile: string;
  log: Logger;
}

/** What the control needs from the attached probe and the agent around it. */
export interface KernelControls {
  /** Makes the kernel's global and the agent's outputs (lines, TCP metrics) follow the switches. */
  apply(outputs: Outputs): void;
  /** Makes the reports written follow these filters, from the next report on. */
  applyFilters(filters: Filters): void;
  /** Reports every open connection (after draining what is queued), as lines or to the metrics; returns how many. */
  reportOpenConnections(): number;
  /** How many open connections the kernel tracks, without writing anything. */
  countOpenConnections(): number;
}

/** How long a count of open connections is reused for /metrics. */
const OPEN_COUNT_TTL_MS = 1_000;

export class AgentControl implements AdminBackend {
  readonly metrics = new MetricsRegistry();
  readonly #options: ControlOptions;
  readonly #log: Logger;
  #switches: Switches;
  #filters: Filters;
  /** whether lines get pod names (the kubelet or the API server): the agent says so once it knows */
  namesKnown = false;
  #kernel: KernelControls | null = null;
  #notReady = "loading the kernel probe";
  #timer: Timer | null = null;
  #lock: InstanceLock | null = null;
  /** what could not be done for lack of rights, said once the probe has loaded anyway */
  #warnings: string[] = [];
  readonly #gate: AccessGate;
  #servers: HttpServer[] = [];
  #periodicRuns = 0;
  #periodicReports = 0;
  #periodicFailures = 0;
  #openCount = { value: 0, at: -Infinity };

  /** Every admin request, on TCP and on the socket alike. */
  readonly #handle: Handler = (method, url, body) => handleAdminRequest(this, method, url, body);

  private constructor(options: ControlOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#switches = options.switches;
    this.#filters = options.filters;
    this.#gate = new AccessGate(options.access, () => this.#switches, options.log, () => this.#filters);
    this.#registerMetrics();
  }

  /** Takes the node's lock, then serves the admin API on TCP and on the socket (not ready until attach). */
  static async start(options: ControlOptions): Promise<AgentControl> {
    const control = new AgentControl(options);
    const where = options.adminAddr === null ? "" : formatHostPort(options.adminAddr);
    try {
      control.#lock = InstanceLock.acquire(options.lockFile, where);
    } catch (error) {
      // Without the rights to take the lock the probe will not load either,
      // and it says why better; warn only if it does load.
      if (!(error instanceof LockPermissionError)) throw error;
      control.#warnings.push(`${error.message}: another agent on this node would not be noticed`);
    }
    try {
      if (options.adminAddr !== null) control.#servers.push(await HttpServer.start({ addr: options.adminAddr }, ADMIN_LISTENER, control.#handle, { gate: control.#gate, log: options.log }));
      // After the lock: a socket file left by an agent that did not stop is replaced only then.
      if (options.adminSocket !== null) await control.#serveSocket(options.adminSocket);
    } catch (error) {
      await control.stop();
      throw error;
    }
    return control;
  }

  async #serveSocket(path: string): Promise<void> {
    try {
      this.#servers.push(await HttpServer.start({ socket: path }, ADMIN_SOCKET_LISTENER, this.#handle, { gate: this.#gate, log: this.#log }));
    } catch (error) {
      // As for the lock: without the rights to make it, the probe will not load either.
      if (!(error instanceof SocketPermissionError)) throw error;
      this.#warnings.push(`${error.message}: no admin API on a Unix socket`);
    }
  }

  /** The probe is attached: apply the switches, start the timer, answer ready. */
  attach(kernel: KernelControls): void {
    this.#kernel = kernel;
    for (const warning of this.#warnings) this.#log.warn(warning);
    this.#apply(this.#switches);
    kernel.applyFilters(this.#filters);
    const { adminAddr, adminSocket, access } = this.#options;
    const where = [adminAddr === null ? "" : `http://${formatHostPort(adminAddr)}`, adminSocket === null ? "" : `unix socket ${adminSocket}`].filter(Boolean);
    const api = where.length === 0 ? "admin API off" : `admin API on ${where.join(" and ")} (only ${whoMayChange(access)} may change the switches)`;
    this.#log.info(`${api}; ${describeOutputs(this.#switches)}`);
  }

  /** Before the probe detaches: no more reports, not ready. */
  detach(): void {
    this.#notReady = "stopping";
    this.#stopTimer();
    this.#kernel = null;
  }

  /** Stops serving and lets go of the lock; safe to call twice. */
  async stop(): Promise<void> {
    this.detach();
    const servers = this.#servers;
    this.#servers = [];
    await Promise.all(servers.map((server) => server.stop()));
    this.#lock?.release();
    this.#lock = null;
  }

  // ── AdminBackend ──────────────────────────────────────────────────────────

  switches(): Switches {
    return this.#switches;
  }

  /** The access gate writes who changed what (its audit line). */
  setSwitches(next: Switches): void {
    this.#apply(next);
  }

  filters(): Filters {
    return this.#filters;
  }

  /** The access gate writes who changed them (its audit line). Throws FiltersRefused when the agent cannot name pods. */
  setFilters(next: Filters): void {
    const needsNames = NAME_FILTERS.find((name) => next[name].length > 0);
    if (needsNames !== undefined && !this.namesKnown) {
      throw new FiltersRefused(
        `${needsNames}: this agent has no pod names (it runs with --no-kubelet and no API server), so a filter by pod or namespace cannot work: ` +
          "filter by port, cidr or direction instead, or restart the agent with the kubelet or --kube-api",
      );
    }
    this.#kernel?.applyFilters(next);
    this.#filters = next;
  }

  readiness(): Readiness {
    return this.#kernel === null ? { ready: false, reason: this.#notReady } : { ready: true };
  }

  metricsText(): string {
    return this.metrics.render();
  }

  version() {
    return versionInfo();
  }

  logLevel() {
    return this.#log.level;
  }

  /** The access gate writes who changed it (its audit line). */
  setLogLevel(level: LogLevel): void {
    this.#log.setLevel(level);
  }

  // ── Applying a state ──────────────────────────────────────────────────────

  /** Makes the kernel and the timer match `next`, then records it (a failure changes nothing). */
  #apply(next: Switches): void {
    const outputs = outputsOf(next);
    if (this.#kernel !== null) {
      this.#kernel.apply(outputs);
      if (!outputs.reportTimer) this.#stopTimer();
      else this.#timer ??= setInterval(() => this.#report(), this.#options.reportIntervalMs);
    }
    this.#switches = next;
  }

  #stopTimer(): void {
    if (this.#timer === null) return;
    clearInterval(this.#timer);
    this.#timer = null;
  }

  #report(): void {
    if (this.#kernel === null) return;
    try {
      const count = this.#kernel.reportOpenConnections();
      this.#periodicRuns++;
      this.#periodicReports += count;
      this.#log.debug(`periodic report: ${count} open connections`);
    } catch (error) {
      this.#periodicFailures++;
      if (this.#periodicFailures === 1 || this.#periodicFailures % 100 === 0) {
        this.#log.warn(`periodic report failed (${this.#periodicFailures} so far): ${error instanceof Error ? error.message : String(error)}`);
      }
    }
  }

  #openConnections(): number {
    const now = performance.now();
    if (this.#kernel !== null && now - this.#openCount.at >= OPEN_COUNT_TTL_MS) {
      this.#openCount = { value: this.#kernel.countOpenConnections(), at: now };
    }
    return this.#openCount.value;
  }

  #registerMetrics(): void {
    const metric = this.metrics.add.bind(this.metrics);
    const output = (key: keyof Outputs) => () => (this.#kernel !== null && outputsOf(this.#switches)[key] ? 1 : 0);
    metric("build_info", "gauge", "Always 1; the version of the agent in a label.", () => [{ labels: { version: versionInfo().gitVersion }, value: 1 }]);
    metric("switch_enabled", "gauge", "1 when the admin API switch is on, 0 when off (monitoring, accesslog, connection_metrics, workload_metrics).", () =>
      SWITCH_NAMES.map((name) => ({ labels: { switch: SWITCH_LABELS[name] }, value: this.#switches[name] ? 1 : 0 })),
    );
    metric("kernel_emit_enabled", "gauge", "1 while the kernel writes close records (monitoring on, and accesslog or workload_metrics on; probe attached).", output("kernelEmit"));
    metric("periodic_reports_enabled", "gauge", "1 while open connections are reported as lines every report interval (monitoring, accesslog and connection_metrics on).", output("periodicReports"));
    metric("tcp_metrics_enabled", "gauge", "1 while records feed Kmesh's TCP metrics on the metrics address (monitoring and workload_metrics on).", output("tcpMetrics"));
    metric("ready", "gauge", "1 once the probe is attached, 0 while loading or stopping.", () => (this.#kernel === null ? 0 : 1));
    metric("connections_open", "gauge", "Established connections the kernel tracks now.", () => this.#openConnections());
    metric("periodic_report_runs_total", "counter", "Periodic reads of every open connection (one per report interval while periodic lines or TCP metrics are on).", () => this.#periodicRuns);
    metric("periodic_reports_total", "counter", "Open-connection reports made by periodic reads (one per connection per run), as lines or for the metrics.", () => this.#periodicReports);
    metric("periodic_report_failures_total", "counter", "Periodic reports the kernel could not make.", () => this.#periodicFailures);
    metric("admin_requests_refused_total", "counter", "Admin requests that may change state refused with 403: the peer is not allowed (not_allowed), or cannot be identified (unidentified).", () =>
      REFUSAL_REASONS.map((reason) => ({ labels: { reason }, value: this.#gate.refused[reason] })),
    );
  }
}
