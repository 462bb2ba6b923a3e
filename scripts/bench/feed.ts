// What the cluster feed saves, for clusters this machine cannot hold: a stand-in API server (in a
// child process, pods made real-shaped by test/support/kubelet-pods.ts: managed fields, probes,
// dual stack; N/5 Services and as many EndpointSlices of 5 endpoints) serving N pods, and, per
// size:
//   - the agent as users run it (dist/kmesh-accesslog run --no-kubelet), once straight to the API
//     server (--kubeconfig) and once through the feed (--feed, the compiled `feed` in its own
//     process): bytes it receives, requests it makes, time from exec to a complete view (its
//     "listed; watching" / "received; following" line), resident memory (VmRSS) then;
//   - the agent's cluster index alone: the heap it keeps once filled from the feed (this process,
//     the agent's own FeedSource, after full collections), and the longest a 10 ms timer (the
//     agent's line path is one) was held up while the snapshot was applied;
//   - the feed itself: time to ready, what it took from the API server, its VmRSS, and its CPU per
//     change (10,000 pod IP changes, one agent connected);
//   - the API server's load for --nodes agents, computed from those: every agent listing and
//     watching (linear in nodes) against two feed replicas (constant) plus one TokenReview per
//     agent connection.
// Then (--churn-seconds, default 60) one pod changes its IP every millisecond, and the delay from
// the stand-in's change to the agent's index is measured for an agent through the feed and for
// one straight to the API server (both in this process: the agent's own FeedSource and ApiSource
// classes, with an index that notes when each change lands).
//
//   sudo flock -x /tmp/kal-machine.lock bun scripts/bench/feed.ts [--sizes 10000,50000,150000] [--nodes 5000] [--churn-seconds 60] [--churn-pods 10000]
//   --short: 2,000 pods, 3 s of churn (test/bench.test.ts)
//
// Bodies are counted as sent (uncompressed, as both sides send them here; a real API server gzips
// large lists for clients that ask, which Bun's fetch does: the direct path's bytes on a real wire
// are smaller, its parsing is not).
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { Server } from "bun";
import { heapStats } from "bun:jsc";
import { ApiClient } from "../../src/kube/apiserver/client.ts";
import { ClusterIndex } from "../../src/kube/apiserver/cluster-index.ts";
import type { PodEntry } from "../../src/kube/apiserver/entries.ts";
import { kubeconfigSettings } from "../../src/kube/apiserver/settings.ts";
import { ApiSource } from "../../src/kube/apiserver/source.ts";
import { FeedSource } from "../../src/kube/feed/client.ts";
import { createLogger } from "../../src/log.ts";
import { serviceObject, sliceObject } from "../../test/e2e/api-server.ts";
import { pod } from "../../test/support/kubelet-pods.ts";
import { makeCertificates } from "../../test/support/kubelet-server.ts";
import { ensureBinary, lineReader, option, table } from "./common.ts";

const AGENT_USER = "system:serviceaccount:kmesh-accesslog:kmesh-accesslog";
type Kind = "services" | "endpointslices" | "pods";
const PATHS: Record<string, Kind> = { "/api/v1/services": "services", "/apis/discovery.k8s.io/v1/endpointslices": "endpointslices", "/api/v1/pods": "pods" };
const LIST_KIND: Record<Kind, string> = { services: "ServiceList", endpointslices: "EndpointSliceList", pods: "PodList" };

