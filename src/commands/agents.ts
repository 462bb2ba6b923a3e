// Which agents `accesslog`, `monitoring` and `status` drive, and how each is reached (README,
// "kmeshctl"): the one named, this node's (client.ts), or every agent pod through the API server's
// port-forward. One result line per agent: on stdout when it did what was asked, on stderr when it
// could not be reached or refused; the exit code is 1 when any did.
import * as v from "valibot";
import { type AdminTarget, AdminClientError, chooseTarget, describeTarget } from "../admin/client.ts";
import { PROGRAM_NAME } from "../options.ts";
import { writeStderr, writeStdout } from "../output.ts";
import { ApiClient } from "../kube/apiserver/client.ts";
import { PortForward } from "../kube/apiserver/port-forward.ts";
import { ApiConfigError, inClusterSettings, kubeconfigSettings } from "../kube/apiserver/settings.ts";
import { opt } from "../kube/pod.ts";
import type { AgentTarget } from "./target.ts";

/** Where the DaemonSet's pods are: scripts/deploy/, then where kmeshctl looks (scripts/deploy/kmeshctl/). */
export const AGENT_PLACES = [
  { namespace: "kmesh-accesslog", selector: "app.kubernetes.io/name=kmesh-accesslog" },
  { namespace: "kmesh-system", selector: "app=kmesh" },
] as const;
/** The admin API's port in an agent's pod (Kmesh's). */
export const ADMIN_PORT = 15200;

const PodSchema = v.object({
  metadata: v.object({ name: v.string(), namespace: opt(v.string()) }),
  status: opt(v.object({ phase: opt(v.string()) })),
});
const PodListSchema = v.object({ items: opt(v.array(PodSchema)) });

interface AgentPod {
  namespace: string;
  name: string;
  phase: string;
}

/** What one agent is asked: `target` reaches its admin API, `where` names it in lines. Returns the line. */
export type AgentAction = (target: AdminTarget, where: string) => Promise<string>;

/** Runs `action` against every agent the target names; returns the exit code. */
export async function forEachAgent(target: AgentTarget, action: AgentAction): Promise<number> {
  if (target.kind === "local") {
    const local = chooseTarget(target.flags);
    writeStdout(`${await action(local, describeTarget(local))}\n`);
    return 0;
  }
  const config = target.kubeconfig === null ? inClusterSettings() : await kubeconfigSettings(target.kubeconfig);
  if (config === null) throw new ApiConfigError("--in-cluster: not in a cluster (no KUBERNETES_SERVICE_HOST/_PORT and service-account token): give --kubeconfig <file>");
  const client = new ApiClient(config);
  const pods = await agentPods(client, target.pod);
  const credentials = client.credentials();
  if (!credentials.ok) throw new AdminClientError(`cannot reach the API server (${config.origin}): ${credentials.failure.detail}`);
  const results = await Promise.all(
    pods.map(async (pod): Promise<{ ok: boolean; line: string }> => {
      const where = `pod ${pod.namespace}/${pod.name}`;
      if (pod.phase !== "Running") return { ok: false, line: `${where} is ${pod.phase}: no agent to reach` };
      const forward = PortForward.open(config, credentials, pod.namespace, pod.name, ADMIN_PORT);
      try {
        return { ok: true, line: await action({ addr: forward.address }, where) };
      } catch (error) {
        if (!(error instanceof AdminClientError)) throw error;
        // What the API server or the kubelet said says more than the local end of the tunnel.
        return { ok: false, line: forward.problem === null ? error.message : `${where}: ${forward.problem}` };
      } finally {
        forward.close();
      }
    }),
  );
  for (const { ok, line } of results) {
    if (ok) writeStdout(`${line}\n`);
    else writeStderr(`${PROGRAM_NAME}: ${line}\n`);
  }
  return results.every((r) => r.ok) ? 0 : 1;
}

/** The agent pods, in name order: the one named, or all of the first place that has any. */
async function agentPods(client: ApiClient, name: string | null): Promise<AgentPod[]> {
  const origin = client.config.origin;
  const failed = (detail: string) => new AdminClientError(`cannot list the agent pods through the API server (${origin}): ${detail}`);
  for (const place of AGENT_PLACES) {
    const path =
      name === null
        ? `/api/v1/namespaces/${place.namespace}/pods?labelSelector=${encodeURIComponent(place.selector)}`
        : `/api/v1/namespaces/${place.namespace}/pods?fieldSelector=${encodeURIComponent(`metadata.name=${name}`)}&labelSelector=${encodeURIComponent(place.selector)}`;
    const answer = await client.getJson(path);
    if (!answer.ok) {
      const grant = answer.failure.kind === "forbidden" ? ` (the user needs list on pods in ${place.namespace}, and create on pods/portforward)` : "";
      throw failed(`${answer.failure.detail}${grant}`);
    }
    const list = v.safeParse(PodListSchema, answer.json);
    if (!list.success) throw failed("the pod list is not one");
    const pods = (list.output.items ?? []).map((p) => ({ namespace: p.metadata.namespace ?? place.namespace, name: p.metadata.name, phase: p.status?.phase ?? "Unknown" }));
    if (pods.length > 0) return pods.sort((a, b) => a.name.localeCompare(b.name));
  }
  const places = AGENT_PLACES.map((p) => `${p.selector} in ${p.namespace}`).join(", nor ");
  throw new AdminClientError(
    name === null
      ? `no agent pods through the API server (${origin}): none labelled ${places} (scripts/deploy/ or scripts/deploy/kmeshctl/ deploys them)`
      : `no agent pod ${JSON.stringify(name)} through the API server (${origin}): none labelled ${places} has that name`,
  );
}
