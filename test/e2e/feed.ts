/**
 * The feed as users run it: `dist/kmesh-accesslog feed` in a child process, against a local API
 * server (api-server.ts), over HTTPS with a certificate made now for 127.0.0.1, with a state file
 * in its own directory; and agents' tokens that the API server's TokenReview knows.
 *
 *   await using feed = await startFeed(api);
 *   const token = agentToken(api);              // a token of kmesh-accesslog:kmesh-accesslog
 *   agent args: ["--feed", feed.url, "--feed-ca-file", feed.caFile, "--feed-token-file", token]
 *   await feed.stop(); feed.start();            // a clean restart: the state file carries over
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Subprocess } from "bun";
import { atRunEnd } from "../support/cleanup.ts";
import { makeCertificates } from "../support/kubelet-server.ts";
import { AGENT_BINARY, REPO_ROOT } from "./agent.ts";
import { freePort } from "./admin-support.ts";
import type { LocalApiServer } from "./api-server.ts";
import { LineCollector } from "./lines.ts";

/** The agents' service account, as the feed allows it by default. */
export const AGENT_USER = "system:serviceaccount:kmesh-accesslog:kmesh-accesslog";

const live = new Set<Subprocess>();
atRunEnd(() => {
  for (const proc of live) proc.kill("SIGKILL");
});

export class LocalFeed implements AsyncDisposable {
  readonly dir = mkdtempSync(join(tmpdir(), "feed-test-"));
  readonly caFile: string;
  readonly #certFile: string;
  readonly #keyFile: string;
  readonly stateFile: string;
  readonly port = freePort();
  proc: Subprocess<"ignore", "ignore", "pipe"> | null = null;
  #err: LineCollector<string> | null = null;
  /** stderr lines of every run so far */
  readonly stderrLines: string[] = [];

  constructor(
    readonly api: LocalApiServer,
    readonly args: string[] = [],
  ) {
    const certs = makeCertificates(this.dir);
    this.caFile = certs.caFile;
    this.#certFile = certs.certFile;
    this.#keyFile = certs.keyFile;
    this.stateFile = join(this.dir, "state.json");
  }

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  start(): void {
    const argv = [AGENT_BINARY, "feed", "--kubeconfig", this.api.kubeconfig, "--listen", `127.0.0.1:${this.port}`];
    argv.push("--tls-cert-file", this.#certFile, "--tls-key-file", this.#keyFile, "--state-file", this.stateFile, ...this.args);
    const proc = Bun.spawn(argv, { cwd: REPO_ROOT, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    this.proc = proc;
    live.add(proc);
    void proc.exited.then(() => live.delete(proc));
    this.#err = new LineCollector(proc.stderr, (line) => {
      this.stderrLines.push(line);
      return line;
    });
  }

  /** A GET of the feed's own paths (no token): status and body. */
  async get(path: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
    const response = await fetch(`${this.url}${path}`, { headers, tls: { ca: Bun.file(this.caFile) }, signal: AbortSignal.timeout(5_000) } as RequestInit);
    return { status: response.status, body: await response.text() };
  }

  /** Resolves once /healthz answers 200 (the API server listed). */
  async ready(timeoutMs = 15_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const status = await this.get("/healthz").then((r) => r.status, () => 0);
      if (status === 200) return;
      if (Date.now() > deadline) throw new Error(`the feed was not ready within ${timeoutMs} ms: ${this.stderrLines.join(" | ")}`);
      await Bun.sleep(50);
    }
  }

  /** The feed's /metrics, name → value. */
  async metrics(): Promise<Map<string, number>> {
    const { body } = await this.get("/metrics");
    const values = new Map<string, number>();
    for (const line of body.split("\n")) {
      const m = /^([^#\s]\S*) (\S+)$/.exec(line);
      if (m) values.set(m[1]!, Number(m[2]));
    }
    return values;
  }

  /** SIGTERM (a clean stop: the state file is written), or another signal; its exit code. */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> {
    const proc = this.proc;
    if (proc === null) return null;
    proc.kill(signal);
    await proc.exited;
    await this.#err?.done;
    this.proc = null;
    return proc.exitCode;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.proc?.kill("SIGKILL");
    await this.proc?.exited;
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The feed, started and ready. */
export async function startFeed(api: LocalApiServer, args: string[] = []): Promise<LocalFeed> {
  const feed = new LocalFeed(api, args);
  try {
    feed.start();
    await feed.ready();
  } catch (error) {
    await feed[Symbol.asyncDispose]();
    throw error;
  }
  return feed;
}

/** A token file of `user` that the API server's TokenReview knows; in `dir`. */
export function agentToken(api: LocalApiServer, dir: string, user = AGENT_USER): string {
  const token = `agent-token-${crypto.randomUUID()}`;
  api.reviewTokens.set(token, user);
  const file = join(dir, `token-${crypto.randomUUID()}`);
  writeFileSync(file, `${token}\n`);
  return file;
}
