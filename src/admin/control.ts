// Running the agent like Kmesh: the node's single-agent lock, the switches
// and what they do to the kernel, the periodic-report timer, the metrics
// registry and the admin server. The Agent starts this before the probe
// (so a second agent is refused before it loads anything, and /debug/ready
// answers 503 while the probe loads), attaches the probe to it, and stops it
// last.
import type { Logger, LogLevel } from "../log.ts";
import { formatHostPort, type HostPort } from "../address.ts";
import { InstanceLock, LockPermissionError } from "./instance-lock.ts";
import { METRIC_PREFIX, MetricsRegistry } from "./metrics.ts";
import { type AdminBackend, handleAdminRequest, type Readiness } from "./routes.ts";
import { ADMIN_LISTENER, HttpServer } from "./server.ts";
import { SWITCH_LABELS, SWITCH_NAMES, outputsOf, type Outputs, type Switches } from "./switches.ts";
import { versionInfo } from "./version.ts";

export interface ControlOptions {
  switches: Switches;
  reportIntervalMs: number;
  /** null: no admin API */
  adminAddr: HostPort | null;
  lockFile: string;
  log: Logger;
}

/** What the control needs from the attached probe and the agent around it. */
export interface KernelControls {
  /** Makes the kernel's global and the agent's outputs (lines, TCP metrics) follow the switches. */
  apply(outputs: Outputs): void;
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
  #kernel: KernelControls | null = null;
  #notReady = "loading the kernel probe";
  #timer: Timer | null = null;
  #lock: InstanceLock | null = null;
  #lockWarning = "";
  #server: HttpServer | null = null;
  #periodicRuns = 0;
  #periodicReports = 0;
  #periodicFailures = 0;
  #openCount = { value: 0, at: -Infinity };

  private constructor(options: ControlOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#switches = options.switches;
    this.#registerMetrics();
  }

  /** Takes the node's lock, then serves the admin API (not ready until attach). */
  static async start(options: ControlOptions): Promise<AgentControl> {
    const control = new AgentControl(options);
    const where = options.adminAddr === null ? "" : formatHostPort(options.adminAddr);
    try {
      control.#lock = InstanceLock.acquire(options.lockFile, where);
    } catch (error) {
      // Without the rights to take the lock the probe will not load either,
      // and it says why better; warn only if it does load.
      if (!(error instanceof LockPermissionError)) throw error;
      control.#lockWarning = `${error.message}: another agent on this node would not be noticed`;
    }
    try {
      if (options.adminAddr !== null) {
        control.#server = await HttpServer.start(options.adminAddr, ADMIN_LISTENER, (method, url, body) => handleAdminRequest(control, method, url, body), options.log);
      }
    } catch (error) {
      control.#lock?.release();
      throw error;
    }
    return control;
  }

  /** The probe is attached: apply the switches, start the timer, answer ready. */
  attach(kernel: KernelControls): void {
    this.#kernel = kernel;
    if (this.#lockWarning) this.#log.warn(this.#lockWarning);
    this.#apply(this.#switches);
    const { adminAddr } = this.#options;
    this.#log.info(
      `admin API ${adminAddr === null ? "off" : `on http://${formatHostPort(adminAddr)}`}; ${describe(this.#switches)}`,
    );
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
    const server = this.#server;
    this.#server = null;
    await server?.stop();
    this.#lock?.release();
    this.#lock = null;
  }

  // ── AdminBackend ──────────────────────────────────────────────────────────

  switches(): Switches {
    return this.#switches;
  }

  setSwitches(next: Switches): void {
    const before = this.#switches;
    this.#apply(next);
    const changed = SWITCH_NAMES.filter((name) => before[name] !== next[name]);
    if (changed.length > 0) {
      this.#log.info(
        `admin API: ${changed.map((name) => `${SWITCH_LABELS[name]} ${next[name] ? "enabled" : "disabled"}`).join(", ")}; ${describe(next)}`,
      );
    }
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