/** Pod i's IPv4 (unique up to 16 million) and IPv6. */
const ip4 = (i: number) => `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
const ip6 = (i: number) => `fd00:10::${(i >> 16).toString(16)}:${(i & 0xffff).toString(16)}`;

// ── The stand-in API server (child process) ──────────────────────────────────
// Objects are kept as their JSON text, in key order: a page is a slice of it. Commands on stdin,
// answers on stdout (one JSON line each): "counters", "reset", "modify <n>" (n pod IP changes at
// once), "churn <seconds> <pods>" (a change every millisecond among the first <pods> pods; answers
// the time of each change).
async function serve(n: number): Promise<void> {
  const dir = await Bun.$`mktemp -d /tmp/feed-bench-XXXXXX`.text().then((t) => t.trim());
  const certs = makeCertificates(dir);
  const token = `bench-${crypto.randomUUID()}`;
  const agentToken = `agent-${crypto.randomUUID()}`;
  await Bun.write(join(dir, "token"), token);
  await Bun.write(join(dir, "agent-token"), agentToken);
  const objects: Record<Kind, { keys: string[]; json: Map<string, string> }> = {
    services: { keys: [], json: new Map() },
    endpointslices: { keys: [], json: new Map() },
    pods: { keys: [], json: new Map() },
  };
  let rv = 1000;
  const put = (kind: Kind, object: Record<string, unknown>) => {
    const meta = object.metadata as { name: string; namespace: string; resourceVersion?: string };
    const key = `${meta.namespace}/${meta.name}`;
    meta.resourceVersion = String(++rv);
    const text = JSON.stringify(object);
    if (!objects[kind].json.has(key)) objects[kind].keys.push(key);
    objects[kind].json.set(key, text);
    return text;
  };
  const pods: Record<string, unknown>[] = [];
  for (let i = 0; i < n; i++) {
    const base = `app${i % 997}`;
    const hash = (0x5f6d7c8b9a + (i % 997)).toString(36);
    const p = pod({ name: `${base}-${hash}-${i.toString(36)}`, namespace: `team${i % 37}`, ip4: ip4(i), ip6: ip6(i), owner: { kind: "ReplicaSet", name: `${base}-${hash}` }, templateHash: hash, containers: 1 + (i % 3) });
    pods.push(p);
    put("pods", p);
  }
  for (let i = 0; i < n / 5; i++) {
    const ns = `team${i % 37}`;
    put("services", serviceObject(ns, `svc-${i}`, `10.96.${(i >> 8) & 255}.${i & 255}`, 80, 8080));
    const endpoints = Array.from({ length: 5 }, (_, k) => ({ ip: ip4((i * 5 + k) % n), pod: `p${k}` }));
    const slice = sliceObject(ns, `svc-${i}`, endpoints, 8080);
    (slice.metadata as { name: string }).name = `svc-${i}-abcde`;
    put("endpointslices", slice);
  }
  const history: { kind: Kind; rv: number; line: string }[] = [];
  const watchers = new Set<{ kind: Kind; controller: ReadableStreamDefaultController<Uint8Array> }>();
  const counters = { bytes: 0, requests: 0, pages: 0, watches: 0, reviews: 0 };
  const encoder = new TextEncoder();
  const send = (w: { controller: ReadableStreamDefaultController<Uint8Array> }, line: string) => {
    const bytes = encoder.encode(line);
    counters.bytes += bytes.length;
    try {
      w.controller.enqueue(bytes);
    } catch {
      watchers.delete(w as never);
    }
  };
  /** Pod i gets a new IP (change number k): one MODIFIED event. */
  const modify = (i: number, k: number) => {
    const p = pods[i]!;
    const status = p.status as { podIP: string; podIPs: { ip: string }[] };
    status.podIP = `11.${(k >> 16) & 255}.${(k >> 8) & 255}.${k & 255}`;
    status.podIPs = [{ ip: status.podIP }];
    const text = put("pods", p);
    const line = `{"type":"MODIFIED","object":${text}}\n`;
    history.push({ kind: "pods", rv, line });
    if (history.length > 200_000) history.splice(0, 100_000);
    for (const w of watchers) if (w.kind === "pods") send(w, line);
  };
  const status = (code: number, message: string) => Response.json({ kind: "Status", apiVersion: "v1", status: "Failure", message, code }, { status: code });
  const server: Server<undefined> = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: { cert: readFileSync(certs.certFile, "utf8"), key: readFileSync(certs.keyFile, "utf8") },
    idleTimeout: 0,
    fetch: async (request) => {
      counters.requests++;
      const url = new URL(request.url);
      if (request.headers.get("authorization") !== `Bearer ${token}`) return status(401, "Unauthorized");
      if (url.pathname === "/apis/authentication.k8s.io/v1/tokenreviews") {
        counters.reviews++;
        const review = (await request.json()) as { spec: { token: string } };
        const ok = review.spec.token === agentToken;
        return Response.json({ kind: "TokenReview", apiVersion: "authentication.k8s.io/v1", status: ok ? { authenticated: true, user: { username: AGENT_USER } } : { authenticated: false } }, { status: 201 });
      }
      const kind = PATHS[url.pathname];
      if (kind === undefined) return status(404, "not found");
      if (url.searchParams.get("watch") === "1") {
        counters.watches++;
        const from = Number(url.searchParams.get("resourceVersion") ?? "0");
        let watcher: { kind: Kind; controller: ReadableStreamDefaultController<Uint8Array> } | null = null;
        const stream = new ReadableStream<Uint8Array>({
          start: (controller) => {
            watcher = { kind, controller };
            controller.enqueue(encoder.encode("\n"));
            for (const e of history) if (e.kind === kind && e.rv > from) send(watcher, e.line);
            watchers.add(watcher);
          },
          cancel: () => {
            if (watcher !== null) watchers.delete(watcher);
          },
        });
        return new Response(stream, { headers: { "content-type": "application/json" } });
      }
      counters.pages++;
      const limit = Number(url.searchParams.get("limit") ?? "500");
      const offset = Number(url.searchParams.get("continue") ?? "0");
      const { keys, json } = objects[kind];
      const items = keys.slice(offset, offset + limit).map((key) => json.get(key));
      const more = offset + limit < keys.length ? `,"continue":"${offset + limit}"` : "";
      const body = `{"kind":"${LIST_KIND[kind]}","apiVersion":"v1","metadata":{"resourceVersion":"${rv}"${more}},"items":[${items.join(",")}]}`;
      counters.bytes += Buffer.byteLength(body);
      return new Response(body, { headers: { "content-type": "application/json" } });
    },
  });
  const kubeconfig = join(dir, "kubeconfig");
  await Bun.write(
    kubeconfig,
    `apiVersion: v1\nkind: Config\ncurrent-context: b\nclusters:\n- name: b\n  cluster: {server: "https://127.0.0.1:${server.port}", certificate-authority: ${certs.caFile}}\n` +
      `contexts:\n- name: b\n  context: {cluster: b, user: b}\nusers:\n- name: b\n  user: {tokenFile: ${join(dir, "token")}}\n`,
  );
  console.log(JSON.stringify({ dir, kubeconfig, agentTokenFile: join(dir, "agent-token"), certFile: certs.certFile, keyFile: certs.keyFile, caFile: certs.caFile }));
  let changes = 0;
  for await (const line of console) {
    const [command, a, b] = line.split(" ");
    if (command === "counters") console.log(JSON.stringify(counters));
    else if (command === "reset") {
      for (const key of Object.keys(counters) as (keyof typeof counters)[]) counters[key] = 0;
      console.log("{}");
    } else if (command === "modify") {
      for (let k = 0; k < Number(a); k++, changes++) modify(changes % n, changes);
      console.log("{}");
    } else if (command === "churn") {
      const total = Number(a) * 1000;
      const among = Math.min(Number(b), n);
      const times: number[] = [];
      const t0 = performance.now();
      while (times.length < total) {
        const due = Math.min(total, Math.floor(performance.now() - t0) + 1);
        while (times.length < due) {
          modify(times.length % among, 1_000_000 + times.length);
          times.push(performance.timeOrigin + performance.now());
        }
        await Bun.sleep(1);
      }
      console.log(JSON.stringify(times));
    }
  }
  server.stop(true);
  await Bun.$`rm -rf ${dir}`;
}

// ── The measuring side ───────────────────────────────────────────────────────

interface StandIn {
  dir: string;
  kubeconfig: string;
  agentTokenFile: string;
  certFile: string;
  keyFile: string;
  caFile: string;
  ask(command: string): Promise<unknown>;
  stop(): Promise<void>;
}

async function standIn(pods: number): Promise<StandIn> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--serve", String(pods)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const nextLine = lineReader(child.stdout, "the stand-in API server exited");
  const info = JSON.parse(await nextLine());
  return {
    ...info,
    async ask(command: string) {
      child.stdin.write(`${command}\n`);
      await child.stdin.flush();
      return JSON.parse(await nextLine());
    },
    async stop() {
      child.stdin.end();
      await child.exited;
    },
  };
}

const BINARY = ensureBinary();
const rssMiB = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? Number.NaN) / 1024;
/** user + system CPU seconds of a process */
const cpuSeconds = (pid: number) => {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
};
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const gib = (bytes: number) => (bytes >= 2 ** 30 ? `${(bytes / 2 ** 30).toFixed(1)} GiB` : mib(bytes));

/** Runs `argv`, resolves when a stderr line contains `ready`; the process and the time it took. */
async function spawnUntil(argv: string[], ready: string, timeoutMs = 300_000): Promise<{ proc: Bun.Subprocess<"ignore", "ignore", "pipe">; ms: number; stderr: () => string }> {
  const t0 = performance.now();
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  let text = "";
  const reader = proc.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + timeoutMs;
  while (!text.includes(ready)) {
    const { value, done } = await reader.read();
    if (done || Date.now() > deadline) throw new Error(`${argv.slice(0, 2).join(" ")} did not say "${ready}": ${text}`);
    text += value;
  }
  const ms = performance.now() - t0;
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      text += value;
    }
  })();
  return { proc, ms, stderr: () => text };
}

async function feedMetrics(url: string, ca: string): Promise<Map<string, number>> {
  const body = await (await fetch(`${url}/metrics`, { tls: { ca } } as RequestInit)).text();
  return new Map(body.split("\n").flatMap((l) => (/^([^#\s]\S*) (\S+)$/.exec(l) ? [[RegExp.$1, Number(RegExp.$2)] as [string, number]] : [])));
}

/** A port nothing listens on now. */
function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = listener;
  listener.stop(true);
  return port;
}

const lockFile = (name: string) => `/tmp/kal-bench-feed-${process.pid}-${name}.lock`;
const agentArgs = (name: string) => [BINARY, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", lockFile(name)];

interface SizeResult {
  pods: number;
  direct: { bytes: number; requests: number; watches: number; readyMs: number; rss: number };
  fed: { bytes: number; requests: number; reviews: number; readyMs: number; rss: number; indexHeap: number; stallMs: number };
  feed: { readyMs: number; bytes: number; requests: number; rss: number; cpuPerChangeUs: number; rssAfter: number };
}

async function measureSize(pods: number): Promise<SizeResult> {
  const api = await standIn(pods);
  try {
    // straight to the API server
    await api.ask("reset");
    const direct = await spawnUntil([...agentArgs("direct"), "--kubeconfig", api.kubeconfig], "listed; watching for changes");
    await Bun.sleep(3_000);
    const directRss = rssMiB(direct.proc.pid);
    const dc = (await api.ask("counters")) as { bytes: number; requests: number; watches: number };
    direct.proc.kill("SIGTERM");
    await direct.proc.exited;

    // the feed
    await api.ask("reset");
    const port = freePort();
    const url = `https://127.0.0.1:${port}`;
    const feedArgv = [BINARY, "feed", "--kubeconfig", api.kubeconfig, "--listen", `127.0.0.1:${port}`, "--tls-cert-file", api.certFile, "--tls-key-file", api.keyFile];
    const feed = await spawnUntil(feedArgv, "listed; watching for changes");
    const ca = readFileSync(api.caFile, "utf8");
    while ((await fetch(`${url}/healthz`, { tls: { ca } } as RequestInit).then((r) => r.status, () => 0)) !== 200) await Bun.sleep(20);
    await Bun.sleep(3_000);
    const feedRss = rssMiB(feed.proc.pid);
    const fc = (await api.ask("counters")) as { bytes: number; requests: number };

    // an agent through the feed
    await api.ask("reset");
    const before = await feedMetrics(url, ca);
    const fed = await spawnUntil(
      [...agentArgs("fed"), "--no-kube-api", "--feed", url, "--feed-ca-file", api.caFile, "--feed-token-file", api.agentTokenFile],
      "received; following its changes",
    );
    await Bun.sleep(3_000);
    const fedRss = rssMiB(fed.proc.pid);
    const after = await feedMetrics(url, ca);
    const ac = (await api.ask("counters")) as { requests: number; reviews: number };
    const delta = (name: string) => (after.get(`kmesh_accesslog_feed_${name}`) ?? 0) - (before.get(`kmesh_accesslog_feed_${name}`) ?? 0);
    const { heap: indexHeap, stallMs } = await indexHeapThroughFeed(url, ca, api.agentTokenFile);

    // the feed's CPU per change, one agent connected
    const changes = 10_000;
    const cpu0 = cpuSeconds(feed.proc.pid);
    const version0 = after.get("kmesh_accesslog_feed_version") ?? 0;
    await api.ask(`modify ${changes}`);
    while (((await feedMetrics(url, ca)).get("kmesh_accesslog_feed_version") ?? 0) < version0 + changes) await Bun.sleep(50);
    const cpuPerChangeUs = ((cpuSeconds(feed.proc.pid) - cpu0) / changes) * 1e6;
    const rssAfter = rssMiB(feed.proc.pid);
    fed.proc.kill("SIGTERM");
    await fed.proc.exited;
    feed.proc.kill("SIGTERM");
    await feed.proc.exited;
    return {
      pods,
      direct: { bytes: dc.bytes, requests: dc.requests, watches: dc.watches, readyMs: direct.ms, rss: directRss },
      fed: { bytes: delta("bytes_sent_total"), requests: delta("requests_total") + ac.requests, reviews: ac.reviews, readyMs: fed.ms, rss: fedRss, indexHeap, stallMs },
      feed: { readyMs: feed.ms, bytes: fc.bytes, requests: fc.requests, rss: feedRss, cpuPerChangeUs, rssAfter },
    };
  } finally {
    await api.stop();
  }
}

