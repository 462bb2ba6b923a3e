// One `GET /pods` from the kubelet, with every way it can fail turned into a value (../http.ts):
// a failure kind (for one stderr line per kind, see pod-source.ts) and a short detail. Nothing
// here throws or prints. The token, the timeout that counts only the waiting for the kubelet:
// docs/kubernetes.md, "The kubelet".
import { HttpAnswer, NotHttp } from "./http-get.ts";
import { bearerToken, classifyFetchError, CredentialFile, type Failure, type FailureKind, oneLine, pemCertificate, type ReadText, readText, statusFailure, tlsOptions } from "../http.ts";

/** A failure of the kubelet (never "expired": that is the API server's). */
export type KubeletFailure = Failure<Exclude<FailureKind, "expired">>;

export interface KubeletClientConfig {
  /** the whole URL, e.g. https://10.0.0.5:10250/pods */
  url: string;
  tokenFile: string | null;
  caFile: string | null;
  insecureSkipTlsVerify: boolean;
  /** for the whole request: connect, headers and body */
  timeoutMs: number;
}

export type FetchResult = { ok: true; text: string; bytes: number } | { ok: false; failure: KubeletFailure };
export type StreamResult = { ok: true; bytes: number } | { ok: false; failure: KubeletFailure };

/** A pod list larger than this is refused (a 1,000-pod list is about 10 MiB). */
export const MAX_ANSWER_BYTES = 256 << 20;

export class KubeletClient {
  readonly config: KubeletClientConfig;
  readonly #secure: boolean;
  readonly #token: CredentialFile | null;
  /** null: the system's roots, or no verification at all */
  readonly #ca: CredentialFile | null;

  constructor(config: KubeletClientConfig, read: ReadText = readText, now: () => number = Date.now) {
    this.config = config;
    this.#secure = new URL(config.url).protocol === "https:";
    const { tokenFile, caFile } = config;
    this.#token = tokenFile === null ? null : new CredentialFile(tokenFile, bearerToken(tokenFile), read, now);
    this.#ca = caFile === null || config.insecureSkipTlsVerify ? null : new CredentialFile(caFile, pemCertificate(caFile), read, now);
  }

  /** GET /pods, the whole answer as text (for check, which reads one list once). */
  async fetchPods(): Promise<FetchResult> {
    const chunks: Uint8Array[] = [];
    const streamed = await this.streamPods((chunk) => {
      chunks.push(chunk);
    });
    if (!streamed.ok) return streamed;
    return { ok: true, text: Buffer.concat(chunks, streamed.bytes).toString("utf8"), bytes: streamed.bytes };
  }

  /**
   * GET /pods, handing the answer's body to `consume` chunk by chunk as it arrives (the next
   * chunk is read once consume's promise settles). Failures, including a body that breaks off or
   * grows too large, are values.
   */
  async streamPods(consume: (chunk: Uint8Array) => void | Promise<void>): Promise<StreamResult> {
    const headers: Record<string, string> = { accept: "application/json" };
    let tls: { ca?: string; rejectUnauthorized: boolean } | undefined;
    if (this.#secure) {
      const token = this.#token?.read();
      if (token?.ok === false) return { ok: false, failure: { kind: "credentials", detail: token.problem } };
      const ca = this.#ca?.read();
      if (ca?.ok === false) return { ok: false, failure: { kind: "credentials", detail: ca.problem } };
      if (token !== undefined) headers.authorization = `Bearer ${token.value}`;
      tls = tlsOptions(this.config.insecureSkipTlsVerify, ca?.value ?? null);
    }
    const { timeoutMs } = this.config;
    const waiting = new WaitingTime(timeoutMs);
    let answer: HttpAnswer | null = null;
    try {
      answer = await HttpAnswer.get(new URL(this.config.url), { headers, signal: waiting.signal, ...(tls ? { tls } : {}) });
      if (answer.status !== 200) {
        if (answer.status === 401) this.#token?.expire(); // maybe rotated: read it again
        return { ok: false, failure: statusFailure(answer, oneLine(await answer.text())) };
      }
      const declared = Number(answer.headers.get("content-length") ?? Number.NaN);
      if (declared > MAX_ANSWER_BYTES) return tooLarge(declared);
      let bytes = 0;
      for (let chunk = await answer.next(); chunk !== null; chunk = await answer.next()) {
        bytes += chunk.byteLength;
        if (bytes > MAX_ANSWER_BYTES) return tooLarge(bytes);
        waiting.stop();
        await consume(chunk);
        waiting.start();
      }
      return { ok: true, bytes };
    } catch (error) {
      if (error instanceof NotHttp) return { ok: false, failure: { kind: "invalid", detail: `not an HTTP/1.1 answer: ${error.message}` } };
      return { ok: false, failure: classifyFetchError(error, timeoutMs) };
    } finally {
      waiting.stop();
      answer?.close();
    }
  }
}

/** A request's timeout that runs only while started: while we wait for the kubelet. */
class WaitingTime {
  readonly #controller = new AbortController();
  #leftMs: number;
  #startedAt = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(timeoutMs: number) {
    this.#leftMs = timeoutMs;
    this.start();
  }

  /** Aborts the request when the time is up (a TimeoutError, as AbortSignal.timeout gives). */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  start(): void {
    if (this.#timer !== null) return;
    this.#startedAt = performance.now();
    this.#timer = setTimeout(() => this.#controller.abort(new DOMException("the kubelet took too long", "TimeoutError")), Math.max(0, this.#leftMs));
  }

  stop(): void {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#leftMs -= performance.now() - this.#startedAt;
  }
}

function tooLarge(bytes: number): StreamResult {
  return {
    ok: false,
    failure: { kind: "invalid", detail: `the answer is larger than ${MAX_ANSWER_BYTES >> 20} MiB (${bytes} bytes so far)` },
  };
}
