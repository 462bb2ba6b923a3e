// The switch state machine against Kmesh's rules (pkg/status/status_server.go:
// monitoringHandler, accesslogHandler, connectionMetricHandler,
// workloadMetricHandler), for every state and every request.
import { describe, expect, test } from "bun:test";
import {
  SWITCH_NAMES,
  changeSwitch,
  outputsOf,
  startupSwitches,
  type SwitchName,
  type Switches,
} from "../../../src/admin/switches.ts";

/** All 16 combinations of the four switches. */
const ALL_STATES: Switches[] = Array.from({ length: 16 }, (_, bits) => ({
  monitoring: (bits & 1) !== 0,
  accesslog: (bits & 2) !== 0,
  connectionMetrics: (bits & 4) !== 0,
  workloadMetrics: (bits & 8) !== 0,
}));

const REFUSAL: Record<Exclude<SwitchName, "monitoring">, string> = {
  accesslog: "Kmesh monitoring is disabled, cannot enable accesslog.",
  connectionMetrics: "Kmesh monitoring is disabled, cannot enable connection metrics.",
  workloadMetrics: "Kmesh monitoring is disabled, cannot enable workload metrics.",
};

describe("Kmesh's rules, every state × every switch × on/off", () => {
  const cases = ALL_STATES.flatMap((state) =>
    SWITCH_NAMES.flatMap((name) => [true, false].map((enable) => [state, name, enable] as const)),
  );
  test.each(cases)("%o: %s=%p", (state, name, enable) => {
    const result = changeSwitch(state, name, enable);
    if (name === "monitoring") {
      // monitoringHandler sets monitoring, accesslog, workload and connection metrics together.
      expect(result).toEqual({
        ok: true,
        next: { monitoring: enable, accesslog: enable, connectionMetrics: enable, workloadMetrics: enable },
      });
    } else if (enable && !state.monitoring) {
      expect(result).toEqual({ ok: false, reason: "monitoring-disabled", message: REFUSAL[name] });
    } else {
      expect(result).toEqual({ ok: true, next: { ...state, [name]: enable } });
    }
  });
});

describe("a few sequences, as kmeshctl users meet them", () => {
  const on: Switches = { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: false };
  test("monitoring off, then accesslog on is refused, then monitoring on enables everything", () => {
    const off = changeSwitch(on, "monitoring", false);
    expect(off.ok && off.next).toEqual({ monitoring: false, accesslog: false, connectionMetrics: false, workloadMetrics: false });
    if (!off.ok) return;
    expect(changeSwitch(off.next, "accesslog", true).ok).toBe(false);
    expect(changeSwitch(off.next, "accesslog", false)).toEqual({ ok: true, next: off.next });
    const back = changeSwitch(off.next, "monitoring", true);
    expect(back.ok && back.next).toEqual({ monitoring: true, accesslog: true, connectionMetrics: true, workloadMetrics: true });
  });
});

describe("what the switches make the agent do", () => {
  test.each(ALL_STATES)("%o", (s) => {
    const lines = s.monitoring && s.accesslog;
    const metrics = s.monitoring && s.workloadMetrics;
    expect(outputsOf(s)).toEqual({
      // the kernel writes while lines or the TCP metrics need its records
      kernelEmit: lines || metrics,
      // close lines: monitoring && accesslog (Kmesh prints lines only while accesslog is on)
      closeLines: lines,
      // periodic lines: Kmesh's periodic records become lines only while accesslog is on too
      periodicReports: lines && s.connectionMetrics,
      tcpMetrics: metrics,
      connectionSeries: metrics && s.connectionMetrics,
      // the open connections are read for periodic lines, and for the metrics
      reportTimer: (lines && s.connectionMetrics) || metrics,
    });
  });
});

describe("start-up state", () => {
  test.each([
    [{ monitoring: true }, { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: false }],
    [{ monitoring: true, accesslog: false }, { monitoring: true, accesslog: false, connectionMetrics: false, workloadMetrics: false }],
    [{ monitoring: true, connectionMetrics: true }, { monitoring: true, accesslog: true, connectionMetrics: true, workloadMetrics: false }],
    [{ monitoring: false }, { monitoring: false, accesslog: false, connectionMetrics: false, workloadMetrics: false }],
    [{ monitoring: false, accesslog: false, connectionMetrics: false }, { monitoring: false, accesslog: false, connectionMetrics: false, workloadMetrics: false }],
    [{ monitoring: true, workloadMetrics: true }, { monitoring: true, accesslog: true, connectionMetrics: false, workloadMetrics: true }],
  ])("%o", (flags, switches) => {
    expect(startupSwitches(flags)).toEqual({ ok: true, switches });
  });

  test.each([
    [{ monitoring: false, accesslog: true }, "--accesslog cannot be on while --monitoring is off"],
    [{ monitoring: false, connectionMetrics: true }, "--connection-metrics cannot be on while --monitoring is off"],
    [{ monitoring: false, workloadMetrics: true }, "--workload-metrics cannot be on while --monitoring is off"],
  ])("a state the API could not reach is refused: %o", (flags, message) => {
    expect(startupSwitches(flags)).toEqual({ ok: false, message });
  });
});
