// The API server's objects as the agent reads them: Services, EndpointSlices (discovery.k8s.io/v1)
// (Pods: ../pod.ts, the same schema as the kubelet's list), and the list and watch-event envelopes
// around them. Only the fields used are declared; unknown fields are ignored. A declared field
// present with the wrong type is an error naming the object and the path (describeIssues).
import * as v from "valibot";
import { canonicalIp } from "../../address.ts";
import { opt } from "../pod.ts";

/** An IP in the text the record decoder writes; anything else ("None", "", a hostname) → null. */
const MaybeIpSchema = v.pipe(v.string(), v.transform(canonicalIp));

const MetadataSchema = v.object({ name: v.string(), namespace: opt(v.string()) });

export const ServiceSchema = v.object({
  metadata: MetadataSchema,
  spec: opt(
    v.object({
      clusterIP: opt(MaybeIpSchema),
      clusterIPs: opt(v.array(MaybeIpSchema)),
      ports: opt(v.array(v.object({ port: v.number(), protocol: opt(v.string()) }))),
    }),
  ),
});
export type Service = v.InferOutput<typeof ServiceSchema>;

export const EndpointSliceSchema = v.object({
  // The label kubernetes.io/service-name names the slice's Service.
  metadata: v.object({ ...MetadataSchema.entries, labels: opt(v.record(v.string(), v.string())) }),
  endpoints: opt(v.array(v.object({ addresses: opt(v.array(MaybeIpSchema)) }))),
  ports: opt(v.array(v.object({ port: opt(v.number()), protocol: opt(v.string()) }))),
});
export type EndpointSlice = v.InferOutput<typeof EndpointSliceSchema>;

/** The label that names an EndpointSlice's Service. */
export const SERVICE_NAME_LABEL = "kubernetes.io/service-name";

/** A `Status` object (what an ERROR event carries, and the body of a failed request). */
export const StatusSchema = v.object({ code: opt(v.number()), reason: opt(v.string()), message: opt(v.string()) });

export const ListSchema = v.object({
  metadata: opt(v.object({ resourceVersion: opt(v.string()), continue: opt(v.string()) })),
  items: opt(v.array(v.unknown())),
});

/** `path: message` of the first issue. */
export function describeIssues(issues: readonly v.BaseIssue<unknown>[]): string {
  const [issue] = issues;
  if (issue === undefined) return "invalid";
  const path = v.getDotPath(issue);
  return path === null ? issue.message : `${path}: ${issue.message}`;
}

/** `namespace/name` of an object that may have failed its schema. */
export function objectLabel(item: unknown): string {
  const metadata = (item as { metadata?: { name?: unknown; namespace?: unknown } } | null)?.metadata;
  const name = typeof metadata?.name === "string" ? metadata.name : "?";
  return typeof metadata?.namespace === "string" ? `${metadata.namespace}/${name}` : name;
}
