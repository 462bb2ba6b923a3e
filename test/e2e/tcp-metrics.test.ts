/**
 * Kmesh's TCP metrics, end to end: the compiled agent names both ends from a local kubelet and a
 * local API server (a Service whose ClusterIP is an iptables DNAT rule in the client pod, as
 * kube-proxy makes it), counts real connections between test pods, and serves the exposition text
 * on --metrics-addr while workload metrics are on.
 *
 * Asserts: nothing listens until POST /workload_metrics?enable=true; a pod-to-pod and a
 * pod-to-ClusterIP connection move their series by exactly the figures of their close lines, with
 * every label as Istio defines it; counters never go down; `promtool check metrics` accepts the
 * text; the series count is in /metrics; a connection open longer than the report interval has a
 * series of its own with its latest figures, gone at its close; the switch turns everything off
 * and on at run time; a deleted pod's series go after --metrics-grace; --metrics-prefix istio.
 *
 * Needs root, iptables, openssl, promtool (scripts/setup) and dist/kmesh-accesslog (scripts/build).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type ParsedSample, parseExposition } from "../../src/admin/metrics.ts";
import { type AccessLogEntry, type Agent, agentUnavailableReason } from "./agent.ts";
import { adminRequest, freePort, metrics, privateLockFile, runBinary, waitReady } from "./admin-support.ts";
import { type LocalApiServer, serviceObject, sliceObject, startApiServer } from "./api-server.ts";
import { runClient, startServer, waitUntilCapturing } from "./exchange.ts";
import { type PodIdentity, podEntry, startKubeletAgent, until } from "./kubelet-agent.ts";
import { kubeletUnavailableReason, type LocalKubelet, startKubelet } from "../support/kubelet-server.ts";
import { checkMetrics, promtoolPath } from "../support/promtool.ts";
import { createTestNode, type Pod, type TestNode } from "./node.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet(
  "TCP metrics",
  netnsUnavailableReason() ??
    agentUnavailableReason() ??
    kubeletUnavailableReason() ??
    (Bun.which("iptables") ? null : "needs iptables") ??
    (promtoolPath() ? null : "needs promtool (scripts/setup fetches it)"),
);

const ID = {
  client: { name: "client-7d4b9c8f6d-x2x9q", namespace: "shop" },
  server: { name: "web-5f6d7c8b9a-k8s2p", namespace: "shop" },
} satisfies Record<string, PodIdentity>;
type Name = keyof typeof ID;
const EXTRA = {
  client: { labels: { app: "client", version: "v1" }, serviceAccount: "buyer" },
  server: { labels: { app: "web", version: "v2" }, serviceAccount: "web" },
};

const CLUSTER_IP = "10.96.77.10";
const SERVICE_PORT = 80;
const TARGET_PORT = 8080;
const SERVICE_HOST = "web.shop.svc.cluster.local";

/** What Istio calls the client and the server pod, as source_* and destination_* labels. */
const peer = (side: "source" | "destination", who: Name) => {
  const [workload, app, version, sa] = who === "client" ? ["client", "client", "v1", "buyer"] : ["web", "web", "v2", "web"];
  return {
    [`${side}_workload`]: workload,
    [`${side}_canonical_service`]: app,
    [`${side}_canonical_revision`]: version,
    [`${side}_workload_namespace`]: "shop",
    [`${side}_principal`]: `spiffe://cluster.local/ns/shop/sa/${sa}`,
    [`${side}_app`]: app,
    [`${side}_version`]: version,
    [`${side}_cluster`]: "Kubernetes",
  };
};
const TAIL = { request_protocol: "tcp", response_flags: "-", connection_security_policy: "unknown" };

