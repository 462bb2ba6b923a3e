// What the compiled agent costs a node to keep around: its resident memory idle, with a
// 1,000-pod kubelet pod list indexed, and with that plus 20,000 open loopback connections (40,000
// tracked sockets) reported every 5 s; how long it takes from exec to answering ready on its
// admin API; and the size of the binary. Lines go to /dev/null.
//
// The kubelet is a local one (test/support/kubelet-server.ts over plain HTTP) serving a busy node's
// real-shaped pod list (test/support/kubelet-pods.ts). Memory is read after the agent has settled:
// VmRSS and VmHWM (the most it was ever resident) from /proc/<pid>/status, and what VmRSS is made
// of from /proc/<pid>/smaps: the binary's pages (the Bun runtime's code and data; shared with the
// page cache), the ring buffer (kernel memory the agent maps, its data pages twice so that a
// record can wrap around), and the agent's own (anonymous) memory. For comparison, the floor:
// a trivial program compiled the same way that uses the same runtime features (bun:ffi, an HTTP
// server, fetch, optimized JIT code). Own memory moves with each refresh and report: it is sampled
// every 250 ms for one 5 s cycle, and the median and the highest are shown.
//
// --hold <seconds>: the agent with the pods and the connections keeps running that long more and
// is sampled again (a last row): whether the figure holds once its periodic work (a refresh and a
// report every 5 s) has run many more times, as on a node after hours.
//
//   bun scripts/bench/footprint.ts [--connections 20000] [--starts 5] [--hold 0] [--short] [--binary <path>]
// (--binary: another build of the agent, e.g. of an earlier commit, for a before/after)
import { mkdirSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyNodePodList } from "../../test/support/kubelet-pods.ts";
import { startKubelet } from "../../test/support/kubelet-server.ts";
import { ensureBinary, median, option, table } from "./common.ts";
import { openConnections } from "./connections.ts";

const short = process.argv.includes("--short");
const PODS = 1000;
const pairs = option("connections", short ? 1000 : 20_000);
const starts = option("starts", short ? 2 : 5);
const holdS = option("hold", 0);
const reportInterval = short ? 1 : 5;
const settleMs = short ? 1500 : 3000;

const binaryAt = process.argv.indexOf("--binary");
const binary = binaryAt < 0 ? ensureBinary() : process.argv[binaryAt + 1]!;
const dir = mkdtempSync(join(tmpdir(), "kal-footprint-"));

interface Memory {
  rss: number;
  peak: number;
  /** resident pages of the executable itself */
  binary: number;
  /** resident pages of BPF maps mapped into the process (the ring buffer) */
  bpfMaps: number;
  /** anonymous memory: the JS heap, malloc, stacks */
  own: number;
}

function memoryOf(pid: number): Memory {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN) * 1024;
  const exe = readlinkSync(`/proc/${pid}/exe`);
  let binary = 0;
  let bpfMaps = 0;
  let own = 0;
  let name = "";
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    const mapping = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (mapping) {
      name = mapping[1]!;
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (!rss) continue;
    const bytes = Number(rss[1]) * 1024;
    if (name === exe) binary += bytes;
    else if (name === "anon_inode:bpf-map") bpfMaps += bytes;
    else if (name === "" || name.startsWith("[heap]") || name.startsWith("[stack") || name.startsWith("[anon")) own += bytes;
  }
  return { rss: kb("VmRSS"), peak: kb("VmHWM"), binary, bpfMaps, own };
}

/** A free TCP port on 127.0.0.1 for the admin API. */
function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: () => undefined } });
  const port = server.port;
  server.stop(true);
  return port;
}

class RunningAgent {
  readonly proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  readonly admin: string;
  readonly startedAt = performance.now();
  readonly #stderr: Promise<string>;

  constructor(args: string[]) {
    const port = freePort();
    this.admin = `http://127.0.0.1:${port}`;
    this.proc = Bun.spawn(
      [binary, "run", "--admin-addr", `127.0.0.1:${port}`, "--lock-file", join(dir, `agent-${port}.lock`), ...args],
      { stdin: "ignore", stdout: "ignore", stderr: "pipe" },
    );
    this.#stderr = new Response(this.proc.stderr).text();
  }

  /** Milliseconds from exec until GET /debug/ready answered 200. */
  async ready(timeoutMs = 10_000): Promise<number> {
    for (;;) {
      try {
        const response = await fetch(`${this.admin}/debug/ready`);
        if (response.status === 200) return performance.now() - this.startedAt;
      } catch {
        // not listening yet
      }
      if (this.proc.exitCode !== null) throw new Error(`the agent exited (${this.proc.exitCode}): ${await this.#stderr}`);
      if (performance.now() - this.startedAt > timeoutMs) throw new Error("the agent did not get ready");
      await Bun.sleep(2);
    }
  }

  async metric(name: string): Promise<number> {
    const text = await (await fetch(`${this.admin}/metrics`)).text();
    return Number(new RegExp(`^kmesh_accesslog_${name}(?:\\{[^}]*\\})? (\\S+)$`, "m").exec(text)?.[1] ?? Number.NaN);
  }

