// The API-server settings: in-cluster detection, and kubeconfig files (token, tokenFile, client
// certificates inline or as files).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ApiConfigError, kubeconfigSettings, resolveApiSettings } from "../../../../src/kube/apiserver/settings.ts";
import { SERVICE_ACCOUNT_CA, SERVICE_ACCOUNT_TOKEN } from "../../../../src/kube/http.ts";

describe("settings", () => {
  const env = { KUBERNETES_SERVICE_HOST: "10.96.0.1", KUBERNETES_SERVICE_PORT: "443" };
  const files: Record<string, string> = { [SERVICE_ACCOUNT_TOKEN]: "tok", [SERVICE_ACCOUNT_CA]: "-----BEGIN CERTIFICATE-----\n" };
  const exists = (p: string) => p in files;
  const read = (p: string) => {
    if (!(p in files)) throw Object.assign(new Error("ENOENT"), { code: "ENOENT", path: p });
    return files[p]!;
  };

  test("in a cluster: on by default, from the service account; off with --no-kube-api; off outside one", async () => {
    await expect(resolveApiSettings({}, env, exists, read)).resolves.toMatchObject({
      server: "https://10.96.0.1:443",
      tokenFile: SERVICE_ACCOUNT_TOKEN,
      ca: files[SERVICE_ACCOUNT_CA],
      origin: "in-cluster",
    });
    await expect(resolveApiSettings({ noKubeApi: true }, env, exists, read)).resolves.toBeNull();
    await expect(resolveApiSettings({}, {}, exists, read)).resolves.toBeNull();
    await expect(resolveApiSettings({ kubeApi: true }, {}, exists, read)).rejects.toThrow(ApiConfigError);
    expect((await resolveApiSettings({}, { ...env, KUBERNETES_SERVICE_HOST: "fd00::1" }, exists, read))?.server).toBe("https://[fd00::1]:443");
  });

  test("kubeconfig: token user, client-certificate user (files relative to the kubeconfig, and inline data)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kubeconfig-"));
    try {
      writeFileSync(join(dir, "client.crt"), "CERT");
      writeFileSync(join(dir, "client.key"), "KEY");
      const file = join(dir, "config");
      writeFileSync(
        file,
        `apiVersion: v1
kind: Config
current-context: certs
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority-data: ${Buffer.from("CA").toString("base64")}
contexts:
- name: tok
  context: { cluster: c, user: tokuser }
- name: certs
  context: { cluster: c, user: certuser, namespace: default }
users:
- name: tokuser
  user: { token: abc }
- name: certuser
  user:
    client-certificate: client.crt
    client-key-data: ${Buffer.from("KEY2").toString("base64")}
preferences: {}
`,
      );
      await expect(kubeconfigSettings(file)).resolves.toEqual({
        server: "https://127.0.0.1:6443",
        token: null,
        tokenFile: null,
        ca: "CA",
        cert: "CERT",
        key: "KEY2",
        insecureSkipTlsVerify: false,
        origin: `kubeconfig ${file}`,
      });
      writeFileSync(file, readFileSync(file, "utf8").replace("current-context: certs", "current-context: tok"));
      await expect(kubeconfigSettings(file)).resolves.toMatchObject({ token: "abc", cert: null, key: null });
      writeFileSync(file, "users: [\n");
      await expect(kubeconfigSettings(file)).rejects.toThrow(/is not YAML/);
      writeFileSync(file, "current-context: x\ncontexts: []\n");
      await expect(kubeconfigSettings(file)).rejects.toThrow('has no context named "x"');
      writeFileSync(
        file,
        "contexts: [{name: e, context: {cluster: c, user: u}}]\nclusters: [{name: c, cluster: {server: 'https://h'}}]\nusers: [{name: u, user: {exec: {command: aws}}}]\n",
      );
      await expect(kubeconfigSettings(file)).rejects.toThrow(/exec or auth-provider plugin/);
      await expect(kubeconfigSettings(join(dir, "missing"))).rejects.toThrow(/cannot read the kubeconfig .*ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
