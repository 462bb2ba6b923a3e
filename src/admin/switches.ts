// The four observability switches of Kmesh's admin API and the rules that
// change them, as a pure state machine: the admin server asks it what a POST
// means, the Agent applies the answer. No I/O here.
//
// Kmesh's rules (its status server; docs/admin-api.md):
//   /monitoring?enable=X          sets all four switches to X (on enables them all again)
//   /accesslog?enable=X           sets accesslog; enabling while monitoring is off is refused (400)
//   /connection_metrics?enable=X  the same for connection metrics
//   /workload_metrics?enable=X    the same for workload metrics
//   disabling is always allowed.
//
// What the switches do here (Kmesh prints an access-log line for every record
// its kernel side sends while accesslog is on: close records always, periodic
// records only while its periodic report, i.e. connection metrics, is on):
//   close reports     need monitoring && accesslog; otherwise the kernel writes no record at all
//   periodic reports  need monitoring && accesslog && connectionMetrics
//   workload metrics  are accepted and shown, and change nothing: we export no per-workload metrics.

export const SWITCH_NAMES = ["monitoring", "accesslog", "connectionMetrics", "workloadMetrics"] as const;
export type SwitchName = (typeof SWITCH_NAMES)[number];
export type Switches = Readonly<Record<SwitchName, boolean>>;

/** The admin paths, and which switch each one drives. */
export const SWITCH_PATHS = {
  "/monitoring": "monitoring",
  "/accesslog": "accesslog",
  "/connection_metrics": "connectionMetrics",
  "/workload_metrics": "workloadMetrics",
} as const satisfies Record<string, SwitchName>;
export type SwitchPath = keyof typeof SWITCH_PATHS;

/** snake_case, as in the paths and in /metrics labels. */
export const SWITCH_LABELS: Readonly<Record<SwitchName, string>> = {
  monitoring: "monitoring",
  accesslog: "accesslog",
  connectionMetrics: "connection_metrics",
  workloadMetrics: "workload_metrics",
};

/** How Kmesh names each switch in its "cannot enable" message. */
const KMESH_NAMES: Readonly<Record<Exclude<SwitchName, "monitoring">, string>> = {
  accesslog: "accesslog",
  connectionMetrics: "connection metrics",
  workloadMetrics: "workload metrics",
};

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
      message: `Kmesh monitoring is disabled, cannot enable ${KMESH_NAMES[name]}.`,
    };
  }
  return { ok: true, next: { ...current, [name]: enable } };
}

/** What the switches make the agent do. */
export interface Outputs {
  /** The kernel writes close records (the global the probe reads). */
  kernelEmit: boolean;
  /** The agent's timer asks the kernel for a report of every open connection. */
  periodicReports: boolean;
}

export function outputsOf(s: Switches): Outputs {
  const kernelEmit = s.monitoring && s.accesslog;
  return { kernelEmit, periodicReports: kernelEmit && s.connectionMetrics };
}

/** One phrase for the log: what the agent writes in state `s`. */
export function describeOutputs(s: Switches): string {
  const { kernelEmit, periodicReports } = outputsOf(s);
  if (!kernelEmit) return `writing nothing (${s.monitoring ? "accesslog" : "monitoring"} off)`;
  return periodicReports ? "writing close and periodic reports" : "writing close reports (periodic reports off)";
}

export interface StartupSwitches {
  monitoring: boolean;
  /** undefined: not given on the command line (on by default, off when monitoring is off) */
  accesslog?: boolean | undefined;
  /** undefined: not given (off by default) */
  connectionMetrics?: boolean | undefined;
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
      workloadMetrics: false,
    },
  };
}
