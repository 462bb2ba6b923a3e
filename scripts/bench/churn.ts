// Connection churn: what the agent costs a node that opens a fresh TCP
// connection per request. nginx (keepalive off) on loopback and wrk
// (`Connection: close`) run in alternation (every other round in reverse order) with the agent off, logging text
// to a file, and logging JSON to a file. For each: connections/s, the ratio
// to "off", the agent's CPU per 100k lines (from when it has attached to its exit, and again from
// the first second of load to its stop, without the JIT's warm-up), records lost in the kernel, and
// whether the line count is exact (2 lines per connection on loopback,
// counted against nginx's own accept counter).
//
// The agent runs without a kubelet, admin API or the node's lock (its own lock file), so that the
// figures are the probe and the line path alone and another agent on the node is no obstacle.
//
// Two peers run in rounds of their own, alternating with ours, each writing to a file: bpftrace
// with a tcplife-style script on the same tracepoint (scripts/bench/tcplife.bt), and libbpf-tools'
// tcplife (C and libbpf, Debian package libbpf-tools). Each must show that it really attached: it
// is started, then nginx is asked for its status until the peer's output has that connection's
// line; its lines for the round's connections are counted (the table's last column). tracefs is
// mounted when /sys/kernel/tracing/events is missing (bpftrace finds no tracepoint without it).
// --no-peers leaves them out.
//
// --hooks adds a fourth kind of round: the agent attached with --accesslog=false, so that the
// kernel tracks every connection but writes no record and the agent has nothing to do: the cost
// of the kernel hooks alone, the floor under the logging rounds.
//
// --filtered adds rounds of the agent writing text with --exclude-port <nginx's port>: every
// connection of the load is dropped by a filter the kernel decides (README, Filters), so the
// agent should read no record of it. Its CPU is per connection (the table's last CPU column, which
// every agent round fills), and it must write no line of nginx's port and read no record at all
// but the odd one of the machine's other connections (the records the agent says it read at exit).
//
// --compare <binary> adds text and JSON rounds (and hooks rounds, with --hooks) of another build of
// the agent (another commit, a variant), alternating with this tree's, so that two builds are
// compared in one run.
//
// --bpf-stats: what each of the agent's BPF programs costs the kernel. kernel.bpf_stats_enabled is
// set for the run (and put back after, whatever happens), and each agent round reads every
// program's run count and run time (bpftool prog show) before and after wrk: a second table gives,
// per program, its runs per connection, nanoseconds per run and per connection. The kernel's
// clock reads around each run cost some churn of their own: take the rates from a run without it.
//
// Single test files run without the machine's lock, and their agents put their programs on the same
// tracepoints: the table is followed by how many rounds began or ended with another agent's
// state-change program loaded (a WARNING when any did).
//
// --warm <seconds>: every round (no agent, each agent, each peer) first runs the same load that
// long, unmeasured, once the tool has attached: the rate and the CPU per line are then those of a
// tool that has been running, as on a node, without its start-up (the agent's JIT compiling its
// line path, some 0.2 s of CPU once per process) and without its stop (the CPU is read before it
// is told to stop). The line count still covers the whole round.
//
// --side-by-side (with --compare): instead of the rounds above, rounds of text and of JSON where both
// builds' agents are attached at once to the same load, each writing its own file: the CPU per line
// of each from the first second of load to its stop, and their ratio, round by round. Alternating
// rounds compare two builds at different moments, and on a shared VM the rate (and with it the CPU
// per line) moved by up to half between two rounds; side by side, both read the same records at
// the same time. Each pays for the other's kernel programs and for sharing the cores, alike.
//
// --conntrack: what the conntrack hook (bpf/conntrack.bpf.c) costs when no NAT happens. The whole
// run moves into a network namespace of its own whose nat table has a rule that never matches, so
// that conntrack tracks every connection (and the hook runs for each) but translates none; the
// agents get a local, empty API server (test/e2e/api-server.ts), since only with one does the
// agent hook conntrack. Compare with --compare <a build without the hook>.
//
//   bun scripts/bench/churn.ts [--rounds 3] [--seconds 5] [--warm 0] [--connections 32] [--hooks] [--filtered] [--no-peers] [--compare <binary> [--side-by-side]] [--bpf-stats] [--conntrack] [--short]
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ensureBinary, ensurePackages, ensureTracefs, median, option, table } from "./common.ts";
import { startApiServer } from "../../test/e2e/api-server.ts";

