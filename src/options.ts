// What the program is and what a run is told: its name, its version, and every flag of `run`
// (and of `check`, which tries what `run` would do), each declared once here with its schema,
// description, default and the commands that take it. The RunOptions type and the command line
// (src/cli.ts, src/flags.ts) are derived from this table. Below every other module: it imports only address.ts.
import * as v from "valibot";
import packageJson from "../package.json" with { type: "json" };
import { canonicalCidr, parseHostPort } from "./address.ts";

export const PROGRAM_NAME = "kmesh-accesslog";
export const VERSION: string = packageJson.version;

export const LOG_LEVELS = ["error", "warn", "info", "debug"] as const;
/** Kmesh's admin address; ours too by default (loopback: the API changes what the node records). */
export const DEFAULT_ADMIN_ADDR = "127.0.0.1:15200";
export const DEFAULT_LOCK_FILE = "/run/kmesh-accesslog/agent.lock";
/**
 * The admin API's Unix socket when --admin-socket is not given: the lock file's path with `.sock`
 * for `.lock`, so that the socket pairs with the lock that proves no other agent uses it.
 */
export const adminSocketBeside = (lockFile: string) => `${lockFile.replace(/\.lock$/, "")}.sock`;
export const DEFAULT_ADMIN_SOCKET = adminSocketBeside(DEFAULT_LOCK_FILE);
export const DEFAULT_CLUSTER_DOMAIN = "cluster.local";
// Defaults that RunOptions leaves undefined (not given), applied where they are used.
export const DEFAULT_MAX_BUFFERED_OUTPUT_BYTES = 64 << 20;
export const DEFAULT_KUBELET_REFRESH_S = 5;
export const DEFAULT_KUBELET_HOLD_S = 2;
/** Kmesh's Prometheus address: every address of the node, port 15020. */
const DEFAULT_METRICS_ADDR = ":15020";

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;
/** The longest delay a JavaScript timer can wait (2^31 - 1 ms), in whole seconds. */
const MAX_DURATION_SECONDS = 2_147_483;
/** The kernel's hash map needs its bucket array to fit in 4 GiB; 2^24 entries is far below that. */
const MAX_CONNECTIONS = 16 * MIB;
const MIN_REPORT_INTERVAL_SECONDS = 0.1;
const MAX_REPORT_INTERVAL_SECONDS = 86_400;

// ── Reading a flag's text ────────────────────────────────────────────────────

const decimal = (text: string) => (/^\d+(\.\d+)?$/.test(text) ? Number(text) : undefined);
const whole = (text: string) => (/^\d+$/.test(text) ? Number(text) : undefined);
const SIZE_UNITS: Record<string, number> = { "": 1, k: KIB, m: MIB, g: GIB };
/** Bytes, with an optional binary suffix: 4096, 4K, 8M, 8MiB, 8MB, 1G (K = 1024). */
function byteSize(text: string): number | undefined {
  const match = /^(\d+)(?:([kmg])(?:i?b)?|b)?$/i.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * (SIZE_UNITS[(match[2] ?? "").toLowerCase()] ?? Number.NaN);
}

/** `host:port` as the admin address takes it, or Go's `:port` for every address of the node (`[::]`, both families). */
const listenAddress = (text: string) => (/^:\d{1,5}$/.test(text) ? parseHostPort(`[::]${text}`) : parseHostPort(text));
const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
/** The kernel's limit for a Unix socket's path (sun_path, 108 bytes with the final NUL). */
const MAX_SOCKET_PATH_BYTES = 107;
const isHttpUrl = (text: string) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol) && new URL(text).host !== "";
const FilePathSchema = v.pipe(v.string(), v.minLength(1));
export const SocketPathSchema = v.pipe(
  v.string(),
  v.startsWith("/", "must be an absolute path"),
  v.check((path) => Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES, `must be at most ${MAX_SOCKET_PATH_BYTES} bytes`),
);
/** A user or group id (4294967295 is the kernel's "no id"). */
const IdSchema = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(4_294_967_294));
const PortSchema = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65_535));
export const HostPortSchema = v.strictObject({ host: v.pipe(v.string(), v.minLength(1)), port: PortSchema });

