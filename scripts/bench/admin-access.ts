// What the admin API's access rule costs: a request that may change state makes the agent find
// the peer's socket in the socket table (/proc/self/net/tcp) and its holder in /proc/*/fd, which
// grows with the node's connections and processes; a read costs nothing of the kind. Measured on
// the compiled agent (lines to /dev/null) with 0 and then N open loopback connections (held by
// other processes, 2N sockets in the table and 2N descriptors to look through): the latency of
// GET /healthz and of POST /workload_metrics?enable=false (a change that changes nothing), each
// sent by a new curl process as a CLI would be, and how late GET /healthz answers (sent from
// here every 5 ms) while change requests are served back to back: the event loop's share of the
// lookup, the table being read on another thread.
//
//   bun scripts/bench/admin-access.ts [--connections 20000] [--requests 100] [--short]
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, median, option, table } from "./common.ts";
import { openConnections } from "./connections.ts";

const short = process.argv.includes("--short");
const pairs = option("connections", short ? 1000 : 20_000);
const requests = option("requests", short ? 10 : 100);
const binary = ensureBinary();
const dir = mkdtempSync(join(tmpdir(), "kal-admin-access-"));

function freePort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const { port } = listener;
  listener.stop(true);
  return port;
}

const percentile = (values: number[], p: number) => [...values].sort((a, b) => a - b)[Math.min(values.length - 1, Math.floor(values.length * p))] ?? Number.NaN;
const ms = (value: number) => value.toFixed(2);

/** One request by a new curl process: its own measure of the time to the answer, ms. */
async function curl(url: string, method: string): Promise<number> {
  const proc = Bun.spawn(["curl", "--silent", "--output", "/dev/null", "--write-out", "%{http_code} %{time_total}", "--request", method, url], { stdout: "pipe" });
  const [status, seconds] = (await new Response(proc.stdout).text()).split(" ");
  if (status !== "200") throw new Error(`${method} ${url} answered ${status}`);
  return Number(seconds) * 1000;
}

async function timed(url: string, method: string): Promise<number> {
  const started = performance.now();
  const response = await fetch(url, { method, headers: { connection: "close" } });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`${method} ${url} answered ${response.status}`);
  return performance.now() - started;
}

async function measure(connections: number): Promise<string[]> {
  const held = connections === 0 ? null : await openConnections(connections);
  const port = freePort();
  const agent = Bun.spawn([binary, "run", "--no-kubelet", "--admin-addr", `127.0.0.1:${port}`, "--lock-file", join(dir, `agent-${port}.lock`)], {
    stdout: "ignore",
    stderr: "ignore",
  });
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 200 && (await fetch(`${base}/debug/ready`).then((r) => r.status, () => 0)) !== 200; i++) await Bun.sleep(50);
    const rows = Number((await Bun.file("/proc/net/tcp").text()).split("\n").length - 2);
    const reads: number[] = [];
    const changes: number[] = [];
    for (let i = 0; i < requests; i++) {
      reads.push(await curl(`${base}/healthz`, "GET"));
      changes.push(await curl(`${base}/workload_metrics?enable=false`, "POST"));
    }
    // Reads every 5 ms while change requests run back to back.
    let busy = true;
    const during: number[] = [];
    const reader = (async () => {
      while (busy) {
        during.push(await timed(`${base}/healthz`, "GET"));
        await Bun.sleep(5);
      }
    })();
    for (let i = 0; i < requests; i++) await curl(`${base}/workload_metrics?enable=false`, "POST");
    busy = false;
    await reader;
    return [
      connections.toLocaleString("en-US"),
      rows.toLocaleString("en-US"),
      `${ms(median(reads))} / ${ms(percentile(reads, 0.99))}`,
      `${ms(median(changes))} / ${ms(percentile(changes, 0.99))}`,
      `${ms(median(during))} / ${ms(percentile(during, 0.99))} / ${ms(Math.max(...during))}`,
    ];
  } finally {
    agent.kill("SIGTERM");
    await agent.exited;
    await held?.dispose();
  }
}

try {
  const rows = [await measure(0), await measure(pairs)];
  console.log(
    table(
      ["open connections", "rows in /proc/net/tcp", "curl GET /healthz, ms (median / p99)", "curl POST (a change), ms (median / p99)", "GET during back-to-back POSTs, ms (median / p99 / max)"],
      rows,
    ),
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
