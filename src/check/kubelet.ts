// The kubelet line of `check`: one GET /pods with the settings `run` would use (the same flags,
// environment and defaults, src/kube/kubelet/settings.ts) and the same client; its words for each
// failure are beside run's (src/kube/failures.ts). The agent runs without the kubelet (every pod
// name is "-"), so a failure here is a warning, never fatal.
import { KUBELET_CHECK_WHAT, kubeletFix } from "../kube/failures.ts";
import { KubeletClient, type FetchResult } from "../kube/kubelet/client.ts";
import { parsePodList } from "../kube/kubelet/pod-list.ts";
import { resolveKubeletSettings } from "../kube/kubelet/settings.ts";
import type { RunOptions } from "../options.ts";
import { type CheckResult, checkLine } from "./report.ts";

const kubeletLine = checkLine("kubelet", "kubelet");
const WITHOUT = "pod names will be -";

/** The verdict on one fetch; pure, for the tests. */
export function kubeletVerdict(url: string, tokenFile: string | null, insecure: boolean, fetched: FetchResult): CheckResult {
  if (!fetched.ok) {
    const { failure } = fetched;
    return kubeletLine.warn(`${KUBELET_CHECK_WHAT[failure.kind]} ${url} (${failure.detail}); ${WITHOUT}`, kubeletFix(failure.kind, tokenFile));
  }
  const list = parsePodList(fetched.text);
  if (!list.ok) {
    return kubeletLine.warn(`invalid pod list from ${url} (${list.problem}); ${WITHOUT}`, kubeletFix("invalid", tokenFile));
  }
  const pods = `${list.pods.length} pod${list.pods.length === 1 ? "" : "s"}`;
  const tls = url.startsWith("http:") ? ", plain HTTP" : insecure ? ", TLS not verified (--kubelet-insecure-skip-tls-verify)" : "";
  return kubeletLine.ok(`${url} lists ${pods}${tls}`);
}

export async function kubeletCheck(flags: Partial<RunOptions>): Promise<CheckResult> {
  const settings = resolveKubeletSettings(flags);
  if (settings === null) return kubeletLine.skip(`skipped (--no-kubelet): ${WITHOUT}`);
  const fetched = await new KubeletClient(settings).fetchPods();
  return kubeletVerdict(settings.url, settings.tokenFile, settings.insecureSkipTlsVerify, fetched);
}