const NamespaceSchema = v.pipe(v.string(), v.maxLength(63), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/));
const PodNameSchema = v.pipe(v.string(), v.maxLength(253), v.regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/));
/** A network, written as canonicalCidr writes it (flags and PUT /filters alike). */
const CidrSchema = v.pipe(
  v.string(),
  v.check((text) => canonicalCidr(text) !== null, "must be an IPv4 or IPv6 network"),
  v.transform((text) => canonicalCidr(text)!),
);

// The OTLP exporter (src/sink/otlp/): defaults that RunOptions leaves undefined, applied there.
export const DEFAULT_OTLP_BATCH_SIZE = 1024;
export const DEFAULT_OTLP_BATCH_DELAY_S = 1;
export const DEFAULT_OTLP_QUEUE_SIZE = 100_000;
export const DEFAULT_OTLP_TIMEOUT_S = 10;
export const DEFAULT_OTLP_FLUSH_TIMEOUT_S = 5;
const MAX_OTLP_BATCH_SIZE = 16_384;
const MAX_OTLP_QUEUE_SIZE = 10_000_000;
/** OTLP/HTTP's path for logs, added to an endpoint that does not end in it. */
const OTLP_LOGS_PATH = "/v1/logs";

/**
 * The URL logs are sent to, from --otlp-endpoint: an http(s) URL without credentials, query or
 * fragment; `/v1/logs` is added to its path unless the path already ends in it (OTLP/HTTP's rule
 * for a base endpoint, so `http://collector:4318` and `http://collector:4318/v1/logs` both work).
 */
function otlpLogsUrl(text: string): string | undefined {
  if (!URL.canParse(text)) return undefined;
  const url = new URL(text);
  if (!/^https?:$/.test(url.protocol) || url.host === "" || url.username !== "" || url.password !== "" || url.search !== "" || url.hash !== "") {
    return undefined;
  }
  if (!url.pathname.endsWith(OTLP_LOGS_PATH)) url.pathname = `${url.pathname.replace(/\/+$/, "")}${OTLP_LOGS_PATH}`;
  return url.href;
}

// ── The flags ────────────────────────────────────────────────────────────────

export interface FlagSpec {
  /**
   * value: `--flag <text>`, read by `read` (the text itself when absent), then checked by the
   * schema; list: the same, repeatable; switch: `--flag[=true|false]` in Go's strconv.ParseBool
   * spellings, as Kmesh's flags take them; boolean: `--flag` alone.
   */
  kind: "value" | "list" | "switch" | "boolean";
  /** The checked value (of one item, for a list). */
  schema: v.GenericSchema;
  read?: (text: string) => unknown;
  /** What a value must look like, for `invalid value for --flag: "…" (expected …)`. */
  expected?: string;
  /** The same, for `missing value for --flag (expected …)` when it differs. */
  missing?: string;
  placeholder?: string;
  description: string;
  /** The value when not given; without one, RunOptions holds undefined (lists: undefined for none). */
  default?: unknown;
  /** `check` takes it too: true, or the description it has there. */
  check?: true | string;
  /** Given together with this flag (which turns a source off), it is a usage error: it needs that source. */
  offWith?: "noKubelet" | "noKubeApi";
  /**
   * A filter of reports (also set at run time, PUT /filters): by the pods' names ("names": without
   * the kubelet, an API server asked for by name can name them) or by the connection alone.
   */
  filter?: "names" | "connection";
  /** Given together with this flag, it is a usage error. */
  contradicts?: string;
  /** What this flag turns off, as the flags that need it say. */
  turnsOff?: string;
  /** `--flag ""` means this flag (which turns a listener off): the value becomes null (none). */
  emptyIs?: "noAdminApi" | "noAdminSocket" | "noMetricsServer";
  /** Given without this flag, it is a usage error: it only tunes what that flag turns on. */
  needs?: "otlpEndpoint";
}

/** "a, b or c", as messages list the values a flag or argument takes. */
export const oneOf = (values: readonly string[]) => `${values.slice(0, -1).join(", ")} or ${values.at(-1)}`;

