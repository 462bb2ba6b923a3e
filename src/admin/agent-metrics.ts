// The Agent's own counters as Prometheus metrics. Other parts of the agent
// (the kubelet pod index, for one) register theirs the same way, through
// AgentControl.metrics.register(...).
import { METRIC_PREFIX, type MetricsRegistry } from "./metrics.ts";

export interface AgentCounters {
  recordsRead: number;
  recordsInvalid: number;
  recordsMalformed: number;
  recordsLost: number;
  trackingFailed: number;
  linesWritten: number;
  linesDropped: number;
}

export function registerAgentMetrics(registry: MetricsRegistry, counters: () => AgentCounters): void {
  const counter = (name: string, help: string, read: (c: AgentCounters) => number) =>
    registry.register({ name: `${METRIC_PREFIX}${name}`, type: "counter", help, read: () => read(counters()) });
  counter("records_read_total", "Records read from the kernel (close reports and periodic reports).", (c) => c.recordsRead);
  counter("lines_written_total", "Access-log lines written to stdout.", (c) => c.linesWritten);
  counter("lines_dropped_total", "Access-log lines dropped because stdout was not read fast enough.", (c) => c.linesDropped);
  counter("kernel_records_lost_total", "Records the kernel could not queue (ring buffer full).", (c) => c.recordsLost);
  counter("records_malformed_total", "Records skipped because their size or content was wrong.", (c) => c.recordsMalformed + c.recordsInvalid);
  counter(
    "connections_untracked_total",
    "Connections the kernel could not track from their start (connections map full).",
    (c) => c.trackingFailed,
  );
}
