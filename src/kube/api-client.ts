// Requests to the Kubernetes API server: one page of a list, and a watch whose events arrive as
// they are read. Every failure is a value (kind + one-line detail, no secrets); nothing prints.
// The bearer token file is read again every minute and after a 401 (projected tokens rotate).
import { readFileSync } from "node:fs";
import * as v from "valibot";
import { ListSchema, StatusSchema } from "./api-objects.ts";
import { classifyFetchError, CREDENTIALS_REREAD_MS, type FailureKind, oneLine, type RefreshFailure } from "./kubelet-client.ts";
import { LineSplitter, parseWatchEvent, type WatchEvent } from "./watch-stream.ts";

export interface ApiServerConfig {
  /** e.g. https://10.96.0.1:443 (no trailing slash) */
  server: string;
  /** a file holding the bearer token (in-cluster, kubeconfig tokenFile) */
  tokenFile: string | null;
  /** a bearer token given inline (kubeconfig token) */
  token: string | null;
  /** PEM text of the CA, or null: the system's roots */
  ca: string | null;
  /** PEM text of a client certificate and its key (kubeconfig client-certificate users) */
  cert: string | null;
  key: string | null;
  insecureSkipTlsVerify: boolean;
  /** where the settings came from, for messages: "in-cluster", "kubeconfig /root/.kube/config" */
  origin: string;
}

export type ApiFailureKind = FailureKind | "expired";
export interface ApiFailure {
  kind: ApiFailureKind;
  detail: string;
}

export type ListPage = { ok: true; items: unknown[]; resourceVersion: string; continue: string | null } | { ok: false; failure: ApiFailure };

/** A list page larger than this is refused. */
const MAX_PAGE_BYTES = 256 << 20;
export const LIST_TIMEOUT_MS = 60_000;

export class ApiClient {
  readonly config: ApiServerConfig;
  readonly #readText: (path: string) => string;
  readonly #now: () => number;
  #readAt = -Infinity;
  #token: string | null;
  #problem: string | null = null;

  constructor(config: ApiServerConfig, readText: (path: string) => string = (p) => readFileSync(p, "utf8"), now: () => number = Date.now) {
    this.config = config;
    this.#token = config.token;
    this.#readText = readText;
    this.#now = now;
  }

  #credentials(): string | null {
    const file = this.config.tokenFile;
    if (file === null || this.#now() - this.#readAt < CREDENTIALS_REREAD_MS) return this.#problem;
    this.#readAt = this.#now();
    try {
      const token = this.#readText(file).trim();
      if (token === "") throw new Error(`the token file ${file} is empty`);
      this.#token = token;
      this.#problem = null;
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      this.#problem = e.code ? `cannot read ${e.path ?? file}: ${e.code}` : e.message;
      this.#readAt = -Infinity;
    }
    return this.#problem;
  }

