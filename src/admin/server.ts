// The admin API's listeners: Bun.serve on a TCP address (Kmesh's, for kmeshctl) or on a Unix
// socket (mode 0600, for the local CLI), every request answered by routes.ts. A request that may
// change state goes through the access gate first (access.ts: the one rule, by method). Nothing a
// client sends can crash the agent: a handler that throws answers 500 with one line.
import { lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import { dirname } from "node:path";
import type { Server } from "bun";
import { ExitError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { type AccessGate, mayChangeState, type Requester } from "./access.ts";
import { type AdminTarget, describeTarget, fetchAgentVersion, NoAgentError } from "./client.ts";
import { findTcpPeer } from "./peer.ts";
import { handleAdminRequest, type AdminBackend } from "./routes.ts";
import type { VersionInfo } from "./version.ts";

const SOCKET_FIX = 'choose another path with --admin-socket, or none with --admin-socket ""';

/** The admin API could not be served; the message says why and what to do. */
export class AdminServerError extends ExitError {
  override name = "AdminServerError";
}

/** The socket could not be made for lack of rights (not root): the caller decides. */
export class SocketPermissionError extends AdminServerError {
  override name = "SocketPermissionError";
}

const isPermissionError = (error: unknown) => ["EACCES", "EPERM", "EROFS"].includes(String((error as { code?: unknown } | null)?.code));

export class AdminServer {
  readonly #server: Server<undefined>;
  readonly listen: AdminTarget;
  /** the socket file this server made (its inode), removed at stop if it is still the one */
  readonly #socketIno: number | null;

  private constructor(server: Server<undefined>, listen: AdminTarget, socketIno: number | null) {
    this.#server = server;
    this.listen = listen;
    this.#socketIno = socketIno;
  }

  /**
   * Listens on `listen`; throws AdminServerError naming whoever holds it. A socket file that
   * nobody listens on (an agent killed with SIGKILL leaves one) is replaced.
   */
  static async start(listen: AdminTarget, backend: AdminBackend, gate: AccessGate, log: Logger): Promise<AdminServer> {
    const internalError = (error: unknown) =>
      new Response(`internal error: ${error instanceof Error ? error.message : String(error)}\n`, {
        status: 500,
        headers: { "Content-Type": "text/plain; charset=utf-8" },
      });
    const answer = (request: Request) => {
      try {
        return handleAdminRequest(backend, request.method, request.url);
      } catch (error) {
        return internalError(error);
      }
    };
    const identify = async (request: Request, server: Server<undefined>): Promise<Requester> => {
      if ("socket" in listen) return { via: "unix", socket: listen.socket };
      const remote = server.requestIP(request);
      const unknown = (why: string): Requester => ({
        via: "tcp",
        peer: { address: remote === null ? "unknown" : `${remote.address}:${remote.port}`, uid: null, pid: null, command: null, groups: null, unknown: why },
      });
      if (remote === null) return unknown("the connection has no remote address");
      return findTcpPeer(remote, listen.addr.port).then(
        (peer): Requester => ({ via: "tcp", peer }),
        (error: unknown) => unknown(error instanceof Error ? error.message : String(error)),
      );
    };
    const options = {
      development: false,
      fetch(request: Request, server: Server<undefined>): Response | Promise<Response> {
        const target = request.url.slice(request.url.indexOf("/", request.url.indexOf("://") + 3));
        if (!mayChangeState(request.method)) {
          const response = answer(request);
          // JSON-quoted: whatever a client sends stays on one line.
          log.debug(`admin API: ${request.method} ${JSON.stringify(target)} -> ${response.status}`);
          return response;
        }
        return gate.serve(request.method, target, () => identify(request, server), () => answer(request));
      },
      error: internalError,
    };
    if ("addr" in listen) {
      try {
        const server = Bun.serve({ ...options, hostname: listen.addr.host, port: listen.addr.port, reusePort: false });
        return new AdminServer(server, listen, null);
      } catch (error) {
        throw new AdminServerError(await explainListenFailure(listen, error));
      }
    }
    const path = listen.socket;
    await clearStaleSocket(path, log);
    // Created 0600 (the umask applies when the socket is bound: it never has a looser mode), so
    // that only its owner, and root, may connect.
    const umask = process.umask(0o177);
    let server: Server<undefined>;
    try {
      server = Bun.serve({ ...options, unix: path });
    } catch (error) {
      process.umask(umask);
      const message = await explainListenFailure(listen, error);
      throw isPermissionError(error) ? new SocketPermissionError(message) : new AdminServerError(message);
    }
    process.umask(umask);
    return new AdminServer(server, listen, statSync(path).ino);
  }

  /** Stops listening, closes open connections, and removes its socket file. */
  async stop(): Promise<void> {
    await this.#server.stop(true);
    if (this.#socketIno === null || !("socket" in this.listen)) return;
    try {
      if (statSync(this.listen.socket).ino === this.#socketIno) unlinkSync(this.listen.socket);
    } catch {
      // already gone (Bun removes it too)
    }
  }
}

/**
 * Makes way for the socket at `path`: its directory is created; a socket file that nobody listens
 * on is removed; a live agent there, or anything that is not a socket, is refused.
 */
async function clearStaleSocket(path: string, log: Logger): Promise<void> {
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  } catch (error) {
    const message = `cannot serve the admin API on ${path}: ${error instanceof Error ? error.message : String(error)} (${SOCKET_FIX})`;
    throw isPermissionError(error) ? new SocketPermissionError(message) : new AdminServerError(message);
  }
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) throw new AdminServerError(`cannot serve the admin API on ${path}: something that is not a socket is there (remove it, or ${SOCKET_FIX})`);
  let other: VersionInfo | undefined;
  try {
    other = await fetchAgentVersion({ socket: path }, 1_000);
  } catch (error) {
    if (!(error instanceof NoAgentError)) {
      throw new AdminServerError(`cannot serve the admin API on ${path}: ${error instanceof Error ? error.message : String(error)} (${SOCKET_FIX})`);
    }
    unlinkSync(path);
    log.info(`removed ${path}: no agent listened on it (one stopped without removing it, e.g. killed with SIGKILL)`);
    return;
  }
  throw new AdminServerError(
    other === undefined
      ? `cannot serve the admin API on ${path}: another program answers on it (${SOCKET_FIX})`
      : `another ${other.program} agent (pid ${other.pid}) already serves the admin API on ${path}: stop it first`,
  );
}

async function explainListenFailure(listen: AdminTarget, error: unknown): Promise<string> {
  const where = describeTarget(listen);
  const code = (error as { code?: unknown } | null)?.code;
  const detail = error instanceof Error ? error.message : String(error);
  if ("socket" in listen) return `cannot serve the admin API on ${where}: ${detail} (${SOCKET_FIX})`;
  if (code === "EADDRINUSE") {
    const other = await fetchAgentVersion(listen, 1_000).catch(() => undefined);
    if (other !== undefined) {
      return `another ${other.program} agent (pid ${other.pid}) already serves the admin API on ${where}: stop it first`;
    }
    return `cannot serve the admin API on ${where}: the address is in use by another program (choose another with --admin-addr, or disable the API with --admin-addr "")`;
  }
  return `cannot serve the admin API on ${where}: ${detail} (choose another address with --admin-addr, or disable the API with --admin-addr "")`;
}
