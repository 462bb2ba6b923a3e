// A burst of connection closes: `--pairs` loopback connections (default 100,000: 200,000 sockets)
// are opened while the agent runs, then all closed at once, in about a second. Every socket's
// close is one record (both ends of each connection are on this node), so the kernel queues
// 200,000 records faster than any steady load would. Reported: the ring buffer size, how long the
// closes took, records lost in the kernel (the agent's stop summary), and whether there is
// exactly one line per socket. Each size given in --ring-buffer-sizes is one run.
//
// A socket without a line is one whose close never reached the probe: the kernel skips the
// tracepoint program when it is already running on that CPU (a socket closed in a softirq that
// interrupted it, which a burst makes common) and counts that as the program's recursion_misses,
// shown here from bpftool; under a burst a few more closes reach no program at all (see the
// README's performance section). Exit status 1 means the agent's part failed: records lost in
// the ring buffer, lines dropped, or fewer lines than records read.
//
//   bun scripts/bench/burst.ts [--pairs 100000] [--ring-buffer-sizes 8M] [--short]
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ensureBinary, option, table } from "./common.ts";
import { openConnections } from "./connections.ts";
import { RECORD_SIZE } from "../../src/kernel/record.ts";

const short = process.argv.includes("--short");
const pairs = option("pairs", short ? 5_000 : 100_000);
const sizesAt = process.argv.indexOf("--ring-buffer-sizes");
const sizes = sizesAt > 0 ? (process.argv[sizesAt + 1] ?? "8M").split(",") : ["8M"];
const RECORD_BYTES = RECORD_SIZE + 8; // conn_record and the ring buffer's own header per record

const binary = ensureBinary();
const dir = mkdtempSync(join(tmpdir(), "kal-burst-"));

function bytesOf(size: string): number {
  const m = /^(\d+)([KMG]?)$/i.exec(size);
  if (!m) throw new Error(`not a size: ${size}`);
  return Number(m[1]) * ({ "": 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 }[m[2]!.toUpperCase()] ?? 1);
}

async function readUntil(stream: ReadableStream<Uint8Array>, needle: string, sink: { text: string }): Promise<void> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the agent exited before "${needle}": ${sink.text}`);
    sink.text += decoder.decode(value, { stream: true });
    if (sink.text.includes(needle)) break;
  }
  // Keep collecting, for the stop summary.
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      sink.text += decoder.decode(value, { stream: true });
    }
  })();
}

/**
 * How often the kernel skipped the agent's tracepoint program because it was already running on
 * that CPU (a close in a softirq that interrupted the program: its recursion guard), read from
 * the agent's own program (found through its file descriptors) with bpftool; null without it.
 */
function recursionMisses(pid: number): number | null {
  if (Bun.which("bpftool") === null) return null;
  let misses = 0;
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    let info: string;
    try {
      info = readFileSync(`/proc/${pid}/fdinfo/${fd}`, "utf8");
    } catch {
      continue;
    }
    const id = /^prog_id:\s*(\d+)/m.exec(info)?.[1];
    if (id === undefined) continue;
    const shown = Bun.spawnSync(["bpftool", "-j", "prog", "show", "id", id], { stdout: "pipe", stderr: "ignore" });
    const prog = JSON.parse(shown.stdout.toString() || "{}") as { name?: string; recursion_misses?: number };
    // handle_set_state or handle_set_state_sk (bpftool may show the kernel's 15-character name)
    if (prog.name?.startsWith("handle_set_stat")) misses += prog.recursion_misses ?? 0;
  }
  return misses;
}

/** Waits until the file stops growing for `quietMs`; returns when it last grew. */
async function settled(path: string, quietMs: number, timeoutMs: number): Promise<number> {
  let size = -1;
  let grewAt = performance.now();
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const now = statSync(path).size;
    if (now !== size) {
      size = now;
      grewAt = performance.now();
    } else if (performance.now() - grewAt >= quietMs) {
      break;
    }
    await Bun.sleep(20);
  }
  return grewAt;
}

async function run(size: string) {
  const out = join(dir, `lines-${size}.txt`);
  const agent = Bun.spawn(
    [binary, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", join(dir, "agent.lock"), "--ring-buffer-size", size],
    { stdin: "ignore", stdout: Bun.file(out), stderr: "pipe" },
  );
  const stderr = { text: "" };
  try {
    await readUntil(agent.stderr, "capturing TCP connections", stderr);
    const connections = await openConnections(pairs);
    let close: { closed: number; closeSeconds: number };
    let drained: number;
    const closing = performance.now();
    try {
      close = await connections.closeAll();
      drained = ((await settled(out, 1000, 60_000)) - closing) / 1000;
    } finally {
      await connections.dispose();
    }
    const missed = recursionMisses(agent.pid);
    agent.kill("SIGTERM");
    const code = await agent.exited;
    if (code !== 0) throw new Error(`the agent exited with ${code}: ${stderr.text}`);
    const lost = Number(/(\d+) records lost in the kernel/.exec(stderr.text)?.[1] ?? Number.NaN);
    const dropped = Number(/(\d+) lines dropped/.exec(stderr.text)?.[1] ?? Number.NaN);
    const read = Number(/(\d+) records read/.exec(stderr.text)?.[1] ?? Number.NaN);
    const usage = agent.resourceUsage();
    // Our lines: both ends of connections to the holders' ports, on loopback.
    const needles = connections.ports.map((port) => `dst.addr=127.0.0.1:${port},`);
    let lines = 0;
    for (const line of (await Bun.file(out).text()).split("\n")) if (needles.some((n) => line.includes(n))) lines++;
    return {
      size,
      closed: close.closed,
      closeSeconds: close.closeSeconds,
      drained,
      lost,
      dropped,
      read,
      missed,
      lines,
      agentCpu: usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 : Number.NaN,
    };
  } finally {
    if (agent.exitCode === null) agent.kill("SIGKILL");
    await agent.exited;
  }
}

try {
  const rows: string[][] = [];
  let failed = false;
  for (const size of sizes) {
    const r = await run(size);
    const exact = r.lines === r.closed;
    // The agent's part: nothing lost in the ring buffer, a line for every record it read (the
    // records read include other connections on the node, hence at least our lines).
    failed ||= r.lost !== 0 || r.dropped !== 0 || r.read < r.lines;
    rows.push([
      `${size} (${Math.floor(bytesOf(size) / RECORD_BYTES).toLocaleString("en-US")} records)`,
      r.closed.toLocaleString("en-US"),
      `${r.closeSeconds.toFixed(2)} s (${Math.round(r.closed / r.closeSeconds).toLocaleString("en-US")}/s)`,
      `${r.drained.toFixed(2)} s`,
      String(r.lost),
      String(r.dropped),
      `${exact ? "yes" : "NO"} (${r.lines.toLocaleString("en-US")}/${r.closed.toLocaleString("en-US")})`,
      r.missed === null ? "? (no bpftool)" : String(r.missed),
      r.agentCpu.toFixed(2),
    ]);
  }
  console.log(`burst: ${pairs.toLocaleString("en-US")} loopback connections opened, then every socket closed at once (one record each)`);
  console.log(
    table(
      [
        "ring buffer",
        "sockets closed",
        "closes took",
        "all lines out after",
        "records lost",
        "lines dropped",
        "one line per socket",
        "program runs skipped (recursion)",
        "agent CPU s",
      ],
      rows,
    ),
  );
  process.exitCode = failed ? 1 : 0;
} finally {
  if (process.env.BURST_DEBUG) console.error(`kept ${dir}`);
  else rmSync(dir, { recursive: true, force: true });
}
