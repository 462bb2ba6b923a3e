// The kubelet line of `check`: one GET /pods with the settings `run` would use (the same flags,
// environment and defaults, src/kube/config.ts) and the same client. The agent runs without the
// kubelet (every pod name is "-"), so a failure here is a warning, never fatal.
import { resolveKubeletSettings } from "../kube/config.ts";
import type { RunOptions } from "../options.ts";
import { KubeletClient, type FetchResult, type RefreshFailure } from "../kube/kubelet-client.ts";
import { parsePodList } from "../kube/pod-list.ts";
import type { CheckResult } from "./report.ts";

const base = { id: "kubelet", label: "kubelet" } as const;
const WITHOUT = "pod names will be -";

function fixFor(failure: RefreshFailure, tokenFile: string | null): string {
  switch (failure.kind) {
    case "credentials":
      return "check the files given to --kubelet-token-file and --kubelet-ca-file";
    case "unreachable":
    case "timeout":
      return "name the kubelet (NODE_IP, --kubelet-host or --kubelet-url) and let this host reach its port 10250, or run with --no-kubelet";
    case "tls":
      return "give the CA that signed the kubelet's certificate with --kubelet-ca-file, or --kubelet-insecure-skip-tls-verify";
    case "unauthorized":
      return tokenFile === null
        ? "give a service-account token with --kubelet-token-file (in a pod: automountServiceAccountToken)"
        : `check the token in ${tokenFile} (--kubelet-token-file)`;
    case "forbidden":
      return 'grant the service account RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and nodes/proxy (older): scripts/deploy/10-rbac.yaml';
    case "http":
    case "invalid":
      return "check that --kubelet-url names a kubelet's /pods (https://<node>:10250/pods)";
  }
}

const WHAT: Record<RefreshFailure["kind"], string> = {
  credentials: "cannot use the credentials",
  unreachable: "cannot reach",
  timeout: "no answer in time from",
  tls: "cannot verify the TLS certificate of",
  unauthorized: "credentials refused (401) by",
  forbidden: "pod list forbidden (403) by",
  http: "HTTP error from",
  invalid: "invalid pod list from",
};

/** The verdict on one fetch; pure, for the tests. */
export function kubeletVerdict(url: string, tokenFile: string | null, insecure: boolean, fetched: FetchResult): CheckResult {
  if (!fetched.ok) {
    const { failure } = fetched;
    return {
      ...base,
      status: "warn",
      detail: `${WHAT[failure.kind]} ${url} (${failure.detail}); ${WITHOUT}`,
      fix: fixFor(failure, tokenFile),
    };
  }
  const list = parsePodList(fetched.text);
  if (!list.ok) {
    return {
      ...base,
      status: "warn",
      detail: `invalid pod list from ${url} (${list.problem}); ${WITHOUT}`,
      fix: fixFor({ kind: "invalid", detail: list.problem }, tokenFile),
    };
  }
  const pods = `${list.pods.length} pod${list.pods.length === 1 ? "" : "s"}`;
  const tls = url.startsWith("http:") ? ", plain HTTP" : insecure ? ", TLS not verified (--kubelet-insecure-skip-tls-verify)" : "";
  return { ...base, status: "ok", detail: `${url} lists ${pods}${tls}` };
}

export async function kubeletCheck(flags: Partial<RunOptions>): Promise<CheckResult> {
  const settings = resolveKubeletSettings(flags);
  if (settings === null) return { ...base, status: "skip", detail: `skipped (--no-kubelet): ${WITHOUT}` };
  const fetched = await new KubeletClient(settings).fetchPods();
  return kubeletVerdict(settings.url, settings.tokenFile, settings.insecureSkipTlsVerify, fetched);
}
