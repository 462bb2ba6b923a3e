// Kmesh's TCP metrics on a node of 1,000 pods, in process (src/telemetry/tcp-metrics.ts): how many
// series there are for how much traffic, what they cost in memory, how fast records are counted,
// how long a scrape takes. The pods are real-shaped (test/support/kubelet-pods.ts: Deployments,
// StatefulSets, CronJobs..., each through the agent's own PodSchema and podInfo); one Service per
// five pods. Each pod talks to `peers` other pods, half of the time through their Service, in
// connections reported from both ends (two records each, as for pods of one node), and is probed
// by the kubelet from the node's address; 50 external addresses are reached by every pod's
// connections too, round robin. Every pair gets `rounds` connections, so that the series count is
// seen not to grow with traffic, only with pods and peers: per pod, 2 x peers + 2 workload series
// (each pair seen from both ends, the probe, the outside) and as many service series. Each size
// in its own process.
//
//   bun scripts/bench/metrics.ts [--pods 1000] [--peers 1,5,20] [--rounds 5] [--short]
import { heapStats } from "bun:jsc";
import * as v from "valibot";
import type { AccessRecord } from "../../src/accesslog/format.ts";
import type { ServiceRef } from "../../src/kube/apiserver/cluster-index.ts";
import { podInfo, PodSchema, type PodInfo } from "../../src/kube/pod.ts";
import { TcpMetrics } from "../../src/telemetry/tcp-metrics.ts";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { option, table } from "./common.ts";

const short = process.argv.includes("--short");
const listArgument = (name: string, fallback: string) => {
  const at = process.argv.indexOf(`--${name}`);
  return (at < 0 ? fallback : process.argv[at + 1]!).split(",").map(Number);
};

interface Row {
  pods: number;
  peers: number;
  records: number;
  workload: number;
  service: number;
  heapMiB: number;
  recordsPerSecond: number;
  renderMs: number;
  renderMiB: number;
  gzipMs: number;
  gzipMiB: number;
  sweepMs: number;
}

