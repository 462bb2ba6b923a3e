/**
 * What the admin-API end-to-end tests add to the shared harness (agent.ts, exchange.ts, node.ts,
 * which this file only wraps): an agent with its own admin address, lock file and socket, a plain
 * HTTP client that keeps the answer's bytes (over TCP or the socket), curl run as another user or
 * in another network namespace, the agent's /metrics as numbers, and the compiled CLI.
 *
 *   await using agent = await startAdminAgent({ args: ["--connection-metrics"] });
 *   const answer = await adminRequest(agent.adminAddr, "POST", "/accesslog?enable=false");
 *   const refused = await curlAs({ uid: 65534 }, "POST", `http://${agent.adminAddr}/monitoring?enable=false`);
 */
import { atRunEnd } from "../support/cleanup.ts";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { AGENT_BINARY, REPO_ROOT, socketBeside, startAgent, type Agent } from "./agent.ts";

/** A TCP port nobody listens on right now (the kernel's pick, released at once). */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Bun.listen({ hostname, port: 0, socket: { data() {} } });
  const { port } = listener;
  listener.stop(true);
  return port;
}

export interface AdminAgent extends AsyncDisposable {
  agent: Agent;
  /** host:port as given to --admin-addr */
  adminAddr: string;
  lockFile: string;
  /** the admin socket, beside the lock file unless `args` name another */
  socket: string;
}

export interface AdminAgentOptions {
  /** --admin-addr; default 127.0.0.1:<free port>. "" turns the API off. */
  adminAddr?: string;
  /** --lock-file; default one of its own, so tests never meet an agent running on the host */
  lockFile?: string;
  args?: string[];
  output?: "text" | "json";
  /** wait for GET /debug/ready (over the socket); default true */
  waitReady?: boolean;
  /** run the agent in this network namespace */
  netns?: string;
  /** more environment for the agent */
  env?: Record<string, string>;
}

const lockDirs: string[] = [];
atRunEnd(() => {
  for (const dir of lockDirs) rmSync(dir, { recursive: true, force: true });
});

/** A lock file path in a fresh private directory (removed with the agent started on it, or by removePrivateLockDir). */
export function privateLockFile(): string {
  const dir = mkdtempSync(join(tmpdir(), "kal-e2e-lock-"));
  lockDirs.push(dir);
  return join(dir, "agent.lock");
}

/** Removes a privateLockFile's directory, with what an agent killed by SIGKILL left there (its lock, its socket). */
export function removePrivateLockDir(lockFile: string): void {
  const dir = dirname(lockFile);
  if (lockDirs.includes(dir)) rmSync(dir, { recursive: true, force: true });
}

/** Starts `dist/kmesh-accesslog run` with its own admin address and lock file; resolves once ready. */
export async function startAdminAgent(options: AdminAgentOptions = {}): Promise<AdminAgent> {
  const adminAddr = options.adminAddr ?? `127.0.0.1:${freePort()}`;
  const lockFile = options.lockFile ?? privateLockFile();
  const args = options.args ?? [];
  const socketArg = args.indexOf("--admin-socket");
  const socket = args.includes("--no-admin-socket") ? "" : socketArg >= 0 ? args[socketArg + 1]! : socketBeside(lockFile);
  const agent = startAgent({
    output: options.output ?? "text",
    args: ["--admin-addr", adminAddr, "--lock-file", lockFile, ...args],
    ...(options.netns === undefined ? {} : { netns: options.netns }),
    ...(options.env === undefined ? {} : { env: options.env }),
  });
  const handle: AdminAgent = {
    agent,
    adminAddr,
    lockFile,
    socket,
    [Symbol.asyncDispose]: async () => {
      await agent[Symbol.asyncDispose]();
      removePrivateLockDir(lockFile);
    },
  };
  if (options.waitReady ?? true) {
    try {
      await waitReady(agent, socket === "" ? adminAddr : socket);
    } catch (error) {
      await handle[Symbol.asyncDispose]();
      throw error;
    }
  }
  return handle;
}

