// The agent's HTTP sockets: Bun.serve on the given address, every request answered by a pure
// handler (routes.ts): the admin API (--admin-addr) and the TCP metrics (--metrics-addr). Nothing
// a client sends can crash the agent: a handler that throws answers 500 with one line.
import type { Server } from "bun";
import { ExitError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { formatHostPort, type HostPort } from "../address.ts";
import { fetchAgentVersion } from "./client.ts";

/** An address could not be served; the message says why and what to do. */
export class ListenError extends ExitError {
  override name = "ListenError";
}

/** What is served, in the words of its messages. */
export interface Listener {
  /** "admin API" */
  name: string;
  /** the flag that moves it */
  flag: string;
  /** how to do without it */
  none: string;
}

export const ADMIN_LISTENER: Listener = { name: "admin API", flag: "--admin-addr", none: 'disable the API with --admin-addr ""' };
export const METRICS_LISTENER: Listener = { name: "TCP metrics", flag: "--metrics-addr", none: 'serve none with --metrics-addr ""' };

/** A request as the handlers see it: the body only for POST (the handlers read no other). */
export type Handler = (method: string, url: string, body: Uint8Array, headers: Headers) => Response;

/** Bodies beyond this are refused by Bun with 413 (the largest one read is a small JSON object). */
const MAX_BODY_BYTES = 64 * 1024;
const NO_BODY = new Uint8Array(0);

export class HttpServer {
  readonly #server: Server<undefined>;
  readonly address: HostPort;

  private constructor(server: Server<undefined>, address: HostPort) {
    this.#server = server;
    this.address = address;
  }

  /**
   * Listens on `address` (`::` also takes IPv4; on a node without IPv6 it falls back to 0.0.0.0),
   * at once; throws ListenError saying why not and what to do.
   */
  static listen(address: HostPort, listener: Listener, handle: Handler, log?: Logger): HttpServer {
    const internalError = (error: unknown) =>
      new Response(`internal error: ${error instanceof Error ? error.message : String(error)}\n`, {
        status: 500,
        headers: { "Content-Type": "text/plain; charset=utf-8" },
      });
    const serve = (hostname: string) =>
      Bun.serve({
        hostname,
        port: address.port,
        development: false,
        reusePort: false,
        maxRequestBodySize: MAX_BODY_BYTES,
        async fetch(request) {
          let response: Response;
          try {
            const body = request.method === "POST" ? new Uint8Array(await request.arrayBuffer()) : NO_BODY;
            response = handle(request.method, request.url, body, request.headers);
          } catch (error) {
            response = internalError(error);
          }
          // JSON-quoted: whatever a client sends stays on one line.
          log?.debug(`${listener.name}: ${request.method} ${JSON.stringify(request.url.slice(request.url.indexOf("/", 8)))} -> ${response.status}`);
          return response;
        },
        error: internalError,
      });
    try {
      return new HttpServer(serve(address.host), address);
    } catch (error) {
      const code = codeOf(error);
      if (address.host !== "::" || (code !== "EAFNOSUPPORT" && code !== "EADDRNOTAVAIL")) throw new ListenError(listenFailure(address, listener, error), { cause: error });
      try {
        return new HttpServer(serve("0.0.0.0"), { host: "0.0.0.0", port: address.port });
      } catch (fallback) {
        throw new ListenError(listenFailure(address, listener, fallback), { cause: fallback });
      }
    }
  }

  /** listen(), and when the port is taken by one of our agents, says which (asking its /version). */
  static async start(address: HostPort, listener: Listener, handle: Handler, log?: Logger): Promise<HttpServer> {
    try {
      return HttpServer.listen(address, listener, handle, log);
    } catch (error) {
      if (!(error instanceof ListenError) || codeOf(error.cause) !== "EADDRINUSE") throw error;
      const probe = address.host === "::" ? { host: "::1", port: address.port } : address;
      const other = await fetchAgentVersion(probe, 1_000).catch(() => undefined);
      if (other === undefined) throw error;
      throw new ListenError(`another ${other.program} agent (pid ${other.pid}) already serves the ${listener.name} on ${formatHostPort(address)}: stop it first`);
    }
  }

  /** Stops listening and closes open connections. */
  async stop(): Promise<void> {
    await this.#server.stop(true);
  }
}

const codeOf = (error: unknown) => (error as { code?: unknown } | null)?.code;

function listenFailure(address: HostPort, listener: Listener, error: unknown): string {
  const where = formatHostPort(address);
  if (codeOf(error) === "EADDRINUSE") {
    return `cannot serve the ${listener.name} on ${where}: the address is in use by another program (choose another with ${listener.flag}, or ${listener.none})`;
  }
  const detail = error instanceof Error ? error.message : String(error);
  return `cannot serve the ${listener.name} on ${where}: ${detail} (choose another address with ${listener.flag}, or ${listener.none})`;
}
