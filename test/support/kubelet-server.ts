/**
 * A local kubelet of our own for tests: `GET /pods` over HTTPS on 127.0.0.1 only, with a
 * certificate made at test time by `openssl` (a self-signed CA and a server certificate with the
 * IP SAN 127.0.0.1), a bearer token required, and a PodList the test edits as it goes. Its answer
 * can be switched to each failure the agent must survive.
 *
 *   await using kubelet = await startKubelet({ pods: [pod({ name: "a", ip4: "10.244.1.2" })] });
 *   agent args: ["--kubelet-url", kubelet.url, "--kubelet-ca-file", kubelet.caFile, "--kubelet-token-file", kubelet.tokenFile]
 *   kubelet.mode = "forbidden";
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server } from "bun";
import { podList } from "./kubelet-pods.ts";

export type KubeletMode =
  /** the pod list */
  | "ok"
  | "unauthorized"
  | "forbidden"
  /** 200 with a body that is not JSON */
  | "garbage"
  /** 200 with JSON that is not a valid PodList (a pod with a wrong type) */
  | "invalid"
  /** headers only after `slowMs` */
  | "slow";

export interface KubeletOptions {
  pods?: unknown[];
  /** what `slow` waits before answering (default 30 s) */
  slowMs?: number;
  /** serve plain HTTP (the read-only port) instead of HTTPS, no token required */
  plainHttp?: boolean;
}

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

export class LocalKubelet implements AsyncDisposable {
  readonly dir: string;
  readonly caFile: string;
  /** a CA that did not sign the server certificate */
  readonly otherCaFile: string;
  readonly tokenFile: string;
  /** the token the server accepts */
  #token: string;
  readonly #tls: { cert: string; key: string } | null;
  #server: Server<undefined> | null = null;
  #port = 0;
  pods: unknown[];
  /** when set, served as the pod list's JSON text instead of `pods` (a benchmark's prepared list) */
  listText: string | null = null;
  mode: KubeletMode = "ok";
  slowMs: number;
  /** requests received, and those that carried the right token */
  requests = 0;
  authorized = 0;
  /** Authorization headers seen (to check that none is sent where none should be) */
  readonly authorizationHeaders: (string | null)[] = [];

  constructor(options: KubeletOptions) {
    this.dir = mkdtempSync(join(tmpdir(), "kubelet-test-"));
    this.pods = options.pods ?? [];
    this.slowMs = options.slowMs ?? 30_000;
    this.#token = `test-token-${crypto.randomUUID()}`;
    this.tokenFile = join(this.dir, "token");
    writeFileSync(this.tokenFile, `${this.#token}\n`);
    if (options.plainHttp) {
      this.caFile = "";
      this.otherCaFile = "";
      this.#tls = null;
    } else {
      const certs = makeCertificates(this.dir);
      this.caFile = certs.caFile;
      this.otherCaFile = certs.otherCaFile;
      this.#tls = { cert: readFileSync(certs.certFile, "utf8"), key: readFileSync(certs.keyFile, "utf8") };
    }
  }

  get port(): number {
    return this.#port;
  }

  get url(): string {
    return `${this.#tls ? "https" : "http"}://127.0.0.1:${this.#port}/pods`;
  }

  /** Replaces the token the server accepts and the file that holds it (a rotation). */
  rotateToken(): void {
    this.#token = `test-token-${crypto.randomUUID()}`;
    writeFileSync(this.tokenFile, this.#token);
  }

  /** Listens on 127.0.0.1 (the same port again after stop(), so "down then up" keeps its URL). */
  start(): void {
    if (this.#server !== null) return;
    this.#server = Bun.serve({
      hostname: "127.0.0.1",
      port: this.#port,
      ...(this.#tls ? { tls: this.#tls } : {}),
      fetch: (request) => this.#answer(request),
    });
    this.#port = this.#server.port ?? 0;
  }

  /** Stops listening: the kubelet is down. */
  stop(): void {
    this.#server?.stop(true);
    this.#server = null;
  }

  async #answer(request: Request): Promise<Response> {
    this.requests++;
    const authorization = request.headers.get("authorization");
    this.authorizationHeaders.push(authorization);
    if (new URL(request.url).pathname !== "/pods") return new Response("404 page not found\n", { status: 404 });
    if (this.#tls !== null && authorization !== `Bearer ${this.#token}`) {
      return new Response("Unauthorized\n", { status: 401, statusText: "Unauthorized" });
    }
    this.authorized++;
    switch (this.mode) {
      case "unauthorized":
        return new Response("Unauthorized\n", { status: 401, statusText: "Unauthorized" });
      case "forbidden":
        return new Response(
          "Forbidden (user=system:serviceaccount:kmesh-system:kmesh-accesslog, verb=get, resource=nodes, subresource(s)=[pods])\n",
          { status: 403, statusText: "Forbidden" },
        );
      case "garbage":
        return new Response("<html><body>garbage</body></html>", { headers: { "content-type": "text/html" } });
      case "invalid":
        return Response.json(podList([{ metadata: { name: "broken", namespace: "default" }, status: { podIP: 42 } }]));
      case "slow":
        await Bun.sleep(this.slowMs);
        return Response.json(podList(this.pods));
      case "ok":
        if (this.listText !== null) return new Response(this.listText, { headers: { "content-type": "application/json" } });
        return Response.json(podList(this.pods));
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Why the local kubelet cannot run here, or null. */
export function kubeletUnavailableReason(): string | null {
  return Bun.which("openssl") ? null : "the local kubelet needs `openssl` on PATH to make its certificate";
}

/** A started local kubelet. */
export async function startKubelet(options: KubeletOptions = {}): Promise<LocalKubelet> {
  const kubelet = new LocalKubelet(options);
  try {
    kubelet.start();
  } catch (error) {
    await kubelet[Symbol.asyncDispose]();
    throw error;
  }
  return kubelet;
}