function measure(podCount: number, peers: number, rounds: number): Row {
  const items = busyNodePodList(podCount).items as unknown[];
  const pods: { info: PodInfo; ip: string }[] = [];
  for (const item of items) {
    const pod = v.parse(PodSchema, item);
    const ip = pod.status?.podIP;
    if (pod.spec?.hostNetwork !== true && ip && pod.status?.phase === "Running") pods.push({ info: podInfo(pod), ip });
  }
  const services: ServiceRef[] = Array.from({ length: Math.ceil(pods.length / 5) }, (_, i) => ({
    name: `svc-${i}`,
    namespace: pods[i * 5]!.info.namespace!,
    host: `svc-${i}.${pods[i * 5]!.info.namespace}.svc.cluster.local`,
  }));
  const metrics = new TcpMetrics({ prefix: "kmesh", clusterName: "Kubernetes", trustDomain: "cluster.local", graceMs: 300_000, reportIntervalMs: 5_000 });
  const keys = new Set(pods.map((p) => `${p.info.namespace}/${p.info.name}`));
  metrics.kube = { hasPod: (key) => keys.has(key), hasService: () => true };

  const base: AccessRecord = {
    reportTime: { sec: 1_745_484_880, nsec: 0 },
    startTime: { sec: 1_745_484_879, nsec: 0 },
    srcAddr: "",
    srcPort: 0,
    srcWorkload: null,
    srcNamespace: null,
    dstAddr: "",
    dstPort: 8080,
    dstService: null,
    dstWorkload: null,
    dstNamespace: null,
    direction: "OUTBOUND",
    state: "BPF_TCP_CLOSE",
    sentBytes: 0,
    receivedBytes: 0,
    packetLoss: 0,
    retransmissions: 0,
    srttUs: 50,
    minRttUs: 20,
    durationMs: 12.5,
    error: null,
    family: 4,
    netns: 4026531840,
    pid: null,
    command: null,
    containerId: null,
    containerName: null,
  };
  Bun.gc(true);
  const heapBefore = heapStats().heapSize;
  // Every record first, then the clock runs only over observe().
  const work: [AccessRecord, PodInfo | undefined, PodInfo | undefined, ServiceRef | undefined][] = [];
  let port = 0;
  for (let round = 0; round < rounds; round++) {
    pods.forEach((src, i) => {
      for (let k = 1; k <= peers; k++) {
        const j = (i + k * 37) % pods.length;
        const dst = pods[j]!;
        const service = k % 2 === 0 ? services[Math.floor(j / 5)] : undefined;
        port = (port + 1) % 28_000;
        const common = { srcAddr: src.ip, srcPort: 32_768 + port, dstAddr: dst.ip, dstService: service?.host ?? null, sentBytes: 100 + k, receivedBytes: 1000 + round };
        work.push([{ ...base, ...common, direction: "OUTBOUND", connection: `o${round} ${i} ${k}` }, src.info, dst.info, service]);
        work.push([{ ...base, ...common, direction: "INBOUND", sentBytes: common.receivedBytes, receivedBytes: common.sentBytes, connection: `i${round} ${i} ${k}` }, src.info, dst.info, service]);
      }
      // the kubelet's probe, from the node's address
      work.push([{ ...base, srcAddr: "172.18.0.3", srcPort: 40_000 + round, dstAddr: src.ip, direction: "INBOUND", connection: `p${round} ${i}` }, undefined, src.info, undefined]);
      // somewhere outside the cluster
      work.push([{ ...base, srcAddr: src.ip, srcPort: 50_000 + round, dstAddr: `93.184.216.${i % 50}`, dstPort: 443, connection: `x${round} ${i}` }, src.info, undefined, undefined]);
    });
  }
  const start = performance.now();
  for (const [record, src, dst, service] of work) metrics.observe(record, 0, src, dst, service);
  const seconds = (performance.now() - start) / 1000;
  work.length = 0;
  Bun.gc(true);
  const heapMiB = (heapStats().heapSize - heapBefore) / 2 ** 20;
  // A scrape: the text, as the bytes a response sends, gzipped when the scraper accepts it (Prometheus does).
  const renders: number[] = [];
  const gzips: number[] = [];
  let bytes = new Uint8Array(0);
  let gzipped = new Uint8Array(0);
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    bytes = new TextEncoder().encode(metrics.render());
    const g = performance.now();
    gzipped = Bun.gzipSync(bytes, { level: 1 });
    renders.push(g - t);
    gzips.push(performance.now() - g);
  }
  const sweepStart = performance.now();
  metrics.sweep(1_000);
  const sweepMs = performance.now() - sweepStart;
  const counts = metrics.counts;
  return {
    pods: pods.length,
    peers,
    records: rounds * pods.length * (2 * peers + 2),
    workload: counts.workload,
    service: counts.service,
    heapMiB,
    recordsPerSecond: (rounds * pods.length * (2 * peers + 2)) / seconds,
    renderMs: renders.sort((a, b) => a - b)[2]!,
    renderMiB: bytes.length / 2 ** 20,
    gzipMs: gzips.sort((a, b) => a - b)[2]!,
    gzipMiB: gzipped.length / 2 ** 20,
    sweepMs,
  };
}

if (process.argv.includes("--child")) {
  const row = measure(option("pods", 1000), option("peers", 5), option("rounds", 5));
  process.stdout.write(`${JSON.stringify(row)}\n`);
  process.exit(0);
}

const podCount = short ? 100 : option("pods", 1000);
const peerCounts = short ? [2] : listArgument("peers", "1,5,20");
const rounds = short ? 2 : option("rounds", 5);
const rows: Row[] = [];
for (const peers of peerCounts) {
  const child = Bun.spawnSync([process.execPath, import.meta.path, "--child", "--pods", String(podCount), "--peers", String(peers), "--rounds", String(rounds)], {
    stdout: "pipe",
    stderr: "inherit",
  });
  if (child.exitCode !== 0) throw new Error(`the run with ${peers} peers failed`);
  rows.push(JSON.parse(child.stdout.toString()) as Row);
}
const n = (x: number) => Math.round(x).toLocaleString("en-US");
console.log(
  table(
    ["pods (running, not hostNetwork)", "peers per pod", "records", "workload series", "service series", "workload series per pod", "heap", "records counted/s", "scrape: text", "scrape: gzip", "sweep"],
    rows.map((r) => [
      n(r.pods),
      String(r.peers),
      n(r.records),
      n(r.workload),
      n(r.service),
      (r.workload / r.pods).toFixed(1),
      `${r.heapMiB.toFixed(1)} MiB`,
      n(r.recordsPerSecond),
      `${r.renderMiB.toFixed(1)} MiB in ${r.renderMs.toFixed(0)} ms`,
      `${r.gzipMiB.toFixed(2)} MiB in ${r.gzipMs.toFixed(0)} ms`,
      `${r.sweepMs.toFixed(1)} ms`,
    ]),
  ),
);
