// Requests to the Kubernetes API server: one page of a list, and a watch whose events arrive as
// they are read. Every failure is a value (kind + one-line detail, no secrets); nothing prints.
// The bearer token file is read again every minute and after a 401 (projected tokens rotate).
import * as v from "valibot";
import { answerFailure, bearerToken, classifyFetchError, CredentialFile, type Failure, oneLine, parseJson, type ReadText, readText, tlsOptions } from "../http.ts";
import { ListSchema, StatusSchema } from "./objects.ts";
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

/** What a request sends to be let in: the bearer token's header and the TLS settings. */
export interface Credentials {
  headers: Record<string, string>;
  tls: Record<string, unknown> | undefined;
}

export type ListPage = { ok: true; items: unknown[]; resourceVersion: string; continue: string | null } | { ok: false; failure: Failure };

/** A list page larger than this is refused. */
const MAX_PAGE_BYTES = 256 << 20;
export const LIST_TIMEOUT_MS = 60_000;

/** A JSON answer, or why there is none. */
type JsonAnswer = { ok: true; json: unknown } | { ok: false; failure: Failure };

export class ApiClient {
  readonly config: ApiServerConfig;
  readonly #tokenFile: CredentialFile | null;

  constructor(config: ApiServerConfig, read: ReadText = readText, now: () => number = Date.now) {
    this.config = config;
    const { tokenFile } = config;
    this.#tokenFile = tokenFile === null ? null : new CredentialFile(tokenFile, bearerToken(tokenFile), read, now);
  }

  /** The bearer token (from its file, else the kubeconfig's) and TLS settings of a request, or a problem with them. */
  credentials(): ({ ok: true } & Credentials) | { ok: false; failure: Failure } {
    const fromFile = this.#tokenFile?.read();
    if (fromFile?.ok === false) return { ok: false, failure: { kind: "credentials", detail: fromFile.problem } };
    const token = fromFile?.value ?? this.config.token;
    const headers: Record<string, string> = { accept: "application/json" };
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const c = this.config;
    const tls = { ...tlsOptions(c.insecureSkipTlsVerify, c.ca || null), ...(c.cert && c.key ? { cert: c.cert, key: c.key } : {}) };
    return { ok: true, headers, tls: c.server.startsWith("https:") ? tls : undefined };
  }

  /** The request's options with the credentials, or a problem with them. */
  #init(signal: AbortSignal): { ok: true; init: RequestInit } | { ok: false; failure: Failure } {
    const credentials = this.credentials();
    if (!credentials.ok) return credentials;
    const { headers, tls } = credentials;
    return { ok: true, init: { headers, signal, redirect: "error", ...(tls === undefined ? {} : { tls }) } as RequestInit };
  }

  /** `GET <path>` (a query included) of one object, as JSON. */
  getJson(path: string, timeoutMs = 10_000): Promise<JsonAnswer> {
    return this.#json(path, timeoutMs);
  }

  /** `POST <path>` of a JSON body; the answer's JSON when the status is 200 or 201 (the feed's TokenReviews). */
  postJson(path: string, body: unknown, timeoutMs = 10_000): Promise<JsonAnswer> {
    return this.#json(path, timeoutMs, { post: body });
  }

  /** A non-200 answer → failure, with the message of the Status object the body holds, else the body. */
  #statusFailure(response: Response): Promise<Failure> {
    return answerFailure(response, this.#tokenFile, (text) => {
      const status = v.safeParse(v.pipe(v.string(), v.parseJson(), StatusSchema), text);
      return oneLine(status.success && status.output.message ? status.output.message : text);
    }, true);
  }

  /** One page of `GET <path>?limit=...&continue=...`; `signal` stops it early (then: a timeout failure). */
  async listPage(path: string, limit: number, continueToken: string | null, signal?: AbortSignal): Promise<ListPage> {
    const query = new URLSearchParams({ limit: String(limit) });
    if (continueToken !== null) query.set("continue", continueToken);
    const answer = await this.#json(`${path}?${query}`, LIST_TIMEOUT_MS, { signal, maxPageBytes: MAX_PAGE_BYTES });
    if (!answer.ok) return answer;
    const list = v.safeParse(ListSchema, answer.json);
    if (!list.success || Array.isArray(answer.json)) return { ok: false, failure: { kind: "invalid", detail: "not a list" } };
    return {
      ok: true,
      items: list.output.items ?? [],
      resourceVersion: list.output.metadata?.resourceVersion ?? "",
      continue: list.output.metadata?.continue || null,
    };
  }

  /** GET (POST when `post` is given) of JSON; the answer's JSON on 200 (or 201 to a POST). */
  async #json(path: string, timeoutMs: number, o: { post?: unknown; signal?: AbortSignal | undefined; maxPageBytes?: number } = {}): Promise<JsonAnswer> {
    const timeout = AbortSignal.timeout(timeoutMs);
    const request = this.#init(o.signal ? AbortSignal.any([o.signal, timeout]) : timeout);
    if (!request.ok) return request;
    const init = request.init as RequestInit & { headers: Record<string, string> };
    const post = "post" in o;
    try {
      const response = await fetch(
        `${this.config.server}${path}`,
        post ? { ...init, method: "POST", headers: { ...init.headers, "content-type": "application/json" }, body: JSON.stringify(o.post) } : init,
      );
      if (response.status !== 200 && !(post && response.status === 201)) return { ok: false, failure: await this.#statusFailure(response) };
      const declared = Number(response.headers.get("content-length") ?? Number.NaN);
      if (declared > (o.maxPageBytes ?? Infinity)) return { ok: false, failure: { kind: "invalid", detail: `a list page of ${declared} bytes` } };
      const parsed = parseJson(await response.text());
      return parsed.ok ? parsed : { ok: false, failure: { kind: "invalid", detail: `not JSON: ${oneLine(parsed.message)}` } };
    } catch (error) {
      return { ok: false, failure: classifyFetchError(error, timeoutMs) };
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
  ): Promise<Failure | null> {
    const query = new URLSearchParams({
      watch: "1",
      resourceVersion,
      allowWatchBookmarks: "true",
      timeoutSeconds: String(timeoutSeconds),
    });
    // The server ends the stream after timeoutSeconds; a stream silent well past that is dead.
    const guard = AbortSignal.any([signal, AbortSignal.timeout((timeoutSeconds + 30) * 1000)]);
    const request = this.#init(guard);
    if (!request.ok) return request.failure;
    let response: Response;
    try {
      response = await fetch(`${this.config.server}${path}?${query}`, request.init);
    } catch (error) {
      return signal.aborted ? null : classifyFetchError(error, (timeoutSeconds + 30) * 1000);
    }
    if (response.status !== 200) return this.#statusFailure(response);
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
      const failure = classifyFetchError(error, (timeoutSeconds + 30) * 1000);
      return failure.kind === "unreachable" ? { kind: "unreachable", detail: `the watch broke: ${failure.detail}` } : failure;
    }
  }
}