/** The heap a cluster index keeps once the feed has filled it (full collections before and after), and the worst stall of a 10 ms timer meanwhile. */
async function indexHeapThroughFeed(url: string, ca: string, tokenFile: string): Promise<{ heap: number; stallMs: number }> {
  const gcHeap = () => {
    for (let i = 0; i < 3; i++) Bun.gc(true);
    return heapStats().heapSize;
  };
  const before = gcHeap();
  const index = new ClusterIndex();
  const source = new FeedSource({ url, ca, tokenFile, index, fallback: null, log: createLogger("error") });
  let stallMs = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    stallMs = Math.max(stallMs, now - last - 10);
    last = now;
  }, 10);
  source.start();
  while (!source.synced) await Bun.sleep(5);
  clearInterval(timer);
  await source.stop();
  const heap = gcHeap() - before;
  if (index.counts.pods < 0) console.log(index); // keeps it alive until measured
  return { heap, stallMs };
}

/** An index that notes when each churned pod's new IP lands (the IP encodes the change's number). */
class TimedIndex extends ClusterIndex {
  readonly arrivals = new Map<number, number>();
  override putPod(key: string, entry: PodEntry): void {
    super.putPod(key, entry);
    const ip = entry.ips[0];
    if (ip?.startsWith("11.")) {
      const [, a, b, c] = ip.split(".").map(Number) as [number, number, number, number];
      this.arrivals.set(((a << 16) | (b << 8) | c) - 1_000_000, performance.timeOrigin + performance.now());
    }
  }
}

