/**
 * Real-shaped kubelet `/pods` JSON: pods as a kubelet serves them (managedFields, probes,
 * conditions, containerStatuses with containerd IDs, ...), so that schema tests, the local
 * kubelet of the end-to-end tests and the refresh benchmark all read what a node really sends.
 *
 *   podList([pod({ name: "web-0", namespace: "shop", ip4: "10.244.1.5", owner: { kind: "StatefulSet", name: "web" } })])
 */

export interface PodSpecOptions {
  name: string;
  namespace?: string;
  /** pod IPv4 / IPv6 (either or both; both: dual stack) */
  ip4?: string;
  ip6?: string;
  /** only set `status.podIP` (an older kubelet: no `podIPs`) */
  podIpOnly?: boolean;
  phase?: "Pending" | "Running" | "Succeeded" | "Failed" | "Unknown";
  hostNetwork?: boolean;
  /** the controller; for a ReplicaSet give templateHash too */
  owner?: { kind: string; name: string };
  templateHash?: string;
  deletionTimestamp?: string;
  /** a static pod from a manifest file: 32-hex config-hash uid, file source annotations */
  staticPod?: boolean;
  nodeName?: string;
  hostIP?: string;
  uid?: string;
  containers?: number;
  /** the containers' names (default: the pod's name, then `<pod>-sidecar-<i>`) and runtime ids (64 hex; default: made up from the names) */
  containerNames?: string[];
  containerIds?: string[];
  /** labels besides `app` (default: the owner's name) and `pod-template-hash`; they win */
  labels?: Record<string, string>;
  /** spec.serviceAccountName (default: default) */
  serviceAccount?: string;
}

const NODE = "kind-worker";
const HOST_IP = "172.18.0.3";

function hex(n: number, seed: string): string {
  let out = "";
  let h = 2166136261;
  for (let i = 0; out.length < n; i++) {
    h = Math.imul(h ^ seed.charCodeAt(i % seed.length) ^ i, 16777619) >>> 0;
    out += h.toString(16).padStart(8, "0");
  }
  return out.slice(0, n);
}

function uuid(seed: string): string {
  const h = hex(32, seed);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const T = "2025-04-24T08:50:12Z";

function managedFields(name: string): unknown[] {
  return [
    {
      manager: "kube-controller-manager",
      operation: "Update",
      apiVersion: "v1",
      time: T,
      fieldsType: "FieldsV1",
      fieldsV1: {
        "f:metadata": { "f:generateName": {}, "f:labels": { ".": {}, "f:app": {}, "f:pod-template-hash": {} }, "f:ownerReferences": { ".": {}, [`k:{"uid":"${uuid(name + "rs")}"}`]: {} } },
        "f:spec": {
          "f:containers": { [`k:{"name":"${name}"}`]: { ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {}, "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {} } },
          "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {}, "f:securityContext": {}, "f:terminationGracePeriodSeconds": {},
        },
      },
    },
    {
      manager: "kubelet",
      operation: "Update",
      apiVersion: "v1",
      time: T,
      fieldsType: "FieldsV1",
      fieldsV1: {
        "f:status": {
          "f:conditions": { 'k:{"type":"ContainersReady"}': { ".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:status": {}, "f:type": {} }, 'k:{"type":"Initialized"}': { ".": {}, "f:status": {} }, 'k:{"type":"Ready"}': { ".": {}, "f:status": {} } },
          "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": { ".": {}, [`k:{"ip":"10.0.0.1"}`]: { ".": {}, "f:ip": {} } }, "f:startTime": {},
        },
      },
      subresource: "status",
    },
  ];
}

function container(name: string, i: number) {
  return {
    name: i === 0 ? name : `${name}-sidecar-${i}`,
    image: `registry.example.com/team/${name}:1.${i}.3`,
    args: ["--port=8080", "--log-level=info"],
    ports: [{ name: "http", containerPort: 8080, protocol: "TCP" }],
    env: [
      { name: "POD_NAME", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "metadata.name" } } },
      { name: "POD_IP", valueFrom: { fieldRef: { apiVersion: "v1", fieldPath: "status.podIP" } } },
      { name: "LOG_FORMAT", value: "json" },
    ],
    resources: { limits: { memory: "256Mi" }, requests: { cpu: "100m", memory: "128Mi" } },
    volumeMounts: [{ name: "kube-api-access-abcde", readOnly: true, mountPath: "/var/run/secrets/kubernetes.io/serviceaccount" }],
    livenessProbe: { httpGet: { path: "/healthz", port: 8080, scheme: "HTTP" }, initialDelaySeconds: 10, timeoutSeconds: 1, periodSeconds: 10, successThreshold: 1, failureThreshold: 3 },
    readinessProbe: { httpGet: { path: "/ready", port: 8080, scheme: "HTTP" }, timeoutSeconds: 1, periodSeconds: 5, successThreshold: 1, failureThreshold: 3 },
    terminationMessagePath: "/dev/termination-log",
    terminationMessagePolicy: "File",
    imagePullPolicy: "IfNotPresent",
    securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, runAsNonRoot: true, capabilities: { drop: ["ALL"] } },
  };
}

