// The API-server source's counters as Prometheus metrics (/metrics of the admin API), registered
// the same way as the kubelet's (admin/agent-metrics.ts).
import type { EnricherStats } from "../accesslog/enrich.ts";
import { METRIC_PREFIX, type MetricsRegistry } from "../admin/metrics.ts";
import type { ApiSource } from "./api-source.ts";

export function registerApiMetrics(registry: MetricsRegistry, source: ApiSource, enricher: { readonly stats: EnricherStats } | null): void {
  const metric = (name: string, type: "counter" | "gauge", help: string, read: () => number) =>
    registry.register({ name: `${METRIC_PREFIX}${name}`, type, help, read });
  metric("api_lists_total", "counter", "Complete lists read from the API server (every kind, every page).", () => source.stats.lists);
  metric("api_watches_total", "counter", "Watches opened on the API server.", () => source.stats.watches);
  metric("api_watch_events_total", "counter", "Watch events received (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR).", () => source.stats.events);
  metric("api_watch_expired_total", "counter", "Watches that expired (410) and were followed by a new list.", () => source.stats.expired);
  metric("api_failures_total", "counter", "Requests to the API server that failed (unreachable, timeout, TLS, 401, 403, invalid).", () => source.stats.failures);
  metric("api_services", "gauge", "Services known from the API server.", () => source.index.counts.services);
  metric("api_endpoint_slices", "gauge", "EndpointSlices known from the API server.", () => source.index.counts.endpointSlices);
  metric("api_pods", "gauge", "Pods indexed from the API server (all nodes).", () => source.index.counts.pods);
  if (enricher !== null) {
    metric("clusterip_backends_learned_total", "counter", "OUTBOUND lines to a ClusterIP whose backend pod was learned from the INBOUND line.", () => enricher.stats.backendsLearned);
    metric("clusterip_lines_held_total", "counter", "OUTBOUND lines to a ClusterIP held to wait for their INBOUND line.", () => enricher.stats.heldForBackend);
  }
}
