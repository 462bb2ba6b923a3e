/**
 * Glue between the test node (node.ts), the local kubelet (../support/kubelet-server.ts) and the agent runner
 * (agent.ts) for the enrichment tests: the PodList entry of a test pod, an agent pointed at the
 * local kubelet, and the two lines of one exchange.
 */
import { type AccessLogEntry, type Agent, matchConnection, startAgent } from "./agent.ts";
import { type ExchangeOptions, exchange } from "./exchange.ts";
import { pod, type PodSpecOptions } from "../support/kubelet-pods.ts";
import type { LocalKubelet } from "../support/kubelet-server.ts";
import type { Pod } from "./node.ts";

export interface PodIdentity {
  /** the Kubernetes pod name */
  name: string;
  namespace: string;
}

/**
 * The kubelet's entry for a test pod: a Deployment's pod (ReplicaSet owner, pod-template-hash),
 * dual stack, Running, on the test node.
 */
export function podEntry(testPod: Pod, id: PodIdentity, extra: Pick<PodSpecOptions, "labels" | "serviceAccount" | "containerNames" | "containerIds"> = {}): Record<string, unknown> {
  const hash = id.name.split("-").at(-2) ?? "5d9f7c6b8";
  const deployment = id.name.split("-").slice(0, -2).join("-") || id.name;
  return pod({
    name: id.name,
    namespace: id.namespace,
    ip4: testPod.ip4,
    ip6: testPod.ip6,
    owner: { kind: "ReplicaSet", name: `${deployment}-${hash}` },
    templateHash: hash,
    ...extra,
  });
}

/**
 * The agent, reading pods from `kubelet` (TLS verified against its CA unless `args` name another
 * CA or turn verification off; its bearer token), plus `args`. (The runner gives each agent its
 * own single-agent lock and no admin port.)
 */
export function startKubeletAgent(kubelet: LocalKubelet, o: { output?: "text" | "json"; args?: string[] } = {}): Agent {
  const args = o.args ?? [];
  const ownTls = args.includes("--kubelet-ca-file") || args.includes("--kubelet-insecure-skip-tls-verify");
  return startAgent({
    output: o.output ?? "text",
    args: [
      "--kubelet-url",
      kubelet.url,
      ...(ownTls ? [] : ["--kubelet-ca-file", kubelet.caFile]),
      "--kubelet-token-file",
      kubelet.tokenFile,
      ...args,
    ],
  });
}

/** One exchange and its two BPF_TCP_CLOSE lines (OUTBOUND from the client, INBOUND from the server). */
export async function exchangeLines(
  agent: Agent,
  client: Pod,
  server: Pod,
  o: Partial<ExchangeOptions> = {},
  timeoutMs = 10_000,
): Promise<{ out: AccessLogEntry; inb: AccessLogEntry }> {
  const family = o.family ?? 4;
  const result = await exchange(client, server, { family, clientSend: 100, serverSend: 200, closeFirst: "client", ...o });
  const key = {
    srcAddr: result.client.localAddress,
    srcPort: result.client.localPort,
    dstAddr: result.server.localAddress,
    dstPort: result.server.localPort,
  };
  const isClose = (e: AccessLogEntry) => e.state === "BPF_TCP_CLOSE";
  const out = matchConnection(key, "OUTBOUND");
  const inb = matchConnection(key, "INBOUND");
  const [[outLine], [inbLine]] = await Promise.all([
    agent.waitForLines((e) => out(e) && isClose(e), 1, timeoutMs),
    agent.waitForLines((e) => inb(e) && isClose(e), 1, timeoutMs),
  ]);
  return { out: outLine!, inb: inbLine! };
}

/** The four name fields of a line. */
export const namesOf = (e: AccessLogEntry) => ({
  srcWorkload: e.srcWorkload,
  srcNamespace: e.srcNamespace,
  dstWorkload: e.dstWorkload,
  dstNamespace: e.dstNamespace,
});

/** What namesOf gives for a line from `src` to `dst` (null: not a known pod). */
export const expectedNames = (src: PodIdentity | null, dst: PodIdentity | null) => ({
  srcWorkload: src?.name ?? "-",
  srcNamespace: src?.namespace ?? "-",
  dstWorkload: dst?.name ?? "-",
  dstNamespace: dst?.namespace ?? "-",
});

/** Resolves once `predicate` holds, polling every 20 ms; rejects after `timeoutMs`. */
export async function until(what: string, predicate: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}
