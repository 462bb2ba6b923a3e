// `check`'s API-server line against a local API server of our own (plain HTTP, a token, the three
// lists `run` watches): listing, a 403 naming the RBAC to grant, an unreachable server, not in a
// cluster, --no-kube-api, an unusable kubeconfig.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { apiServerCheck } from "../../../src/check/api-server.ts";
import { formatCheckLine } from "../../../src/check/report.ts";

const TOKEN = "check-test-token";
let server: Server<undefined>;
let dir: string;
let forbid = "";

function kubeconfig(url: string): string {
  const file = join(dir, `kubeconfig-${Math.random().toString(36).slice(2)}`);
  writeFileSync(
    file,
    [
      "apiVersion: v1",
      "kind: Config",
      "current-context: test",
      "clusters:",
      `  - name: test`,
      `    cluster: { server: "${url}" }`,
      "users:",
      `  - name: test`,
      `    user: { token: ${TOKEN} }`,
      "contexts:",
      "  - name: test",
      "    context: { cluster: test, user: test }",
    ].join("\n"),
  );
  return file;
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "check-api-"));
  server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    fetch(request) {
      if (request.headers.get("authorization") !== `Bearer ${TOKEN}`) return new Response("Unauthorized", { status: 401 });
      const path = new URL(request.url).pathname;
      if (forbid !== "" && path.endsWith(`/${forbid}`)) {
        return Response.json(
          { kind: "Status", message: `${forbid} is forbidden: User "system:serviceaccount:kmesh-accesslog:kmesh-accesslog" cannot list resource "${forbid}"` },
          { status: 403 },
        );
      }
      if (["/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices", "/api/v1/pods"].includes(path)) {
        return Response.json({ kind: "List", metadata: { resourceVersion: "42" }, items: [] });
      }
      return new Response("404 page not found", { status: 404 });
    },
  });
});

afterAll(async () => {
  await server?.stop(true);
  rmSync(dir, { recursive: true, force: true });
});

const url = () => `http://127.0.0.1:${server.port}`;
const notInCluster = {};

describe("API-server line", () => {
  test("the three lists `run` watches answer", async () => {
    forbid = "";
    const file = kubeconfig(url());
    expect(formatCheckLine(await apiServerCheck({ kubeconfig: file }, notInCluster))).toBe(
      `✔ API server: ${url()} (kubeconfig ${file}) lists services, endpointslices, pods`,
    );
  });

  test("a 403 is a warning that names the RBAC to grant", async () => {
    forbid = "endpointslices";
    const file = kubeconfig(url());
    const result = await apiServerCheck({ kubeconfig: file }, notInCluster);
    expect(result.status).toBe("warn");
    expect(formatCheckLine(result)).toStartWith(`⚠ API server: ${url()} (kubeconfig ${file}): listing endpointslices failed (forbidden: `);
    expect(formatCheckLine(result)).toEndWith(
      '; services will be addresses and remote pods - — fix: grant the service account RBAC "list" and "watch" on pods, services ' +
        "and endpointslices.discovery.k8s.io: scripts/deploy/10-rbac.yaml",
    );
  });

  test("an unreachable server is a warning", async () => {
    const probe = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("") });
    const closed = `http://127.0.0.1:${probe.port}`;
    await probe.stop(true);
    const result = await apiServerCheck({ kubeconfig: kubeconfig(closed) }, notInCluster);
    expect(result.status).toBe("warn");
    expect(result.fix).toBe(
      "let this host reach the API server (KUBERNETES_SERVICE_HOST, or the kubeconfig's server), or run with --no-kube-api",
    );
  });

  test("not in a cluster, or --no-kube-api: not used", async () => {
    expect(formatCheckLine(await apiServerCheck({}, notInCluster))).toBe(
      "- API server: not used (not in a cluster; --kube-api or --kubeconfig to use one): services will be addresses and remote pods -",
    );
    expect(formatCheckLine(await apiServerCheck({ noKubeApi: true }, notInCluster))).toBe(
      "- API server: not used (--no-kube-api): services will be addresses and remote pods -",
    );
  });

  test("asked for but unusable (run would refuse to start): a failure", async () => {
    const result = await apiServerCheck({ kubeconfig: join(dir, "missing") }, notInCluster);
    expect(formatCheckLine(result)).toBe(
      `✘ API server: cannot read the kubeconfig ${join(dir, "missing")}: ENOENT — fix: give a usable --kubeconfig, or run with --no-kube-api`,
    );
  });
});
