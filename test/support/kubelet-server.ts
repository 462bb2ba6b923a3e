/**
 * A local kubelet of our own for tests: `GET /pods` over HTTPS on 127.0.0.1 only, with a
 * certificate made at test time (local-server.ts), a bearer token required, and a PodList the
 * test edits as it goes. Its answer can be switched to each failure the agent must survive.
 *
 *   await using kubelet = await startKubelet({ pods: [pod({ name: "a", ip4: "10.244.1.2" })] });
 *   agent args: ["--kubelet-url", kubelet.url, "--kubelet-ca-file", kubelet.caFile, "--kubelet-token-file", kubelet.tokenFile]
 *   kubelet.mode = "forbidden";
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { podList } from "./kubelet-pods.ts";
import { LocalServer, started } from "./local-server.ts";

export { makeCertificates } from "./local-server.ts";

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

export class LocalKubelet extends LocalServer {
  readonly tokenFile: string;
  /** the token the server accepts */
  #token: string;
  readonly #plainHttp: boolean;
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
    super({ prefix: "kubelet-test-", tls: !options.plainHttp });
    this.#plainHttp = options.plainHttp === true;
    this.pods = options.pods ?? [];
    this.slowMs = options.slowMs ?? 30_000;
    this.#token = `test-token-${crypto.randomUUID()}`;
    this.tokenFile = join(this.dir, "token");
    writeFileSync(this.tokenFile, `${this.#token}\n`);
  }

  get url(): string {
    return `${this.origin}/pods`;
  }

  /** Replaces the token the server accepts and the file that holds it (a rotation). */
  rotateToken(): void {
    this.#token = `test-token-${crypto.randomUUID()}`;
    writeFileSync(this.tokenFile, this.#token);
  }

  protected async respond(request: Request): Promise<Response> {
    this.requests++;
    const authorization = request.headers.get("authorization");
    this.authorizationHeaders.push(authorization);
    if (new URL(request.url).pathname !== "/pods") return new Response("404 page not found\n", { status: 404 });
    if (!this.#plainHttp && authorization !== `Bearer ${this.#token}`) {
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
}

/** Why the local kubelet cannot run here, or null. */
export function kubeletUnavailableReason(): string | null {
  return Bun.which("openssl") ? null : "the local kubelet needs `openssl` on PATH to make its certificate";
}

/** A started local kubelet. */
export function startKubelet(options: KubeletOptions = {}): Promise<LocalKubelet> {
  return started(new LocalKubelet(options));
}