// What many flags share.
const choice = <const T extends readonly [string, ...string[]]>(values: T) =>
  ({ kind: "value", schema: v.picklist(values), expected: oneOf(values), placeholder: `<${values.join("|")}>` }) as const;
const BOOLEAN = { kind: "boolean", schema: v.boolean() } as const;
const SWITCH = { kind: "switch", schema: v.boolean() } as const;
const FILE = { kind: "value", schema: FilePathSchema, expected: "a file path", placeholder: "<path>" } as const;
/** The kubelet's own flags, which `check` tries as `run` would use them. */
const KUBELET = { check: true, offWith: "noKubelet" } as const;
const secondsFlag = (min: number, max: number) =>
  ({
    kind: "value",
    schema: v.pipe(v.number(), v.finite(), v.minValue(min), v.maxValue(max)),
    read: decimal,
    expected: `a number of seconds from ${min} to ${max}`,
    placeholder: "<seconds>",
  }) as const;
const countFlag = (max: number, what: string) =>
  ({
    kind: "value",
    schema: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(max)),
    read: whole,
    expected: `${what} from 1 to ${max}`,
    placeholder: "<n>",
  }) as const;
/** A user or group id, repeatable. */
const idFlag = (what: string, placeholder: string) => ({ kind: "list", schema: IdSchema, read: whole, expected: `a numeric ${what} id`, placeholder }) as const;
// The filters that come in pairs (only / exclude).
const NAMESPACE_FILTER = {
  kind: "list",
  schema: NamespaceSchema,
  expected: "a namespace name (lower-case letters, digits, '-')",
  placeholder: "<namespace>",
  offWith: "noKubelet",
  filter: "names",
} as const;
const POD_FILTER = {
  kind: "list",
  schema: PodNameSchema,
  expected: "a pod name (lower-case letters, digits, '-', '.')",
  placeholder: "<name>",
  offWith: "noKubelet",
  filter: "names",
} as const;
const PORT_FILTER = {
  kind: "list",
  schema: PortSchema,
  read: whole,
  expected: "a port number from 1 to 65535",
  placeholder: "<port>",
  filter: "connection",
} as const;
const CIDR_FILTER = {
  kind: "list",
  schema: CidrSchema,
  expected: "an IPv4 or IPv6 network, e.g. 10.244.0.0/16 or fd00::/8 (an address alone is /32 or /128)",
  placeholder: "<network>",
  filter: "connection",
} as const;

