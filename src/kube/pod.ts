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

const ContainerStatusSchema = v.object({ name: v.string(), containerID: opt(v.string()) });

export const PodSchema = v.object({
  metadata: v.object({
    name: v.string(),
    namespace: opt(v.string()),
    deletionTimestamp: opt(v.string()),
    // For the workload metrics' labels (podInfo below): its controller, its app and version.
    labels: opt(v.record(v.string(), v.string())),
    ownerReferences: opt(v.array(v.object({ kind: v.string(), name: v.string(), controller: opt(v.boolean()) }))),
  }),
  spec: opt(v.object({ hostNetwork: opt(v.boolean()), serviceAccountName: opt(v.string()) })),
  status: opt(
    v.object({
      phase: opt(v.string()),
      podIP: opt(IpTextSchema),
      podIPs: opt(v.array(v.object({ ip: IpTextSchema }))),
      hostIP: opt(IpTextSchema),
      hostIPs: opt(v.array(v.object({ ip: IpTextSchema }))),
      // The container behind a connection's process (kernel/cgroups.ts gives its id): its name.
      // Sidecars declared as restartable init containers are in initContainerStatuses.
      containerStatuses: opt(v.array(ContainerStatusSchema)),
      initContainerStatuses: opt(v.array(ContainerStatusSchema)),
      ephemeralContainerStatuses: opt(v.array(ContainerStatusSchema)),
    }),
  ),
});
export type Pod = v.InferOutput<typeof PodSchema>;

/**
 * What a line is told about a pod: its name (src.workload, dst.workload) and namespace; and what
 * the workload metrics' labels say of it (src/telemetry/labels.ts), as Istio derives each.
 */
export interface PodInfo {
  /** Fixed for the object's life: text lines cache their bytes per PodInfo (accesslog/format.ts). */
  readonly name: string;
  readonly namespace: string | null;
  /** the controller that owns it (a Deployment, StatefulSet, ...), else the pod itself (workloadName) */
  workload: string;
  /** label service.istio.io/canonical-name, else app.kubernetes.io/name, else app, else the workload */
  canonicalService: string;
  /** label service.istio.io/canonical-revision, else app.kubernetes.io/version, else version, else "latest" */
  canonicalRevision: string;
  /** label app, else app.kubernetes.io/name, else the canonical service */
  app: string;
  /** label version, else app.kubernetes.io/version, else the canonical revision */
  version: string;
  /** spec.serviceAccountName; null when the pod names none */
  serviceAccount: string | null;
}

/** The first of `names` that `labels` has, else `fallback`. */
function firstLabel(labels: Readonly<Record<string, string>> | null | undefined, names: readonly string[], fallback: string): string {
  for (const name of names) {
    const value = labels?.[name];
    if (value !== undefined) return value;
  }
  return fallback;
}

/**
 * The workload a pod belongs to, from its controller (docs/kubernetes.md): a ReplicaSet whose name
 * ends in `-<pod-template-hash>` is a Deployment's (the hash cut off); a Job named
 * `<name>-<8 to 10 digits>` is a CronJob's (the digits cut off); any other controller by its own
 * name; a pod without one is its own workload.
 */
export function workloadName(pod: Pod): string {
  const owner = pod.metadata.ownerReferences?.find((ref) => ref.controller === true);
  if (owner === undefined) return pod.metadata.name;
  if (owner.kind === "ReplicaSet") {
    const hash = pod.metadata.labels?.["pod-template-hash"];
    if (hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -hash.length - 1);
  }
  if (owner.kind === "Job") {
    const cron = /^(.+)-\d{8,10}$/.exec(owner.name);
    if (cron) return cron[1]!;
  }
  return owner.name;
}

export function podInfo(pod: Pod): PodInfo {
  const labels = pod.metadata.labels;
  const workload = workloadName(pod);
  const canonicalService = firstLabel(labels, ["service.istio.io/canonical-name", "app.kubernetes.io/name", "app"], workload);
  const canonicalRevision = firstLabel(labels, ["service.istio.io/canonical-revision", "app.kubernetes.io/version", "version"], "latest");
  return {
    name: pod.metadata.name,
    namespace: pod.metadata.namespace ?? null,
    workload,
    canonicalService,
    canonicalRevision,
    app: firstLabel(labels, ["app", "app.kubernetes.io/name"], canonicalService),
    version: firstLabel(labels, ["version", "app.kubernetes.io/version"], canonicalRevision),
    serviceAccount: pod.spec?.serviceAccountName || null,
  };
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

/**
 * The id in a container status's `containerID`, `<runtime>://<id>` (containerd://, cri-o://,
 * docker://), as the cgroup path has it; null when there is none yet (a container not started).
 */
export function runtimeContainerId(containerID: string | null | undefined): string | null {
  if (!containerID) return null;
  const at = containerID.indexOf("://");
  const id = at < 0 ? containerID : containerID.slice(at + 3);
  return id === "" ? null : id;
}

/** Every container status of a pod: its containers', its init containers' (sidecars among them), its ephemeral ones'. */
export function containerStatuses(pod: Pod): { name: string; containerID?: string | null | undefined }[] {
  const status = pod.status;
  return [...(status?.containerStatuses ?? []), ...(status?.initContainerStatuses ?? []), ...(status?.ephemeralContainerStatuses ?? [])];
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