describe.skipIf(!ready)("Kmesh's TCP metrics", () => {
  let node: TestNode;
  let kubelet: LocalKubelet;
  let api: LocalApiServer;
  let agent: Agent;
  const pods = {} as Record<Name, Pod>;
  const adminAddr = `127.0.0.1:${freePort()}`;
  const metricsAddr = `127.0.0.1:${freePort()}`;
  /** Every sample of every scrape, for the monotonic check. */
  const scrapes: ParsedSample[][] = [];

  async function scrape(path = "/status/metric", at = metricsAddr): Promise<ParsedSample[]> {
    const response = await fetch(`http://${at}${path}`, { signal: AbortSignal.timeout(5_000) });
    expect(response.status).toBe(200);
    expect(response.headers.get("content-type")).toBe("text/plain; version=0.0.4; charset=utf-8");
    const samples = parseExposition(await response.text());
    if (at === metricsAddr) scrapes.push(samples);
    return samples;
  }

  /** The samples that name a test pod. */
  const ours = (samples: ParsedSample[]) => samples.filter((s) => s.labels.source_workload === "client" || s.labels.destination_workload === "web");

  const value = (samples: ParsedSample[], name: string, labels: Record<string, string>) =>
    samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

  /** A connection from the client to target:port, served by the server pod on listenPort; its two close lines. */
  async function connect(target: string, port: number, listenPort: number, o: { send?: number; recv?: number; holdMs?: number } = {}) {
    const send = o.send ?? 1000;
    const recv = o.recv ?? 5000;
    const server = await startServer(pods.server, { host: pods.server.ip4, port: listenPort, recv: send, send: recv });
    try {
      const report = await runClient(pods.client, { host: target, port, send, recv, closeFirst: true, holdMs: o.holdMs });
      if (report.error) throw new Error(`client failed: ${report.error}`);
      await server.finished();
      return await closeLines(report.localPort);
    } finally {
      server.kill();
    }
  }

  async function closeLines(clientPort: number): Promise<{ out: AccessLogEntry; inb: AccessLogEntry }> {
    const mine = (direction: string) => (e: AccessLogEntry) =>
      e.direction === direction && e.srcAddr === pods.client.ip4 && e.srcPort === clientPort && e.state === "BPF_TCP_CLOSE";
    const [[out], [inb]] = await Promise.all([agent.waitForLines(mine("OUTBOUND"), 1, 10_000), agent.waitForLines(mine("INBOUND"), 1, 10_000)]);
    return { out: out!, inb: inb! };
  }

  beforeAll(async () => {
    node = await createTestNode({ pods: ["client", "server"] });
    for (const name of Object.keys(ID) as Name[]) pods[name] = node.pod(name);
    pods.client.run(["ip", "route", "add", "10.96.0.0/16", "dev", "eth0"]);
    pods.client.iptables(["-t", "nat", "-A", "OUTPUT", "-d", CLUSTER_IP, "-p", "tcp", "--dport", String(SERVICE_PORT), "-j", "DNAT", "--to-destination", `${pods.server.ip4}:${TARGET_PORT}`]);
    const entries = (Object.keys(ID) as Name[]).map((name) => podEntry(pods[name], ID[name], EXTRA[name]));
    kubelet = await startKubelet({ pods: entries });
    api = await startApiServer();
    for (const entry of entries) api.put("pods", entry);
    api.put("services", serviceObject("shop", "web", CLUSTER_IP, SERVICE_PORT, TARGET_PORT));
    api.put("endpointslices", sliceObject("shop", "web", [{ ip: pods.server.ip4, pod: ID.server.name }], TARGET_PORT));
    agent = startKubeletAgent(kubelet, {
      args: [
        "--kubeconfig", api.kubeconfig,
        "--kubelet-refresh", "1",
        "--admin-addr", adminAddr,
        "--metrics-addr", metricsAddr,
        "--metrics-grace", "1",
        "--report-interval", "0.5",
      ],
    });
    await waitReady(agent, adminAddr);
    await waitUntilCapturing(agent, pods.client, pods.server);
    await until("the API server's three watches", () => api.openWatches === 3, 10_000);
  }, 60_000);

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
    await api?.[Symbol.asyncDispose]();
    await kubelet?.[Symbol.asyncDispose]();
    await node?.[Symbol.asyncDispose]();
  });

  test("off at start: nothing listens on the metrics address; POST /workload_metrics?enable=true serves it", async () => {
    await expect(fetch(`http://${metricsAddr}/status/metric`)).rejects.toThrow();
    expect((await adminRequest(adminAddr, "POST", "/workload_metrics?enable=true")).status).toBe(200);
    // What was read while they were off is not counted: no series of the test pods yet (the
    // node's other connections may have some by now: every TCP connection of the host counts).
    expect(ours(await scrape())).toEqual([]);
    expect(ours(await scrape("/metrics"))).toEqual([]);
    const other = await fetch(`http://${metricsAddr}/stats`);
    expect(other.status).toBe(404);
    expect(await other.text()).toBe('404 page not found: "/stats"\nthis address serves: GET /status/metric, GET /metrics\n');
  });

  test("pod to pod: the workload and service series move by the close lines' figures, every label as Istio defines it", async () => {
    const before = await scrape();
    const { out, inb } = await connect(pods.server.ip4, 9090, 9090, { send: 1234, recv: 56789 });
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);

    const outbound = {
      reporter: "source",
      ...peer("source", "client"),
      destination_pod_address: pods.server.ip4,
      destination_pod_namespace: "shop",
      destination_pod_name: ID.server.name,
      ...peer("destination", "server"),
      ...TAIL,
    };
    const series = after.find((s) => s.name === "kmesh_tcp_workload_sent_bytes_total" && s.labels.reporter === "source" && s.labels.destination_pod_name === ID.server.name);
    expect(series?.labels).toEqual(outbound);
    expect(Object.keys(series!.labels)).toEqual(Object.keys(outbound)); // Kmesh's order

    expect<Record<string, number | null>>({
      sent: moved("kmesh_tcp_workload_sent_bytes_total", outbound),
      received: moved("kmesh_tcp_workload_received_bytes_total", outbound),
      opened: moved("kmesh_tcp_workload_connections_opened_total", outbound),
      closed: moved("kmesh_tcp_workload_connections_closed_total", outbound),
      failed: moved("kmesh_tcp_workload_conntections_failed_total", outbound),
      retrans: moved("kmesh_tcp_retrans_total", outbound),
      lost: moved("kmesh_tcp_packet_loss_total", outbound),
    }).toEqual({ sent: out.sentBytes, received: out.receivedBytes, opened: 1, closed: 1, failed: 0, retrans: out.retransmissions, lost: out.packetLoss });
    expect(out.sentBytes).toBe(1234);

    const inbound = { ...outbound, reporter: "destination" };
    expect(moved("kmesh_tcp_workload_sent_bytes_total", inbound)).toBe(inb.sentBytes!);
    expect(moved("kmesh_tcp_workload_received_bytes_total", inbound)).toBe(inb.receivedBytes!);

    // No Service at that port: the destination IP stands for it, as in the line's dst.service.
    const service = {
      reporter: "source",
      ...peer("source", "client"),
      destination_service: pods.server.ip4,
      destination_service_namespace: "shop",
      destination_service_name: "unknown",
      ...peer("destination", "server"),
      ...TAIL,
    };
    expect(out.dstService).toBe(pods.server.ip4);
    expect(moved("kmesh_tcp_sent_bytes_total", service)).toBe(out.sentBytes!);
    expect(moved("kmesh_tcp_received_bytes_total", service)).toBe(out.receivedBytes!);
    expect(moved("kmesh_tcp_connections_opened_total", service)).toBe(1);
  });

  test("pod to ClusterIP: the service series names the Service, the workload series the backend reached", async () => {
    const before = await scrape();
    const { out } = await connect(CLUSTER_IP, SERVICE_PORT, TARGET_PORT, { send: 777, recv: 4321 });
    expect(out.raw).toContain(`dst.addr=${pods.server.ip4}:${TARGET_PORT}, dst.service=${SERVICE_HOST}, dst.workload=${ID.server.name}, `);
    const after = await scrape();
    const moved = (name: string, labels: Record<string, string>) => value(after, name, labels) - value(before, name, labels);
    const service = {
      reporter: "source",
      ...peer("source", "client"),
      destination_service: SERVICE_HOST,
      destination_service_namespace: "shop",
      destination_service_name: "web",
      ...peer("destination", "server"),
      ...TAIL,
    };
    expect(after.find((s) => s.name === "kmesh_tcp_sent_bytes_total" && s.labels.destination_service === SERVICE_HOST && s.labels.reporter === "source")?.labels).toEqual(service);
    expect({
      sent: moved("kmesh_tcp_sent_bytes_total", service),
      received: moved("kmesh_tcp_received_bytes_total", service),
      opened: moved("kmesh_tcp_connections_opened_total", service),
      closed: moved("kmesh_tcp_connections_closed_total", service),
    }).toEqual({ sent: 777, received: 4321, opened: 1, closed: 1 });
    expect(out.sentBytes).toBe(777);
    const workload = { reporter: "source", destination_pod_address: pods.server.ip4, destination_pod_name: ID.server.name };
    expect(moved("kmesh_tcp_workload_sent_bytes_total", workload)).toBe(777);
  });

  test("a refused attempt counts as failed, neither opened nor closed", async () => {
    const before = await scrape();
    const report = await runClient(pods.client, { host: pods.server.ip4, port: 9999, send: 1, recv: 0 });
    expect(report.error).toContain("ECONNREFUSED");
    await agent.waitForLines((e) => e.srcAddr === pods.client.ip4 && e.dstPort === 9999 && e.error === "ECONNREFUSED", 1, 10_000);
    const after = await scrape();
    const labels = { reporter: "source", destination_pod_name: ID.server.name };
    const moved = (name: string) => value(after, name, labels) - value(before, name, labels);
    expect([moved("kmesh_tcp_workload_conntections_failed_total"), moved("kmesh_tcp_workload_connections_opened_total"), moved("kmesh_tcp_workload_connections_closed_total")]).toEqual([1, 0, 0]);
  });

  test("promtool check metrics accepts the text; gzip for scrapers that take it; /metrics counts the series; counters never went down", async () => {
    const response = await fetch(`http://${metricsAddr}/status/metric`, { headers: { "accept-encoding": "identity" } });
    expect(response.headers.get("content-encoding")).toBeNull();
    const text = await response.text();
    const gzipped = await fetch(`http://${metricsAddr}/status/metric`, { headers: { "accept-encoding": "gzip" }, decompress: false } as RequestInit);
    expect(gzipped.headers.get("content-encoding")).toBe("gzip");
    const unzipped = new TextDecoder().decode(Bun.gunzipSync(new Uint8Array(await gzipped.arrayBuffer())));
    // the same series (a value may have moved in between: the node's other connections count too)
    expect(parseExposition(unzipped).filter((s) => ours([s]).length > 0)).toEqual(parseExposition(text).filter((s) => ours([s]).length > 0));
    expect(checkMetrics(text)).toEqual({ exitCode: 0, output: "" });
    // The counts on /metrics against the series of an exposition read before and after them: the
    // scrapes are connections too, whose close may add a series in between (the agent drains the
    // ring every 20 ms), so the three are read again until the series stand still.
    const seriesOf = (exposition: string, name: string) => parseExposition(exposition).filter((s) => s.name === name).length;
    const counts = (exposition: string) => [seriesOf(exposition, "kmesh_tcp_workload_sent_bytes_total"), seriesOf(exposition, "kmesh_tcp_sent_bytes_total")];
    const scrapeText = async () => (await fetch(`http://${metricsAddr}/status/metric`)).text();
    let admin = await metrics(adminAddr);
    for (let tries = 0; tries < 20; tries++) {
      const before = counts(await scrapeText());
      admin = await metrics(adminAddr);
      const after = counts(await scrapeText());
      if (Bun.deepEquals(before, after)) {
        expect([admin.get("kmesh_accesslog_tcp_metric_workload_series"), admin.get("kmesh_accesslog_tcp_metric_service_series")]).toEqual(after);
        break;
      }
      expect(tries).toBeLessThan(19);
      await Bun.sleep(100);
    }
    expect(admin.get("kmesh_accesslog_tcp_metrics_enabled")).toBe(1);
    for (const line of text.split("\n").filter((l) => l.startsWith("# TYPE"))) expect(line).toEndWith(" counter");
    // every scrape so far: a series never shows less than it did before
    const last = new Map<string, number>();
    for (const scraped of scrapes) {
      for (const s of scraped) {
        const key = `${s.name}${JSON.stringify(s.labels)}`;
        expect(s.value).toBeGreaterThanOrEqual(last.get(key) ?? 0);
        last.set(key, s.value);
      }
    }
  });

  test("a connection open longer than the report interval: a series of its own with its latest figures, gone at its close", async () => {
    expect((await adminRequest(adminAddr, "POST", "/connection_metrics?enable=true")).status).toBe(200);
    const server = await startServer(pods.server, { host: pods.server.ip4, port: 9191, recv: 300, send: 400 });
    try {
      const client = runClient(pods.client, { host: pods.server.ip4, port: 9191, send: 300, recv: 400, closeFirst: true, holdMs: 2_500 });
      // the periodic lines say which connection it is and what it has carried
      const [periodic] = await agent.waitForLines((e) => e.direction === "OUTBOUND" && e.dstPort === 9191 && e.state === "BPF_TCP_ESTABLISHED" && (e.durationMs ?? 0) > 500, 1, 10_000);
      let own: ParsedSample | undefined;
      const deadline = Date.now() + 5_000;
      while (own === undefined && Date.now() < deadline) {
        own = (await scrape()).find((s) => s.name === "kmesh_tcp_connection_sent_bytes_total" && s.labels.source_address === `${pods.client.ip4}:${periodic!.srcPort}` && s.labels.reporter === "source");
        if (own === undefined) await Bun.sleep(100);
      }
      expect(own?.labels).toMatchObject({
        start_time: periodic!.startTime!,
        ...peer("source", "client"),
        source_address: `${pods.client.ip4}:${periodic!.srcPort}`,
        destination_address: `${pods.server.ip4}:9191`,
        destination_pod_address: pods.server.ip4,
        destination_pod_name: ID.server.name,
        destination_service: pods.server.ip4,
        ...peer("destination", "server"),
        ...TAIL,
      });
      expect(own!.value).toBe(300);
      const report = await client;
      await server.finished();
      await closeLines(report.localPort);
      const after = await scrape();
      expect(after.filter((s) => s.name.startsWith("kmesh_tcp_connection_") && s.labels.source_address === `${pods.client.ip4}:${report.localPort}`)).toEqual([]);
    } finally {
      server.kill();
      await adminRequest(adminAddr, "POST", "/connection_metrics?enable=false");
    }
  });

  test("the switch at run time: off closes the address and forgets the series; on again counts from zero", async () => {
    expect((await adminRequest(adminAddr, "POST", "/workload_metrics?enable=false")).status).toBe(200);
    await expect(fetch(`http://${metricsAddr}/status/metric`)).rejects.toThrow();
    const off = await metrics(adminAddr);
    expect([off.get("kmesh_accesslog_tcp_metrics_enabled"), off.get("kmesh_accesslog_tcp_metric_workload_series")]).toEqual([0, 0]);
    // lines go on meanwhile
    await connect(pods.server.ip4, 9090, 9090);
    expect((await adminRequest(adminAddr, "POST", "/workload_metrics?enable=true")).status).toBe(200);
    expect(ours(await scrape())).toEqual([]);
    const { out } = await connect(pods.server.ip4, 9090, 9090, { send: 11, recv: 22 });
    const samples = await scrape();
    // the test pods' series only: the host's own connections (these requests) count too
    expect(value(samples, "kmesh_tcp_workload_sent_bytes_total", { reporter: "source", source_workload: "client" })).toBe(out.sentBytes!);
    scrapes.length = 0; // a new start: counters from zero
  });

  test("a deleted pod's series go once it has been gone for --metrics-grace", async () => {
    await connect(pods.server.ip4, 9090, 9090);
    const named = (samples: ParsedSample[]) => samples.filter((s) => Object.values(s.labels).includes(ID.server.name) || s.labels.destination_workload === "web");
    expect(named(await scrape()).length).toBeGreaterThan(0);
    const droppedBefore = (await metrics(adminAddr)).get("kmesh_accesslog_tcp_metric_series_dropped_total") ?? 0;
    kubelet.pods = [podEntry(pods.client, ID.client, EXTRA.client)];
    api.remove("pods", "shop", ID.server.name);
    const start = Date.now();
    let left = named(await scrape());
    while (left.length > 0 && Date.now() - start < 10_000) {
      await Bun.sleep(200);
      left = named(await scrape());
    }
    expect(left).toEqual([]);
    // not before the grace period (1 s)
    expect(Date.now() - start).toBeGreaterThanOrEqual(1_000);
    expect((await metrics(adminAddr)).get("kmesh_accesslog_tcp_metric_series_dropped_total")).toBeGreaterThan(droppedBefore);
  }, 20_000);

  test("a metrics address that is taken: the switch is refused with Kmesh's words and changes nothing; at start, the agent says so and exits 1", async () => {
    const holder = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const taken = `127.0.0.1:${holder.port}`;
      const why = `cannot serve the TCP metrics on ${taken}: the address is in use by another program (choose another with --metrics-addr, or serve none with --metrics-addr "")`;
      const other = `127.0.0.1:${freePort()}`;
      await using second = startKubeletAgent(kubelet, { args: ["--no-kube-api", "--admin-addr", other, "--metrics-addr", taken] });
      await waitReady(second, other);
      const refused = await adminRequest(other, "POST", "/workload_metrics?enable=true");
      expect([refused.status, refused.body]).toEqual([400, `update workload metrics failed: ${why}\n`]);
      expect((await metrics(other)).get('kmesh_accesslog_switch_enabled{switch="workload_metrics"}')).toBe(0);
      const { exitCode, stderr } = await runBinary(["run", "--no-kubelet", "--no-kube-api", "--admin-addr", "", "--lock-file", privateLockFile(), "--workload-metrics", "--metrics-addr", taken]);
      expect([exitCode, stderr]).toEqual([1, `kmesh-accesslog: ${why}\n`]);
    } finally {
      holder.stop(true);
    }
  }, 60_000);

  test("--metrics-prefix istio: the same series, named istio_tcp_*", async () => {
    const istioAddr = `127.0.0.1:${freePort()}`;
    const istioAdmin = `127.0.0.1:${freePort()}`;
    kubelet.pods = (Object.keys(ID) as Name[]).map((name) => podEntry(pods[name], ID[name], EXTRA[name]));
    await using istio = startKubeletAgent(kubelet, {
      args: ["--no-kube-api", "--admin-addr", istioAdmin, "--workload-metrics", "--metrics-prefix", "istio", "--metrics-addr", istioAddr],
    });
    await waitReady(istio, istioAdmin);
    await waitUntilCapturing(istio, pods.client, pods.server);
    const server = await startServer(pods.server, { host: pods.server.ip4, port: 9292, recv: 10, send: 20 });
    try {
      const report = await runClient(pods.client, { host: pods.server.ip4, port: 9292, send: 10, recv: 20, closeFirst: true });
      await server.finished();
      await istio.waitForLines((e) => e.srcPort === report.localPort && e.direction === "INBOUND" && e.state === "BPF_TCP_CLOSE", 1, 10_000);
      await until("the OUTBOUND line", () => istio.entries.some((e) => e.srcPort === report.localPort && e.direction === "OUTBOUND"), 10_000);
    } finally {
      server.kill();
    }
    const text = await (await fetch(`http://${istioAddr}/metrics`)).text();
    const names = new Set(parseExposition(text).map((s) => s.name));
    expect([...names].every((name) => name.startsWith("istio_tcp_"))).toBe(true);
    expect(names).toContain("istio_tcp_sent_bytes_total");
    expect(names).toContain("istio_tcp_connections_opened_total");
    const sample = parseExposition(text).find((s) => s.name === "istio_tcp_sent_bytes_total" && s.labels.reporter === "source" && s.labels.destination_workload === "web");
    expect(sample?.labels).toMatchObject({ ...peer("source", "client"), ...peer("destination", "server"), destination_service: pods.server.ip4 });
    expect(checkMetrics(text)).toEqual({ exitCode: 0, output: "" });
  }, 60_000);
});
