// Memory and start-up cost of the API-server source, for clusters of several sizes: a local HTTPS
// API server of ours (test/e2e/api-server.ts) in a child process serves N real-shaped pods
// (test/support/kubelet-pods.ts: managedFields, probes, dual stack...), N/5 Services and as many
// EndpointSlices (5 endpoints each); this process runs the real ApiSource (list in pages of 100,
// then watch) and measures, after a full GC:
//   - the JavaScript heap the index keeps (heap after sync minus heap before, the source stopped
//     and its requests done, so only the index is left);
//   - the time to list everything, and the longest stall of a 10 ms timer meanwhile (the agent's
//     line path is such a timer: parsing a page runs on the main thread);
//   - the cost of 1,000 watch events (pod MODIFIED) applied one by one.
// With --agent (root, after scripts/build): the compiled agent's resident memory instead, run with
// --no-kubelet --kubeconfig against the same server, once it has listed everything, next to the
// same agent against an empty cluster.
//
//   bun scripts/bench/api-memory.ts [--sizes 1000,5000,10000] [--page-size 500]
//   sudo bun scripts/bench/api-memory.ts --agent [--sizes 0,5000,10000]
import { heapStats } from "bun:jsc";
import { ApiClient } from "../../src/kube/apiserver/client.ts";
import { kubeconfigSettings } from "../../src/kube/apiserver/settings.ts";
import { ApiSource } from "../../src/kube/apiserver/source.ts";
import { ClusterIndex } from "../../src/kube/apiserver/cluster-index.ts";
import { serviceObject, sliceObject, startApiServer } from "../../test/e2e/api-server.ts";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { kubeletUnavailableReason } from "../../test/support/kubelet-server.ts";
import { lineReader, table } from "./common.ts";

// ── the API server, in a child process ──────────────────────────────────────
// `--serve <pods>`: fill a local API server, print its kubeconfig path as one JSON line, then on
// each stdin line "churn <n>" modify n pods (n watch events) and answer "ok"; exit when stdin closes.
async function serve(pods: number): Promise<void> {
  await using api = await startApiServer();
  const list = busyNodePodList(pods).items as Record<string, unknown>[];
  for (const p of list) api.put("pods", p);
  const services = Math.round(pods / 5);
  for (let i = 0; i < services; i++) {
    const ns = `team${i % 13}`;
    const name = `svc-${i}`;
    api.put("services", serviceObject(ns, name, `10.96.${(i >> 8) & 255}.${(i & 255) + 1}`, 80, 8080));
    const endpoints = Array.from({ length: 5 }, (_, k) => {
      const p = list[(i * 5 + k) % list.length]!;
      const meta = p.metadata as { name: string };
      const ip = (p.status as { podIP?: string }).podIP ?? "10.0.0.1";
      return { ip, pod: meta.name };
    });
    api.put("endpointslices", sliceObject(ns, name, endpoints, 8080));
  }
  console.log(JSON.stringify({ kubeconfig: api.kubeconfig }));
  for await (const line of console) {
    const [command, n] = line.split(" ");
    if (command === "churn") {
      for (let i = 0; i < Number(n); i++) {
        const p = list[i % list.length]!;
        api.put("pods", { ...p, metadata: { ...(p.metadata as object), labels: { churn: String(i) } } });
      }
      console.log("ok");
    }
  }
}

/** Live JavaScript heap after full collections (objectCount-stable). */
const gcHeap = () => {
  for (let i = 0; i < 3; i++) Bun.gc(true);
  return heapStats().heapSize;
};
const pageAt = process.argv.indexOf("--page-size");
/** list page size (default: the agent's) */
const PAGE_SIZE = pageAt < 0 ? undefined : Number(process.argv[pageAt + 1]);
const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;

