// The kubelet and filter flags of `run`: what they accept, the contradictions refused with one
// usage line, and the defaults (NODE_IP/HOST_IP, the service-account files when present).
import { describe, expect, test } from "bun:test";
import { runOptions, usageError } from "../support/cli.ts";
import { SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN } from "../../src/kube/http.ts";
import { resolveKubeletSettings, settingsNotices } from "../../src/kube/kubelet/settings.ts";

describe("kubelet and filter flags", () => {
  test("not given: undefined, so that kube/kubelet/settings.ts applies the defaults", () => {
    const o = runOptions();
    for (const key of ["kubeletHost", "kubeletUrl", "kubeletTokenFile", "kubeletCaFile", "kubeletRefresh", "kubeletHold", "noKubelet", "namespace", "excludeNamespace", "pod"] as const) {
      expect(o[key]).toBeUndefined();
    }
  });

  test("given: checked values; the filters repeat", () => {
    expect(
      runOptions(
        "--kubelet-url", "https://10.0.0.5:10250/pods",
        "--kubelet-token-file", "/run/token",
        "--kubelet-ca-file", "/run/ca.crt",
        "--kubelet-refresh", "2.5",
        "--kubelet-hold", "0",
        "--namespace", "shop", "--namespace=prod",
        "--exclude-namespace", "kube-system",
        "--pod", "web-0", "--pod", "db-7d4b9c8f6d-x2x9q",
      ),
    ).toMatchObject({
      kubeletUrl: "https://10.0.0.5:10250/pods",
      kubeletTokenFile: "/run/token",
      kubeletCaFile: "/run/ca.crt",
      kubeletRefresh: 2.5,
      kubeletHold: 0,
      namespace: ["shop", "prod"],
      excludeNamespace: ["kube-system"],
      pod: ["web-0", "db-7d4b9c8f6d-x2x9q"],
    });
    expect(runOptions("run", "--no-kubelet").noKubelet).toBe(true);
    expect(runOptions("--kubelet-insecure-skip-tls-verify", "--kubelet-host", "fd00::5").kubeletInsecureSkipTlsVerify).toBe(true);
  });

  test.each([
    [["--kubelet-url", "ftp://x/pods"], 'invalid value for --kubelet-url: "ftp://x/pods" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
    [["--kubelet-url", "10.0.0.5:10250"], 'invalid value for --kubelet-url: "10.0.0.5:10250" (expected an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods)'],
    [["--kubelet-host", "a b"], 'invalid value for --kubelet-host: "a b" (expected a host name or IP address)'],
    [["--kubelet-refresh", "0.5"], 'invalid value for --kubelet-refresh: "0.5" (expected a number of seconds from 1 to 3600)'],
    [["--kubelet-hold", "61"], 'invalid value for --kubelet-hold: "61" (expected a number of seconds from 0 to 60)'],
    [["--kubelet-hold"], "missing value for --kubelet-hold (expected a number of seconds from 0 to 60)"],
    [["--namespace", "Shop"], `invalid value for --namespace: "Shop" (expected a namespace name (lower-case letters, digits, '-'))`],
    [["--exclude-namespace", "a_b"], `invalid value for --exclude-namespace: "a_b" (expected a namespace name (lower-case letters, digits, '-'))`],
    [["--pod=-web"], `invalid value for --pod: "-web" (expected a pod name (lower-case letters, digits, '-', '.'))`],
    [["--no-kubelet", "--namespace", "shop"], "--namespace needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [["--no-kubelet", "--kubelet-url", "https://x/pods"], "--kubelet-url needs the kubelet's pod list: it cannot be used with --no-kubelet"],
    [["--kubelet-ca-file", "/ca", "--kubelet-insecure-skip-tls-verify"], "--kubelet-ca-file and --kubelet-insecure-skip-tls-verify contradict each other: give one of them"],
    [["--kubelet-insecure"], "unknown flag --kubelet-insecure (did you mean --kubelet-insecure-skip-tls-verify?)"],
  ])("%j is refused", (argv, message) => {
    expect(usageError(...argv)).toBe(message);
  });
});

describe("kubelet settings", () => {
  const none = () => false;
  const all = () => true;

  test("defaults: 127.0.0.1, no token or CA when the service-account files are absent, 5 s, 2 s", () => {
    expect(resolveKubeletSettings({}, {}, none)).toEqual({
      url: "https://127.0.0.1:10250/pods",
      tokenFile: null,
      caFile: null,
      insecureSkipTlsVerify: false,
      timeoutMs: 5000,
      refreshMs: 5000,
      holdMs: 2000,
    });
  });

  test("NODE_IP, else HOST_IP; --kubelet-host wins; --kubelet-url wins over all; IPv6 in brackets", () => {
    expect(resolveKubeletSettings({}, { HOST_IP: "10.0.0.6" }, none)?.url).toBe("https://10.0.0.6:10250/pods");
    expect(resolveKubeletSettings({}, { NODE_IP: "10.0.0.5", HOST_IP: "10.0.0.6" }, none)?.url).toBe("https://10.0.0.5:10250/pods");
    expect(resolveKubeletSettings({}, { NODE_IP: "fd00::5" }, none)?.url).toBe("https://[fd00::5]:10250/pods");
    expect(resolveKubeletSettings({ kubeletHost: "node-1" }, { NODE_IP: "10.0.0.5" }, none)?.url).toBe("https://node-1:10250/pods");
    expect(resolveKubeletSettings({ kubeletHost: "node-1", kubeletUrl: "http://10.0.0.7:10255/pods" }, {}, none)?.url).toBe("http://10.0.0.7:10255/pods");
  });

  test("the service-account token and CA when present; the flags win", () => {
    const s = resolveKubeletSettings({}, {}, all);
    expect(s).toMatchObject({ tokenFile: SERVICE_ACCOUNT_TOKEN, caFile: SERVICE_ACCOUNT_CA });
    expect(resolveKubeletSettings({ kubeletTokenFile: "/t", kubeletCaFile: "/c" }, {}, all)).toMatchObject({ tokenFile: "/t", caFile: "/c" });
  });

  test("the request timeout follows the refresh period, from 1 to 10 s", () => {
    expect(resolveKubeletSettings({ kubeletRefresh: 1 }, {}, none)?.timeoutMs).toBe(1000);
    expect(resolveKubeletSettings({ kubeletRefresh: 60 }, {}, none)?.timeoutMs).toBe(10_000);
    expect(resolveKubeletSettings({ kubeletHold: 0.5 }, {}, none)?.holdMs).toBe(500);
  });

  test("--no-kubelet: none", () => {
    expect(resolveKubeletSettings({ noKubelet: true })).toBeNull();
  });

  test("what is said once at start: skip-verify, plain HTTP; nothing otherwise", () => {
    const base = resolveKubeletSettings({}, {}, none)!;
    expect(settingsNotices(base)).toEqual([]);
    expect(settingsNotices({ ...base, insecureSkipTlsVerify: true })).toEqual([
      "TLS verification of the kubelet at https://127.0.0.1:10250/pods is OFF (--kubelet-insecure-skip-tls-verify): whoever can intercept that connection can feed us pod names and receives our token",
    ]);
    expect(settingsNotices({ ...base, url: "http://10.0.0.7:10255/pods" })).toEqual([
      "reading pods over plain HTTP from http://10.0.0.7:10255/pods (the kubelet's read-only port): no token is sent, nothing is verified",
    ]);
  });
});
