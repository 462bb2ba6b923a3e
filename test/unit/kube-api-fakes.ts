// Real-shaped API objects (with fields the agent ignores), checked by the agent's own schemas.
import * as v from "valibot";
import { EndpointSliceSchema, ServiceSchema } from "../../src/kube/apiserver/objects.ts";
import { PodSchema } from "../../src/kube/pod.ts";

export const service = (ns: string, name: string, clusterIP: string, ports: { port: number; protocol?: string }[], extra: object = {}) =>
  v.parse(ServiceSchema, {
    metadata: { name, namespace: ns, resourceVersion: "1", uid: "u", annotations: { x: "y" } },
    spec: { type: "ClusterIP", clusterIP, clusterIPs: [clusterIP], ports: ports.map((p) => ({ ...p, targetPort: 8080 })), selector: { app: name } },
    ...extra,
  });

export const slice = (ns: string, svc: string, name: string, addresses: string[], ports: (number | null)[]) =>
  v.parse(EndpointSliceSchema, {
    apiVersion: "discovery.k8s.io/v1",
    kind: "EndpointSlice",
    metadata: { name, namespace: ns, labels: { "kubernetes.io/service-name": svc } },
    addressType: "IPv4",
    endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready: true }, targetRef: { kind: "Pod", name: `p-${a}`, namespace: ns } })),
    ports: ports.map((port) => ({ name: "http", protocol: "TCP", port })),
  });

export const pod = (ns: string, name: string, ip: string, extra: { phase?: string; hostNetwork?: boolean; deleting?: boolean } = {}) =>
  v.parse(PodSchema, {
    metadata: { name, namespace: ns, uid: `uid-${name}`, ...(extra.deleting ? { deletionTimestamp: "2026-01-01T00:00:00Z" } : {}) },
    spec: { nodeName: "other-node", hostNetwork: extra.hostNetwork ?? false },
    status: { phase: extra.phase ?? "Running", podIP: ip, podIPs: [{ ip }] },
  });
