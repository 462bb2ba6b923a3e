/**
 * The API-server source against our local HTTPS API server, in process: paginated lists, a watch
 * whose events arrive split across chunks, bookmarks, a watch that breaks and resumes from its
 * resourceVersion without losing what changed meanwhile, 410 (as an ERROR event and as HTTP) that
 * makes it list again, deletions seen on the re-list, and one stderr line per failure state.
 *
 * Needs openssl. Run: `bun test test/e2e/api-watch.test.ts`.
 */
import { describe, expect, test } from "bun:test";
import { ApiClient } from "../../src/kube/apiserver/client.ts";
import { kubeconfigSettings } from "../../src/kube/apiserver/settings.ts";
import { ApiSource } from "../../src/kube/apiserver/source.ts";
import { ClusterIndex } from "../../src/kube/apiserver/cluster-index.ts";
import { requirement } from "../support/require.ts";
import { type LocalApiServer, serviceObject, sliceObject, startApiServer } from "./api-server.ts";
import { until } from "./kubelet-agent.ts";
import { pod } from "../support/kubelet-pods.ts";
import { kubeletUnavailableReason } from "../support/kubelet-server.ts";

const ready = requirement(kubeletUnavailableReason() === null, kubeletUnavailableReason() ?? "") === null;

async function source(api: LocalApiServer, notices: string[], pageSize = 500) {
  const s = new ApiSource({
    client: new ApiClient(await kubeconfigSettings(api.kubeconfig)),
    index: new ClusterIndex(),
    notice: (m) => notices.push(`warn: ${m}`),
    info: (m) => notices.push(`info: ${m}`),
    pageSize,
    minBackoffMs: 50,
    maxBackoffMs: 200,
  });
  return s;
}

const svc = (i: number) => serviceObject("shop", `svc-${i}`, `10.96.1.${i}`, 80, 8080);