async function churn(pods: number, seconds: number, among: number): Promise<string[][]> {
  const api = await standIn(pods);
  const port = freePort();
  const url = `https://127.0.0.1:${port}`;
  const feed = await spawnUntil([BINARY, "feed", "--kubeconfig", api.kubeconfig, "--listen", `127.0.0.1:${port}`, "--tls-cert-file", api.certFile, "--tls-key-file", api.keyFile], "listed; watching for changes");
  const quiet = createLogger("error");
  const viaFeed = new TimedIndex();
  const fed = new FeedSource({ url, ca: readFileSync(api.caFile, "utf8"), tokenFile: api.agentTokenFile, index: viaFeed, fallback: null, log: quiet });
  const viaApi = new TimedIndex();
  const direct = new ApiSource({ client: new ApiClient(await kubeconfigSettings(api.kubeconfig)), index: viaApi, notice: quiet.warn });
  try {
    fed.start();
    direct.start();
    while (!fed.synced || !direct.synced) await Bun.sleep(20);
    const cpu0 = cpuSeconds(feed.proc.pid);
    const times = (await api.ask(`churn ${seconds} ${among}`)) as number[];
    await Bun.sleep(2_000);
    const feedCpu = cpuSeconds(feed.proc.pid) - cpu0;
    const row = (name: string, index: TimedIndex) => {
      const delays = times.map((t, k) => (index.arrivals.get(k) ?? Number.POSITIVE_INFINITY) - t).sort((a, b) => a - b);
      const at = (q: number) => delays[Math.min(delays.length - 1, Math.floor(q * delays.length))]!;
      const ms = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : "lost");
      const lost = delays.filter((d) => !Number.isFinite(d)).length;
      return [name, String(times.length), ms(at(0.5)), ms(at(0.9)), ms(at(0.99)), ms(at(0.999)), ms(delays.at(-1)!), String(lost)];
    };
    return [
      row("through the feed", viaFeed),
      row("straight to the API server", viaApi),
      ["(the feed's CPU meanwhile)", `${((feedCpu / seconds) * 100).toFixed(1)} % of a core`, `${((feedCpu / times.length) * 1e6).toFixed(0)} µs per change`, "", "", "", "", ""],
    ];
  } finally {
    await fed.stop();
    await direct.stop();
    feed.proc.kill("SIGTERM");
    await feed.proc.exited;
    await api.stop();
  }
}

