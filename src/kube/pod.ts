// The one pod model both sources name pods with: the fields of a v1 Pod the agent reads (the
// kubelet's list and the API server's watch carry the same objects), what a line is told about a
// pod, and which pod an IP belongs to (docs/kubernetes.md).
//
// Only the fields used are declared; every object is loose, so anything else is ignored. A
// declared field present with the wrong type is an error naming the pod and the JSON path.
import * as v from "valibot";
import { canonicalIp } from "../address.ts";

// Kubernetes omits empty fields, but encoders differ: `null` is read as absent everywhere.
export const opt = <T extends v.GenericSchema>(schema: T) => v.nullish(schema);

/**
 * An IP address as the API writes it, turned into the text the record decoder writes for it
 * (src/address.ts); "" is read as "none yet".
 */
const IpTextSchema = v.pipe(
  v.string(),
  v.transform((text) => (text === "" ? "" : canonicalIp(text))),
  v.string("not an IP address"),
);

export const PodSchema = v.object({
  metadata: v.object({
    name: v.string(),
    namespace: opt(v.string()),
    deletionTimestamp: opt(v.string()),
  }),
  spec: opt(v.object({ hostNetwork: opt(v.boolean()) })),
  status: opt(
    v.object({
      phase: opt(v.string()),
      podIP: opt(IpTextSchema),
      podIPs: opt(v.array(v.object({ ip: IpTextSchema }))),
      hostIP: opt(IpTextSchema),
      hostIPs: opt(v.array(v.object({ ip: IpTextSchema }))),
    }),
  ),
});
export type Pod = v.InferOutput<typeof PodSchema>;

/** What a line is told about a pod: its name (src.workload, dst.workload) and namespace. */
export interface PodInfo {
  name: string;
  namespace: string | null;
}

export function podInfo(pod: Pod): PodInfo {
  return { name: pod.metadata.name, namespace: pod.metadata.namespace ?? null };
}

// How strongly a pod claims its IPs. When several pods claim one IP, a running pod without a
// deletionTimestamp wins, then any other pod not being deleted (Pending, Unknown), then one being
// deleted. Succeeded and Failed pods never claim one: their IP is free and soon reused.
export const NEVER = 0;
const DELETING = 1;
const NOT_RUNNING = 2;
const RUNNING = 3;

/** How strongly a pod claims its IP; NEVER (0) for pods that must not be indexed. */
export function claim(pod: Pod): number {
  const phase = pod.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return NEVER;
  if (pod.metadata.deletionTimestamp != null) return DELETING;
  return phase === "Running" ? RUNNING : NOT_RUNNING;
}

/** A pod's IPs, from `status.podIPs` and `status.podIP` (both families; canonical already), each once. */
export function podIps(pod: Pod): string[] {
  const out: string[] = [];
  const add = (ip: string | null | undefined) => {
    if (ip && !out.includes(ip)) out.push(ip);
  };
  for (const entry of pod.status?.podIPs ?? []) add(entry.ip);
  add(pod.status?.podIP);
  return out;
}