// Conflicts (offWith, contradicts) are checked in this order, the first one found reported.
export const FLAGS = {
  output: {
    ...choice(["text", "json", "none"]),
    description: "Line format on stdout: Kmesh's access-log text, one JSON object per line, or none (with --otlp-endpoint: the collector only)",
    default: "text",
  },
  duration: {
    kind: "value",
    schema: v.pipe(v.number(), v.finite(), v.gtValue(0), v.maxValue(MAX_DURATION_SECONDS)),
    read: decimal,
    expected: `a positive number of seconds, at most ${MAX_DURATION_SECONDS}`,
    placeholder: "<seconds>",
    description: "Stop by itself after this many seconds (default: run until SIGINT or SIGTERM)",
  },
  ringBufferSize: {
    kind: "value",
    // libbpf takes a power of two of at least one page; locked kernel memory beyond 1G is a typo.
    schema: v.pipe(v.number(), v.integer(), v.minValue(4 * KIB), v.maxValue(GIB), v.check(isPowerOfTwo, "must be a power of two")),
    read: byteSize,
    expected: "a power of two from 4K to 1G bytes, e.g. 8M",
    placeholder: "<bytes>",
    description: "Kernel ring buffer size: a power of two from 4K to 1G; K, M, G suffixes (8M = 8388608)",
    default: 8 * MIB,
  },
  maxConnections: {
    ...countFlag(MAX_CONNECTIONS, "a whole number"),
    description: "Connections the kernel tracks at once (the size of its connections map)",
    default: 262_144,
  },
  connectionState: {
    ...choice(["socket-table", "hash-map", "socket-storage"]),
    description:
      "Where the kernel keeps each connection's state: socket-table (a table indexed by the socket in front of the hash map, the fastest under churn: Linux 5.12 and later, else the hash map), hash-map (a map of --max-connections entries) or socket-storage (with each socket: Linux 5.11 and later)",
    default: "socket-table",
  },
  maxBufferedOutput: {
    kind: "value",
    // Less than a few lines' worth is a typo, more than 1G a plan for trouble.
    schema: v.pipe(v.number(), v.integer(), v.minValue(4 * KIB), v.maxValue(GIB)),
    read: byteSize,
    expected: "a number of bytes from 4K to 1G, e.g. 64M",
    placeholder: "<bytes>",
    description: `Lines held while stdout is not read fast enough; beyond this, lines are dropped and counted (default: ${DEFAULT_MAX_BUFFERED_OUTPUT_BYTES / MIB}M)`,
  },
  libbpf: {
    ...FILE,
    expected: "the path of a libbpf shared object",
    description: "Use this libbpf shared object instead of the system's libbpf.so.1",
    check: true,
  },
  monitoring: {
    ...SWITCH,
    description: "Kmesh's monitoring switch at start-up: off, nothing is recorded until POST /monitoring?enable=true",
    default: true,
  },
  accesslog: {
    ...SWITCH,
    description: "Kmesh's accesslog switch at start-up: lines for connections (default: on, off when monitoring is off)",
  },
  connectionMetrics: {
    ...SWITCH,
    description: "Kmesh's connection_metrics switch at start-up: also report every open connection each --report-interval (default: off)",
  },
  reportInterval: {
    ...secondsFlag(MIN_REPORT_INTERVAL_SECONDS, MAX_REPORT_INTERVAL_SECONDS),
    description: "How often open connections are reported while connection metrics are on",
    default: 5,
  },
  workloadMetrics: {
    ...SWITCH,
    description: "Kmesh's workload_metrics switch at start-up: Kmesh's TCP metrics on --metrics-addr (default: off)",
  },
  metricsAddr: {
    kind: "value",
    // null: no metrics server (--metrics-addr "")
    schema: v.nullable(HostPortSchema),
    read: listenAddress,
    expected: 'host:port, :port for every address (Kmesh\'s :15020), or "" for none',
    missing: 'host:port, :port, or "" for none',
    placeholder: "<host:port>",
    description: `Serve Kmesh's TCP metrics at /status/metric and /metrics here while workload metrics are on; "" for none (default: ${DEFAULT_METRICS_ADDR}, every address)`,
    default: listenAddress(DEFAULT_METRICS_ADDR),
    emptyIs: "noMetricsServer",
  },
  noMetricsServer: {
    ...BOOLEAN,
    description: 'Do not serve the TCP metrics (the same as --metrics-addr "")',
  },
  metricsPrefix: {
    ...choice(["kmesh", "istio"]),
    description: "The TCP metrics' names: kmesh_tcp_* as Kmesh's, or istio_tcp_* as Istio's (for Kiali and Istio's dashboards)",
    default: "kmesh",
  },
  metricsGrace: {
    ...secondsFlag(1, 86_400),
    description: "How long the TCP metrics keep the series of a pod or Service that is gone, or of an address idle that long",
    default: 300,
  },
  clusterName: {
    kind: "value",
    schema: v.pipe(v.string(), v.minLength(1), v.maxLength(253), v.regex(/^[\x21-\x7e]+$/)),
    expected: "a cluster name (printable, no spaces)",
    placeholder: "<name>",
    description: "The source_cluster and destination_cluster of the TCP metrics (Istio's default cluster ID)",
    default: "Kubernetes",
  },
  trustDomain: {
    kind: "value",
    schema: v.pipe(v.string(), v.maxLength(253), v.regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/)),
    expected: "a trust domain, e.g. cluster.local",
    placeholder: "<domain>",
    description: "The trust domain of the TCP metrics' principals, spiffe://<domain>/ns/<namespace>/sa/<service account>",
    default: "cluster.local",
  },
  adminAddr: {
    kind: "value",
    // null: no TCP listener (--no-admin-api, or --admin-addr "")
    schema: v.nullable(HostPortSchema),
    read: parseHostPort,
    expected: 'host:port, e.g. 127.0.0.1:15200 or [::1]:15200, or "" for no admin API on TCP',
    missing: 'host:port, or "" for no admin API on TCP',
    placeholder: "<host:port>",
    description: `Serve Kmesh's admin API (kmeshctl monitoring/accesslog, /metrics) here; "" for none (default: ${DEFAULT_ADMIN_ADDR})`,
    default: parseHostPort(DEFAULT_ADMIN_ADDR),
    emptyIs: "noAdminApi",
  },
  noAdminApi: {
    ...BOOLEAN,
    description: 'Do not serve the admin API on TCP (the same as --admin-addr ""; --no-admin-socket for the Unix socket)',
  },
  adminSocket: {
    kind: "value",
    // undefined: beside the lock file; null: no socket (--no-admin-socket, or --admin-socket "")
    schema: v.nullable(SocketPathSchema),
    expected: `an absolute path of at most ${MAX_SOCKET_PATH_BYTES} bytes, or "" for no Unix socket`,
    missing: 'an absolute path, or "" for no Unix socket',
    placeholder: "<path>",
    description:
      `Serve the admin API on this Unix socket too, mode 0600 (for the local CLI); "" for none ` +
      `(default: the --lock-file path with .sock for .lock, ${DEFAULT_ADMIN_SOCKET})`,
    emptyIs: "noAdminSocket",
  },
  noAdminSocket: {
    ...BOOLEAN,
    description: 'Do not serve the admin API on a Unix socket (the same as --admin-socket "")',
  },
  adminAllowUid: {
    ...idFlag("user", "<uid>"),
    description: "Let this user change the switches too (POST and every other method but GET and HEAD); root always may (repeatable)",
  },
  adminAllowGid: {
    ...idFlag("group", "<gid>"),
    description: "Let processes in this group (effective or supplementary) change the switches too (repeatable)",
  },
  lockFile: {
    kind: "value",
    schema: v.pipe(v.string(), v.startsWith("/", "must be an absolute path")),
    expected: "an absolute path",
    placeholder: "<path>",
    description: "The lock that keeps a second agent from starting on this node",
    default: DEFAULT_LOCK_FILE,
  },
  logLevel: {
    kind: "value",
    schema: v.picklist(LOG_LEVELS),
    expected: LOG_LEVELS.join(", "),
    placeholder: "<level>",
    description: `What the agent says on stderr: ${LOG_LEVELS.join(", ")}`,
    default: "info",
  },
  // The API server: Services, EndpointSlices and every pod (src/kube/apiserver/).
  kubeApi: {
    ...BOOLEAN,
    description: "Watch Services, EndpointSlices and Pods through the API server (default: on in a cluster, from the service account)",
    check: true,
    contradicts: "noKubeApi",
  },
  kubeconfig: {
    ...FILE,
    placeholder: "<file>",
    description: "Reach the API server as this kubeconfig's current context says (token or client-certificate users); implies --kube-api",
    check: true,
    offWith: "noKubeApi",
  },
  noKubeApi: {
    ...BOOLEAN,
    description: "Do not use the API server: dst.service is the destination IP, remote pods are -",
    check: "Do not try the API server (the agent runs without it)",
    turnsOff: "the API server",
  },
  clusterDomain: {
    kind: "value",
    schema: v.pipe(v.string(), v.maxLength(253), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/)),
    expected: "a DNS domain, e.g. cluster.local",
    placeholder: "<domain>",
    description: "The cluster's DNS domain, for service hostnames <name>.<namespace>.svc.<domain>",
    default: DEFAULT_CLUSTER_DOMAIN,
  },
  // The feed (src/kube/feed/): names from `kmesh-accesslog feed` instead of the API server.
  feed: {
    kind: "value",
    schema: v.pipe(v.string(), v.check((text) => isHttpUrl(text) && text.startsWith("https:"), "must be an https:// URL")),
    read: (text: string) => text.replace(/\/+$/, ""),
    expected: "an https:// URL, e.g. https://kmesh-accesslog-feed.kmesh-accesslog.svc:15300",
    placeholder: "<url>",
    description:
      "Take Services and every pod from this feed (kmesh-accesslog feed) instead of watching the API server, which is watched only while the feed cannot be had",
  },
  feedCaFile: {
    ...FILE,
    description: "CA that signed the feed's certificate (default: the system's roots)",
  },
  feedTokenFile: {
    ...FILE,
    description: "Bearer token for the feed, read again every minute (default: the service-account token, when present)",
  },
  // Filters (src/accesslog/filters.ts): which reports are written, also changed at run time
  // (PUT /filters). Those by namespace or pod need pod names.
  namespace: { ...NAMESPACE_FILTER, description: "Only lines where either end is a pod of this namespace (repeatable)" },
  excludeNamespace: { ...NAMESPACE_FILTER, description: "No lines where either end is a pod of this namespace (repeatable)" },
  pod: { ...POD_FILTER, description: "Only lines where either end is the pod of this name (repeatable)" },
  excludePod: { ...POD_FILTER, description: "No lines where either end is the pod of this name (repeatable)" },
  port: { ...PORT_FILTER, description: "Only lines where either end has this port (repeatable)" },
  excludePort: { ...PORT_FILTER, description: "No lines where either end has this port (repeatable)" },
  cidr: { ...CIDR_FILTER, description: "Only lines where either end's address is in this network (repeatable)" },
  excludeCidr: { ...CIDR_FILTER, description: "No lines where either end's address is in this network (repeatable)" },
  direction: {
    ...choice(["OUTBOUND", "INBOUND"]),
    read: (text: string) => text.toUpperCase(),
    description: "Only lines of this direction: OUTBOUND (the connecting socket's) or INBOUND (the accepting one's)",
    filter: "connection",
  },
  failedOnly: {
    ...BOOLEAN,
    description: "Only failed connection attempts (the lines that end in error=)",
    filter: "connection",
  },
  minDuration: {
    ...secondsFlag(0, MAX_DURATION_SECONDS),
    expected: `a number of seconds from 0 to ${MAX_DURATION_SECONDS}, e.g. 0.5`,
    description: "Only lines of connections open at least this long (lines of a connection open before the agent, whose duration is not known, are kept)",
    filter: "connection",
  },
  // The kubelet's pod list (src/kube/kubelet/): the defaults are applied in its settings.ts.
  kubeletHost: {
    ...KUBELET,
    kind: "value",
    schema: v.pipe(v.string(), v.regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$/)),
    expected: "a host name or IP address",
    placeholder: "<host>",
    description: "The kubelet to read pod names from, at https://<host>:10250/pods (default: $NODE_IP, else $HOST_IP, else 127.0.0.1)",
  },
  kubeletUrl: {
    ...KUBELET,
    kind: "value",
    schema: v.pipe(v.string(), v.check(isHttpUrl, "must be an http:// or https:// URL")),
    expected: "an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods",
    placeholder: "<url>",
    description: "The kubelet's whole pod-list URL, instead of --kubelet-host; http://<host>:10255/pods for the read-only port (no token sent)",
  },
  kubeletTokenFile: {
    ...KUBELET,
    ...FILE,
    description: "Bearer token for the kubelet, read again every minute (default: the service-account token, when present)",
  },
  kubeletCaFile: {
    ...KUBELET,
    ...FILE,
    description: "CA that signed the kubelet's certificate (default: the service-account ca.crt, when present)",
    contradicts: "kubeletInsecureSkipTlsVerify",
  },
  kubeletInsecureSkipTlsVerify: {
    ...KUBELET,
    ...BOOLEAN,
    description: "Do not verify the kubelet's TLS certificate (many kubelets' are self-signed); says so on stderr",
  },
  kubeletRefresh: {
    ...secondsFlag(1, 3600),
    description: `How often the pod list is read (default: ${DEFAULT_KUBELET_REFRESH_S}); a line from an unknown local pod asks for it at once`,
    offWith: "noKubelet",
  },
  kubeletHold: {
    ...secondsFlag(0, 60),
    description: `How long a line from a pod not yet in the list may wait for it (default: ${DEFAULT_KUBELET_HOLD_S}; 0: never wait)`,
    offWith: "noKubelet",
  },
  noKubelet: {
    ...BOOLEAN,
    description: "Do not read the kubelet: every pod name and namespace is -",
    check: "Do not try the kubelet (the agent runs without it: pod names are -)",
    turnsOff: "the kubelet's pod list",
  },
  // The OTLP exporter (src/sink/otlp/).
  otlpEndpoint: {
    kind: "value",
    schema: v.string(),
    read: otlpLogsUrl,
    expected: "an http:// or https:// URL of an OTLP/HTTP collector, without credentials or query, e.g. http://otel-collector:4318",
    placeholder: "<url>",
    description: `Also send every report to this OpenTelemetry collector as an OTLP log record (protobuf over HTTP, gzip); ${OTLP_LOGS_PATH} is added to the path unless it ends in it`,
  },
  otlpHeadersFile: {
    ...FILE,
    description: "Extra request headers for the collector (auth), one `Name: value` per line; read again every minute, never printed",
    needs: "otlpEndpoint",
  },
  otlpCaFile: {
    ...FILE,
    description: "CA that signed the collector's certificate (default: the system's roots); read again every minute",
    needs: "otlpEndpoint",
    contradicts: "otlpInsecureSkipVerify",
  },
  otlpInsecureSkipVerify: {
    ...BOOLEAN,
    description: "Do not verify the collector's TLS certificate; says so on stderr",
    needs: "otlpEndpoint",
  },
  otlpBatchSize: {
    ...countFlag(MAX_OTLP_BATCH_SIZE, "a whole number of reports"),
    description: `Reports per request to the collector, at most (default: ${DEFAULT_OTLP_BATCH_SIZE})`,
    needs: "otlpEndpoint",
  },
  otlpBatchDelay: {
    ...secondsFlag(0.01, 60),
    description: `How long a report may wait for its batch to fill before the batch is sent (default: ${DEFAULT_OTLP_BATCH_DELAY_S})`,
    needs: "otlpEndpoint",
  },
  otlpQueueSize: {
    ...countFlag(MAX_OTLP_QUEUE_SIZE, "a whole number of reports"),
    description: `Reports held for the collector while it is slow or away; beyond this, new reports are dropped and counted (default: ${DEFAULT_OTLP_QUEUE_SIZE})`,
    needs: "otlpEndpoint",
  },
  otlpTimeout: {
    ...secondsFlag(0.1, 300),
    description: `How long one request to the collector may take before it is retried (default: ${DEFAULT_OTLP_TIMEOUT_S})`,
    needs: "otlpEndpoint",
  },
  otlpFlushTimeout: {
    ...secondsFlag(0, 300),
    description: `At SIGTERM, how long what is queued for the collector may take to go; the rest is counted as dropped (default: ${DEFAULT_OTLP_FLUSH_TIMEOUT_S})`,
    needs: "otlpEndpoint",
  },
} as const satisfies Record<string, FlagSpec>;

