// What the kubelet's and the API server's clients share: the service account's files, bearer
// tokens and CAs read again when due, and every way a request fails turned into a value (a kind
// and a one-line detail without secrets). Nothing here throws or prints. What each failure is
// called and what run and check say about it: failures.ts.
import { readFileSync } from "node:fs";

/** Where a pod's service-account token and cluster CA are mounted. */
export const SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token";
export const SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";

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
  /** not JSON, not what was asked for, an object with a wrong type, too large */
  | "invalid"
  /** 410 Gone from the API server: the resourceVersion is too old, list again */
  | "expired";

export interface Failure<Kind extends FailureKind = FailureKind> {
  kind: Kind;
  /** one line, no secrets */
  detail: string;
}

/** How often the token and CA files are read again (the kubelet rotates projected tokens). */
export const CREDENTIALS_REREAD_MS = 60_000;

export type ReadText = (path: string) => string;
export const readText: ReadText = (path) => readFileSync(path, "utf8");

/**
 * A credentials file, read when due: every CREDENTIALS_REREAD_MS, and at the next request after
 * it could not be read or after expire() (a 401: the token may have been rotated).
 */
export class CredentialFile {
  #readAt = -Infinity;
  #value: string | null = null;
  #problem: string | null = null;

  constructor(
    readonly path: string,
    /** turns the file's text into the value, or throws an Error saying why it cannot */
    private readonly use: (text: string) => string,
    private readonly readFile: ReadText = readText,
    private readonly now: () => number = Date.now,
  ) {}

  /** The value, or the problem (one line) when the file cannot be read or used. */
  read(): { ok: true; value: string } | { ok: false; problem: string } {
    if (this.now() - this.#readAt >= CREDENTIALS_REREAD_MS) {
      this.#readAt = this.now();
      try {
        this.#value = this.use(this.readFile(this.path));
        this.#problem = null;
      } catch (error) {
        const e = error as NodeJS.ErrnoException;
        this.#problem = e.code ? `cannot read ${e.path ?? this.path}: ${e.code}` : e.message;
        this.#readAt = -Infinity;
      }
    }
    return this.#problem === null ? { ok: true, value: this.#value! } : { ok: false, problem: this.#problem };
  }

  expire(): void {
    this.#readAt = -Infinity;
  }
}

/** A bearer token file: its text, trimmed; empty is unusable. */
export const bearerToken = (path: string) => (text: string) => {
  const token = text.trim();
  if (token === "") throw new Error(`the token file ${path} is empty`);
  return token;
};

/** A CA file: its text, which must hold a PEM certificate. */
export const pemCertificate = (path: string) => (text: string) => {
  if (!text.includes("-----BEGIN CERTIFICATE-----")) throw new Error(`no PEM certificate in ${path}`);
  return text;
};

/** A request's TLS options: verified against `ca` (null: the system's roots), or not at all. */
export const tlsOptions = (insecureSkipVerify: boolean, ca: string | null) =>
  insecureSkipVerify ? { rejectUnauthorized: false } : { rejectUnauthorized: true, ...(ca === null ? {} : { ca }) };

/** JSON.parse that never throws: the value, or the SyntaxError's message. */
export function parseJson(text: string): { ok: true; json: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, json: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: (error as Error).message };
  }
}

/** Printable one-line text of at most `max` characters, from whatever a server sent. */
export function oneLine(text: string, max = 160): string {
  const flat = text.replace(/[^\x20-\x7e]+/g, " ").trim();
  return flat.length > max ? `${flat.slice(0, max)}...` : flat;
}

const TLS_CODE = /CERT|SELF_SIGNED|TLS|SSL|VERIFY|ISSUER|HOSTNAME|ALTNAME/i;

function errorCode(error: unknown): string {
  const e = error as { code?: unknown; name?: unknown };
  return typeof e?.code === "string" ? e.code : typeof e?.name === "string" ? e.name : "error";
}

/** A fetch() rejection (or a body that broke off) → failure. */
export function classifyFetchError(error: unknown, timeoutMs: number): Failure<"timeout" | "tls" | "unreachable"> {
  const name = (error as { name?: unknown })?.name;
  if (name === "TimeoutError" || name === "AbortError") {
    return { kind: "timeout", detail: `no complete answer within ${timeoutMs / 1000} s` };
  }
  const code = errorCode(error);
  const message = oneLine(error instanceof Error ? error.message : String(error));
  if (TLS_CODE.test(code)) return { kind: "tls", detail: `${code}: ${message}` };
  return { kind: "unreachable", detail: message.startsWith(code) ? message : `${code}: ${message}` };
}

/**
 * An answer other than 200 → failure: 401 unauthorized, 403 forbidden, 410 expired where
 * `expires` (the API server's watch and list), else http; the detail is the status and `said`
 * (the body's message, one line).
 */
export function statusFailure(response: Pick<Response, "status" | "statusText">, said: string): Failure<"unauthorized" | "forbidden" | "http">;
export function statusFailure(response: Pick<Response, "status" | "statusText">, said: string, options: { expires: true }): Failure<"unauthorized" | "forbidden" | "http" | "expired">;
export function statusFailure(response: Pick<Response, "status" | "statusText">, said: string, { expires = false } = {}): Failure {
  const { status, statusText } = response;
  const code = `${status}${statusText ? ` ${statusText}` : ""}`;
  const kind = status === 401 ? "unauthorized" : status === 403 ? "forbidden" : status === 410 && expires ? "expired" : "http";
  return { kind, detail: said === "" ? code : `${code}: ${said}` };
}

/**
 * A non-200 answer → failure (statusFailure), `said` taking the message out of the body; after a
 * 401 the token file is read again at the next request (it may have been rotated).
 */
export async function answerFailure(response: Response, token: CredentialFile | null, said = oneLine, expires = false): Promise<Failure> {
  if (response.status === 401) token?.expire();
  const text = said(await response.text().catch(() => ""));
  return expires ? statusFailure(response, text, { expires }) : statusFailure(response, text);
}

/** Waits `ms`, or less when `signal` aborts (a source being stopped); never rejects. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done);
  });
}
