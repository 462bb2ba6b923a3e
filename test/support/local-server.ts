/**
 * What the tests' local servers share (the kubelet of kubelet-server.ts, the OTLP collector of
 * otlp-receiver.ts): HTTP or HTTPS on 127.0.0.1, a certificate made at test time by `openssl` (a
 * self-signed CA and a server certificate with the IP SAN 127.0.0.1, plus an unrelated CA), a
 * private directory, and a server that can go down and come back on the same port, so that
 * "down, then up" keeps its URL. A subclass answers the requests.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";

function openssl(args: string[], cwd: string): void {
  const r = Bun.spawnSync(["openssl", ...args], { cwd, stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`openssl ${args.join(" ")} failed: ${r.stderr.toString()}`);
}

/** A CA and a server certificate for IP 127.0.0.1, plus an unrelated CA, in `dir`. */
export function makeCertificates(dir: string): { caFile: string; otherCaFile: string; certFile: string; keyFile: string } {
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  openssl(["req", "-x509", ...ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=test kubelet CA"], dir);
  openssl(["req", "-x509", ...ec, "-keyout", "other.key", "-out", "other.crt", "-days", "2", "-subj", "/CN=some other CA"], dir);
  openssl(["req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=test-node"], dir);
  writeFileSync(join(dir, "ext.cnf"), "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
  openssl(["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf"], dir);
  return { caFile: join(dir, "ca.crt"), otherCaFile: join(dir, "other.crt"), certFile: join(dir, "server.crt"), keyFile: join(dir, "server.key") };
}

export interface LocalServerOptions {
  /** the private directory's name starts with this */
  prefix: string;
  /** serve HTTPS with a certificate made now */
  tls: boolean;
  /** listen on this port (0: the kernel's pick, kept across stop() and start()) */
  port?: number;
  /** seconds a connection may stay quiet (Bun's default: 10; 0: no limit) */
  idleTimeout?: number;
}

export abstract class LocalServer implements AsyncDisposable {
  readonly dir: string;
  /** the CA that signed the server's certificate, and one that did not ("" without TLS) */
  readonly caFile: string;
  readonly otherCaFile: string;
  readonly #tls: { cert: string; key: string } | null;
  readonly #idleTimeout: number | undefined;
  #server: Server<undefined> | null = null;
  #port: number;

  constructor(options: LocalServerOptions) {
    this.dir = mkdtempSync(join(tmpdir(), options.prefix));
    this.#port = options.port ?? 0;
    this.#idleTimeout = options.idleTimeout;
    if (options.tls) {
      const certs = makeCertificates(this.dir);
      this.caFile = certs.caFile;
      this.otherCaFile = certs.otherCaFile;
      this.#tls = { cert: readFileSync(certs.certFile, "utf8"), key: readFileSync(certs.keyFile, "utf8") };
    } else {
      this.caFile = "";
      this.otherCaFile = "";
      this.#tls = null;
    }
  }

  protected abstract respond(request: Request): Response | Promise<Response>;

  get port(): number {
    return this.#port;
  }

  /** `http://127.0.0.1:<port>`, or https. */
  get origin(): string {
    return `${this.#tls ? "https" : "http"}://127.0.0.1:${this.#port}`;
  }

  /** Listens on 127.0.0.1 (the same port again after stop()). */
  start(): void {
    if (this.#server !== null) return;
    this.#server = Bun.serve({
      hostname: "127.0.0.1",
      port: this.#port,
      ...(this.#tls ? { tls: this.#tls } : {}),
      ...(this.#idleTimeout === undefined ? {} : { idleTimeout: this.#idleTimeout }),
      fetch: (request) => this.respond(request),
    });
    this.#port = this.#server.port ?? 0;
  }

  /** Stops listening and drops open connections: the server is down. */
  stop(): void {
    this.#server?.stop(true);
    this.#server = null;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** `server`, started; disposed if it cannot start. */
export async function started<T extends LocalServer>(server: T): Promise<T> {
  try {
    server.start();
  } catch (error) {
    await server[Symbol.asyncDispose]();
    throw error;
  }
  return server;
}