const conntrack = process.argv.includes("--conntrack");
const CHURN_NETNS = "KAL_CHURN_NETNS";
if (conntrack && process.env[CHURN_NETNS] === undefined) {
  // Run again inside a namespace of our own where conntrack is on and the NAT never matches.
  const netns = `kal-churn-${process.pid}`;
  const sh = (argv: string[]) => {
    const r = Bun.spawnSync(argv, { stderr: "pipe" });
    if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString().trim()}`);
  };
  sh(["ip", "netns", "add", netns]);
  try {
    sh(["ip", "-n", netns, "link", "set", "lo", "up"]);
    sh(["ip", "netns", "exec", netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.1", "-p", "tcp", "-j", "DNAT", "--to-destination", "192.0.2.2"]);
    const inside = Bun.spawn(["ip", "netns", "exec", netns, process.execPath, ...process.argv.slice(1)], {
      env: { ...process.env, [CHURN_NETNS]: netns },
      stdio: ["inherit", "inherit", "inherit"],
    });
    process.exitCode = await inside.exited;
  } finally {
    Bun.spawnSync(["ip", "netns", "del", netns]);
  }
  process.exit();
}

/** off: no agent; hooks: the agent attached with --accesslog=false (the kernel tracks every
 * connection but writes no record: the cost of the hooks alone); text, json: lines to a file;
 * text', json': the same with the --compare binary; bpftrace, tcplife: the peers. */
type Mode = "off" | "hooks" | "hooks'" | "filtered" | "text" | "json" | "text'" | "json'" | "bpftrace" | "tcplife";
const peers = !process.argv.includes("--no-peers");
const compareAt = process.argv.indexOf("--compare");
const compared = compareAt > 0 && process.argv[compareAt + 1] !== undefined ? resolve(process.argv[compareAt + 1]!) : undefined;
const MODES: readonly Mode[] = [
  "off",
  ...(process.argv.includes("--hooks") ? (["hooks"] as const) : []),
  ...(process.argv.includes("--hooks") && compared !== undefined ? (["hooks'"] as const) : []),
  ...(process.argv.includes("--filtered") ? (["filtered"] as const) : []),
  "text",
  ...(compared === undefined ? [] : (["text'"] as const)),
  "json",
  ...(compared === undefined ? [] : (["json'"] as const)),
  ...(peers ? (["bpftrace", "tcplife"] as const) : []),
];
const isPeer = (mode: Mode) => mode === "bpftrace" || mode === "tcplife";
type Agent = Bun.Subprocess<"ignore", Bun.BunFile, "pipe">;
const isText = (mode: Mode) => mode === "text" || mode === "text'";
const isHooks = (mode: Mode) => mode === "hooks" || mode === "hooks'";
const logs = (mode: Mode) => mode !== "off" && !isHooks(mode) && mode !== "filtered" && !isPeer(mode);

interface RoundResult {
  mode: Mode;
  connectionsPerSecond: number;
  connections: number;
  lines: number;
  /** what the CPU is divided by: all the lines and connections, or with --warm those of the measured load */
  cpuLines: number;
  cpuConnections: number;
  agentCpuSeconds: number;
  /** the agent's CPU per line from WARM_UP_MS into the load to its stop (NaN: not measured) */
  steadyCpuPerLine: number;
  recordsLost: number;
  /** what the agent said it read at exit */
  recordsRead: number;
  /** --bpf-stats: the agent's programs' runs and time in the kernel during wrk, by name */
  programs: Map<string, ProgramRuns>;
  /** state-change programs of other agents loaded when the round began (see otherAgents) */
  otherAgents: number;
}

interface ProgramRuns {
  runs: number;
  ns: number;
}

const short = process.argv.includes("--short");
const rounds = option("rounds", short ? 1 : 3);
const seconds = option("seconds", short ? 1 : 5);
const warmSeconds = option("warm", 0);
const concurrency = option("connections", 32);
const port = 18000 + Math.floor(Math.random() * 1000);

ensurePackages({ wrk: "wrk", nginx: "nginx-light", ...(peers ? { bpftrace: "bpftrace", tcplife: "libbpf-tools" } : {}) });
if (peers) ensureTracefs();
const binary = ensureBinary();
const dir = mkdtempSync(join(tmpdir(), "kal-churn-"));
/** --conntrack: an empty cluster, so that the agents use an API server (and this one hooks conntrack) */
const api = conntrack ? await startApiServer() : null;
const apiArgs = api === null ? [] : ["--kubeconfig", api.kubeconfig];

function startNginx(): Bun.Subprocess {
  writeFileSync(
    join(dir, "nginx.conf"),
    `user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server {
    listen 127.0.0.1:${port} backlog=4096;
    location = /status { stub_status; }
    location / { return 200 "ok\\n"; }
  }
}
`,
  );
  return Bun.spawn(["nginx", "-p", dir, "-c", join(dir, "nginx.conf")], { stderr: "inherit" });
}

/** nginx's count of accepted connections (this request's own included). */
async function acceptedConnections(): Promise<number> {
  const body = await (await fetch(`http://127.0.0.1:${port}/status`, { headers: { connection: "close" } })).text();
  const match = body.match(/\n\s*(\d+)\s+\d+\s+\d+\s*\n/);
  if (!match?.[1]) throw new Error(`unexpected stub_status answer: ${body}`);
  return Number(match[1]);
}

