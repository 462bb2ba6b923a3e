/**
 * A real TCP client or server for the end-to-end tests, run inside a pod namespace as its own
 * process (`bun test/e2e/peer.ts server|client ...`). It moves exact byte counts and prints what it
 * observed as one JSON line per connection on stdout, so a test can compare the agent's line with
 * what the two ends really did. Diagnostics go to stderr.
 *
 *   peer.ts server --host <addr> [--port 0] [--recv <n>|eof] [--send <n>] [--close-first]
 *                  [--hold-ms <n>] [--connections <n>] [--timeout-ms <n>]
 *     Prints {"event":"listening",...} once, then {"event":"server",...} per finished connection,
 *     and exits after --connections connections (0 = serve until killed).
 *   peer.ts client --host <addr> --port <p> [--send <n>] [--recv <n>|eof] [--close-first]
 *                  [--half-close] [--hold-ms <n>] [--local-port <p>] [--timeout-ms <n>]
 *     Prints one {"event":"client",...} line, exit 0 (also for a refused connection: see `error`).
 *
 * Per connection each side: writes --send bytes; reads until it has --recv bytes (or, with
 * `--recv eof`, until the peer's FIN); then, with --close-first, waits --hold-ms and sends its FIN
 * first; without it, it waits for the peer's FIN and answers with its own. `--half-close` (client)
 * sends the FIN right after the payload, for a server that reads until EOF. Every side always reads
 * everything the other sends before its socket is closed, so no close ever turns into a RST.
 */
import * as net from "node:net";

export type Recv = number | "eof";

export interface PeerOptions {
  host: string;
  port: number;
  send: number;
  recv: Recv;
  closeFirst: boolean;
  halfClose: boolean;
  holdMs: number;
  localPort?: number;
  connections: number;
  timeoutMs: number;
}

/** What one end saw of one connection. Times are wall-clock epoch milliseconds (sub-ms precise). */
export interface ConnectionReport {
  event: "client" | "server";
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  bytesWritten: number;
  bytesRead: number;
  /** client: just before connect(); server: when the connection was handed to the program */
  startMs: number;
  /** client: when connect() succeeded (or failed) */
  connectedMs: number | null;
  /** when this end had written and read all of its payload (before any hold); null if it never did */
  payloadMs: number | null;
  /** when the socket was fully closed */
  closedMs: number;
  /** who sent the first FIN: "local", "remote", or null if no FIN was seen (error) */
  firstFin: "local" | "remote" | null;
  /** errno name (ECONNREFUSED, ...) or null */
  error: string | null;
}

export interface ListeningReport {
  event: "listening";
  address: string;
  port: number;
}

/** Wall clock with sub-millisecond precision. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

/** Node reports peers of a dual-stack socket as ::ffff:a.b.c.d; tests want plain IPv4. */
export function plainAddress(address: string | undefined): string {
  if (!address) return "";
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return mapped ? mapped[1]! : address;
}

const CHUNK = 64 * 1024;