/** Polls GET /debug/ready (at host:port, or on a socket's path) until 200; fails early if the agent exits. */
export async function waitReady(agent: Agent, adminAddr: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (agent.proc.exitCode !== null || agent.proc.signalCode !== null) {
      throw new Error(`the agent exited (${agent.proc.exitCode ?? agent.proc.signalCode}) before it was ready: ${await agent.stderr()}`);
    }
    const status = await adminRequest(adminAddr, "GET", "/debug/ready", 1_000)
      .then((r) => r.status)
      .catch(() => 0);
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`the agent on ${adminAddr} was not ready within ${timeoutMs} ms (last status ${status})`);
    await Bun.sleep(50);
  }
}

export interface Answer {
  status: number;
  body: string;
  bytes: Uint8Array;
  contentType: string | null;
  nosniff: string | null;
}

/** One request with a plain fetch to host:port, or to a Unix socket given by its absolute path; the answer's body kept as bytes too. */
export async function adminRequest(adminAddr: string, method: string, target: string, timeoutMs = 5_000, body?: string): Promise<Answer> {
  const init = { method, signal: AbortSignal.timeout(timeoutMs), redirect: "manual", ...(body === undefined ? {} : { body }) } as const;
  const response = adminAddr.startsWith("/")
    ? await fetch(`http://localhost${target}`, { ...init, unix: adminAddr })
    : await fetch(`http://${adminAddr}${target}`, init);
  const bytes = new Uint8Array(await response.arrayBuffer());
  return {
    status: response.status,
    body: new TextDecoder().decode(bytes),
    bytes,
    contentType: response.headers.get("content-type"),
    nosniff: response.headers.get("x-content-type-options"),
  };
}

/** Sends raw bytes and returns whatever comes back before the peer closes or `waitMs` passes. */
export async function rawRequest(adminAddr: string, raw: string | Uint8Array, waitMs = 500): Promise<string> {
  const [, host, port] = /^\[?(.+?)\]?:(\d+)$/.exec(adminAddr)!;
  let received = "";
  const { promise: closed, resolve } = Promise.withResolvers<void>();
  const socket = await Bun.connect({
    hostname: host!,
    port: Number(port),
    socket: {
      data(_s, data) {
        received += new TextDecoder().decode(data);
      },
      close() {
        resolve();
      },
      error() {
        resolve();
      },
    },
  });
  socket.write(raw);
  await Promise.race([closed, Bun.sleep(waitMs)]);
  socket.end();
  return received;
}

export interface CurlAs {
  uid: number;
  /** supplementary groups (none by default); the primary group is the uid's number */
  groups?: number[];
  /** run inside this network namespace */
  netns?: string;
  /** the client's port (TCP), so that a test can name the connection exactly */
  localPort?: number;
  /** a Unix socket to send the request to (the URL's host is then ignored) */
  socket?: string;
  /** the request's body */
  data?: string;
}

/**
 * curl as another user (setpriv, which execs: `pid` is curl's), optionally in another network
 * namespace; `status` 0 when curl could not connect (its exit code says why).
 */
export async function curlAs(who: CurlAs, method: string, url: string): Promise<{ exitCode: number; status: number; body: string; pid: number }> {
  const argv = [
    ...(who.netns === undefined ? [] : ["ip", "netns", "exec", who.netns]),
    "setpriv",
    `--reuid=${who.uid}`,
    `--regid=${who.uid}`,
    who.groups === undefined || who.groups.length === 0 ? "--clear-groups" : `--groups=${who.groups.join(",")}`,
    "curl",
    "--silent",
    "--max-time",
    "10",
    // curl --request HEAD would wait for a body that never comes.
    ...(method === "HEAD" ? ["--head", "--output", "/dev/null"] : ["--request", method]),
    "--write-out",
    "\n%{http_code}",
    ...(who.localPort === undefined ? [] : ["--local-port", String(who.localPort)]),
    ...(who.socket === undefined ? [] : ["--unix-socket", who.socket]),
    ...(who.data === undefined ? [] : ["--data-binary", who.data]),
    url,
  ];
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe", timeout: 20_000, killSignal: "SIGKILL" });
  const [out, exitCode] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
  const nl = out.lastIndexOf("\n");
  return { exitCode, status: Number(out.slice(nl + 1)), body: out.slice(0, Math.max(nl, 0)), pid: proc.pid };
}