/**
 * nginx's count once it is settled: nginx may still be accepting what wrk left in the backlog, so
 * its counter is read until it moves only by our own request (each read is one more connection,
 * logged like the others).
 */
async function settledAcceptedConnections(): Promise<number> {
  let after = await acceptedConnections();
  for (let again = 0; again < 50; again++) {
    await Bun.sleep(100);
    const now = await acceptedConnections();
    const settled = now === after + 1;
    after = now;
    if (settled) break;
  }
  return after;
}

async function waitForNginx(): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await acceptedConnections();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error("nginx did not start");
}

/** Runs wrk for the round (or `forSeconds`); `meanwhile` runs while it does. */
async function runWrk(meanwhile?: () => Promise<void>, forSeconds = seconds): Promise<number> {
  const wrk = Bun.spawn(["wrk", "-t1", `-c${concurrency}`, `-d${forSeconds}s`, "-H", "Connection: close", `http://127.0.0.1:${port}/`], {
    stdout: "pipe",
    stderr: "pipe",
  });
  await meanwhile?.();
  const [out, err, exitCode] = await Promise.all([new Response(wrk.stdout).text(), new Response(wrk.stderr).text(), wrk.exited]);
  const rate = out.match(/Requests\/sec:\s+([\d.]+)/);
  if (exitCode !== 0 || !rate?.[1]) throw new Error(`wrk failed: ${out}${err}`);
  return Number(rate[1]);
}

/**
 * The agent's JIT compiles its line path during the first second of load (some 0.17 s of CPU,
 * once per process: README, Connection churn); the CPU per line after it is the steady cost.
 */
const WARM_UP_MS = 1_000;

/** --warm: the unmeasured load before the round's own. */
async function warmUp(): Promise<void> {
  await runWrk(undefined, warmSeconds);
  await Bun.sleep(500); // its last closes reach the tool's output
}

/** The lines of a peer's output that name nginx's port (one per socket closed: two per connection). */
function peerLines(path: string): number {
  let lines = 0;
  const bpftraceNeedle = `:${port} `;
  for (const line of readFileSync(path, "utf8").split("\n")) {
    // bpftrace: "pid comm addr:port addr:port ..."; tcplife: "PID COMM LADDR LPORT RADDR RPORT ..."
    if (line.includes(bpftraceNeedle) || line.split(/\s+/).some((field, i) => (i === 3 || i === 5) && field === String(port))) lines++;
  }
  return lines;
}

/** Starts a peer writing to `outPath` and returns once its output has a line of ours: it is attached. */
async function startPeer(mode: "bpftrace" | "tcplife", outPath: string): Promise<Bun.Subprocess> {
  const argv = mode === "bpftrace" ? ["bpftrace", join(import.meta.dir, "tcplife.bt")] : ["stdbuf", "-oL", "tcplife", "-w"];
  const peer = Bun.spawn(argv, { stdin: "ignore", stdout: Bun.file(outPath), stderr: "ignore" });
  const deadline = Date.now() + 30_000;
  for (;;) {
    await acceptedConnections();
    await Bun.sleep(100);
    if (peerLines(outPath) > 0) return peer;
    if (peer.exitCode !== null || Date.now() > deadline) {
      peer.kill("SIGKILL");
      throw new Error(`${mode} did not attach (exit ${peer.exitCode}): ${readFileSync(outPath, "utf8").slice(0, 2000)}`);
    }
  }
}