describe.skipIf(!ready)("API-server source against a local API server", () => {
  test("lists in pages, watches, resumes after a break without losing updates, re-lists on 410 (event and HTTP)", async () => {
    await using api = await startApiServer();
    for (let i = 1; i <= 7; i++) api.put("services", svc(i));
    api.put("endpointslices", sliceObject("shop", "svc-1", [{ ip: "10.244.9.2", pod: "web-0" }], 8080));
    api.put("pods", pod({ name: "web-0", namespace: "shop", ip4: "10.244.9.2" }) as Record<string, unknown>);
    const notices: string[] = [];
    const s = await source(api, notices, 3);
    s.start();
    try {
      await until("the first lists", () => s.synced, 5_000);
      expect(api.requests.filter((r) => r.kind === "services" && !r.watch)).toHaveLength(3); // 7 services, pages of 3
      expect(s.index.serviceAtClusterIp("10.96.1.7", 80)?.host).toBe("svc-7.shop.svc.cluster.local");
      expect(s.index.serviceAtEndpoint("10.244.9.2", 8080)?.name).toBe("svc-1");
      expect(s.index.lookupPod("10.244.9.2")?.name).toBe("web-0");
      expect(notices).toEqual([
        `info: the API server at ${api.url} (kubeconfig ${api.kubeconfig}): 7 services, 1 endpoint slices, 1 pods (1 pod IPs) listed; watching for changes`,
      ]);

      // live events (each split across two chunks by the server)
      await until("three watches", () => api.openWatches === 3, 5_000);
      api.put("services", svc(8));
      api.remove("services", "shop", "svc-2");
      await until("the watch events", () => s.index.serviceAtClusterIp("10.96.1.8", 80) !== undefined && s.index.serviceAtClusterIp("10.96.1.2", 80) === undefined, 5_000);

      // bookmarks move the resourceVersion
      api.bookmark();
      await until("the bookmark", () => s.resourceVersions.get("pods") === String(api.resourceVersion), 5_000);

      // a break: what changes meanwhile arrives when the watch resumes from its resourceVersion
      const lists = api.requests.filter((r) => !r.watch).length;
      const rvBefore = s.resourceVersions.get("services");
      api.breakWatches();
      api.put("services", svc(9));
      await until("the change made during the break", () => s.index.serviceAtClusterIp("10.96.1.9", 80) !== undefined, 5_000);
      expect(api.requests.filter((r) => !r.watch).length).toBe(lists); // resumed, not listed again
      expect(api.requests.some((r) => r.kind === "services" && r.watch && r.resourceVersion === rvBefore)).toBe(true);

      // expired (ERROR event with code 410): list again; a deletion hidden by the compaction is seen
      api.breakWatches();
      api.put("services", svc(10));
      api.remove("services", "shop", "svc-3");
      api.compact();
      // (what a list no longer has is dropped when its last page is in)
      await until(
        "the re-list after 410",
        () => s.index.serviceAtClusterIp("10.96.1.10", 80) !== undefined && s.index.serviceAtClusterIp("10.96.1.3", 80) === undefined,
        5_000,
      );
      expect(s.stats.expired).toBeGreaterThanOrEqual(1);

      // expired as HTTP 410
      api.expireAsHttp = true;
      api.breakWatches();
      api.put("services", svc(11));
      api.compact();
      await until("the re-list after HTTP 410", () => s.index.serviceAtClusterIp("10.96.1.11", 80) !== undefined, 5_000);
      expect(api.requests.some((r) => r.watch && r.status === 410)).toBe(true);
      // 410 is no failure; a restart's refused connections are, and each such line is ended by another
      const warnings = notices.filter((n) => n.startsWith("warn:"));
      expect(warnings.filter((n) => !n.includes("cannot reach") && !n.includes("the watch broke"))).toEqual([]);
      await until("every failure state over", () => notices.filter((n) => n.includes("is over")).length === warnings.length, 5_000);
    } finally {
      await s.stop();
    }
  }, 30_000);

  test("down, 403: one line when each starts and one when it ends; the other kinds keep working", async () => {
    await using api = await startApiServer();
    api.put("services", svc(1));
    api.listStatus.pods = 403;
    const notices: string[] = [];
    const s = await source(api, notices);
    s.start();
    try {
      await until("the 403 line", () => notices.some((n) => n.includes("403")), 5_000);
      await until("services listed", () => s.index.serviceAtClusterIp("10.96.1.1", 80) !== undefined, 5_000);
      await Bun.sleep(600); // several retries: still one line
      expect(notices.filter((n) => n.includes("403"))).toEqual([
        `warn: the API server at ${api.url} forbids listing or watching pods (403 Forbidden: pods is forbidden: test): the service account needs RBAC "list" and "watch" on pods, services and endpointslices (discovery.k8s.io); no pods known yet`,
      ]);
      api.listStatus = {};
      await until("pods listed", () => s.synced, 5_000);
      expect(notices).toContain(`info: the API server at ${api.url}: pods: the 403 Forbidden is over`);
    } finally {
      await s.stop();
    }
  }, 30_000);

  test("an invalid object is skipped with one line and the stream goes on; a rotated token is read again after the 401", async () => {
    await using api = await startApiServer();
    const notices: string[] = [];
    const s = await source(api, notices);
    s.start();
    try {
      await until("the first lists", () => s.synced, 5_000);
      await until("three watches", () => api.openWatches === 3, 5_000);
      const bad = svc(1);
      (bad.spec as { ports: unknown[] }).ports = [{ name: "http", protocol: "TCP", port: "eighty" }];
      api.put("services", bad);
      api.put("services", svc(2));
      await until("the next service", () => s.index.serviceAtClusterIp("10.96.1.2", 80) !== undefined, 5_000);
      expect(notices.filter((n) => n.includes("invalid"))).toEqual([
        `warn: the API server at ${api.url} sent invalid services (skipped shop/svc-1: spec.ports.0.port: Invalid type: Expected number but received "eighty"); keeping what is known of services`,
      ]);
      // rotation: the old token is refused once, the file is read again, and the watch comes back
      api.rotateToken();
      api.breakWatches();
      api.put("services", svc(3));
      await until("the service added after the rotation", () => s.index.serviceAtClusterIp("10.96.1.3", 80) !== undefined, 10_000);
      expect(api.requests.some((r) => r.status === 401)).toBe(true);
      expect(notices.some((n) => n.includes("refused our credentials"))).toBe(true);
      await until("the 401 over", () => notices.some((n) => n.includes("the 401 Unauthorized is over")), 5_000);
    } finally {
      await s.stop();
    }
  }, 30_000);

  test("stopping during a slow list returns at once", async () => {
    await using api = await startApiServer();
    api.listDelayMs = 20_000;
    const s = await source(api, []);
    s.start();
    await until("the lists asked for", () => api.requests.length === 3, 5_000);
    const t0 = performance.now();
    await s.stop();
    expect(performance.now() - t0).toBeLessThan(1_000);
  }, 30_000);

  test("watches that end at once are not asked for again in a tight loop", async () => {
    await using api = await startApiServer();
    api.endWatchesAtOnce = true;
    const s = await source(api, []);
    s.start();
    try {
      await until("the first lists", () => s.synced, 5_000);
      const before = api.requests.filter((r) => r.watch).length;
      await Bun.sleep(1_000);
      // minBackoffMs is 50 here: at most ~20 per kind per second, not thousands
      expect(api.requests.filter((r) => r.watch).length - before).toBeLessThan(3 * 25);
      api.put("services", svc(1));
      await until("an update still arrives", () => s.index.serviceAtClusterIp("10.96.1.1", 80) !== undefined, 5_000);
    } finally {
      await s.stop();
    }
  }, 30_000);
});
