// `check`'s kubelet line: every failure kind of the kubelet client becomes a warning (the agent
// runs without pod names) with the fix for that kind; a good list is counted.
import { describe, expect, test } from "bun:test";
import { kubeletVerdict } from "../../../src/check/kubelet.ts";
import { formatCheckLine } from "../../../src/check/report.ts";
import type { KubeletFailureKind as FailureKind } from "../../../src/kube/failures.ts";

const URL_ = "https://10.0.0.5:10250/pods";
const TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
const fail = (kind: FailureKind, detail: string) => ({ ok: false as const, failure: { kind, detail } });
const list = (n: number) =>
  JSON.stringify({ kind: "PodList", items: Array.from({ length: n }, (_, i) => ({ metadata: { name: `p${i}`, namespace: "default" } })) });

describe("kubelet line", () => {
  test("a pod list is counted", () => {
    const text = list(3);
    expect(formatCheckLine(kubeletVerdict(URL_, TOKEN, false, { ok: true, text, bytes: text.length }))).toBe(
      "✔ kubelet: https://10.0.0.5:10250/pods lists 3 pods",
    );
    expect(formatCheckLine(kubeletVerdict(URL_, TOKEN, true, { ok: true, text: list(1), bytes: 1 }))).toBe(
      "✔ kubelet: https://10.0.0.5:10250/pods lists 1 pod, TLS not verified (--kubelet-insecure-skip-tls-verify)",
    );
    expect(formatCheckLine(kubeletVerdict("http://10.0.0.5:10255/pods", null, false, { ok: true, text: '{"items":null}', bytes: 1 }))).toBe(
      "✔ kubelet: http://10.0.0.5:10255/pods lists 0 pods, plain HTTP",
    );
  });

  const cases: [FailureKind, string, string, string | null][] = [
    [
      "forbidden",
      "403 Forbidden: Forbidden (user=system:serviceaccount:kube-system:x, verb=get, resource=nodes, subresource(s)=[proxy])",
      'grant the service account RBAC "get" on nodes/pods (Kubernetes 1.33 and later) and nodes/proxy (older): scripts/deploy/10-rbac.yaml',
      TOKEN,
    ],
    ["unauthorized", "401 Unauthorized", `check the token in ${TOKEN} (--kubelet-token-file)`, TOKEN],
    ["unauthorized", "401 Unauthorized", "give a service-account token with --kubelet-token-file (in a pod: automountServiceAccountToken)", null],
    [
      "tls",
      "UNABLE_TO_VERIFY_LEAF_SIGNATURE: unable to verify the first certificate",
      "give the CA that signed the kubelet's certificate with --kubelet-ca-file, or --kubelet-insecure-skip-tls-verify",
      TOKEN,
    ],
    [
      "unreachable",
      "ECONNREFUSED: Unable to connect",
      "name the kubelet (NODE_IP, --kubelet-host or --kubelet-url) and let this host reach its port 10250, or run with --no-kubelet",
      TOKEN,
    ],
    ["credentials", "cannot read /x: ENOENT", "check the files given to --kubelet-token-file and --kubelet-ca-file", TOKEN],
    ["http", "404 Not Found", "check that --kubelet-url names a kubelet's /pods (https://<node>:10250/pods)", TOKEN],
  ];
  const WHAT: Partial<Record<FailureKind, string>> = {
    forbidden: "pod list forbidden (403) by",
    unauthorized: "credentials refused (401) by",
    tls: "cannot verify the TLS certificate of",
    unreachable: "cannot reach",
    credentials: "cannot use the credentials",
    http: "HTTP error from",
  };
  test.each(cases)("%s is a warning with its fix", (kind, detail, fix, tokenFile) => {
    const result = kubeletVerdict(URL_, tokenFile, false, fail(kind, detail));
    expect(result.status).toBe("warn");
    expect(formatCheckLine(result)).toBe(`⚠ kubelet: ${WHAT[kind]} ${URL_} (${detail}); pod names will be - — fix: ${fix}`);
  });

  test("an answer that is not a pod list is a warning naming the problem", () => {
    expect(formatCheckLine(kubeletVerdict(URL_, TOKEN, false, { ok: true, text: "<html>", bytes: 6 }))).toStartWith(
      `⚠ kubelet: invalid pod list from ${URL_} (not JSON: `,
    );
  });
});