/**
 * CPU seconds (user + system) a process has used so far: the sum of its threads' run time in ns
 * (the first field of /proc/<pid>/task/<tid>/schedstat; /proc/<pid>/stat counts in ticks of 10 ms,
 * a tenth of a steady window's 0.1 s). Taken once a process is attached, so that the CPU per line
 * leaves out its start (loading and attaching the probe, compiling: some 0.1-0.2 s for the agent,
 * more for bpftrace), which is no cost per line.
 */
function cpuSecondsSoFar(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // the thread has just exited
    }
  }
  return ns / 1e9;
}

async function round(mode: Mode): Promise<RoundResult> {
  const others = await otherAgents();
  const result = await measureRound(mode);
  return { ...result, otherAgents: Math.max(others, await otherAgents()) };
}

/**
 * The state-change programs of other kmesh-accesslog agents (another engineer's test or run) loaded
 * now. Their programs run at every connection of every round, "off" included, so a round with them
 * measures no clean ratio (README, The kernel's cost per connection). The programs of this bench's
 * agent that has just exited stay listed for a moment (the kernel frees them after an RCU grace
 * period): the least count seen over up to a second.
 */
async function otherAgents(): Promise<number> {
  const loaded = () => [...programRuns().values()].filter((p) => p.name === "handle_set_state" || p.name === "handle_set_state_sk").length;
  let least = loaded();
  for (let poll = 0; poll < 10 && least > 0; poll++) {
    await Bun.sleep(100);
    least = Math.min(least, loaded());
  }
  return least;
}

/** Starts `program` writing lines to `outPath` (`output`: --output's value, then more flags); returns once it has attached. */
async function startAgent(program: string, [output, ...switches]: string[], outPath: string, lockName: string): Promise<Agent> {
  const started: Agent = Bun.spawn([program, "run", "--output", output!, ...switches, ...apiArgs, "--no-kubelet", "--admin-addr", "", "--lock-file", join(dir, lockName)], {
    stdin: "ignore",
    stdout: Bun.file(outPath),
    stderr: "pipe",
  });
  // this tree's agent says whether it hooked conntrack (a build without the hook never does)
  await waitForStderr(started, ["capturing TCP connections", ...(api !== null && program === binary ? ["conntrack: "] : [])]);
  return started;
}