if (process.argv[2] === "--serve") {
  await serve(Number(process.argv[3]));
} else {
  if (process.getuid?.() !== 0) {
    console.error("the agent loads its BPF probe: run as root (sudo)");
    process.exit(1);
  }
  const short = process.argv.includes("--short");
  const at = process.argv.indexOf("--sizes");
  const sizes = at >= 0 ? (process.argv[at + 1] ?? "").split(",").map(Number) : short ? [2_000] : [10_000, 50_000, 150_000];
  const nodes = option("nodes", 5_000);
  const churnSeconds = short ? 3 : option("churn-seconds", 60);
  const results: SizeResult[] = [];
  for (const pods of sizes) {
    console.error(`measuring ${pods} pods...`);
    results.push(await measureSize(pods));
  }
  const s = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
  console.log("\nOne agent:\n");
  console.log(
    table(
      ["pods", "mode", "bytes received", "requests", "exec to a complete view", "agent VmRSS", "of which the index's heap", "worst 10 ms-timer stall while applying"],
      results.flatMap((r) => [
        [String(r.pods), "straight to the API server", mib(r.direct.bytes), `${r.direct.requests} (${r.direct.watches} watches)`, s(r.direct.readyMs), `${r.direct.rss.toFixed(0)} MiB`, "", ""],
        [String(r.pods), "through the feed", mib(r.fed.bytes), `${r.fed.requests} (+${r.fed.reviews} TokenReview by the feed)`, s(r.fed.readyMs), `${r.fed.rss.toFixed(0)} MiB`, mib(r.fed.indexHeap), `${r.fed.stallMs.toFixed(0)} ms`],
      ]),
    ),
  );
  console.log("\nThe feed (one replica):\n");
  console.log(
    table(
      ["pods", "exec to ready", "from the API server", "requests", "VmRSS", "CPU per change (1 agent)", "VmRSS after 10,000 changes"],
      results.map((r) => [String(r.pods), s(r.feed.readyMs), mib(r.feed.bytes), String(r.feed.requests), `${r.feed.rss.toFixed(0)} MiB`, `${r.feed.cpuPerChangeUs.toFixed(0)} µs`, `${r.feed.rssAfter.toFixed(0)} MiB`]),
    ),
  );
  console.log(`\nThe API server, when all ${nodes} agents start (a DaemonSet rollout): what it sends, requests, watches held:\n`);
  console.log(
    table(
      ["pods", "agents straight to it", "through two feed replicas"],
      results.map((r) => [
        String(r.pods),
        `${gib(r.direct.bytes * nodes)}, ${r.direct.requests * nodes} requests, ${r.direct.watches * nodes} watches`,
        `${gib(r.feed.bytes * 2)}, ${r.feed.requests * 2 + nodes} requests (${nodes} TokenReviews), 6 watches`,
      ]),
    ),
  );
  if (churnSeconds > 0) {
    const pods = sizes[0]!;
    const among = option("churn-pods", 10_000);
    console.error(`churning one pod per millisecond for ${churnSeconds} s...`);
    console.log(`\nOne pod's IP changed every millisecond for ${churnSeconds} s (${pods} pods): from the change to the agent's index, ms:\n`);
    console.log(table(["agent", "changes", "p50", "p90", "p99", "p99.9", "max", "lost"], await churn(pods, churnSeconds, among)));
  }
}