/** One pod object as the kubelet serves it. */
export function pod(o: PodSpecOptions): Record<string, unknown> {
  const namespace = o.namespace ?? "default";
  const phase = o.phase ?? "Running";
  const hostIP = o.hostIP ?? HOST_IP;
  const ip4 = o.hostNetwork ? hostIP : o.ip4;
  const ips = [ip4, o.ip6].filter((ip): ip is string => ip !== undefined);
  const labels: Record<string, string> = { app: o.owner?.name ?? o.name };
  if (o.templateHash) labels["pod-template-hash"] = o.templateHash;
  Object.assign(labels, o.labels);
  const metadata: Record<string, unknown> = {
    name: o.name,
    namespace,
    uid: o.uid ?? (o.staticPod ? hex(32, o.name) : uuid(o.name + namespace)),
    resourceVersion: String(1000 + o.name.length),
    creationTimestamp: T,
    labels,
    annotations: o.staticPod
      ? { "kubernetes.io/config.hash": hex(32, o.name), "kubernetes.io/config.seen": T, "kubernetes.io/config.source": "file" }
      : { "kubernetes.io/config.seen": T, "kubernetes.io/config.source": "api", "prometheus.io/scrape": "true" },
  };
  if (o.owner) {
    metadata.generateName = `${o.owner.name}-`;
    metadata.ownerReferences = [
      { apiVersion: o.owner.kind === "Job" ? "batch/v1" : "apps/v1", kind: o.owner.kind, name: o.owner.name, uid: uuid(o.owner.name), controller: true, blockOwnerDeletion: true },
    ];
  }
  if (!o.staticPod) metadata.managedFields = managedFields(o.name);
  if (o.deletionTimestamp) {
    metadata.deletionTimestamp = o.deletionTimestamp;
    metadata.deletionGracePeriodSeconds = 30;
  }
  const containers = Array.from({ length: o.containers ?? o.containerNames?.length ?? o.containerIds?.length ?? 1 }, (_, i) => ({
    ...container(o.name, i),
    ...(o.containerNames?.[i] === undefined ? {} : { name: o.containerNames[i] }),
  }));
  const containerId = (c: { name: string }, i: number) => `containerd://${o.containerIds?.[i] ?? hex(64, c.name + o.name)}`;
  const terminated = phase === "Succeeded" || phase === "Failed";
  const status: Record<string, unknown> = {
    phase,
    conditions: ["PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled"].map((type) => ({
      type,
      status: phase === "Running" || type === "PodScheduled" ? "True" : "False",
      lastProbeTime: null,
      lastTransitionTime: T,
    })),
    hostIP,
    hostIPs: [{ ip: hostIP }],
    startTime: T,
    containerStatuses: containers.map((c, i) => ({
      name: c.name,
      state: terminated
        ? { terminated: { exitCode: phase === "Failed" ? 1 : 0, reason: phase === "Failed" ? "Error" : "Completed", startedAt: T, finishedAt: T, containerID: containerId(c, i) } }
        : { running: { startedAt: T } },
      lastState: {},
      ready: phase === "Running",
      restartCount: 0,
      image: c.image,
      imageID: `registry.example.com/team/${o.name}@sha256:${hex(64, c.image)}`,
      containerID: containerId(c, i),
      started: phase === "Running",
    })),
    qosClass: "Burstable",
  };
  if (ips.length > 0) {
    status.podIP = ips[0];
    if (!o.podIpOnly) status.podIPs = ips.map((ip) => ({ ip }));
  }
  return {
    metadata,
    spec: {
      volumes: [{ name: "kube-api-access-abcde", projected: { sources: [{ serviceAccountToken: { expirationSeconds: 3607, path: "token" } }, { configMap: { name: "kube-root-ca.crt", items: [{ key: "ca.crt", path: "ca.crt" }] } }], defaultMode: 420 } }],
      containers,
      restartPolicy: o.owner?.kind === "Job" ? "OnFailure" : "Always",
      terminationGracePeriodSeconds: 30,
      dnsPolicy: o.hostNetwork ? "ClusterFirstWithHostNet" : "ClusterFirst",
      serviceAccountName: o.serviceAccount ?? "default",
      serviceAccount: o.serviceAccount ?? "default",
      nodeName: o.nodeName ?? NODE,
      ...(o.hostNetwork ? { hostNetwork: true } : {}),
      securityContext: {},
      schedulerName: "default-scheduler",
      tolerations: [
        { key: "node.kubernetes.io/not-ready", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
        { key: "node.kubernetes.io/unreachable", operator: "Exists", effect: "NoExecute", tolerationSeconds: 300 },
      ],
      priority: 0,
      enableServiceLinks: true,
      preemptionPolicy: "PreemptLowerPriority",
    },
    status,
  };
}

/** A v1 PodList around these pods. */
export function podList(items: unknown[] | null): Record<string, unknown> {
  return { kind: "PodList", apiVersion: "v1", metadata: {}, items };
}

/**
 * A busy node: `n` pods of Deployments, StatefulSets, DaemonSets and CronJobs, dual-stack, a few
 * hostNetwork and static pods, some finished Jobs. IPs from 10.244.0.0/16 and fd00:10:244::/64.
 */
export function busyNodePodList(n: number): Record<string, unknown> {
  const items: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const ip4 = `10.244.${(i >> 8) & 255}.${(i & 255) + 2 > 255 ? 1 : (i & 255) + 2}`;
    const ip6 = `fd00:10:244::${(i + 2).toString(16)}`;
    const kind = i % 10;
    const base = `app${i % 97}`;
    if (kind === 0) {
      items.push(pod({ name: `${base}-${i}`, namespace: `team${i % 13}`, ip4, ip6, owner: { kind: "StatefulSet", name: base } }));
    } else if (kind === 1 && i % 50 === 1) {
      items.push(pod({ name: `kube-proxy-${hex(5, String(i))}`, namespace: "kube-system", hostNetwork: true, owner: { kind: "DaemonSet", name: "kube-proxy" } }));
    } else if (kind === 2 && i % 100 === 2) {
      items.push(pod({ name: `etcd-node-${i}`, namespace: "kube-system", hostNetwork: true, staticPod: true }));
    } else if (kind === 3) {
      items.push(pod({ name: `${base}-28955160-${hex(5, String(i))}`, namespace: `team${i % 13}`, ip4, ip6, phase: i % 3 === 0 ? "Succeeded" : "Running", owner: { kind: "Job", name: `${base}-28955160` } }));
    } else {
      const hash = hex(10, base).replace(/[0-9]/g, (d) => "bcdfghjklm"[Number(d)]!);
      items.push(pod({ name: `${base}-${hash}-${hex(5, String(i))}`, namespace: `team${i % 13}`, ip4, ip6, owner: { kind: "ReplicaSet", name: `${base}-${hash}` }, templateHash: hash, containers: 1 + (i % 3) }));
    }
  }
  return podList(items);
}