export type FlagName = keyof typeof FLAGS;
type Flags = typeof FLAGS;

// ── What a run is told ───────────────────────────────────────────────────────

/** The value a table's flag gives (checked by its schema): a list is an array, and a flag without a default may be absent. */
type OptionsOf<T extends Record<string, FlagSpec>> = {
  [K in keyof T as T[K] extends { default: unknown } ? K : never]: v.InferOutput<T[K]["schema"]>;
} & {
  [K in keyof T as T[K] extends { default: unknown } ? never : K]?: T[K] extends { kind: "list" } ? v.InferOutput<T[K]["schema"]>[] : v.InferOutput<T[K]["schema"]>;
};

/** What `run` needs, checked by the flags' types (src/flags.ts), one field per flag. */
export type RunOptions = OptionsOf<Flags>;

/** The flags `check` takes (with `run`'s meaning): it tries the libbpf and the sources `run` would use. */
export type CheckFlagName = { [K in FlagName]: Flags[K] extends { check: unknown } ? K : never }[FlagName];
export type CheckOptions = Pick<RunOptions, CheckFlagName> & { json: boolean };

// ── The feed's own flags (`kmesh-accesslog feed`) ────────────────────────────

const DEFAULT_FEED_LISTEN = "0.0.0.0:15300";
/** The agents' service account, as scripts/deploy/ names it. */
export const DEFAULT_FEED_CLIENT = "kmesh-accesslog:kmesh-accesslog";

