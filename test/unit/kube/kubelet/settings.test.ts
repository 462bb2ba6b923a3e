// The kubelet settings of a run: the defaults (NODE_IP/HOST_IP, the service-account files when
// present, 5 s, 2 s), the flags that win over them, and what is said once at start.
import { describe, expect, test } from "bun:test";
import { SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN } from "../../../../src/kube/http.ts";
import { resolveKubeletSettings, settingsNotices } from "../../../../src/kube/kubelet/settings.ts";

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
