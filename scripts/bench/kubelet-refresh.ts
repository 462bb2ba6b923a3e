// Refreshing the kubelet pod list: what one refresh of a busy node's list costs, and what it does
// to line latency. A local HTTPS kubelet (test/support/kubelet-server.ts, certificate made by openssl)
// serves a real-shaped PodList (test/support/kubelet-pods.ts: managedFields, probes, dual stack...)
// from a child process, so that serving megabytes of JSON never runs on the thread measured.
//
// Two ways to read it: the whole text parsed at once (JSON.parse of the document, then the schema
// check and the index: the thread is held for all of it), and the agent's, read as it arrives
// (src/kube/kubelet/refresh.ts: pod by pod, in slices of at most 2 ms with the event loop turning between).
//
// 1. One refresh, for lists of 100, 1,000 and 5,000 pods (median and worst of --rounds).
// 2. Line latency: the agent's line path is a 10 ms timer (drain the ring buffer, write lines).
//    While a 1,000-pod list is refreshed every 100 ms (50 times the default rate), how late does
//    that timer fire? Without refreshes, with each way of reading.
//
//   bun scripts/bench/kubelet-refresh.ts [--rounds 20] [--seconds 5]
import { median, option, table } from "./common.ts";
import { KubeletClient, type KubeletClientConfig } from "../../src/kube/kubelet/client.ts";
import { PodIndex } from "../../src/kube/kubelet/pod-index.ts";
import { parsePodList } from "../../src/kube/kubelet/pod-list.ts";
import { type RefreshOutcome, refreshOnce } from "../../src/kube/kubelet/refresh.ts";
import { KubeletRefresher, type Refresher } from "../../src/kube/kubelet/refresh.ts";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { kubeletUnavailableReason, startKubelet } from "../../test/support/kubelet-server.ts";

// ── the kubelet, in a child process ─────────────────────────────────────────
// `--serve`: print the kubelet's settings as one JSON line, then for each line "<n>" on stdin
// serve a list of n pods and answer "ok"; exit when stdin closes.
async function serveKubelet(): Promise<void> {
  await using kubelet = await startKubelet();
  console.log(JSON.stringify({ url: kubelet.url, tokenFile: kubelet.tokenFile, caFile: kubelet.caFile }));
  for await (const line of console) {
    kubelet.listText = JSON.stringify(busyNodePodList(Number(line)));
    console.log("ok");
  }
}
if (process.argv.includes("--serve")) {
  await serveKubelet(); // its certificate directory is removed on the way out
  process.exit(0);
}

const rounds = option("rounds", 20);
const seconds = option("seconds", 5);
const missing = kubeletUnavailableReason();
if (missing !== null) {
  console.error(missing);
  process.exit(1);
}

const server = Bun.spawn([process.execPath, import.meta.path, "--serve"], { stdin: "pipe", stdout: "pipe", stderr: "inherit" });
const serverLines = (async function* () {
  const decoder = new TextDecoder();
  let pending = "";
  for await (const chunk of server.stdout) {
    pending += decoder.decode(chunk, { stream: true });
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl);
      pending = pending.slice(nl + 1);
    }
  }
})();
async function nextLine(): Promise<string> {
  const { value, done } = await serverLines.next();
  if (done) throw new Error("the kubelet child exited");
  return value;
}
async function serve(pods: number): Promise<void> {
  server.stdin.write(`${pods}\n`);
  await server.stdin.flush();
  if ((await nextLine()) !== "ok") throw new Error("the kubelet child did not answer ok");
}
const settings = JSON.parse(await nextLine()) as { url: string; tokenFile: string; caFile: string };
const config: KubeletClientConfig = { ...settings, insecureSkipTlsVerify: false, timeoutMs: 10_000 };

const ms = (n: number) => n.toFixed(n < 10 ? 2 : 1);
const worst = (values: number[]) => Math.max(...values);
const quantile = (values: number[], q: number) =>
  [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(q * values.length))] ?? Number.NaN;

/** Parse + check + index of a whole pod list's text at once: what the agent no longer does. */
function indexPodListText(text: string): { ok: true; index: PodIndex; parseMs: number; indexMs: number } | { ok: false; failure: { kind: "invalid"; detail: string } } {
  const t0 = performance.now();
  const list = parsePodList(text);
  const t1 = performance.now();
  if (!list.ok) return { ok: false, failure: { kind: "invalid", detail: list.problem } };
  const index = PodIndex.fromPods(list.pods);
  return { ok: true, index, parseMs: t1 - t0, indexMs: performance.now() - t1 };
}

