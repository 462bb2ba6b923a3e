// One `GET /pods` from the kubelet, with every way it can fail turned into a value: a failure
// kind (for one stderr line per kind, see pod-source.ts) and a short detail. Nothing here throws
// or prints. The bearer token is read from its file, re-read every minute and after a 401 (the
// kubelet rotates projected tokens), sent only over https, and never put into any message.
import { readFileSync } from "node:fs";

export type FailureKind =
  /** the token or CA file cannot be read or holds nothing usable */
  | "credentials"
  | "unreachable"
  | "timeout"
  | "tls"
  | "unauthorized"
  | "forbidden"
  /** any other HTTP status */
  | "http"
  /** not JSON, not a PodList, a pod with a wrong type, too large */
  | "invalid";

export interface RefreshFailure {
  kind: FailureKind;
  /** one line, no secrets */
  detail: string;
}

export interface KubeletClientConfig {
  /** the whole URL, e.g. https://10.0.0.5:10250/pods */
  url: string;
  tokenFile: string | null;
  caFile: string | null;
  insecureSkipTlsVerify: boolean;
  /** for the whole request: connect, headers and body */
  timeoutMs: number;
}

export type FetchResult = { ok: true; text: string; bytes: number } | { ok: false; failure: RefreshFailure };
export type StreamResult = { ok: true; bytes: number } | { ok: false; failure: RefreshFailure };

/** How often the token and CA files are read again. */
export const CREDENTIALS_REREAD_MS = 60_000;
/** A pod list larger than this is refused (a 1,000-pod list is about 10 MiB). */
export const MAX_ANSWER_BYTES = 256 << 20;

const TLS_CODE = /CERT|SELF_SIGNED|TLS|SSL|VERIFY|ISSUER|HOSTNAME|ALTNAME/i;

/** Printable one-line text of at most `max` characters, from whatever a server sent. */
export function oneLine(text: string, max = 160): string {
  const flat = text.replace(/[^\x20-\x7e]+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

function errorCode(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  return typeof e?.code === "string" ? e.code : typeof e?.name === "string" ? e.name : "error";
}

/** A fetch() rejection → failure kind. */
export function classifyFetchError(error: unknown, timeoutMs: number): RefreshFailure {
  const name = (error as { name?: unknown })?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return { kind: "timeout", detail: `no complete answer within ${timeoutMs / 1000} s` };
  }
  const code = errorCode(error);
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (TLS_CODE.test(code)) return { kind: "tls", detail: `${code}: ${message}` };
  return { kind: "unreachable", detail: message.startsWith(code) ? message : `${code}: ${message}` };
}

export class KubeletClient {
  readonly config: KubeletClientConfig;
  readonly #secure: boolean;
  readonly #readText: (path: string) => string;
  readonly #now: () => number;
  #credentialsReadAt = -Infinity;
  #token: string | null = null;
  #ca: string | null = null;
  #credentialsProblem: string | null = null;

  constructor(
    config: KubeletClientConfig,
    readText: (path: string) => string = (path) => readFileSync(path, "utf8"),
    now: () => number = Date.now,
  ) {
    this.config = config;
    this.#secure = new URL(config.url).protocol === "https:";
    this.#readText = readText;
    this.#now = now;
  }

  /** Reads the token and CA files when they are due; sets #credentialsProblem on failure. */
  #readCredentials(): void {
    if (this.#now() - this.#credentialsReadAt < CREDENTIALS_REREAD_MS) return;
    this.#credentialsReadAt = this.#now();
    this.#credentialsProblem = null;
    const { tokenFile, caFile } = this.config;
    try {
      if (tokenFile !== null) {
        const token = this.#readText(tokenFile).trim();
        if (token === "") throw new Error(`the token file ${tokenFile} is empty`);
        this.#token = token;
      }
      if (caFile !== null && !this.config.insecureSkipTlsVerify) {
        const ca = this.#readText(caFile);
        if (!ca.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`no PEM certificate in ${caFile}`);
        this.#ca = ca;
      }
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      this.#credentialsProblem = e.code ? `cannot read ${e.path ?? "a credentials file"}: ${e.code}` : e.message;
      // Read again at the next attempt rather than a minute later.
      this.#credentialsReadAt = -Infinity;
    }
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
      this.#readCredentials();
      if (this.#credentialsProblem !== null) return { ok: false, failure: { kind: "credentials", detail: this.#credentialsProblem } };
      if (this.#token !== null) headers.authorization = `Bearer ${this.#token}`;
      tls = this.config.insecureSkipTlsVerify
        ? { rejectUnauthorized: false }
        : { rejectUnauthorized: true, ...(this.#ca === null ? {} : { ca: this.#ca }) };
    }
    const { timeoutMs } = this.config;
    const signal = AbortSignal.timeout(timeoutMs);
    let response: Response;
    try {
      response = await fetch(this.config.url, { headers, signal, redirect: "error", ...(tls ? { tls } : {}) });
    } catch (error) {
      return { ok: false, failure: classifyFetchError(error, timeoutMs) };
    }
    try {
      if (response.status !== 200) {
        if (response.status === 401) this.#credentialsReadAt = -Infinity; // maybe rotated: read it again
        const body = oneLine(await response.text());
        const status = `${response.status}${response.statusText ? ` ${response.statusText}` : ""}`;
        const detail = body === "" ? status : `${status}: ${body}`;
        const kind = response.status === 401 ? "unauthorized" : response.status === 403 ? "forbidden" : "http";
        return { ok: false, failure: { kind, detail } };
      }
      const declared = Number(response.headers.get("content-length") ?? Number.NaN);
      if (declared > MAX_ANSWER_BYTES) return tooLarge(declared);
      let bytes = 0;
      for await (const chunk of response.body ?? []) {
        bytes += chunk.byteLength;
        if (bytes > MAX_ANSWER_BYTES) {
          await response.body?.cancel().catch(() => undefined);
          return tooLarge(bytes);
        }
        await consume(chunk);
      }
      return { ok: true, bytes };
    } catch (error) {
      return { ok: false, failure: classifyFetchError(error, timeoutMs) };
    }
  }
}

function tooLarge(bytes: number): StreamResult {
  return {
    ok: false,
    failure: { kind: "invalid", detail: `the answer is larger than ${MAX_ANSWER_BYTES >> 20} MiB (${bytes} bytes so far)` },
  };
}