  async until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    while (!(await check())) {
      if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}: ${await this.stop()}`);
      await Bun.sleep(50);
    }
  }

  async stop(): Promise<string> {
    if (this.proc.exitCode === null) this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 10_000);
    await this.proc.exited;
    clearTimeout(timer);
    return this.#stderr;
  }
}

const MB = 1024 * 1024;
const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;
/** The last sample, with own memory's median and highest over all of them. */
type Sampled = Memory & { ownHighest: number };
const memoryRow = (state: string, m: Sampled) => [state, mb(m.rss), mb(m.binary), mb(m.bpfMaps), mb(m.own), mb(m.ownHighest), mb(m.peak)];

/** `pid`'s memory every 250 ms for one 5 s cycle (a pod-list refresh, a periodic report). */
async function sampled(pid: number): Promise<Sampled> {
  const samples: Memory[] = [];
  for (let i = 0; i < 20; i++) {
    samples.push(memoryOf(pid));
    await Bun.sleep(250);
  }
  const own = samples.map((m) => m.own);
  return { ...samples.at(-1)!, own: median(own), ownHighest: Math.max(...own) };
}

/** The floor: the same runtime features in a trivial program compiled the same way. */
async function floor(): Promise<Sampled> {
  const src = join(dir, "floor");
  mkdirSync(src);
  writeFileSync(
    join(src, "main.ts"),
    `import { dlopen, JSCallback } from "bun:ffi";
const libc = dlopen("libc.so.6", { getpid: { args: [], returns: "i32" } });
const callback = new JSCallback((x: number) => x + 1, { args: ["i32"], returns: "i32" });
const server = Bun.serve({ hostname: "127.0.0.1", port: 0, fetch: () => new Response("OK") });
await fetch(\`http://127.0.0.1:\${server.port}/\`);
let x = 0;
for (let i = 0; i < 5e7; i++) x += (i * 7) % 13; // long enough for the optimizing JIT tiers
console.log(libc.symbols.getpid(), x, callback.ptr !== null);
setInterval(() => undefined, 1000);
`,
  );
  const out = join(src, "floor");
  const build = Bun.spawnSync(
    [process.execPath, "build", "--compile", "--no-compile-autoload-dotenv", "--no-compile-autoload-bunfig", join(src, "main.ts"), "--outfile", out],
    { stdout: "ignore", stderr: "pipe" },
  );
  if (build.exitCode !== 0) throw new Error(`could not build the floor program: ${build.stderr.toString()}`);
  const proc = Bun.spawn([out], { stdout: "pipe", stderr: "inherit" });
  try {
    const reader = proc.stdout.getReader();
    await reader.read(); // its line: the JIT has run
    await Bun.sleep(settleMs);
    return await sampled(proc.pid);
  } finally {
    proc.kill("SIGKILL");
    await proc.exited;
  }
}

try {
  const rows: string[][] = [];

  // Start-up: exec → ready, several times (the first one also warms the page cache).
  const readyMs: number[] = [];
  for (let i = 0; i < starts; i++) {
    const agent = new RunningAgent(["--no-kubelet"]);
    try {
      readyMs.push(await agent.ready());
      if (i === starts - 1) {
        await Bun.sleep(settleMs);
        rows.push(memoryRow("idle (--no-kubelet)", await sampled(agent.proc.pid)));
      }
    } finally {
      await agent.stop();
    }
  }

  await using kubelet = await startKubelet({ pods: (busyNodePodList(PODS) as { items: unknown[] }).items, plainHttp: true });
  const agent = new RunningAgent([
    "--kubelet-url",
    kubelet.url,
    "--connection-metrics",
    "--report-interval",
    String(reportInterval),
  ]);
  try {
    await agent.ready();
    await agent.until("the pod list", async () => (await agent.metric("kubelet_pods_indexed")) > 0);
    const indexed = await agent.metric("kubelet_pods_indexed");
    await Bun.sleep(settleMs);
    rows.push(memoryRow(`${PODS.toLocaleString("en-US")} pods in the kubelet's list (${indexed} indexed)`, await sampled(agent.proc.pid)));

    const connections = await openConnections(pairs);
    try {
      await agent.until("the connections to be tracked", async () => (await agent.metric("connections_open")) >= 2 * pairs);
      const runs = await agent.metric("periodic_report_runs_total");
      // Two periodic reports of every connection, then settle.
      await agent.until("two periodic reports", async () => (await agent.metric("periodic_report_runs_total")) >= runs + 2, 4 * reportInterval * 1000 + 10_000);
      await Bun.sleep(settleMs);
      const memory = await sampled(agent.proc.pid);
      const open = await agent.metric("connections_open");
      rows.push(
        memoryRow(
          `+ ${pairs.toLocaleString("en-US")} open connections (${open.toLocaleString("en-US")} sockets tracked, all reported every ${reportInterval} s)`,
          memory,
        ),
      );
      if (holdS > 0) {
        const [refreshes, reports] = [await agent.metric("kubelet_refreshes_total"), await agent.metric("periodic_report_runs_total")];
        await Bun.sleep(holdS * 1000);
        const held = await sampled(agent.proc.pid);
        const more = async (name: string, before: number) => ((await agent.metric(name)) - before).toLocaleString("en-US");
        rows.push(
          memoryRow(
            `+ ${holdS} s more (${await more("kubelet_refreshes_total", refreshes)} refreshes, ${await more("periodic_report_runs_total", reports)} reports)`,
            held,
          ),
        );
      }
    } finally {
      await connections.closeAll();
      await connections.dispose();
    }
  } finally {
    await agent.stop();
  }

  rows.push(memoryRow("floor: a trivial program with the same runtime features (no ring buffer)", await floor()));
  console.log(`footprint: ${binary}`);
  console.log(table(["agent", "resident (VmRSS)", "of which: binary (Bun runtime)", "ring buffer mapping", "own memory (median)", "own, highest", "peak (VmHWM)"], rows));
  console.log(
    table(
      ["exec → GET /debug/ready 200", "binary size"],
      [
        [
          `${median(readyMs).toFixed(0)} ms median of ${readyMs.length} (${Math.min(...readyMs).toFixed(0)}–${Math.max(...readyMs).toFixed(0)} ms)`,
          mb(statSync(binary).size),
        ],
      ],
    ),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