async function measure(pods: number): Promise<string[]> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--serve", String(pods)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const nextLine = lineReader(child.stdout, "the API server child exited");
  try {
    const { kubeconfig } = JSON.parse(await nextLine()) as { kubeconfig: string };
    const before = gcHeap();
    const index = new ClusterIndex();
    const source = new ApiSource({
      client: new ApiClient(await kubeconfigSettings(kubeconfig)),
      index,
      notice: console.error,
      info: () => undefined,
      ...(PAGE_SIZE === undefined ? {} : { pageSize: PAGE_SIZE }),
    });
    // the longest stall of a 10 ms timer while listing
    let worst = 0;
    let last = performance.now();
    const timer = setInterval(() => {
      const now = performance.now();
      worst = Math.max(worst, now - last - 10);
      last = now;
    }, 10);
    const t0 = performance.now();
    source.start();
    while (!source.synced) await Bun.sleep(5);
    const syncMs = performance.now() - t0;
    clearInterval(timer);
    // 1,000 watch events
    const events0 = source.stats.events;
    const t1 = performance.now();
    child.stdin.write("churn 1000\n");
    await child.stdin.flush();
    await nextLine();
    while (source.stats.events < events0 + 1000) await Bun.sleep(1);
    const churnMs = performance.now() - t1;
    await source.stop();
    const after = gcHeap();
    const c = index.counts;
    // keep `index` alive until measured
    if (c.pods < 0) console.log(index);
    return [
      String(pods),
      String(c.services),
      String(c.endpointSlices),
      String(c.podIps),
      mib(after - before),
      `${Math.round((after - before) / pods)} B`,
      `${Math.round(syncMs)} ms`,
      `${Math.round(worst)} ms`,
      `${(churnMs / 1000).toFixed(3)} ms`,
    ];
  } finally {
    child.stdin.end();
    child.kill();
    await child.exited;
  }
}

/** The compiled agent against a served cluster of `pods`: its VmRSS once everything is listed. */
async function agentRss(pods: number): Promise<string[]> {
  const child = Bun.spawn([process.execPath, import.meta.path, "--serve", String(pods)], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let first = "";
  while (!first.includes("\n")) {
    const { value, done } = await lines.read();
    if (done) throw new Error("the API server child exited");
    first += value;
  }
  const { kubeconfig } = JSON.parse(first.split("\n")[0]!) as { kubeconfig: string };
  const lock = `/tmp/kal-bench-${process.pid}-${pods}.lock`;
  const agent = Bun.spawn(
    [`${import.meta.dir}/../../dist/kmesh-accesslog`, "run", "--no-kubelet", "--kubeconfig", kubeconfig, "--admin-addr", "", "--lock-file", lock],
    { stdout: "ignore", stderr: "pipe" },
  );
  try {
    const t0 = performance.now();
    const err = agent.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("watching for changes")) {
      const { value, done } = await err.read();
      if (done) throw new Error(`the agent exited: ${text}`);
      text += value;
    }
    const listedMs = performance.now() - t0;
    await Bun.sleep(2_000); // let the heap settle after the lists
    const status = await Bun.file(`/proc/${agent.pid}/status`).text();
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
    return [String(pods), String(Math.round(pods / 5)), mib(rssKb * 1024), `${Math.round(listedMs)} ms`];
  } finally {
    agent.kill("SIGTERM");
    await agent.exited;
    child.stdin.end();
    child.kill();
    await child.exited;
  }
}

if (process.argv.includes("--agent")) {
  const at = process.argv.indexOf("--sizes");
  const sizes = at < 0 ? [0, 1000, 5000, 10000] : (process.argv[at + 1] ?? "").split(",").map(Number);
  const rows: string[][] = [];
  for (const pods of sizes) rows.push(await agentRss(pods));
  console.log(table(["pods", "services", "agent VmRSS", "start to listed"], rows));
} else if (process.argv[2] === "--serve") {
  await serve(Number(process.argv[3]));
} else if (process.argv[2] === "--measure") {
  // one size per process, so that no size inherits another's heap
  console.log(JSON.stringify(await measure(Number(process.argv[3]))));
} else {
  const reason = kubeletUnavailableReason();
  if (reason !== null) {
    console.error(reason);
    process.exit(1);
  }
  const at = process.argv.indexOf("--sizes");
  const sizes = at < 0 ? [1000, 5000, 10000] : (process.argv[at + 1] ?? "").split(",").map(Number);
  const rows: string[][] = [];
  for (const pods of sizes) {
    const extra = PAGE_SIZE === undefined ? [] : ["--page-size", String(PAGE_SIZE)];
    const child = Bun.spawn([process.execPath, import.meta.path, "--measure", String(pods), ...extra], { stdout: "pipe", stderr: "inherit" });
    const text = await new Response(child.stdout).text();
    if ((await child.exited) !== 0) throw new Error(`measuring ${pods} pods failed`);
    rows.push(JSON.parse(text.trim().split("\n").at(-1)!) as string[]);
  }
  console.log(
    table(["pods", "services", "slices", "pod IPs", "index heap", "per pod", "list all", "worst 10 ms-timer stall", "per watch event"], rows),
  );
}