/** GET /metrics as `name` or `name{label="v"}` → value. */
export async function metrics(adminAddr: string): Promise<Map<string, number>> {
  const { status, body } = await adminRequest(adminAddr, "GET", "/metrics");
  if (status !== 200) throw new Error(`GET /metrics answered ${status}`);
  const values = new Map<string, number>();
  for (const line of body.split("\n")) {
    const m = /^([^#\s][^\s]*) (\S+)$/.exec(line);
    if (m) values.set(m[1]!, Number(m[2]));
  }
  return values;
}

/**
 * The probe's close counters from /metrics: closes written when their socket ended, closes missed,
 * and the stand-ins' (bpf/accesslog.bpf.c).
 */
export interface CloseCounts {
  atEnd: number;
  missed: number;
  /** runs of the probe the kernel skipped (0 where it does not count them: before Linux 5.12) */
  skipped: number;
  /** runs a stand-in made */
  stoodIn: number;
  /** whether the stand-ins are attached */
  standIns: boolean;
}

export async function closeCounts(adminAddr: string): Promise<CloseCounts> {
  const m = await metrics(adminAddr);
  return {
    atEnd: m.get("kmesh_accesslog_kernel_closes_at_end_total")!,
    missed: m.get("kmesh_accesslog_kernel_closes_missed_total")!,
    skipped: m.get("kmesh_accesslog_kernel_runs_skipped_total") ?? 0,
    stoodIn: m.get("kmesh_accesslog_kernel_runs_stood_in_total") ?? 0,
    standIns: m.get("kmesh_accesslog_kernel_stand_ins_attached") === 1,
  };
}

/** What the probe makes of closes it ignores between two counts: written at their end, by a stand-in, missed. */
export interface ClosesMade {
  atEnd: number;
  stoodIn: number;
  missed: number;
}

/**
 * The closes written at their socket's end, those a stand-in made, and those missed, between two
 * counts, for a test that had the probe ignore the closes of its `own` sockets (with the stand-ins
 * attached, they go to the stand-in). Another socket's close that the kernel skipped on its own
 * meanwhile (a softirq over the program, as in a slow VM) is written at its end too: closes beyond
 * `own` are set aside as far as the runs skipped account for them; and the stand-ins' runs count
 * every state change they made, of which those beyond `own` are set aside.
 */
export function closesSince(before: CloseCounts, after: CloseCounts, own: number): ClosesMade {
  const atEnd = after.atEnd - before.atEnd;
  const others = Math.min(Math.max(atEnd - own, 0), after.skipped - before.skipped);
  return { atEnd: atEnd - others, stoodIn: Math.min(after.stoodIn - before.stoodIn, own), missed: after.missed - before.missed };
}

/** closesSince's answer when each of `own` ignored closes was made as it should: by the stand-in where attached, else at the socket's end. */
export function closesMadeRight(counts: CloseCounts, own: number): ClosesMade {
  return counts.standIns ? { atEnd: 0, stoodIn: own, missed: 0 } : { atEnd: own, stoodIn: 0, missed: 0 };
}

export const switchMetric = (name: string) => `kmesh_accesslog_switch_enabled{switch="${name}"}`;

/** The four switches as /metrics reports them. */
export async function switchStates(adminAddr: string): Promise<Record<string, boolean>> {
  const m = await metrics(adminAddr);
  const out: Record<string, boolean> = {};
  for (const name of ["monitoring", "accesslog", "connection_metrics", "workload_metrics"]) out[name] = m.get(switchMetric(name)) === 1;
  return out;
}

/** Runs the compiled binary with `args` to completion. */
export async function runBinary(args: string[], timeoutMs = 30_000): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  const proc = Bun.spawn([AGENT_BINARY, ...args], {
    cwd: REPO_ROOT,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    timeout: timeoutMs,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
  return { exitCode, stdout, stderr };
}