  #init(signal: AbortSignal): RequestInit {
    const headers: Record<string, string> = { accept: "application/json" };
    if (this.#token !== null) headers.authorization = `Bearer ${this.#token}`;
    const c = this.config;
    const tls = c.insecureSkipTlsVerify
      ? { rejectUnauthorized: false, ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}) }
      : { rejectUnauthorized: true, ...(c.ca ? { ca: c.ca } : {}), ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}) };
    return { headers, signal, redirect: "error", ...(c.server.startsWith("https:") ? { tls } : {}) } as RequestInit;
  }

  /** A non-200 answer → failure (reads the body for the Status message). */
  async #httpFailure(response: Response): Promise<ApiFailure> {
    if (response.status === 401) this.#readAt = -Infinity; // maybe rotated: read it again
    const text = await response.text().catch(() => "");
    let message = oneLine(text);
    try {
      const status = v.safeParse(StatusSchema, JSON.parse(text));
      if (status.success && status.output.message) message = oneLine(status.output.message);
    } catch {
      // not JSON: the text itself
    }
    const code = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
    const detail = message === "" ? code : `${code}: ${message}`;
    const kind: ApiFailureKind =
      response.status === 401 ? "unauthorized" : response.status === 403 ? "forbidden" : response.status === 410 ? "expired" : "http";
    return { kind, detail };
  }

  /** One page of `GET <path>?limit=...&continue=...`; `signal` stops it early (then: a timeout failure). */
  async listPage(path: string, limit: number, continueToken: string | null, signal?: AbortSignal): Promise<ListPage> {
    const problem = this.#credentials();
    if (problem !== null) return { ok: false, failure: { kind: "credentials", detail: problem } };
    const query = new URLSearchParams({ limit: String(limit) });
    if (continueToken !== null) query.set("continue", continueToken);
    let response: Response;
    try {
      const timeout = AbortSignal.timeout(LIST_TIMEOUT_MS);
      response = await fetch(`${this.config.server}${path}?${query}`, this.#init(signal ? AbortSignal.any([signal, timeout]) : timeout));
      if (response.status !== 200) return { ok: false, failure: await this.#httpFailure(response) };
      const declared = Number(response.headers.get("content-length") ?? Number.NaN);
      if (declared > MAX_PAGE_BYTES) return { ok: false, failure: { kind: "invalid", detail: `a list page of ${declared} bytes` } };
      const text = await response.text();
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (error) {
        return { ok: false, failure: { kind: "invalid", detail: `not JSON: ${oneLine((error as Error).message)}` } };
      }
      const list = v.safeParse(ListSchema, json);
      if (!list.success || Array.isArray(json)) return { ok: false, failure: { kind: "invalid", detail: "not a list" } };
      return {
        ok: true,
        items: list.output.items ?? [],
        resourceVersion: list.output.metadata?.resourceVersion ?? "",
        continue: list.output.metadata?.continue || null,
      };
    } catch (error) {
      return { ok: false, failure: classifyFetchError(error, LIST_TIMEOUT_MS) };
    }
  }

  /**
   * `GET <path>?watch=1&resourceVersion=<rv>&allowWatchBookmarks=true`: calls `onEvent` for each
   * event as it arrives, until the server ends the stream (resolves null), `signal` aborts
   * (resolves null) or something fails (resolves the failure). Stops early when onEvent says so.
   */
  async watch(
    path: string,
    resourceVersion: string,
    timeoutSeconds: number,
    signal: AbortSignal,
    onEvent: (event: WatchEvent) => "continue" | "stop",
    onOpen: () => void = () => undefined,
  ): Promise<ApiFailure | null> {
    const problem = this.#credentials();
    if (problem !== null) return { kind: "credentials", detail: problem };
    const query = new URLSearchParams({
      watch: "1",
      resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(timeoutSeconds),
    });
    // The server ends the stream after timeoutSeconds; a stream silent well past that is dead.
    const guard = AbortSignal.any([signal, AbortSignal.timeout((timeoutSeconds + 30) * 1000)]);
    let response: Response;
    try {
      response = await fetch(`${this.config.server}${path}?${query}`, this.#init(guard));
    } catch (error) {
      return signal.aborted ? null : classifyFetchError(error, (timeoutSeconds + 30) * 1000);
    }
    if (response.status !== 200) return this.#httpFailure(response);
    onOpen();
    const splitter = new LineSplitter();
    try {
      for await (const chunk of response.body ?? []) {
        for (const line of splitter.push(chunk)) {
          if (onEvent(parseWatchEvent(line)) === "stop") {
            await response.body?.cancel().catch(() => undefined);
            return null;
          }
        }
      }
      const last = splitter.end();
      if (last !== "") onEvent(parseWatchEvent(last));
      return null;
    } catch (error) {
      if (signal.aborted) return null;
      const failure: RefreshFailure = classifyFetchError(error, (timeoutSeconds + 30) * 1000);
      return failure.kind === "unreachable" ? { kind: "unreachable", detail: `the watch broke: ${failure.detail}` } : failure;
    }
  }
}