async function measureRound(mode: Mode): Promise<Omit<RoundResult, "otherAgents">> {
  if (isPeer(mode)) return peerRound(mode as "bpftrace" | "tcplife");
  const before = await acceptedConnections();
  const outPath = join(dir, `lines-${mode}.txt`);
  // A new file each round: the agent's stdout does not truncate what an earlier round left.
  rmSync(outPath, { force: true });
  let agent: Agent | null = null;
  let cpuAtStart = 0;
  if (mode !== "off") {
    const output = isText(mode) || isHooks(mode) || mode === "filtered" ? "text" : "json";
    const switches = isHooks(mode) ? ["--accesslog=false"] : mode === "filtered" ? ["--exclude-port", String(port)] : [];
    const program = mode.endsWith("'") ? compared! : binary;
    loadedBefore = bpfStats ? new Set(programRuns().keys()) : new Set();
    const started = await startAgent(program, [output, ...switches], outPath, "agent.lock");
    agent = started;
    runningAgent = started;
  }
  if (warmSeconds > 0) await warmUp();
  const measuredFrom = warmSeconds > 0 ? await acceptedConnections() : before;
  if (agent !== null) cpuAtStart = cpuSecondsSoFar(agent.pid);
  const programsBefore = agent !== null && bpfStats ? programRuns() : new Map<number, ProgramRuns & { name: string }>();
  const warmAgent = agent !== null && logs(mode) && warmSeconds === 0 && seconds * 1000 >= 2 * WARM_UP_MS ? agent : null;
  const warm = { cpu: Number.NaN, connections: Number.NaN };
  const rate = await runWrk(
    warmAgent === null
      ? undefined
      : async () => {
          await Bun.sleep(WARM_UP_MS);
          warm.cpu = cpuSecondsSoFar(warmAgent.pid);
          warm.connections = await acceptedConnections();
        },
  );
  const programs = agent !== null && bpfStats ? runsSince(programsBefore) : new Map<string, ProgramRuns>();
  const after = await settledAcceptedConnections();
  const connections = after - before;
  if (agent === null) {
    return { mode, connectionsPerSecond: rate, connections, lines: 0, cpuLines: 0, cpuConnections: 0, agentCpuSeconds: 0, steadyCpuPerLine: Number.NaN, recordsLost: 0, recordsRead: 0, programs };
  }
  await Bun.sleep(100); // let the last close reports arrive before stopping
  // two lines per connection (both ends are local), this bench's own status requests included
  const cpuBeforeStop = cpuSecondsSoFar(agent.pid);
  const steadyCpuPerLine = (cpuBeforeStop - warm.cpu) / (2 * (after - warm.connections));
  agent.kill("SIGTERM");
  const exitCode = await agent.exited;
  runningAgent = null;
  const stderr = agentStderr.get(agent) ?? "";
  if (exitCode !== 0) throw new Error(`agent exited with ${exitCode}: ${stderr}`);
  const usage = agent.resourceUsage();
  const lost = Number(stderr.match(/(\d+) records lost in the kernel/)?.[1] ?? Number.NaN);
  const recordsRead = Number(stderr.match(/stopped: (\d+) records read/)?.[1] ?? Number.NaN);
  const needle = isText(mode) || isHooks(mode) || mode === "filtered" ? `dst.addr=127.0.0.1:${port},` : `"dst_port":${port},`;
  let lines = 0;
  for (const line of readFileSync(outPath, "utf8").split("\n")) if (line.includes(needle)) lines++;
  return {
    mode,
    connectionsPerSecond: rate,
    connections,
    lines,
    cpuLines: warmSeconds > 0 ? 2 * (after - measuredFrom) : lines,
    cpuConnections: after - measuredFrom,
    agentCpuSeconds: warmSeconds > 0 ? cpuBeforeStop - cpuAtStart : usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 - cpuAtStart : Number.NaN,
    steadyCpuPerLine,
    recordsLost: lost,
    recordsRead,
    programs,
  };
}

async function peerRound(mode: "bpftrace" | "tcplife"): Promise<Omit<RoundResult, "otherAgents">> {
  const outPath = join(dir, `lines-${mode}.txt`);
  rmSync(outPath, { force: true });
  const peer = await startPeer(mode, outPath);
  let cpuAtStart = 0;
  let cpuBeforeStop = 0;
  let attachedLines = 0;
  let before = 0;
  let rate: number;
  let after: number;
  try {
    if (warmSeconds > 0) await warmUp();
    cpuAtStart = cpuSecondsSoFar(peer.pid);
    attachedLines = peerLines(outPath);
    before = await acceptedConnections();
    rate = await runWrk();
    after = await acceptedConnections();
    await Bun.sleep(500); // the last closes reach the peer's output
    cpuBeforeStop = cpuSecondsSoFar(peer.pid);
  } finally {
    peer.kill("SIGINT");
    const timer = setTimeout(() => peer.kill("SIGKILL"), 10_000);
    await peer.exited;
    clearTimeout(timer);
  }
  const usage = peer.resourceUsage();
  return {
    mode,
    connectionsPerSecond: rate,
    connections: after - before,
    lines: peerLines(outPath) - attachedLines,
    cpuLines: peerLines(outPath) - attachedLines,
    cpuConnections: after - before,
    agentCpuSeconds: warmSeconds > 0 ? cpuBeforeStop - cpuAtStart : usage ? Number(usage.cpuTime.user + usage.cpuTime.system) / 1e6 - cpuAtStart : Number.NaN,
    steadyCpuPerLine: Number.NaN,
    recordsLost: 0,
    recordsRead: 0,
    programs: new Map(),
  };
}

// --side-by-side
const sideBySide = process.argv.includes("--side-by-side");
if (sideBySide && compared === undefined) throw new Error("--side-by-side compares two builds: give --compare <binary>");
if (sideBySide && warmSeconds > 0) throw new Error("--warm is for the alternating rounds: leave it out with --side-by-side");