/** Writes exactly `count` bytes, in chunks, honouring back-pressure. */
async function writeExactly(socket: net.Socket, count: number): Promise<number> {
  let written = 0;
  const chunk = Buffer.alloc(Math.min(CHUNK, Math.max(count, 1)), 0x61);
  while (written < count) {
    const n = Math.min(chunk.length, count - written);
    const slice = n === chunk.length ? chunk : chunk.subarray(0, n);
    written += n;
    if (!socket.write(slice)) {
      await new Promise<void>((resolve, reject) => {
        const onDrain = () => {
          socket.off("close", onClose);
          resolve();
        };
        const onClose = () => {
          socket.off("drain", onDrain);
          reject(new Error("socket closed while writing"));
        };
        socket.once("drain", onDrain);
        socket.once("close", onClose);
      });
    }
  }
  return written;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Drives one established socket through the protocol above and resolves with the report once it
 * is closed. Shared by both roles; only the order of "send" and "receive" differs: the client
 * writes first, the server writes once it has what it expects (so a request/response exchange).
 */
function drive(
  socket: net.Socket,
  role: "client" | "server",
  opts: PeerOptions,
  startMs: number,
  connectedMs: number | null,
): Promise<ConnectionReport> {
  return new Promise((resolve) => {
    let bytesRead = 0;
    let bytesWritten = 0;
    let peerEnded = false;
    let weEnded = false;
    let firstFin: ConnectionReport["firstFin"] = null;
    let error: string | null = null;
    let sent = false;
    let closeStarted = false;
    let payloadMs: number | null = null;
    const local = { address: plainAddress(socket.localAddress), port: socket.localPort ?? 0 };
    const remote = { address: plainAddress(socket.remoteAddress), port: socket.remotePort ?? 0 };

    const endOurs = () => {
      if (weEnded) return;
      weEnded = true;
      if (firstFin === null) firstFin = "local";
      socket.end();
    };
    const haveAll = () => (opts.recv === "eof" ? peerEnded : bytesRead >= opts.recv);

    const sendPayload = async () => {
      if (sent) return;
      sent = true;
      try {
        bytesWritten = await writeExactly(socket, opts.send);
        if (role === "client" && opts.halfClose) endOurs();
        progress();
      } catch (e) {
        error ??= String((e as Error).message);
      }
    };

    // Called whenever something happened: decides whether to write, to close, or to wait.
    const progress = () => {
      if (role === "server" && !sent && haveAll()) void sendPayload();
      if (!sent || bytesWritten < opts.send || !haveAll() || closeStarted) return;
      payloadMs ??= nowMs();
      if (opts.closeFirst || peerEnded) {
        closeStarted = true;
        const hold = opts.closeFirst && !weEnded ? opts.holdMs : 0;
        if (hold > 0) setTimeout(endOurs, hold);
        else endOurs();
      }
    };

    socket.on("data", (data: Buffer) => {
      bytesRead += data.length;
      progress();
    });
    socket.on("end", () => {
      peerEnded = true;
      if (firstFin === null) firstFin = "remote";
      progress();
      // A peer that stopped sending before we got what we expected: still close cleanly.
      if (!closeStarted && !haveAll()) {
        closeStarted = true;
        endOurs();
      }
    });
    socket.on("error", (e: NodeJS.ErrnoException) => {
      error ??= e.code ?? e.message;
    });
    socket.on("close", () => {
      resolve({
        event: role,
        localAddress: local.address,
        localPort: local.port,
        remoteAddress: remote.address,
        remotePort: remote.port,
        bytesWritten,
        bytesRead,
        startMs,
        connectedMs,
        payloadMs,
        closedMs: nowMs(),
        firstFin,
        error,
      });
    });

    if (role === "client") void sendPayload();
    else progress();
  });
}

function print(report: object): void {
  process.stdout.write(JSON.stringify(report) + "\n");
}

async function runClient(opts: PeerOptions): Promise<void> {
  const startMs = nowMs();
  const socket = net.connect({
    host: opts.host,
    port: opts.port,
    allowHalfOpen: true,
    ...(opts.localPort !== undefined ? { localPort: opts.localPort } : {}),
  });
  socket.setNoDelay(true);
  const outcome = await new Promise<{ ok: true } | { ok: false; code: string }>((resolve) => {
    socket.once("connect", () => resolve({ ok: true }));
    socket.once("error", (e: NodeJS.ErrnoException) => resolve({ ok: false, code: e.code ?? e.message }));
  });
  const connectedMs = nowMs();
  if (!outcome.ok) {
    print({
      event: "client",
      localAddress: "",
      localPort: opts.localPort ?? 0,
      remoteAddress: plainAddress(opts.host),
      remotePort: opts.port,
      bytesWritten: 0,
      bytesRead: 0,
      startMs,
      connectedMs,
      payloadMs: null,
      closedMs: connectedMs,
      firstFin: null,
      error: outcome.code,
    } satisfies ConnectionReport);
    socket.destroy();
    return;
  }
  print(await drive(socket, "client", opts, startMs, connectedMs));
}

async function runServer(opts: PeerOptions): Promise<void> {
  let remaining = opts.connections;
  const open = new Set<Promise<void>>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const startMs = nowMs();
    socket.setNoDelay(true);
    const done = drive(socket, "server", opts, startMs, null).then((report) => {
      print(report);
      open.delete(done);
    });
    open.add(done);
    if (opts.connections > 0 && --remaining === 0) {
      // Accept no more than asked for: stop listening, the open ones finish.
      server.close();
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: opts.host, port: opts.port, ipv6Only: false }, () => resolve());
  });
  const address = server.address() as net.AddressInfo;
  print({ event: "listening", address: plainAddress(address.address), port: address.port } satisfies ListeningReport);
  await new Promise<void>((resolve) => server.once("close", () => resolve()));
  await Promise.all(open);
}

function parseArgs(argv: string[]): { role: "client" | "server"; opts: PeerOptions } {
  const [role, ...rest] = argv;
  if (role !== "client" && role !== "server") throw new Error(`usage: peer.ts client|server [options] (got ${role})`);
  const opts: PeerOptions = {
    host: role === "server" ? "::" : "",
    port: 0,
    send: 0,
    recv: 0,
    closeFirst: false,
    halfClose: false,
    holdMs: 0,
    connections: 1,
    timeoutMs: 60_000,
  };
  const int = (flag: string, value: string | undefined): number => {
    if (value === undefined || !/^\d+$/.test(value)) throw new Error(`${flag} needs a non-negative integer, got ${value}`);
    return Number(value);
  };
  for (let i = 0; i < rest.length; i++) {
    const flag = rest[i]!;
    const value = rest[i + 1];
    switch (flag) {
      case "--host": opts.host = value ?? ""; i++; break;
      case "--port": opts.port = int(flag, value); i++; break;
      case "--send": opts.send = int(flag, value); i++; break;
      case "--recv": opts.recv = value === "eof" ? "eof" : int(flag, value); i++; break;
      case "--hold-ms": opts.holdMs = int(flag, value); i++; break;
      case "--local-port": opts.localPort = int(flag, value); i++; break;
      case "--connections": opts.connections = int(flag, value); i++; break;
      case "--timeout-ms": opts.timeoutMs = int(flag, value); i++; break;
      case "--close-first": opts.closeFirst = true; break;
      case "--half-close": opts.halfClose = true; break;
      default: throw new Error(`unknown option ${flag}`);
    }
  }
  if (!opts.host) throw new Error("--host is required");
  if (role === "client" && !opts.port) throw new Error("--port is required for a client");
  return { role, opts };
}

if (import.meta.main) {
  try {
    const { role, opts } = parseArgs(process.argv.slice(2));
    // A peer never outlives its test, whatever goes wrong.
    setTimeout(() => {
      process.stderr.write(`peer ${role}: timed out after ${opts.timeoutMs} ms\n`);
      process.exit(3);
    }, opts.timeoutMs).unref();
    await (role === "client" ? runClient(opts) : runServer(opts));
    process.exit(0);
  } catch (e) {
    process.stderr.write(`peer: ${(e as Error).message}\n`);
    process.exit(2);
  }
}
