// Every way reading the kubelet or the API server fails (http.ts), in words: what the failure is
// called when it is over, what `run` says once on stderr when it starts, and what `check` advises.
// Both sources say each failure once when it starts and once when it ends (FailureState), never
// once per attempt.
import type { FailureKind } from "./http.ts";

/** What the failures are called in "… is over". */
const NOUN: Record<FailureKind, string> = {
  credentials: "the credentials problem",
  unreachable: "the connection failure",
  timeout: "the timeout",
  tls: "the TLS failure",
  unauthorized: "the 401 Unauthorized",
  forbidden: "the 403 Forbidden",
  http: "the HTTP error",
  invalid: "the invalid answer",
  expired: "the expired resourceVersion",
};

/**
 * The failure state of one source (the kubelet; one kind of object of the API server; the feed):
 * one line when a failure starts, one when it ends. `nouns`: what this source calls a kind
 * otherwise than NOUN does.
 */
export class FailureState<Kind extends FailureKind | "invalid-object"> {
  #kind: Kind | null = null;

  constructor(
    /** who fails, as the "… is over" line begins: "the kubelet at https://…" */
    private readonly where: string,
    private readonly say: { notice: (message: string) => void; info: (message: string) => void },
    private readonly nouns: Partial<Record<Kind, string>> = {},
  ) {}

  get kind(): Kind | null {
    return this.#kind;
  }

