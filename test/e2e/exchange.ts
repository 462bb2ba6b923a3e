/**
 * Runs peer.ts servers and clients inside pods and returns what they report, validated.
 *
 *   const { client, server } = await exchange(node.pod("a"), node.pod("b"), {
 *     family: 4, clientSend: 1000, serverSend: 5000, closeFirst: "client" });
 */
import * as v from "valibot";
import { type Agent, matchConnection } from "./agent.ts";
import { LineCollector } from "./lines.ts";
import type { Pod, PodProcess } from "./node.ts";
import type { Recv } from "./peer.ts";

const PEER = `${import.meta.dir}/peer.ts`;

const ConnectionReportSchema = v.object({
  event: v.picklist(["client", "server"]),
  localAddress: v.string(),
  localPort: v.number(),
  remoteAddress: v.string(),
  remotePort: v.number(),
  bytesWritten: v.number(),
  bytesRead: v.number(),
  startMs: v.number(),
  connectedMs: v.nullable(v.number()),
  payloadMs: v.nullable(v.number()),
  closedMs: v.number(),
  firstFin: v.nullable(v.picklist(["local", "remote"])),
  error: v.nullable(v.string()),
});
export type ConnectionReport = v.InferOutput<typeof ConnectionReportSchema>;

const ListeningSchema = v.object({ event: v.literal("listening"), address: v.string(), port: v.number() });
const PeerLineSchema = v.variant("event", [ConnectionReportSchema, ListeningSchema]);
type PeerLine = v.InferOutput<typeof PeerLineSchema>;

function parsePeerLine(line: string): PeerLine {
  const result = v.safeParse(PeerLineSchema, JSON.parse(line));
  if (!result.success) throw new Error(`bad peer report ${line}: ${v.summarize(result.issues)}`);
  return result.output;
}

export interface ServerOptions {
  /** address to listen on: the pod's own (default, per family) or "::" for a dual-stack socket */
  host: string;
  port?: number;
  send?: number;
  recv?: Recv;
  closeFirst?: boolean;
  holdMs?: number;
  /** connections to serve before exiting; 0 = until killed (default 1) */
  connections?: number;
  timeoutMs?: number;
}

export interface ClientOptions {
  host: string;
  port: number;
  send?: number;
  recv?: Recv;
  closeFirst?: boolean;
  halfClose?: boolean;
  holdMs?: number;
  localPort?: number;
  timeoutMs?: number;
}

function peerArgs(o: Partial<ServerOptions & ClientOptions>): string[] {
  const args = ["--host", o.host!];
  if (o.port !== undefined) args.push("--port", String(o.port));
  if (o.send !== undefined) args.push("--send", String(o.send));
  if (o.recv !== undefined) args.push("--recv", String(o.recv));
  if (o.closeFirst) args.push("--close-first");
  if (o.halfClose) args.push("--half-close");
  if (o.holdMs) args.push("--hold-ms", String(o.holdMs));
  if (o.localPort !== undefined) args.push("--local-port", String(o.localPort));
  if (o.connections !== undefined) args.push("--connections", String(o.connections));
  args.push("--timeout-ms", String(o.timeoutMs ?? 60_000));
  return args;
}

async function stderrOf(proc: PodProcess): Promise<string> {
  return (await new Response(proc.stderr).text()).trim();
}

export class PeerServer {
  readonly #out: LineCollector<PeerLine>;
  constructor(
    readonly proc: PodProcess,
    readonly pod: Pod,
    readonly address: string,
    readonly port: number,
    out: LineCollector<PeerLine>,
  ) {
    this.#out = out;
  }

  /** Waits for the report of the connection from `remotePort` (or the next one, if not given). */
  async report(remotePort?: number, timeoutMs = 30_000): Promise<ConnectionReport> {
    const [r] = await this.#out.waitFor(
      (l) => l.event === "server" && (remotePort === undefined || l.remotePort === remotePort),
      1,
      timeoutMs,
    );
    return r as ConnectionReport;
  }

  /** Waits for the server to exit on its own (it does after --connections connections). */
  async finished(): Promise<void> {
    const code = await this.proc.exited;
    if (code !== 0) throw new Error(`peer server in ${this.pod.name} exited ${code}: ${await stderrOf(this.proc)}`);
  }

  kill(): void {
    this.proc.kill("SIGKILL");
  }
}

