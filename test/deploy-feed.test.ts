// scripts/deploy/feed/: the feed's Deployment, Service and RBAC, and the patch that points the
// agents at it. Every document parses; the Deployment's args are a command line the binary
// accepts (`feed`), listening on the port the Service and the readiness probe use, reading its
// TLS files and writing its state where volumes are mounted, serving the agents' service account;
// the role reads exactly what the API-server source reads and may create TokenReviews, nothing
// more; the patched agents' args name the Service's address and a CA that is mounted.
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { parseCommandLine } from "../src/cli.ts";
import { RESOURCES } from "../src/kube/apiserver/source.ts";

const DIR = new URL("../scripts/deploy/feed/", import.meta.url).pathname;

// biome-ignore lint: YAML is untyped here; each test checks the paths it reads
type Any = any;
const docs = (path: string): Any[] => parseAllDocuments(readFileSync(path, "utf8")).map((doc) => {
  if (doc.errors.length > 0) throw new Error(`${path}: ${doc.errors.map((e) => e.message).join("; ")}`);
  return doc.toJS();
});
const all: Any[] = readdirSync(DIR)
  .filter((name) => name.endsWith(".yaml"))
  .sort()
  .flatMap((name) => docs(join(DIR, name)));
const one = (kind: string): Any => {
  const found = all.filter((d) => d.kind === kind);
  expect(found).toHaveLength(1);
  return found[0];
};
const agentAccount = docs(new URL("../scripts/deploy/10-rbac.yaml", import.meta.url).pathname).find((d) => d.kind === "ServiceAccount");

/** Whether `path` is under one of the container's mounts of a volume with `source` (secret, configMap, emptyDir). */
function mountedFrom(pod: Any, container: Any, path: string, source: string): boolean {
  return container.volumeMounts.some(
    (m: Any) => path.startsWith(`${m.mountPath}/`) && pod.volumes.some((v: Any) => v.name === m.name && v[source] !== undefined),
  );
}

describe("scripts/deploy/feed", () => {
  test("only the kinds kubectl apply takes here: ServiceAccount, ClusterRole and its binding, Deployment, Service", () => {
    expect(all.map((d) => d.kind).sort()).toEqual(["ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount"]);
    for (const d of all) if (d.kind !== "ClusterRole" && d.kind !== "ClusterRoleBinding") expect(d.metadata.namespace).toBe("kmesh-accesslog");
  });

  test("the Deployment: two replicas running `feed` as its flags say, on the Service's port", () => {
    const deployment = one("Deployment");
    expect(deployment.spec.replicas).toBe(2);
    const pod = deployment.spec.template.spec;
    expect(pod.serviceAccountName).toBe(one("ServiceAccount").metadata.name);
    const [container] = pod.containers;
    const invocation = parseCommandLine(container.args);
    if (invocation.command !== "feed") throw new Error(`not the feed: ${invocation.command}`);
    const o = invocation.options;
    expect(container.ports).toEqual([{ name: "feed", containerPort: o.listen.port, protocol: "TCP" }]);
    expect(container.readinessProbe.httpGet).toEqual({ path: "/healthz", port: o.listen.port, scheme: "HTTPS" });
    expect(one("Service").spec.ports).toEqual([{ name: "feed", port: o.listen.port, targetPort: o.listen.port, protocol: "TCP" }]);
    expect(one("Service").spec.selector).toEqual(deployment.spec.selector.matchLabels);
    expect(mountedFrom(pod, container, o.tlsCertFile!, "secret")).toBe(true);
    expect(mountedFrom(pod, container, o.tlsKeyFile!, "secret")).toBe(true);
    expect(mountedFrom(pod, container, o.stateFile!, "emptyDir")).toBe(true);
    expect(o.allowServiceAccount).toEqual([`${agentAccount.metadata.namespace}:${agentAccount.metadata.name}`]);
    expect(container.securityContext).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } });
  });

  test("the role: list and watch what the API-server source reads, create TokenReviews, nothing else", () => {
    const reads = RESOURCES.map((r) => r.kind).sort();
    const rules = one("ClusterRole").rules as { apiGroups: string[]; resources: string[]; verbs: string[] }[];
    const granted = rules.flatMap((r) => r.resources.map((resource) => `${r.apiGroups.join(",")}/${resource}:${[...r.verbs].sort().join(",")}`)).sort();
    expect(granted).toEqual(
      [...reads.map((kind) => `${kind === "endpointslices" ? "discovery.k8s.io" : ""}/${kind}:list,watch`), "authentication.k8s.io/tokenreviews:create"].sort(),
    );
    const binding = one("ClusterRoleBinding");
    expect(binding.roleRef.name).toBe(one("ClusterRole").metadata.name);
    expect(binding.subjects).toEqual([{ kind: "ServiceAccount", name: one("ServiceAccount").metadata.name, namespace: "kmesh-accesslog" }]);
  });

  test("the agents' patch: run --feed at the Service's address, with a CA that is mounted", () => {
    const [patch] = docs(join(DIR, "patch/agent.yaml"));
    const pod = patch.spec.template.spec;
    const [container] = pod.containers;
    const invocation = parseCommandLine(container.args);
    if (invocation.command !== "run") throw new Error(`not run: ${invocation.command}`);
    const service = one("Service");
    expect(invocation.options.feed).toBe(`https://${service.metadata.name}.${service.metadata.namespace}.svc:${service.spec.ports[0].port}`);
    expect(mountedFrom(pod, container, invocation.options.feedCaFile!, "configMap")).toBe(true);
    // the rest of the DaemonSet's args, unchanged
    const daemonSet = docs(new URL("../scripts/deploy/20-daemonset.yaml", import.meta.url).pathname)[0];
    const before = daemonSet.spec.template.spec.containers[0].args as string[];
    expect(container.args.filter((a: string) => !a.startsWith("--feed"))).toEqual(before);
  });
});
