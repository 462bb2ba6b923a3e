// The agent's HTTP listeners, one kind for all: Bun.serve on a TCP address or on a Unix socket
// (mode 0600), every request answered by a pure handler (routes.ts). The admin API (--admin-addr,
// --admin-socket) passes every request that may change state through the access gate first
// (access.ts: the one rule, by method); the TCP metrics (--metrics-addr) only read, and have no
// gate. Nothing a client sends can crash the agent: a handler that throws answers 500 with one line.
import { lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Server } from "bun";
import { ExitError } from "../errors.ts";
import type { Logger } from "../log.ts";
import type { HostPort } from "../address.ts";
import { type AccessGate, mayChangeState, type Requester } from "./access.ts";
import { type AdminTarget, describeTarget, fetchAgentVersion, NoAgentError } from "./client.ts";
import { findTcpPeer } from "./peer.ts";
import type { VersionInfo } from "./version.ts";

/** An address or a socket could not be served; the message says why and what to do. */
export class ListenError extends ExitError {
  override name = "ListenError";
}

/** The socket could not be made for lack of rights (not root): the caller decides. */
export class SocketPermissionError extends ListenError {
  override name = "SocketPermissionError";
}

/** What is served, in the words of its messages: its name, the flag that moves it, how to do without it. */
export interface Listener {
  name: string;
  flag: string;
  none: string;
}

export const ADMIN_LISTENER: Listener = { name: "admin API", flag: "--admin-addr", none: 'disable the API with --admin-addr ""' };
export const ADMIN_SOCKET_LISTENER: Listener = { name: "admin API", flag: "--admin-socket", none: 'none with --admin-socket ""' };
export const METRICS_LISTENER: Listener = { name: "TCP metrics", flag: "--metrics-addr", none: 'serve none with --metrics-addr ""' };

/** A request as the handlers see it: the body only for POST and PUT (the handlers read no other). */
export type Handler = (method: string, url: string, body: Uint8Array, headers: Headers) => Response;

/** `gate`: what every request that may change state passes (the admin API); none: served as it comes. */
type ServeOptions = { gate?: AccessGate | undefined; log?: Logger | undefined };

/** Bodies beyond this are refused by Bun with 413 (the largest one read is a small JSON object). */
const MAX_BODY_BYTES = 64 * 1024;
const NO_BODY = new Uint8Array(0);

const codeOf = (error: unknown) => (error as { code?: unknown } | null)?.code;
const isPermissionError = (error: unknown) => ["EACCES", "EPERM", "EROFS"].includes(String(codeOf(error)));
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

export class HttpServer {
  private constructor(
    private readonly server: Server<undefined>,
    /** where it listens (`[::]` may have become 0.0.0.0 on a node without IPv6) */
    readonly target: AdminTarget,
    /** the socket file this server made (its inode), removed at stop if it is still the one */
    private readonly socketIno: number | null,
  ) {}

  /**
   * Listens on a TCP address (`::` also takes IPv4; on a node without IPv6 it falls back to
   * 0.0.0.0), at once; throws ListenError saying why not and what to do.
   */
  static listen(address: HostPort, listener: Listener, handle: Handler, options: ServeOptions = {}): HttpServer {
    const serve = (hostname: string) => {
      const at = { addr: { host: hostname, port: address.port } };
      return new HttpServer(Bun.serve({ ...serverOptions(at, listener, handle, options), hostname, port: address.port, reusePort: false }), at, null);
    };
    try {
      return serve(address.host);
    } catch (error) {
      const code = codeOf(error);
      if (address.host !== "::" || (code !== "EAFNOSUPPORT" && code !== "EADDRNOTAVAIL")) throw new ListenError(listenFailure({ addr: address }, listener, error), { cause: error });
      try {
        return serve("0.0.0.0");
      } catch (fallback) {
        throw new ListenError(listenFailure({ addr: address }, listener, fallback), { cause: fallback });
      }
    }
  }

  /**
   * Listens on `target`. On TCP, listen(), and when the port is taken by one of our agents, says
   * which (asking its /version). On a Unix socket (created 0600), a socket file that nobody
   * listens on (an agent killed with SIGKILL leaves one) is replaced; a live agent is not.
   */
  static async start(target: AdminTarget, listener: Listener, handle: Handler, options: ServeOptions = {}): Promise<HttpServer> {
    if ("addr" in target) {
      const address = target.addr;
      try {
        return HttpServer.listen(address, listener, handle, options);
      } catch (error) {
        if (!(error instanceof ListenError) || codeOf(error.cause) !== "EADDRINUSE") throw error;
        const probe = address.host === "::" ? { host: "::1", port: address.port } : address;
        const other = await fetchAgentVersion({ addr: probe }, 1_000).catch(() => undefined);
        throw other === undefined ? error : anotherAgent(other, listener, describeTarget(target));
      }
    }
    const path = target.socket;
    await clearStaleSocket(path, listener, options.log);
    // Created 0600 (the umask applies when the socket is bound: it never has a looser mode), so
    // that only its owner, and root, may connect.
    const umask = process.umask(0o177);
    let server: Server<undefined>;
    try {
      server = Bun.serve({ ...serverOptions(target, listener, handle, options), unix: path });
    } catch (error) {
      const message = listenFailure(target, listener, error);
      throw isPermissionError(error) ? new SocketPermissionError(message) : new ListenError(message);
    } finally {
      process.umask(umask);
    }
    return new HttpServer(server, target, statSync(path).ino);
  }