/** Starts a peer server in `pod` and resolves once it listens. */
export async function startServer(pod: Pod, options: ServerOptions): Promise<PeerServer> {
  const proc = pod.exec([process.execPath, PEER, "server", ...peerArgs({ port: 0, ...options })]);
  const out = new LineCollector<PeerLine>(proc.stdout, parsePeerLine);
  out.setEndReason(`peer server in ${pod.name} exited`);
  let listening;
  try {
    [listening] = await out.waitFor((l) => l.event === "listening", 1, 15_000);
  } catch (e) {
    proc.kill("SIGKILL");
    throw new Error(`peer server did not start in ${pod.name}: ${(e as Error).message}\n${await stderrOf(proc)}`);
  }
  const l = listening as v.InferOutput<typeof ListeningSchema>;
  return new PeerServer(proc, pod, l.address, l.port, out);
}

/** Runs a peer client in `pod` to completion and returns its report. */
export async function runClient(pod: Pod, options: ClientOptions): Promise<ConnectionReport> {
  const proc = pod.exec([process.execPath, PEER, "client", ...peerArgs(options)]);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  if (code !== 0) throw new Error(`peer client in ${pod.name} exited ${code}: ${stderr.trim()}`);
  const line = parsePeerLine(stdout.trim());
  if (line.event !== "client") throw new Error(`unexpected client report ${stdout}`);
  return line;
}

export interface ExchangeOptions {
  family: 4 | 6;
  clientSend: number;
  serverSend: number;
  /** who sends the first FIN; the other side answers its FIN with its own */
  closeFirst: "client" | "server";
  /** how long the side that closes first keeps the connection open after its I/O */
  holdMs?: number;
  /** server listen address; defaults to the server pod's address of `family` */
  serverHost?: string;
  /** server port; default one the kernel picks */
  serverPort?: number;
  /** address the client connects to; defaults to the server pod's address of `family` */
  clientTarget?: string;
}

export interface ExchangeResult {
  client: ConnectionReport;
  server: ConnectionReport;
}

/**
 * One request/response connection from `clientPod` to `serverPod` with exact byte counts: the
 * client writes clientSend, the server reads exactly that, writes serverSend, and one side closes.
 */
export async function exchange(clientPod: Pod, serverPod: Pod, o: ExchangeOptions): Promise<ExchangeResult> {
  const server = await startServer(serverPod, {
    host: o.serverHost ?? serverPod.ip(o.family),
    ...(o.serverPort === undefined ? {} : { port: o.serverPort }),
    recv: o.clientSend,
    send: o.serverSend,
    closeFirst: o.closeFirst === "server",
    holdMs: o.closeFirst === "server" ? o.holdMs : undefined,
  });
  try {
    const client = await runClient(clientPod, {
      host: o.clientTarget ?? serverPod.ip(o.family),
      port: server.port,
      send: o.clientSend,
      recv: o.closeFirst === "client" ? o.serverSend : "eof",
      closeFirst: o.closeFirst === "client",
      holdMs: o.closeFirst === "client" ? o.holdMs : undefined,
    });
    if (client.error) throw new Error(`client failed: ${client.error}`);
    const report = await server.report(client.localPort);
    await server.finished();
    return { client, server: report };
  } finally {
    server.kill();
  }
}

/**
 * Waits until the agent really captures: repeatedly makes a throw-away connection from
 * `clientPod` to `serverPod` until its OUTBOUND line appears. Proves capture works end to end
 * without relying on any start-up message. Returns the number of probes it took.
 */
export async function waitUntilCapturing(
  agent: Agent,
  clientPod: Pod,
  serverPod: Pod,
  timeoutMs = 30_000,
): Promise<number> {
  const server = await startServer(serverPod, { host: serverPod.ip4, connections: 0, timeoutMs: timeoutMs + 5_000 });
  const deadline = Date.now() + timeoutMs;
  try {
    for (let probes = 1; ; probes++) {
      const client = await runClient(clientPod, { host: serverPod.ip4, port: server.port, closeFirst: true });
      const seen = await agent
        .waitForLines(
          matchConnection(
            { srcAddr: client.localAddress, srcPort: client.localPort, dstAddr: serverPod.ip4, dstPort: server.port },
            "OUTBOUND",
          ),
          1,
          Math.min(1_000, Math.max(deadline - Date.now(), 1)),
        )
        .then(() => true)
        .catch(() => false);
      if (seen) return probes;
      if (agent.proc.exitCode !== null || agent.proc.signalCode !== null) {
        throw new Error(`the agent exited (${agent.proc.exitCode ?? agent.proc.signalCode}) before capturing: ${await agent.stderr()}`);
      }
      if (Date.now() >= deadline) {
        throw new Error(
          `the agent printed no line for ${probes} probe connections in ${timeoutMs} ms; ` +
            `${agent.lines.length} lines so far, last: ${agent.lines.slice(-3).join(" | ")}`,
        );
      }
    }
  } finally {
    server.kill();
  }
}