/** The whole text at once, for comparison: fetch, then parse, check and index in one go. */
class WholeTextRefresher implements Refresher {
  readonly #client = new KubeletClient(config);
  async run(): Promise<RefreshOutcome> {
    const fetched = await this.#client.fetchPods();
    if (!fetched.ok) return fetched;
    const built = indexPodListText(fetched.text);
    if (!built.ok) return built;
    return { ok: true, index: built.index, bytes: fetched.bytes, timings: { fetchMs: 0, parseMs: built.parseMs, indexMs: built.indexMs } };
  }
  close(): void {}
}

try {
  // ── 1. one refresh ────────────────────────────────────────────────────────
  const perRefresh: string[][] = [];
  for (const pods of [100, 1_000, 5_000]) {
    await serve(pods);
    const client = new KubeletClient(config);
    const t = { fetch: [] as number[], parse: [] as number[], index: [] as number[], streamTotal: [] as number[], streamParse: [] as number[] };
    let bytes = 0;
    let ips = 0;
    for (let r = 0; r < rounds + 2; r++) {
      const t0 = performance.now();
      const fetched = await client.fetchPods();
      const fetchMs = performance.now() - t0;
      if (!fetched.ok) throw new Error(fetched.failure.detail);
      const built = indexPodListText(fetched.text);
      if (!built.ok) throw new Error(built.failure.detail);
      const t1 = performance.now();
      const streamed = await refreshOnce(client);
      const t2 = performance.now();
      if (!streamed.ok) throw new Error(streamed.failure.detail);
      if (r < 2) continue; // warm-up
      t.fetch.push(fetchMs);
      t.parse.push(built.parseMs);
      t.index.push(built.indexMs);
      t.streamTotal.push(t2 - t1);
      t.streamParse.push(streamed.timings.parseMs + streamed.timings.indexMs);
      bytes = fetched.bytes;
      ips = streamed.index.size;
    }
    const cell = (values: number[]) => `${ms(median(values))} / ${ms(worst(values))}`;
    perRefresh.push([
      String(pods),
      `${(bytes / 2 ** 20).toFixed(1)} MiB`,
      String(ips),
      cell(t.fetch),
      cell(t.parse),
      cell(t.index),
      cell(t.streamTotal),
      cell(t.streamParse),
    ]);
  }
  console.log(`\nOne refresh, ms (median / worst of ${rounds}; ${navigator.hardwareConcurrency} CPUs):\n`);
  console.log(
    table(
      [
        "pods",
        "JSON",
        "pod IPs",
        "whole text: fetch (HTTPS)",
        "JSON.parse + check (thread held)",
        "index",
        "as it arrives (the agent): refresh",
        "of which parse + check + index, in slices",
      ],
      perRefresh,
    ),
  );

  // ── 2. line latency ───────────────────────────────────────────────────────

  /** How late a 10 ms timer fires over `seconds`, while `refresher` (if any) runs every 100 ms. */
  async function timerLateness(refresher: Refresher | null): Promise<{ lateness: number[]; refreshes: number }> {
    const period = 10;
    const lateness: number[] = [];
    let running = true;
    let expected = performance.now() + period;
    const tick = () => {
      const now = performance.now();
      lateness.push(Math.max(0, now - expected));
      expected = now + period;
      if (running) setTimeout(tick, period);
    };
    setTimeout(tick, period);
    let refreshes = 0;
    const end = performance.now() + seconds * 1000;
    while (performance.now() < end) {
      const started = performance.now();
      if (refresher !== null) {
        const outcome = await refresher.run();
        if (!outcome.ok) throw new Error(outcome.failure.detail);
        refreshes++;
      }
      await Bun.sleep(Math.max(1, 100 - (performance.now() - started)));
    }
    running = false;
    await Bun.sleep(2 * period);
    return { lateness, refreshes };
  }

  await serve(1_000);
  const latencyRows: string[][] = [];
  for (const [name, make] of [
    ["no refresh", () => null],
    ["the whole text at once", () => new WholeTextRefresher()],
    ["as it arrives (the agent)", () => new KubeletRefresher(config)],
  ] as const) {
    const refresher = make();
    if (refresher !== null) await refresher.run(); // warm
    const { lateness, refreshes } = await timerLateness(refresher);
    refresher?.close();
    latencyRows.push([name, String(refreshes), ms(quantile(lateness, 0.5)), ms(quantile(lateness, 0.99)), ms(worst(lateness))]);
  }
  console.log(`\nLine latency: lateness of the 10 ms line timer, ms, while a 1,000-pod list is refreshed every 100 ms (${seconds} s each):\n`);
  console.log(table(["refresh", "refreshes", "median", "p99", "worst"], latencyRows));
  console.log("\nThe agent refreshes every 5 s by default, and at most once a second more when a new pod shows up.");
} finally {
  server.stdin.end();
  await server.exited;
}
