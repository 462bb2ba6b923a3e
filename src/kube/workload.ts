// The workload a pod belongs to, from its controller owner reference, as Istio and Cilium derive
// it: a ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that Deployment; a Job
// named `<cronjob>-<8 to 10 digits>` (the scheduled time in minutes) belongs to that CronJob;
// StatefulSet, DaemonSet and any other controller are used as named. A pod without a controller,
// or whose controller is its Node (the mirror of a static pod), is its own workload.
import type { Pod } from "./pod-list.ts";

export interface Workload {
  /** Deployment, CronJob, StatefulSet, DaemonSet, ReplicaSet, Job, ..., or Pod */
  kind: string;
  name: string;
}

const CRONJOB_JOB = /^(.+)-\d{8,10}$/;

export function workloadOf(pod: Pod): Workload {
  const controller = pod.metadata.ownerReferences?.find((ref) => ref.controller === true);
  if (controller === undefined || controller.kind === "Node") return { kind: "Pod", name: pod.metadata.name };
  const { kind, name } = controller;
  if (kind === "ReplicaSet") {
    const hash = pod.metadata.labels?.["pod-template-hash"];
    if (hash && name.length > hash.length + 1 && name.endsWith(`-${hash}`)) {
      return { kind: "Deployment", name: name.slice(0, -(hash.length + 1)) };
    }
  } else if (kind === "Job") {
    const m = CRONJOB_JOB.exec(name);
    if (m) return { kind: "CronJob", name: m[1]! };
  }
  return { kind, name };
}
