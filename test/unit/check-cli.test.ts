// The `check` command line: the libbpf and kubelet flags of `run`, --no-kubelet, --json; the same
// contradictions refused as for `run`; anything else is a usage error.
import { describe, expect, test } from "bun:test";
import { parseCommandLine } from "../../src/cli.ts";
import { UsageError } from "../../src/errors.ts";

const none = {
  libbpf: undefined,
  kubeletHost: undefined,
  kubeletUrl: undefined,
  kubeletTokenFile: undefined,
  kubeletCaFile: undefined,
  kubeletInsecureSkipTlsVerify: undefined,
  noKubelet: undefined,
  kubeApi: undefined,
  noKubeApi: undefined,
  kubeconfig: undefined,
};

describe("check command line", () => {
  test("flags reach the options", () => {
    expect(parseCommandLine(["check"])).toEqual({ command: "check", options: { ...none, json: false } });
    expect(parseCommandLine(["check", "--json", "--no-kubelet", "--libbpf", "/x/libbpf.so.1"])).toEqual({
      command: "check",
      options: { ...none, json: true, noKubelet: true, libbpf: "/x/libbpf.so.1" },
    });
    expect(parseCommandLine(["check", "--kubeconfig", "/root/.kube/config"])).toEqual({
      command: "check",
      options: { ...none, json: false, kubeconfig: "/root/.kube/config" },
    });
    expect(parseCommandLine(["check", "--no-kube-api"])).toEqual({ command: "check", options: { ...none, json: false, noKubeApi: true } });
    expect(
      parseCommandLine([
        "check",
        "--kubelet-url",
        "https://127.0.0.1:10250/pods",
        "--kubelet-token-file",
        "/t",
        "--kubelet-insecure-skip-tls-verify",
      ]),
    ).toEqual({
      command: "check",
      options: { ...none, json: false, kubeletUrl: "https://127.0.0.1:10250/pods", kubeletTokenFile: "/t", kubeletInsecureSkipTlsVerify: true },
    });
  });

  const mistakes: [string[], string][] = [
    [["check", "--no-kubelet", "--kubelet-host", "10.0.0.1"], "--kubelet-host needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [
      ["check", "--kubelet-ca-file", "/ca", "--kubelet-insecure-skip-tls-verify"],
      "--kubelet-ca-file and --kubelet-insecure-skip-tls-verify contradict each other: give one of them",
    ],
    [["check", "--kube-api", "--no-kube-api"], "--kube-api and --no-kube-api contradict each other: give one of them"],
    [["check", "--no-kube-api", "--kubeconfig", "/k"], "--kubeconfig needs the API server: it cannot be used with --no-kube-api"],
    [["check", "--jsn"], "unknown flag --jsn (did you mean --json?)"],
    [["check", "--admin-addr"], "unknown flag --admin-addr"],
    [["check", "--duration", "1"], "unknown flag --duration"],
    [["check", "now"], 'unexpected argument "now"'],
    [["check", "--kubelet-url", "ftp://x"], 'invalid value for --kubelet-url: "ftp://x" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
  ];
  test.each(mistakes)("%p is refused", (argv, message) => {
    expect(() => parseCommandLine(argv)).toThrow(new UsageError(message));
  });
});
