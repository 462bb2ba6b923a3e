// The admin API's socket: Bun.serve on the given address, every request
// answered by routes.ts. Nothing a client sends can crash the agent: a
// handler that throws answers 500 with one line.
import type { Server } from "bun";
import { ExitError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { formatHostPort, type HostPort } from "../address.ts";
import { fetchAgentVersion } from "./client.ts";
import { handleAdminRequest, type AdminBackend } from "./routes.ts";

/** The admin API could not be served; the message says why and what to do. */
export class AdminServerError extends ExitError {
  override name = "AdminServerError";
}

export class AdminServer {
  readonly #server: Server<undefined>;
  readonly address: HostPort;

  private constructor(server: Server<undefined>, address: HostPort) {
    this.#server = server;
    this.address = address;
  }

  /** Listens on `address`; throws AdminServerError naming whoever holds the port. */
  static async start(address: HostPort, backend: AdminBackend, log?: Logger): Promise<AdminServer> {
    const internalError = (error: unknown) =>
      new Response(`internal error: ${error instanceof Error ? error.message : String(error)}\n`, {
        status: 500,
        headers: { "Content-Type": "text/plain; charset=utf-8" },
      });
    try {
      const server = Bun.serve({
        hostname: address.host,
        port: address.port,
        development: false,
        reusePort: false,
        fetch(request) {
          let response: Response;
          try {
            response = handleAdminRequest(backend, request.method, request.url);
          } catch (error) {
            response = internalError(error);
          }
          // JSON-quoted: whatever a client sends stays on one line.
          log?.debug(`admin API: ${request.method} ${JSON.stringify(request.url.slice(request.url.indexOf("/", 8)))} -> ${response.status}`);
          return response;
        },
        error: internalError,
      });
      return new AdminServer(server, address);
    } catch (error) {
      throw new AdminServerError(await explainListenFailure(address, error));
    }
  }

  /** Stops listening and closes open connections. */
  async stop(): Promise<void> {
    await this.#server.stop(true);
  }
}

async function explainListenFailure(address: HostPort, error: unknown): Promise<string> {
  const where = formatHostPort(address);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === "EADDRINUSE") {
    const other = await fetchAgentVersion(address, 1_000).catch(() => undefined);
    if (other !== undefined) {
      return `another ${other.program} agent (pid ${other.pid}) already serves the admin API on ${where}: stop it first`;
    }
    return `cannot serve the admin API on ${where}: the address is in use by another program (choose another with --admin-addr, or disable the API with --admin-addr "")`;
  }
  const detail = error instanceof Error ? error.message : String(error);
  return `cannot serve the admin API on ${where}: ${detail} (choose another address with --admin-addr, or disable the API with --admin-addr "")`;
}
