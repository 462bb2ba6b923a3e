// What each admin request gets back: a pure function of the method, the URL
// and the backend's state, so that every answer can be tested without a
// socket. The four switch paths answer exactly as Kmesh's status server does
// (status, body and Content-Type), so that kmeshctl works against us unchanged:
// docs/admin-api.md lists every answer.
import { concatBytes, GO_ERROR_HEADERS, goError, goQueryGet, goText as text, latin1String, parseGoBool } from "./go-compat.ts";
import { handleLoggers, type LoggerBackend, LOGGERS_PATH } from "./loggers.ts";
import { PROMETHEUS_CONTENT_TYPE } from "./metrics.ts";
import { SWITCH_PATHS, changeSwitch, type SwitchName, type SwitchPath, type Switches } from "./switches.ts";
import type { VersionInfo } from "./version.ts";
import { handleFilters, FILTERS_PATH, type FiltersBackend } from "./filters.ts";

export type Readiness = { ready: true } | { ready: false; reason: string };

/** What the routes need from the agent. */
export interface AdminBackend extends LoggerBackend, FiltersBackend {
  switches(): Switches;
  /** Applies a state the rules allowed (e.g. flips the kernel's switch); throws when it cannot. */
  setSwitches(next: Switches): void;
  /** Ready once the probe is attached; not ready while loading and once stopping. */
  readiness(): Readiness;
  metricsText(): string;
  version(): VersionInfo;
}

/** Kmesh's words when the kernel side cannot be updated. */
const UPDATE_FAILED: Readonly<Record<SwitchName, string>> = {
  monitoring: "update bpf monitoring failed",
  accesslog: "update bpf accesslog failed",
  connectionMetrics: "update enable periodic report failed",
  workloadMetrics: "update workload metrics failed",
};

export const KNOWN_PATHS = [
  ...Object.keys(SWITCH_PATHS).map((path) => `POST ${path}?enable=true|false`),
  "GET /version",
  "GET /debug/ready",
  "GET|POST /debug/loggers",
  "GET|PUT /filters",
  "GET /healthz",
  "GET /metrics",
];

/** Splits a request URL (absolute, as Bun gives it) into its path and its raw query. */
export function splitTarget(url: string): { path: string; rawQuery: string } {
  const scheme = url.indexOf("://");
  const slash = url.indexOf("/", scheme < 0 ? 0 : scheme + 3);
  const target = slash < 0 ? "/" : url.slice(slash);
  const hash = target.indexOf("#");
  const withoutHash = hash < 0 ? target : target.slice(0, hash);
  const question = withoutHash.indexOf("?");
  return question < 0
    ? { path: withoutHash, rawQuery: "" }
    : { path: withoutHash.slice(0, question), rawQuery: withoutHash.slice(question + 1) };
}

export function handleAdminRequest(backend: AdminBackend, method: string, url: string, body: Uint8Array = new Uint8Array(0)): Response {
  const { path, rawQuery } = splitTarget(url);
  if (Object.hasOwn(SWITCH_PATHS, path)) return handleSwitch(backend, SWITCH_PATHS[path as SwitchPath], method, rawQuery);
  switch (path) {
    case LOGGERS_PATH:
      return handleLoggers(backend, method, rawQuery, body);
    case FILTERS_PATH:
      return handleFilters(backend, method, body);
    // Kmesh answers these two whatever the method; so do we.
    case "/version":
      // Go's json.MarshalIndent(v, "", "  "): two-space indent, no trailing newline.
      return text(JSON.stringify(backend.version(), null, 2), 200);
    case "/debug/ready": {
      const readiness = backend.readiness();
      return readiness.ready ? text("OK", 200) : text(`not ready: ${readiness.reason}\n`, 503);
    }
    case "/healthz":
      return readOnly(method) ?? text("OK", 200);
    case "/metrics":
      return readOnly(method) ?? text(backend.metricsText(), 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
    default:
      return text(
        `404 page not found: ${JSON.stringify(path)}\nthis agent serves: ${KNOWN_PATHS.join(", ")}\n`,
        404,
        GO_ERROR_HEADERS,
      );
  }
}

function readOnly(method: string): Response | undefined {
  if (method === "GET" || method === "HEAD") return undefined;
  return goError("Method Not Allowed", 405, "GET, HEAD");
}

function handleSwitch(backend: AdminBackend, name: SwitchName, method: string, rawQuery: string): Response {
  if (method !== "POST") return goError("Method Not Allowed", 405);
  const raw = goQueryGet(rawQuery, "enable");
  const enable = parseGoBool(latin1String(raw));
  if (enable === undefined) {
    // Kmesh writes this one without http.Error: no trailing newline, the value's bytes as they came;
    // its word is "accesslog" for every path but /monitoring.
    const word = name === "monitoring" ? "monitoring" : "accesslog";
    return text(concatBytes(new TextEncoder().encode(`invalid ${word} enable=`), raw), 400);
  }
  const change = changeSwitch(backend.switches(), name, enable);
  if (!change.ok) return goError(change.message, 400);
  try {
    backend.setSwitches(change.next);
  } catch (error) {
    return goError(`${UPDATE_FAILED[name]}: ${error instanceof Error ? error.message : String(error)}`, 400);
  }
  // Go's WriteHeader(200) with no body: Content-Length 0 and no Content-Type.
  return new Response(null, { status: 200 });
}

// ── The TCP metrics' address (--metrics-addr) ───────────────────────────────

/** Kmesh's path, and the usual one. */
export const METRICS_PATHS = ["/status/metric", "/metrics"];

/**
 * What the metrics address answers: the TCP metrics' exposition text at both paths, gzipped when
 * the scraper accepts it (Prometheus does: the labels make the text compress about 17 to 1).
 */
export function handleMetricsRequest(render: () => string, method: string, url: string, acceptEncoding: string | null = null): Response {
  const { path } = splitTarget(url);
  if (!METRICS_PATHS.includes(path)) {
    return text(`404 page not found: ${JSON.stringify(path)}\nthis address serves: GET ${METRICS_PATHS.join(", GET ")}\n`, 404, GO_ERROR_HEADERS);
  }
  const refused = readOnly(method);
  if (refused !== undefined) return refused;
  const body = render();
  if (!acceptsGzip(acceptEncoding)) return text(body, 200, { "Content-Type": PROMETHEUS_CONTENT_TYPE });
  return new Response(Bun.gzipSync(new TextEncoder().encode(body), { level: 1 }), {
    status: 200,
    headers: { "Content-Type": PROMETHEUS_CONTENT_TYPE, "Content-Encoding": "gzip" },
  });
}

/** Whether an Accept-Encoding header takes gzip (named, and not with q=0). */
export function acceptsGzip(header: string | null): boolean {
  if (header === null) return false;
  return header.split(",").some((part) => {
    const [coding, ...params] = part.trim().toLowerCase().split(";");
    return coding?.trim() === "gzip" && !params.some((p) => /^\s*q\s*=\s*0(\.0*)?\s*$/.test(p));
  });
}
