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
  closesMissed: number;
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
  counter(
    "kernel_closes_missed_total",
    "Connections whose close never reached the probe (the kernel skips it under bursts of closes), so they have no close line; found when the socket is reused or by a periodic report.",
    (c) => c.closesMissed,
  );
}

/** What the kubelet pod list and the naming of lines expose, when the agent has a kubelet. */
export interface NamingCounters {
  refreshes: number;
  refreshFailures: number;
  podsIndexed: number;
  linesHeld: number;
  linesFiltered: number;
}

export function registerNamingMetrics(registry: MetricsRegistry, counters: () => NamingCounters): void {
  const metric = (name: string, type: "counter" | "gauge", help: string, read: (c: NamingCounters) => number) =>
    registry.register({ name: `${METRIC_PREFIX}${name}`, type, help, read: () => read(counters()) });
  metric("kubelet_refreshes_total", "counter", "Pod lists read from the kubelet.", (c) => c.refreshes);
  metric("kubelet_refresh_failures_total", "counter", "Pod list reads that failed (unreachable, timeout, TLS, 401, 403, invalid).", (c) => c.refreshFailures);
  metric("kubelet_pods_indexed", "gauge", "Pods in the current index.", (c) => c.podsIndexed);
  metric(
    "enrichment_misses_total",
    "counter",
    "Lines whose local end was not in the pod index, held for a refresh of the pod list.",
    (c) => c.linesHeld,
  );
  metric("lines_filtered_total", "counter", "Lines dropped by --namespace, --exclude-namespace or --pod.", (c) => c.linesFiltered);
}