/** A round of both builds at once: each one's steady CPU per line, its lines, the round's rate. */
interface PairedRound {
  output: "text" | "json";
  connectionsPerSecond: number;
  /** this tree's build, then the compared one */
  steadyCpuPerLine: [number, number];
  exact: [boolean, boolean];
}

/** Both builds' agents on the same load at once (this tree's first in even rounds): --side-by-side. */
async function pairedRound(output: "text" | "json", r: number): Promise<PairedRound> {
  const programs = [binary, compared!];
  const outPaths = programs.map((_, i) => join(dir, `lines-${output}-${i}.txt`));
  for (const path of outPaths) rmSync(path, { force: true });
  const before = await acceptedConnections();
  const agents: Agent[] = new Array(2);
  for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) agents[i] = await startAgent(programs[i]!, [output], outPaths[i]!, `agent-${i}.lock`);
  const warm = { cpu: [0, 0], connections: 0 };
  const rate = await runWrk(async () => {
    await Bun.sleep(WARM_UP_MS);
    warm.cpu = agents.map((a) => cpuSecondsSoFar(a.pid));
    warm.connections = await acceptedConnections();
  });
  const after = await settledAcceptedConnections();
  await Bun.sleep(100);
  const steady = agents.map((a, i) => (cpuSecondsSoFar(a.pid) - warm.cpu[i]!) / (2 * (after - warm.connections)));
  for (const a of agents) a.kill("SIGTERM");
  await Promise.all(agents.map((a) => a.exited));
  const needle = output === "text" ? `dst.addr=127.0.0.1:${port},` : `"dst_port":${port},`;
  const exact = outPaths.map((path) => readFileSync(path, "utf8").split("\n").filter((line) => line.includes(needle)).length === 2 * (after - before));
  return { output, connectionsPerSecond: rate, steadyCpuPerLine: [steady[0]!, steady[1]!], exact: [exact[0]!, exact[1]!] };
}