  setLogLevel(level: LogLevel): void {
    if (level === this.#log.level) return;
    this.#log.info(`admin API: log level ${this.#log.level} → ${level}`);
    this.#log.setLevel(level);
  }

  // ── Applying a state ──────────────────────────────────────────────────────

  /** Makes the kernel and the timer match `next`, then records it (a failure changes nothing). */
  #apply(next: Switches): void {
    const outputs = outputsOf(next);
    if (this.#kernel !== null) {
      this.#kernel.apply(outputs);
      if (outputs.reportTimer) this.#startTimer();
      else this.#stopTimer();
    }
    this.#switches = next;
  }

  #startTimer(): void {
    if (this.#timer !== null) return;
    this.#timer = setInterval(() => this.#report(), this.#options.reportIntervalMs);
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
    const m = this.metrics;
    m.register({
      name: `${METRIC_PREFIX}build_info`,
      type: "gauge",
      help: "Always 1; the version of the agent in a label.",
      read: () => [{ labels: { version: versionInfo().gitVersion }, value: 1 }],
    });
    m.register({
      name: `${METRIC_PREFIX}switch_enabled`,
      type: "gauge",
      help: "1 when the admin API switch is on, 0 when off (monitoring, accesslog, connection_metrics, workload_metrics).",
      read: () => SWITCH_NAMES.map((name) => ({ labels: { switch: SWITCH_LABELS[name] }, value: this.#switches[name] ? 1 : 0 })),
    });
    const output = (key: keyof Outputs) => (this.#kernel !== null && outputsOf(this.#switches)[key] ? 1 : 0);
    m.register({
      name: `${METRIC_PREFIX}kernel_emit_enabled`,
      type: "gauge",
      help: "1 while the kernel writes close records (monitoring on, and accesslog or workload_metrics on; probe attached).",
      read: () => output("kernelEmit"),
    });
    m.register({
      name: `${METRIC_PREFIX}periodic_reports_enabled`,
      type: "gauge",
      help: "1 while open connections are reported as lines every report interval (monitoring, accesslog and connection_metrics on).",
      read: () => output("periodicReports"),
    });
    m.register({
      name: `${METRIC_PREFIX}tcp_metrics_enabled`,
      type: "gauge",
      help: "1 while records feed Kmesh's TCP metrics on the metrics address (monitoring and workload_metrics on).",
      read: () => output("tcpMetrics"),
    });
    m.register({
      name: `${METRIC_PREFIX}ready`,
      type: "gauge",
      help: "1 once the probe is attached, 0 while loading or stopping.",
      read: () => (this.#kernel === null ? 0 : 1),
    });
    m.register({
      name: `${METRIC_PREFIX}connections_open`,
      type: "gauge",
      help: "Established connections the kernel tracks now.",
      read: () => this.#openConnections(),
    });
    m.register({
      name: `${METRIC_PREFIX}periodic_report_runs_total`,
      type: "counter",
      help: "Periodic reads of every open connection (one per report interval while periodic lines or TCP metrics are on).",
      read: () => this.#periodicRuns,
    });
    m.register({
      name: `${METRIC_PREFIX}periodic_reports_total`,
      type: "counter",
      help: "Open-connection reports made by periodic reads (one per connection per run), as lines or for the metrics.",
      read: () => this.#periodicReports,
    });
    m.register({
      name: `${METRIC_PREFIX}periodic_report_failures_total`,
      type: "counter",
      help: "Periodic reports the kernel could not make.",
      read: () => this.#periodicFailures,
    });
  }
}

/** One phrase for the log: what the agent now writes. */
function describe(s: Switches): string {
  const { closeLines, periodicReports, tcpMetrics } = outputsOf(s);
  const metrics = tcpMetrics ? `; TCP metrics on${s.connectionMetrics ? " (with per-connection series)" : ""}` : "";
  if (!closeLines) return `writing nothing (${s.monitoring ? "accesslog" : "monitoring"} off)${metrics}`;
  return (periodicReports ? "writing close and periodic reports" : "writing close reports (periodic reports off)") + metrics;
}