  /** host:port, or the socket's path */
  get where(): string {
    return describeTarget(this.target);
  }

  /** Stops listening, closes open connections, and removes its socket file. */
  async stop(): Promise<void> {
    await this.server.stop(true);
    if (this.socketIno === null || !("socket" in this.target)) return;
    try {
      if (statSync(this.target.socket).ino === this.socketIno) unlinkSync(this.target.socket);
    } catch {
      // already gone (Bun removes it too)
    }
  }
}

/** Bun.serve's options but the address: each request read, answered, gated when it must be. */
function serverOptions(target: AdminTarget, listener: Listener, handle: Handler, { gate, log }: ServeOptions) {
  const internalError = (error: unknown) =>
    new Response(`internal error: ${messageOf(error)}\n`, { status: 500, headers: { "Content-Type": "text/plain; charset=utf-8" } });
  const answer = (request: Request, body: Uint8Array) => {
    try {
      return handle(request.method, request.url, body, request.headers);
    } catch (error) {
      return internalError(error);
    }
  };
  const identify = async (request: Request, server: Server<undefined>): Promise<Requester> => {
    if ("socket" in target) return { via: "unix", socket: target.socket };
    const remote = server.requestIP(request);
    const unknown = (why: string): Requester => ({
      via: "tcp",
      peer: { address: remote === null ? "unknown" : `${remote.address}:${remote.port}`, uid: null, pid: null, command: null, groups: null, unknown: why },
    });
    if (remote === null) return unknown("the connection has no remote address");
    return findTcpPeer(remote, target.addr.port).then(
      (peer): Requester => ({ via: "tcp", peer }),
      (error: unknown) => unknown(messageOf(error)),
    );
  };
  return {
    development: false,
    maxRequestBodySize: MAX_BODY_BYTES,
    async fetch(request: Request, server: Server<undefined>): Promise<Response> {
      const path = request.url.slice(request.url.indexOf("/", request.url.indexOf("://") + 3));
      const body = request.method === "POST" || request.method === "PUT" ? new Uint8Array(await request.arrayBuffer()) : NO_BODY;
      if (gate !== undefined && mayChangeState(request.method)) {
        // The gate writes the audit line.
        return gate.serve(request.method, path, () => identify(request, server), () => answer(request, body));
      }
      const response = answer(request, body);
      // JSON-quoted: whatever a client sends stays on one line.
      log?.debug(`${listener.name}: ${request.method} ${JSON.stringify(path)} -> ${response.status}`);
      return response;
    },
    error: internalError,
  };
}

/**
 * Makes way for the socket at `path`: its directory is created; a socket file that nobody listens
 * on is removed; a live agent there, or anything that is not a socket, is refused.
 */
async function clearStaleSocket(path: string, listener: Listener, log: Logger | undefined): Promise<void> {
  const fix = remedy({ socket: path }, listener);
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  } catch (error) {
    const message = `cannot serve the ${listener.name} on ${path}: ${messageOf(error)} (${fix})`;
    throw isPermissionError(error) ? new SocketPermissionError(message) : new ListenError(message);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new ListenError(`cannot serve the ${listener.name} on ${path}: something that is not a socket is there (remove it, or ${fix})`);
  let other: VersionInfo | undefined;
  try {
    other = await fetchAgentVersion({ socket: path }, 1_000);
  } catch (error) {
    if (!(error instanceof NoAgentError)) throw new ListenError(`cannot serve the ${listener.name} on ${path}: ${messageOf(error)} (${fix})`);
    unlinkSync(path);
    log?.info(`removed ${path}: no agent listened on it (one stopped without removing it, e.g. killed with SIGKILL)`);
    return;
  }
  throw other === undefined ? new ListenError(`cannot serve the ${listener.name} on ${path}: another program answers on it (${fix})`) : anotherAgent(other, listener, path);
}

const anotherAgent = (other: VersionInfo, listener: Listener, where: string) =>
  new ListenError(`another ${other.program} agent (pid ${other.pid}) already serves the ${listener.name} on ${where}: stop it first`);

/** What to do instead: another address or path, or none. */
function remedy(target: AdminTarget, listener: Listener, inUse = false): string {
  const another = "socket" in target ? "another path" : inUse ? "another" : "another address";
  return `choose ${another} with ${listener.flag}, or ${listener.none}`;
}

function listenFailure(target: AdminTarget, listener: Listener, error: unknown): string {
  const where = describeTarget(target);
  if ("addr" in target && codeOf(error) === "EADDRINUSE") {
    return `cannot serve the ${listener.name} on ${where}: the address is in use by another program (${remedy(target, listener, true)})`;
  }
  return `cannot serve the ${listener.name} on ${where}: ${messageOf(error)} (${remedy(target, listener)})`;
}