  #over(kind: Kind): string {
    return `${this.where}: ${this.nouns[kind] ?? NOUN[kind as FailureKind]} is over`;
  }

  /** Enters the state `kind` and says `message()`, unless already in it (then nothing). */
  fail(kind: Kind, message: () => string): void {
    if (this.#kind === kind) return;
    if (this.#kind !== null) this.say.info(this.#over(this.#kind));
    this.#kind = kind;
    this.say.notice(message());
  }

  /** Leaves the failure state, saying so (followed by `more`); false when there was none. */
  recover(more = ""): boolean {
    if (this.#kind === null) return false;
    this.say.info(`${this.#over(this.#kind)}${more}`);
    this.#kind = null;
    return true;
  }
}

// ── The kubelet ──────────────────────────────────────────────────────────────

export type KubeletFailureKind = Exclude<FailureKind, "expired">;

/** What run says when a failure of the kubelet at `url` starts; `tokenFile`: the token in use. */
export function kubeletFailureMessage(kind: KubeletFailureKind, detail: string, url: string, tokenFile: string | null): string {
  const at = `the kubelet at ${url}`;
  const messages: Record<KubeletFailureKind, string> = {
    credentials: `cannot use the kubelet credentials (${detail}): check --kubelet-token-file and --kubelet-ca-file`,
    unreachable: `cannot reach ${at} (${detail})`,
    timeout: `${at} did not answer in time (${detail})`,
    tls: `cannot verify the TLS certificate of ${at} (${detail}): give the CA that signed it with --kubelet-ca-file, or turn verification off with --kubelet-insecure-skip-tls-verify`,
    unauthorized:
      `${at} refused our credentials (${detail}): ` +
      (tokenFile === null ? "no bearer token was sent; give one with --kubelet-token-file" : `check the bearer token in ${tokenFile} (--kubelet-token-file)`),
    forbidden: `${at} forbids the pod list (${detail}): the service account needs RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and on nodes/proxy (older clusters)`,
    http: `${at} answered HTTP ${detail}`,
    invalid: `${at} sent an invalid pod list (${detail})`,
  };
  return messages[kind];
}

/** How check's kubelet line says a failure: "<what> <url> (<detail>)". */
export const KUBELET_CHECK_WHAT: Record<KubeletFailureKind, string> = {
  credentials: "cannot use the credentials",
  unreachable: "cannot reach",
  timeout: "no answer in time from",
  tls: "cannot verify the TLS certificate of",
  unauthorized: "credentials refused (401) by",
  forbidden: "pod list forbidden (403) by",
  http: "HTTP error from",
  invalid: "invalid pod list from",
};

/** The fix check's kubelet line gives. */
export function kubeletFix(kind: KubeletFailureKind, tokenFile: string | null): string {
  const reach = "name the kubelet (NODE_IP, --kubelet-host or --kubelet-url) and let this host reach its port 10250, or run with --no-kubelet";
  const url = "check that --kubelet-url names a kubelet's /pods (https://<node>:10250/pods)";
  const fixes: Record<KubeletFailureKind, string> = {
    credentials: "check the files given to --kubelet-token-file and --kubelet-ca-file",
    unreachable: reach,
    timeout: reach,
    tls: "give the CA that signed the kubelet's certificate with --kubelet-ca-file, or --kubelet-insecure-skip-tls-verify",
    unauthorized:
      tokenFile === null ? "give a service-account token with --kubelet-token-file (in a pod: automountServiceAccountToken)" : `check the token in ${tokenFile} (--kubelet-token-file)`,
    forbidden: 'grant the service account RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and nodes/proxy (older): scripts/deploy/10-rbac.yaml',
    http: url,
    invalid: url,
  };
  return fixes[kind];
}

// ── The API server ───────────────────────────────────────────────────────────

/** Its failure states: a failure kind, or an object skipped for failing its schema. */
export type ApiFailureState = FailureKind | "invalid-object";

/** What run says when a failure of the API server at `server` starts, for the objects `kind`. */
export function apiFailureMessage(failure: FailureKind, detail: string, server: string, kind: string): string {
  const at = `the API server at ${server}`;
  const messages: Record<FailureKind, string> = {
    credentials: `cannot use the API-server credentials (${detail}): check the service-account token or --kubeconfig`,
    unreachable: `cannot reach ${at} for ${kind} (${detail})`,
    timeout: `${at} did not answer in time for ${kind} (${detail})`,
    tls: `cannot verify the TLS certificate of ${at} (${detail}): check the CA (service-account ca.crt or the kubeconfig's certificate-authority)`,
    unauthorized: `${at} refused our credentials for ${kind} (${detail}): check the service-account token or the kubeconfig user`,
    forbidden: `${at} forbids listing or watching ${kind} (${detail}): the service account needs RBAC "list" and "watch" on pods, services and endpointslices (discovery.k8s.io)`,
    expired: `${at} answered ${kind} with HTTP ${detail}`,
    http: `${at} answered ${kind} with HTTP ${detail}`,
    invalid: `${at} sent invalid ${kind} (${detail})`,
  };
  return messages[failure];
}

/** The fix check's API-server line gives. */
export function apiFix(kind: FailureKind): string {
  switch (kind) {
    case "forbidden":
      return 'grant the service account RBAC "list" and "watch" on pods, services and endpointslices.discovery.k8s.io: scripts/deploy/10-rbac.yaml';
    case "unauthorized":
    case "credentials":
      return "check the service-account token (automountServiceAccountToken) or the --kubeconfig user";
    case "tls":
      return "check the CA: the service-account ca.crt, or the kubeconfig's certificate-authority";
    case "unreachable":
    case "timeout":
      return "let this host reach the API server (KUBERNETES_SERVICE_HOST, or the kubeconfig's server), or run with --no-kube-api";
    default:
      return "check that the server is a Kubernetes API server, or run with --no-kube-api";
  }
}

// ── The feed (--feed) ────────────────────────────────────────────────────────

/** What run says when the feed at `url` cannot be had; `fallback`: the API server watched meanwhile, if any. */
export function feedFailureMessage(kind: FailureKind, detail: string, url: string, fallback: string | null): string {
  const meanwhile = fallback === null ? "keeping what is known (no API server to fall back to)" : `naming from the API server at ${fallback} meanwhile`;
  switch (kind) {
    case "credentials":
      return `cannot use the feed's token (${detail}): check --feed-token-file; ${meanwhile}`;
    case "tls":
      return `cannot verify the TLS certificate of the feed at ${url} (${detail}): give the CA that signed it with --feed-ca-file; ${meanwhile}`;
    case "unauthorized":
    case "forbidden":
      return `the feed at ${url} refused this agent (${detail}); ${meanwhile}`;
    case "invalid":
      return `the feed at ${url} sent an invalid frame (${detail}); ${meanwhile}`;
    case "timeout":
      return `the feed at ${url} went silent (${detail}); ${meanwhile}`;
    default:
      return `cannot reach the feed at ${url} (${detail}); ${meanwhile}`;
  }
}
