// The four observability switches of Kmesh's admin API and the rules that change them, as a pure
// state machine: the admin server asks it what a POST means, the Agent applies the answer. No I/O
// here. The rules, and what each switch turns on: docs/admin-api.md, "The switches".

export const SWITCH_NAMES = ["monitoring", "accesslog", "connectionMetrics", "workloadMetrics"] as const;
export type SwitchName = (typeof SWITCH_NAMES)[number];
export type Switches = Readonly<Record<SwitchName, boolean>>;

/** snake_case, as in the paths and in /metrics labels. */
export const SWITCH_LABELS = {
  monitoring: "monitoring",
  accesslog: "accesslog",
  connectionMetrics: "connection_metrics",
  workloadMetrics: "workload_metrics",
} as const satisfies Record<SwitchName, string>;

/** The admin paths (`/` and the label), and which switch each one drives. */
export type SwitchPath = `/${(typeof SWITCH_LABELS)[SwitchName]}`;
export const SWITCH_PATHS = Object.fromEntries(SWITCH_NAMES.map((name) => [`/${SWITCH_LABELS[name]}`, name])) as Record<SwitchPath, SwitchName>;

export type SwitchChange =
  | { ok: true; next: Switches }
  | { ok: false; reason: "monitoring-disabled"; message: string };

/** What `POST <path of name>?enable=<enable>` does to `current`. */
export function changeSwitch(current: Switches, name: SwitchName, enable: boolean): SwitchChange {
  if (name === "monitoring") {
    return { ok: true, next: { monitoring: enable, accesslog: enable, connectionMetrics: enable, workloadMetrics: enable } };
  }
  if (enable && !current.monitoring) {
    return {
      ok: false,
      reason: "monitoring-disabled",
      // Kmesh names the switch by its label with a space for the underscore.
      message: `Kmesh monitoring is disabled, cannot enable ${SWITCH_LABELS[name].replace("_", " ")}.`,
    };
  }
  return { ok: true, next: { ...current, [name]: enable } };
}

/** What the switches make the agent do. */
export interface Outputs {
  /** The kernel writes close records (the global the probe reads). */
  kernelEmit: boolean;
  /** Close records become lines. */
  closeLines: boolean;
  /** Periodic reports become lines. */
  periodicReports: boolean;
  /** Records feed Kmesh's TCP metrics (workload and service series). */
  tcpMetrics: boolean;
  /** Periodic reports also feed the per-connection series. */
  connectionSeries: boolean;
  /** The agent's timer reads every open connection each report interval. */
  reportTimer: boolean;
}

export function outputsOf(s: Switches): Outputs {
  const closeLines = s.monitoring && s.accesslog;
  const periodicReports = closeLines && s.connectionMetrics;
  const tcpMetrics = s.monitoring && s.workloadMetrics;
  return {
    kernelEmit: closeLines || tcpMetrics,
    closeLines,
    periodicReports,
    tcpMetrics,
    connectionSeries: tcpMetrics && s.connectionMetrics,
    reportTimer: periodicReports || tcpMetrics,
  };
}

/** One phrase for the log: what the agent writes in state `s`. */
export function describeOutputs(s: Switches): string {
  const { closeLines, periodicReports, tcpMetrics } = outputsOf(s);
  const metrics = tcpMetrics ? `; TCP metrics on${s.connectionMetrics ? " (with per-connection series)" : ""}` : "";
  if (!closeLines) return `writing nothing (${s.monitoring ? "accesslog" : "monitoring"} off)${metrics}`;
  return (periodicReports ? "writing close and periodic reports" : "writing close reports (periodic reports off)") + metrics;
}

export interface StartupSwitches {
  monitoring: boolean;
  /** undefined: not given on the command line (on by default, off when monitoring is off) */
  accesslog?: boolean | undefined;
  /** undefined: not given (off by default) */
  connectionMetrics?: boolean | undefined;
  /** undefined: not given (off by default) */
  workloadMetrics?: boolean | undefined;
}

export type StartupResult = { ok: true; switches: Switches } | { ok: false; message: string };

/**
 * The state at start-up. A state the API could never reach (something on
 * while monitoring is off) is refused rather than silently corrected.
 */
export function startupSwitches(flags: StartupSwitches): StartupResult {
  if (!flags.monitoring) {
    for (const [flag, value] of [
      ["accesslog", flags.accesslog],
      ["connection-metrics", flags.connectionMetrics],
      ["workload-metrics", flags.workloadMetrics],
    ] as const) {
      if (value === true) return { ok: false, message: `--${flag} cannot be on while --monitoring is off` };
    }
  }
  return {
    ok: true,
    switches: {
      monitoring: flags.monitoring,
      accesslog: flags.monitoring && (flags.accesslog ?? true),
      connectionMetrics: flags.monitoring && (flags.connectionMetrics ?? false),
      workloadMetrics: flags.monitoring && (flags.workloadMetrics ?? false),
    },
  };
}