async function sideBySideRounds(): Promise<void> {
  const results: PairedRound[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const output of r % 2 === 0 ? (["text", "json"] as const) : (["json", "text"] as const)) {
      const x = await pairedRound(output, r);
      results.push(x);
      const [a, b] = x.steadyCpuPerLine;
      console.log(`round ${r + 1} ${output}: ${x.connectionsPerSecond.toFixed(0)} conn/s; us per line after the first ${WARM_UP_MS / 1000} s: this tree ${(a * 1e6).toFixed(3)}, ${compared} ${(b * 1e6).toFixed(3)}, ratio ${(a / b).toFixed(3)}`);
    }
  }
  const rows = (["text", "json"] as const).map((output) => {
    const runs = results.filter((x) => x.output === output);
    const us = (i: 0 | 1) => median(runs.map((x) => x.steadyCpuPerLine[i] * 1e6)).toFixed(3);
    const exact = (i: 0 | 1) => (runs.every((x) => x.exact[i]) ? "yes" : "NO");
    const ratios = runs.map((x) => x.steadyCpuPerLine[0] / x.steadyCpuPerLine[1]);
    return [output, median(runs.map((x) => x.connectionsPerSecond)).toFixed(0), us(0), us(1), median(ratios).toFixed(3), `${Math.min(...ratios).toFixed(3)}-${Math.max(...ratios).toFixed(3)}`, `${exact(0)}, ${exact(1)}`];
  });
  console.log(`churn side by side: ${rounds} rounds of ${seconds}s, both builds' agents at once, wrk -c${concurrency}`);
  console.log(table(["output", "conn/s (median)", "this tree: us/line after the first 1 s", `${compared}`, "ratio (median)", "ratio (range)", "lines = 2 x connections"], rows));
  console.log(`load average when done: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  process.exitCode = rows.some((row) => row[6]!.includes("NO")) ? 1 : 0;
}

// --bpf-stats
const bpfStats = process.argv.includes("--bpf-stats");
const BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled";
/** programs loaded before this round's agent started: the others are its own */
let loadedBefore = new Set<number>();
/** the agent of the round under way, stopped on a signal */
let runningAgent: Agent | null = null;

/** Every loaded program's run count and time, by id (bpftool prog show). */
function programRuns(): Map<number, ProgramRuns & { name: string }> {
  const shown = Bun.spawnSync(["bpftool", "--json", "prog", "show"], { stdout: "pipe", stderr: "pipe" });
  if (shown.exitCode !== 0) throw new Error(`bpftool prog show: ${shown.stderr.toString()}`);
  const list = JSON.parse(shown.stdout.toString()) as { id: number; name?: string; run_cnt?: number; run_time_ns?: number }[];
  return new Map(list.map((p) => [p.id, { name: p.name ?? String(p.id), runs: p.run_cnt ?? 0, ns: p.run_time_ns ?? 0 }]));
}

/** The runs and time of the agent's programs since `before`, by program name. */
function runsSince(before: Map<number, ProgramRuns & { name: string }>): Map<string, ProgramRuns> {
  const byName = new Map<string, ProgramRuns>();
  for (const [id, now] of programRuns()) {
    const then = before.get(id);
    if (loadedBefore.has(id) || then === undefined) continue;
    const sum = byName.get(now.name) ?? { runs: 0, ns: 0 };
    byName.set(now.name, { runs: sum.runs + now.runs - then.runs, ns: sum.ns + now.ns - then.ns });
  }
  return byName;
}

/** Per agent mode and program: runs per connection, ns per run, ns per connection (medians over the rounds). */
function programTable(results: RoundResult[]): string {
  const rows: string[][] = [];
  for (const mode of MODES.filter((m) => m !== "off" && !isPeer(m))) {
    const runs = results.filter((x) => x.mode === mode);
    const names = [...new Set(runs.flatMap((x) => [...x.programs.keys()]))].sort();
    const total = median(runs.map((x) => [...x.programs.values()].reduce((sum, p) => sum + p.ns, 0) / x.connections));
    for (const name of names) {
      const of = (x: RoundResult) => x.programs.get(name) ?? { runs: 0, ns: 0 };
      rows.push([
        mode,
        name,
        median(runs.map((x) => of(x).runs / x.connections)).toFixed(2),
        median(runs.map((x) => (of(x).runs ? of(x).ns / of(x).runs : 0))).toFixed(0),
        median(runs.map((x) => of(x).ns / x.connections)).toFixed(0),
      ]);
    }
    rows.push([mode, "all", "", "", total.toFixed(0)]);
  }
  return table(["agent", "program", "runs per connection", "ns per run", "ns per connection"], rows);
}

const agentStderr = new WeakMap<object, string>();
/** What this tree's agent last said of conntrack. */
let conntrackSaid = "";
const hookState = () => (/conntrack: (kprobe|fentry) on \S+ attached/.exec(conntrackSaid)?.[0] ?? (conntrackSaid.trim() || "said nothing"));

async function waitForStderr(proc: Agent, needles: string[]): Promise<void> {
  const reader = proc.stderr.getReader();
  let text = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`agent exited before "${needles.join('" and "')}": ${text}`);
    text += new TextDecoder().decode(value);
    if (needles.every((needle) => text.includes(needle))) break;
  }
  agentStderr.set(proc, text);
  const said = text.split("\n").find((line) => line.includes("conntrack: "));
  if (said !== undefined) conntrackSaid = said;
  // Keep collecting until exit, for the summary line.
  void (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      agentStderr.set(proc, (agentStderr.get(proc) ?? "") + new TextDecoder().decode(value));
    }
  })();
}

const statsWere = bpfStats ? readFileSync(BPF_STATS, "utf8").trim() : "";
if (bpfStats) writeFileSync(BPF_STATS, "1");
const nginx = startNginx();
if (bpfStats) {
  // A signal skips the finally below: put the setting back and stop what runs.
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.on(signal, async () => {
      writeFileSync(BPF_STATS, statsWere);
      runningAgent?.kill("SIGTERM");
      nginx.kill("SIGTERM");
      await Promise.all([runningAgent?.exited, nginx.exited]);
      rmSync(dir, { recursive: true, force: true });
      process.exit(130);
    });
  }
}
/** The usual run: every kind of round in turn, then the table. */
async function alternatingRounds(): Promise<void> {
  const results: RoundResult[] = [];
  // Every other round runs the modes in reverse (ABBA), so that no mode always follows the same
  // one: a round right after "off" ran a little worse than others (README, Connection churn).
  for (let r = 0; r < rounds; r++) {
    for (const mode of r % 2 === 0 ? MODES : MODES.toReversed()) {
      const result = await round(mode);
      results.push(result);
      console.error(`round ${r + 1}, ${mode}: ${result.connectionsPerSecond.toFixed(0)} connections/s`);
    }
  }
  const offRate = median(results.filter((x) => x.mode === "off").map((x) => x.connectionsPerSecond));
  const rows = MODES.map((mode) => {
    const runs = results.filter((x) => x.mode === mode);
    const rate = median(runs.map((x) => x.connectionsPerSecond));
    const logging = logs(mode);
    const peer = isPeer(mode);
    const exact = runs.every((x) => !logging || x.lines === 2 * x.connections);
    const lost = runs.reduce((sum, x) => sum + x.recordsLost, 0);
    const cpu = logging || peer ? median(runs.map((x) => (x.agentCpuSeconds / x.cpuLines) * 1e5)).toFixed(3) : "-";
    const steady = median(runs.map((x) => x.steadyCpuPerLine * 1e5));
    const cpuSteady = Number.isNaN(steady) ? "-" : steady.toFixed(3);
    const counts = runs.map((x) => `${x.lines}/${2 * x.connections}`).join(", ");
    const agentRound = mode !== "off" && !peer;
    const cpuPerConnection = agentRound ? median(runs.map((x) => (x.agentCpuSeconds / x.cpuConnections) * 1e5)).toFixed(3) : "-";
    const filtered = mode === "filtered";
    const unread = runs.every((x) => x.lines === 0 && x.recordsRead < x.connections / 100);
    const readCounts = runs.map((x) => `${x.recordsRead} read/${x.connections} connections`).join(", ");
    return [
      isHooks(mode)
        ? `hooks only (--accesslog=false)${mode.endsWith("'") ? `, ${compared}` : ""}`
        : filtered
          ? `text, --exclude-port ${port} (every connection)`
        : mode === "bpftrace"
          ? "bpftrace, tcplife-style script"
          : mode === "tcplife"
            ? "libbpf-tools tcplife"
            : mode.endsWith("'")
              ? `${mode.slice(0, -1)}, ${compared}`
              : mode,
      rate.toFixed(0),
      `${((rate / offRate) * 100).toFixed(1)}%`,
      cpu,
      cpuSteady,
      cpuPerConnection,
      logging ? String(lost) : "-",
      logging ? `${exact ? "yes" : "NO"} (${counts})` : peer ? `attached (${counts})` : filtered ? `no line, no record: ${unread ? "yes" : "NO"} (${readCounts})` : "-",
    ];
  });
  const where = conntrack ? `loopback of a namespace where conntrack tracks every connection and translates none (this tree's agent: ${hookState()})` : "loopback";
  const warmed = warmSeconds > 0 ? ` after ${warmSeconds}s of the same load (unmeasured)` : "";
  console.log(`churn: ${rounds} alternating rounds of ${seconds}s${warmed}, wrk -c${concurrency}, nginx keepalive off, ${where}`);
  console.log(table(["agent", "conn/s (median)", "vs off", "agent CPU s/100k lines", `after the first ${WARM_UP_MS / 1000} s`, "agent CPU s/100k conns", "records lost", "lines = 2 x connections"], rows));
  if (bpfStats) console.log(`BPF programs (kernel.bpf_stats_enabled=1 during the run)\n${programTable(results)}`);
  const disturbed = results.filter((x) => x.otherAgents > 0);
  console.log(
    disturbed.length === 0
      ? "other agents' programs on the state-change tracepoint: none in any round"
      : `WARNING: other agents' programs (up to ${Math.max(...disturbed.map((x) => x.otherAgents))}) were on the state-change tracepoint in ${disturbed.length} of ${results.length} rounds: those rounds, "off" too, paid for them; measure again when they are gone`,
  );
  console.log(`load average when done: ${readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ")}`);
  const failed = rows.some((row) => row[7]?.startsWith("NO") || row[7]?.includes("no record: NO") || (row[6] !== "-" && row[6] !== "0"));
  process.exitCode = failed ? 1 : 0;
}

try {
  await waitForNginx();
  await (sideBySide ? sideBySideRounds() : alternatingRounds());
} finally {
  if (bpfStats) writeFileSync(BPF_STATS, statsWere);
  nginx.kill("SIGTERM");
  await nginx.exited;
  await api?.[Symbol.asyncDispose]();
  rmSync(dir, { recursive: true, force: true });
}
