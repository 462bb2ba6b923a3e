// The label sets of Kmesh's TCP metrics, names and order as Kmesh declares them. What each value
// is made of (as Istio defines the standard labels; `unknown`, never empty, when not known):
// README, "Kmesh's TCP metrics (Prometheus)".
import { escapeLabelValue } from "../admin/metrics.ts";
import type { PodInfo } from "../kube/pod.ts";

export const UNKNOWN = "unknown";

/** What both ends are described by, in Kmesh's order, after `source_` or `destination_`. */
const PEER = ["workload", "canonical_service", "canonical_revision", "workload_namespace", "principal", "app", "version", "cluster"] as const;
const SOURCE = PEER.map((name) => `source_${name}`);
const DESTINATION = PEER.map((name) => `destination_${name}`);
const TAIL = ["request_protocol", "response_flags", "connection_security_policy"];
/** The tail's values. */
export const TAIL_VALUES = ["tcp", "-", UNKNOWN];

const DESTINATION_POD = ["destination_pod_address", "destination_pod_namespace", "destination_pod_name"];
const DESTINATION_SERVICE = ["destination_service", "destination_service_namespace", "destination_service_name"];

export const WORKLOAD_LABELS: readonly string[] = ["reporter", ...SOURCE, ...DESTINATION_POD, ...DESTINATION, ...TAIL];

export const SERVICE_LABELS: readonly string[] = ["reporter", ...SOURCE, ...DESTINATION_SERVICE, ...DESTINATION, ...TAIL];

export const CONNECTION_LABELS: readonly string[] = [
  "reporter",
  "start_time",
  ...SOURCE,
  "source_address",
  "destination_address",
  ...DESTINATION_POD,
  ...DESTINATION_SERVICE,
  ...DESTINATION,
  ...TAIL,
];

export interface PeerContext {
  trustDomain: string;
  clusterName: string;
}

/** The eight values of a peer (PEER's order); all unknown for an end that is no known pod. */
export function peerValues(pod: PodInfo | undefined, context: PeerContext): string[] {
  if (pod === undefined) return PEER.map(() => UNKNOWN);
  const namespace = pod.namespace ?? UNKNOWN;
  const principal =
    pod.serviceAccount !== null && pod.namespace !== null
      ? `spiffe://${context.trustDomain}/ns/${pod.namespace}/sa/${pod.serviceAccount}`
      : UNKNOWN;
  return [pod.workload, pod.canonicalService, pod.canonicalRevision, namespace, principal, pod.app, pod.version, context.clusterName];
}

/**
 * `name="value",...` of consecutive names from `names[from]` on, for the values given: a piece
 * of a series' label text (the whole is `{` pieces joined by `,` `}`).
 */
export function labelText(names: readonly string[], from: number, values: readonly string[]): string {
  let text = "";
  for (let i = 0; i < values.length; i++) text += `${i === 0 ? "" : ","}${names[from + i]}="${escapeLabelValue(values[i]!)}"`;
  return text;
}
