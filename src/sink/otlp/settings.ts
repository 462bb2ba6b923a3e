// The OTLP exporter's settings from a run's options and the environment, and the files its flags
// name: the extra headers (for auth: read again every minute, never printed) and the CA. What
// cannot work is refused at start, before the probe loads, with exit code 2 (main.ts).
import { hostname } from "node:os";
import { EXIT_USAGE, ExitError } from "../../errors.ts";
import { CredentialFile, pemCertificate, type ReadText, readText } from "../../kube/http.ts";
import {
  DEFAULT_OTLP_BATCH_DELAY_S,
  DEFAULT_OTLP_BATCH_SIZE,
  DEFAULT_OTLP_FLUSH_TIMEOUT_S,
  DEFAULT_OTLP_QUEUE_SIZE,
  DEFAULT_OTLP_TIMEOUT_S,
  PROGRAM_NAME,
  type RunOptions,
  VERSION,
} from "../../options.ts";

/** A setting a flag names that cannot work (a headers file that is not headers, a CA that is not one). */
export class OtlpConfigError extends ExitError {
  override name = "OtlpConfigError";
  override readonly exitCode = EXIT_USAGE;
}

export interface ExporterSettings {
  /** where requests go: the collector's /v1/logs */
  url: string;
  headers: CredentialFile | null;
  ca: CredentialFile | null;
  insecureSkipVerify: boolean;
  /** reports per request, at most */
  batchSize: number;
  /** a report waits at most this long for its batch to fill */
  batchDelayMs: number;
  /** reports held at most: in the batch being filled, waiting, and being sent */
  queueSize: number;
  /** one request, connect to answer */
  timeoutMs: number;
  /** at stop, how long what is queued may take to go */
  flushTimeoutMs: number;
  /** who sends: the Resource's string attributes, in this order (k8s.node.name when known) */
  resource: [string, string][];
}

/** Headers the exporter sets itself; a headers file may not replace them. */
const OWN_HEADERS = new Set(["content-type", "content-encoding", "content-length", "transfer-encoding", "host", "connection"]);
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
// Visible ASCII, spaces and tabs: no line breaks or other controls (a header cannot carry them).
const FIELD_VALUE = /^[\x20-\x7e\t]*$/;

/**
 * A headers file: one `Name: value` per line, blank lines and lines starting with `#` ignored.
 * Throws an Error naming the line (never its value) when a line is not a header.
 */
export function parseHeaders(text: string, path: string): [string, string][] {
  const headers: [string, string][] = [];
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/\r$/, "").trim();
    if (line === "" || line.startsWith("#")) return;
    const where = `${path} line ${i + 1}`;
    const colon = line.indexOf(":");
    if (colon <= 0) throw new Error(`${where} is not "Name: value"`);
    const name = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!TOKEN.test(name)) throw new Error(`${where}: ${JSON.stringify(name)} is not a header name`);
    if (OWN_HEADERS.has(name.toLowerCase())) throw new Error(`${where}: ${name} is set by the exporter itself; remove the line`);
    if (!FIELD_VALUE.test(value)) throw new Error(`${where}: the value of ${name} holds a control or non-ASCII character`);
    headers.push([name, value]);
  });
  return headers;
}

/**
 * The exporter's settings, or null without --otlp-endpoint. The files are read now: one that
 * cannot be read or used is an OtlpConfigError.
 */
export function resolveExporterSettings(
  options: RunOptions,
  env: Record<string, string | undefined> = process.env,
  read: ReadText = readText,
): ExporterSettings | null {
  if (options.otlpEndpoint === undefined) return null;
  const { otlpHeadersFile: headersPath, otlpCaFile: caPath } = options;
  const headers = headersPath === undefined ? null : new CredentialFile(headersPath, (text) => (parseHeaders(text, headersPath), text), read);
  const ca = caPath === undefined ? null : new CredentialFile(caPath, pemCertificate(caPath), read);
  for (const [file, flag] of [[headers, "--otlp-headers-file"], [ca, "--otlp-ca-file"]] as const) {
    const first = file?.read();
    if (first?.ok === false) throw new OtlpConfigError(`${flag}: ${first.problem}`);
  }
  // In a pod the host name is the pod's: the node's name comes from the downward API (NODE_NAME).
  const nodeName = env.NODE_NAME || null;
  const resource: [string, string][] = [["service.name", PROGRAM_NAME], ["service.version", VERSION], ["host.name", nodeName ?? hostname()]];
  if (nodeName !== null) resource.push(["k8s.node.name", nodeName]);
  return {
    url: options.otlpEndpoint,
    headers,
    ca,
    insecureSkipVerify: options.otlpInsecureSkipVerify ?? false,
    batchSize: options.otlpBatchSize ?? DEFAULT_OTLP_BATCH_SIZE,
    batchDelayMs: (options.otlpBatchDelay ?? DEFAULT_OTLP_BATCH_DELAY_S) * 1000,
    queueSize: options.otlpQueueSize ?? DEFAULT_OTLP_QUEUE_SIZE,
    timeoutMs: (options.otlpTimeout ?? DEFAULT_OTLP_TIMEOUT_S) * 1000,
    flushTimeoutMs: (options.otlpFlushTimeout ?? DEFAULT_OTLP_FLUSH_TIMEOUT_S) * 1000,
    resource,
  };
}