export const FEED_FLAGS = {
  listen: {
    kind: "value",
    schema: HostPortSchema,
    read: parseHostPort,
    expected: "host:port, e.g. 0.0.0.0:15300 or [::]:15300",
    placeholder: "<host:port>",
    description: `Serve agents here, over TLS (default: ${DEFAULT_FEED_LISTEN})`,
    default: parseHostPort(DEFAULT_FEED_LISTEN),
  },
  tlsCertFile: {
    ...FILE,
    description: "The feed's TLS certificate (PEM); required",
  },
  tlsKeyFile: {
    ...FILE,
    description: "Its private key (PEM); required",
  },
  allowServiceAccount: {
    kind: "list",
    schema: v.pipe(v.string(), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/)),
    expected: "<namespace>:<service account>, e.g. kmesh-accesslog:kmesh-accesslog",
    placeholder: "<namespace:name>",
    description: `Serve agents running as this service account, as the API server's TokenReview says (repeatable; default: ${DEFAULT_FEED_CLIENT})`,
  },
  stateFile: {
    ...FILE,
    description: "Written at a clean stop and read at the next start, so that agents resume from their version across a restart",
  },
  kubeconfig: FLAGS.kubeconfig,
  logLevel: FLAGS.logLevel,
} as const satisfies Record<string, FlagSpec>;

export type FeedOptions = OptionsOf<typeof FEED_FLAGS>;

// ── The filters (src/accesslog/filters.ts), at start-up and at run time ──────

/** The filter flags, in the table's order: the fields of GET and PUT /filters, named as RunOptions names them. */
export type FilterName = { [K in FlagName]: Flags[K] extends { filter: string } ? K : never }[FlagName];
export const FILTER_NAMES = Object.entries(FLAGS).flatMap(([name, spec]) => ("filter" in spec ? [name] : [])) as FilterName[];
/** The filters that need pod names. */
export type NameFilterName = { [K in FilterName]: Flags[K] extends { filter: "names" } ? K : never }[FilterName];
export const NAME_FILTERS = FILTER_NAMES.filter((name) => FLAGS[name].filter === "names") as NameFilterName[];

/** A filter's field: a list is an array (empty: none), a value may be null (none), a boolean false (none). */
type FilterSchema<F extends FlagSpec> = F extends { kind: "list" }
  ? v.OptionalSchema<v.ArraySchema<F["schema"], undefined>, readonly []>
  : F extends { kind: "boolean" }
    ? v.OptionalSchema<F["schema"], false>
    : v.OptionalSchema<v.NullableSchema<F["schema"], undefined>, null>;

function filterSchema(spec: FlagSpec): v.GenericSchema {
  if (spec.kind === "list") return v.optional(v.array(spec.schema), []);
  if (spec.kind === "boolean") return v.optional(spec.schema, false);
  return v.optional(v.nullable(spec.schema), null);
}

/**
 * The filters, as GET /filters shows them and PUT /filters takes them: every field optional (a
 * field left out is no filter), none unknown.
 */
export const FiltersSchema = v.strictObject(
  Object.fromEntries(FILTER_NAMES.map((name) => [name, filterSchema(FLAGS[name])])) as { [K in FilterName]: FilterSchema<Flags[K]> },
);
export type Filters = v.InferOutput<typeof FiltersSchema>;

/** The filters the flags of a run (or of `filter set`) give; throws on a value that is not one (the flags are checked already). */
export function filtersOf(options: Partial<Record<FilterName, unknown>>): Filters {
  return v.parse(FiltersSchema, Object.fromEntries(FILTER_NAMES.map((name) => [name, options[name]])));
}
