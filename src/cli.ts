// The whole command line: one cleye declaration, the flag types that check
// each value as it is read, and the valibot schema that is the type of a run's
// options. Nothing here prints or exits on a mistake: every mistake becomes a
// UsageError, and main.ts turns it into one line on stderr and exit code 2.
import { cli, command } from "cleye";
import * as v from "valibot";
import packageJson from "../package.json" with { type: "json" };
import { parseHostPort } from "./address.ts";
import { GO_BOOL_SPELLINGS, parseGoBool } from "./admin/go-compat.ts";
import { DEFAULT_LOCK_FILE } from "./admin/lock-path.ts";
import { startupSwitches, type SwitchPath } from "./admin/switches.ts";
import { DEFAULT_LOG_LEVEL, LOG_LEVELS } from "./log.ts";
import { DEFAULT_MAX_BUFFERED_OUTPUT_BYTES } from "./accesslog/sink.ts";
import { DEFAULT_HOLD_S, DEFAULT_REFRESH_S, kubeletFlagsConflict } from "./kube/config.ts";
import { apiFlagsConflict, DEFAULT_CLUSTER_DOMAIN } from "./kube/api-config.ts";

export const PROGRAM_NAME = "kmesh-accesslog";
export const VERSION: string = packageJson.version;

/** Kmesh's admin address; so is ours by default, since the API changes what the node records. */
const DEFAULT_ADMIN_ADDR = "127.0.0.1:15200";

/** A mistake on the command line. The message is one line, without the program name. */
export class UsageError extends Error {
  override name = "UsageError";
}

// ── What a run accepts ───────────────────────────────────────────────────────

const KIB = 1024;
const MIB = 1024 * KIB;
const GIB = 1024 * MIB;

/** libbpf takes the ring buffer size as a power of two of at least one page. */
const MIN_RING_BUFFER_BYTES = 4 * KIB;
/** Locked kernel memory; anything larger is a typo, not a plan. */
const MAX_RING_BUFFER_BYTES = 1 * GIB;
/** The kernel's hash map needs its bucket array to fit in 4 GiB; 2^24 entries is far below that. */
const MAX_CONNECTIONS_LIMIT = 16 * MIB;
/** The longest delay a JavaScript timer can wait (2^31 - 1 ms), in whole seconds. */
const MAX_DURATION_SECONDS = 2_147_483;

const isPowerOfTwo = (n: number) => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

const OutputSchema = v.picklist(["text", "json"]);
const DurationSecondsSchema = v.pipe(v.number(), v.finite(), v.gtValue(0), v.maxValue(MAX_DURATION_SECONDS));
const RingBufferBytesSchema = v.pipe(
  v.number(),
  v.integer(),
  v.minValue(MIN_RING_BUFFER_BYTES),
  v.maxValue(MAX_RING_BUFFER_BYTES),
  v.check(isPowerOfTwo, "must be a power of two"),
);
const LibbpfPathSchema = v.pipe(v.string(), v.minLength(1));
const MaxConnectionsSchema = v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(MAX_CONNECTIONS_LIMIT));
/** Output held for a slow reader: less than a few lines' worth is a typo, more than 1G a plan for trouble. */
const MIN_BUFFERED_OUTPUT_BYTES = 4 * KIB;
const MAX_BUFFERED_OUTPUT_BYTES = 1 * GIB;
const MaxBufferedOutputSchema = v.pipe(v.number(), v.integer(), v.minValue(MIN_BUFFERED_OUTPUT_BYTES), v.maxValue(MAX_BUFFERED_OUTPUT_BYTES));
const MIN_REPORT_INTERVAL_SECONDS = 0.1;
const MAX_REPORT_INTERVAL_SECONDS = 86_400;
const ReportIntervalSchema = v.pipe(
  v.number(),
  v.finite(),
  v.minValue(MIN_REPORT_INTERVAL_SECONDS),
  v.maxValue(MAX_REPORT_INTERVAL_SECONDS),
);
const AdminAddressSchema = v.strictObject({ host: v.pipe(v.string(), v.minLength(1)), port: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(65_535)) });
const LogLevelSchema = v.picklist(LOG_LEVELS);
const LockFileSchema = v.pipe(v.string(), v.startsWith("/", "must be an absolute path"));
const KubeletHostSchema = v.pipe(v.string(), v.regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$/));
const isHttpUrl = (text: string) => URL.canParse(text) && /^https?:$/.test(new URL(text).protocol) && new URL(text).host !== "";
const KubeletUrlSchema = v.pipe(v.string(), v.check(isHttpUrl, "must be an http:// or https:// URL"));
const FilePathSchema = v.pipe(v.string(), v.minLength(1));
const KubeletRefreshSchema = v.pipe(v.number(), v.finite(), v.minValue(1), v.maxValue(3600));
const KubeletHoldSchema = v.pipe(v.number(), v.finite(), v.minValue(0), v.maxValue(60));
const NamespaceSchema = v.pipe(v.string(), v.maxLength(63), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/));
const PodNameSchema = v.pipe(v.string(), v.maxLength(253), v.regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/));
const ClusterDomainSchema = v.pipe(v.string(), v.maxLength(253), v.regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/));

/** What `run` needs, checked. The schema is the type. */
export const RunOptionsSchema = v.strictObject({
  /** `text`: Kmesh's access-log line; `json`: one JSON object per line. */
  output: OutputSchema,
  /** Stop by itself after this many seconds; undefined: run until SIGINT/SIGTERM. */
  duration: v.optional(DurationSecondsSchema),
  /** Size of the kernel's ring buffer in bytes (a power of two). */
  ringBufferSize: RingBufferBytesSchema,
  /** How many connections the kernel tracks at once (size of its connections map). */
  maxConnections: MaxConnectionsSchema,
  /** Bytes of lines held while stdout is not read fast enough, beyond which lines are dropped; undefined: the sink's default. */
  maxBufferedOutput: v.optional(MaxBufferedOutputSchema),
  /** A libbpf shared object to use instead of the system's libbpf.so.1. */
  libbpf: v.optional(LibbpfPathSchema),
  /** Kmesh's monitoring switch at start-up. */
  monitoring: v.boolean(),
  /** Kmesh's accesslog switch at start-up; undefined: on (off with monitoring off). */
  accesslog: v.optional(v.boolean()),
  /** Kmesh's connection_metrics switch (periodic reports) at start-up; undefined: off. */
  connectionMetrics: v.optional(v.boolean()),
  /** Seconds between periodic reports of open connections. */
  reportInterval: ReportIntervalSchema,
  /** Where the admin API listens; null: no admin API. */
  adminAddr: v.nullable(AdminAddressSchema),
  /** The node's single-agent lock file. */
  lockFile: LockFileSchema,
  /** How much the agent says on stderr. */
  logLevel: LogLevelSchema,
  // The kubelet pod list and the filters that need it. Undefined: not given; the defaults
  // (NODE_IP/HOST_IP, service-account files, 5 s, 2 s) are applied in src/kube/config.ts.
  kubeletHost: v.optional(KubeletHostSchema),
  kubeletUrl: v.optional(KubeletUrlSchema),
  kubeletTokenFile: v.optional(FilePathSchema),
  kubeletCaFile: v.optional(FilePathSchema),
  kubeletInsecureSkipTlsVerify: v.optional(v.boolean()),
  kubeletRefresh: v.optional(KubeletRefreshSchema),
  kubeletHold: v.optional(KubeletHoldSchema),
  noKubelet: v.optional(v.boolean()),
  // The API server (Services, EndpointSlices, all pods): see src/kube/api-config.ts.
  kubeApi: v.optional(v.boolean()),
  noKubeApi: v.optional(v.boolean()),
  kubeconfig: v.optional(FilePathSchema),
  clusterDomain: ClusterDomainSchema,
  namespace: v.optional(v.array(NamespaceSchema)),
  excludeNamespace: v.optional(v.array(NamespaceSchema)),
  pod: v.optional(v.array(PodNameSchema)),
});
export type RunOptions = v.InferOutput<typeof RunOptionsSchema>;

// ── Flag types: text → checked value, or a UsageError naming the flag ────────

/**
 * A cleye type function for one flag: `parse` turns the text into a candidate
 * (undefined when it cannot), `schema` decides whether the candidate is allowed.
 */
function flagType<T>(
  flag: string,
  expected: string,
  parse: (text: string) => unknown,
  schema: v.GenericSchema<unknown, T>,
): (text: string) => T {
  return (text) => {
    // type-flag passes "" both for `--flag=` and for a flag with no value after it.
    if (text === "") throw new UsageError(`missing value for --${flag} (expected ${expected})`);
    const result = v.safeParse(schema, parse(text));
    if (!result.success) {
      throw new UsageError(`invalid value for --${flag}: ${JSON.stringify(text)} (expected ${expected})`);
    }
    return result.output;
  };
}

const parseDecimal = (text: string) => (/^\d+(\.\d+)?$/.test(text) ? Number(text) : undefined);
const parseWhole = (text: string) => (/^\d+$/.test(text) ? Number(text) : undefined);

const SIZE_UNITS: Record<string, number> = { "": 1, k: KIB, m: MIB, g: GIB };
/** Bytes, with an optional binary suffix: 4096, 4K, 8M, 8MiB, 8MB, 1G (K = 1024). */
function parseByteSize(text: string): number | undefined {
  const match = /^(\d+)(?:([kmg])(?:i?b)?|b)?$/i.exec(text);
  if (!match) return undefined;
  return Number(match[1]) * (SIZE_UNITS[(match[2] ?? "").toLowerCase()] ?? Number.NaN);
}

const Output = flagType("output", "text or json", (text) => text, OutputSchema);
const DurationSeconds = flagType(
  "duration",
  `a positive number of seconds, at most ${MAX_DURATION_SECONDS}`,
  parseDecimal,
  DurationSecondsSchema,
);
const RingBufferBytes = flagType(
  "ring-buffer-size",
  "a power of two from 4K to 1G bytes, e.g. 8M",
  parseByteSize,
  RingBufferBytesSchema,
);
const MaxConnections = flagType(
  "max-connections",
  `a whole number from 1 to ${MAX_CONNECTIONS_LIMIT}`,
  parseWhole,
  MaxConnectionsSchema,
);
const MaxBufferedOutput = flagType(
  "max-buffered-output",
  "a number of bytes from 4K to 1G, e.g. 64M",
  parseByteSize,
  MaxBufferedOutputSchema,
);

const LibbpfPath = flagType("libbpf", "the path of a libbpf shared object", (text) => text, LibbpfPathSchema);
const ReportInterval = flagType(
  "report-interval",
  `a number of seconds from ${MIN_REPORT_INTERVAL_SECONDS} to ${MAX_REPORT_INTERVAL_SECONDS}`,
  parseDecimal,
  ReportIntervalSchema,
);
const LogLevel = flagType("log-level", LOG_LEVELS.join(", "), (text) => text, LogLevelSchema);
const LockFile = flagType("lock-file", "an absolute path", (text) => text, LockFileSchema);
const asText = (text: string) => text;
const KubeletHost = flagType("kubelet-host", "a host name or IP address", asText, KubeletHostSchema);
const KubeletUrl = flagType("kubelet-url", "an https:// (or http://) URL, e.g. https://10.0.0.5:10250/pods", asText, KubeletUrlSchema);
const KubeletTokenFile = flagType("kubelet-token-file", "a file path", asText, FilePathSchema);
const KubeletCaFile = flagType("kubelet-ca-file", "a file path", asText, FilePathSchema);
const KubeletRefresh = flagType("kubelet-refresh", "a number of seconds from 1 to 3600", parseDecimal, KubeletRefreshSchema);
const KubeletHold = flagType("kubelet-hold", "a number of seconds from 0 to 60", parseDecimal, KubeletHoldSchema);
const Namespace = (flag: string) => flagType(flag, "a namespace name (lower-case letters, digits, '-')", asText, NamespaceSchema);
const PodName = flagType("pod", "a pod name (lower-case letters, digits, '-', '.')", asText, PodNameSchema);
const Kubeconfig = flagType("kubeconfig", "a file path", asText, FilePathSchema);
const ClusterDomain = flagType("cluster-domain", "a DNS domain, e.g. cluster.local", asText, ClusterDomainSchema);

/**
 * A Kmesh-style switch: `--flag` or `--flag=true` turns it on, `--flag=false`
 * off; the values are Go's strconv.ParseBool spellings, as Kmesh's own flags
 * (`--monitoring=false`) take them.
 */
function switchFlag(flag: string): (text: string) => boolean {
  return (text) => {
    if (text === "") return true;
    const value = parseGoBool(text);
    if (value === undefined) {
      throw new UsageError(`invalid value for --${flag}: ${JSON.stringify(text)} (expected true or false: ${GO_BOOL_SPELLINGS})`);
    }
    return value;
  };
}

/** `host:port` or `[v6]:port`; "" (run only) turns the admin API off. */
function adminAddrFlag(allowOff: boolean) {
  return (text: string): v.InferOutput<typeof AdminAddressSchema> | null => {
    if (text === "") {
      if (allowOff) return null;
      throw new UsageError("missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)");
    }
    const address = parseHostPort(text);
    if (address === undefined) {
      throw new UsageError(
        `invalid value for --admin-addr: ${JSON.stringify(text)} (expected host:port, e.g. 127.0.0.1:15200 or [::1]:15200${allowOff ? ', or "" for no admin API' : ""})`,
      );
    }
    return address;
  };
}

/** kmeshctl's `enable` / `disable`, as a boolean. */
function enableDisable(what: string): (text: string) => boolean {
  return (text) => {
    if (text === "enable") return true;
    if (text === "disable") return false;
    throw new UsageError(
      text === "" ? `missing value for ${what} (expected enable or disable)` : `invalid value for ${what}: ${JSON.stringify(text)} (expected enable or disable)`,
    );
  };
}

// ── The declaration ──────────────────────────────────────────────────────────

// `run` is the default command: the same flags work with or without the word.
const runFlags = {
  output: {
    type: Output,
    placeholder: "<text|json>",
    description: "Line format: Kmesh's access-log text, or one JSON object per line",
    default: "text" as const,
  },
  duration: {
    type: DurationSeconds,
    placeholder: "<seconds>",
    description: "Stop by itself after this many seconds (default: run until SIGINT or SIGTERM)",
  },
  ringBufferSize: {
    type: RingBufferBytes,
    placeholder: "<bytes>",
    description: "Kernel ring buffer size: a power of two from 4K to 1G; K, M, G suffixes (8M = 8388608)",
    default: 8 * MIB,
  },
  maxConnections: {
    type: MaxConnections,
    placeholder: "<n>",
    description: "Connections the kernel tracks at once (the size of its connections map)",
    default: 262_144,
  },
  maxBufferedOutput: {
    type: MaxBufferedOutput,
    placeholder: "<bytes>",
    description: `Lines held while stdout is not read fast enough; beyond this, lines are dropped and counted (default: ${DEFAULT_MAX_BUFFERED_OUTPUT_BYTES / MIB}M)`,
  },
  libbpf: {
    type: LibbpfPath,
    placeholder: "<path>",
    description: "Use this libbpf shared object instead of the system's libbpf.so.1",
  },
  monitoring: {
    type: switchFlag("monitoring"),
    placeholder: "[=true|false]",
    description: "Kmesh's monitoring switch at start-up: off, nothing is recorded until POST /monitoring?enable=true",
    default: true,
  },
  accesslog: {
    type: switchFlag("accesslog"),
    placeholder: "[=true|false]",
    description: "Kmesh's accesslog switch at start-up: lines for connections (default: on, off when monitoring is off)",
  },
  connectionMetrics: {
    type: switchFlag("connection-metrics"),
    placeholder: "[=true|false]",
    description: "Kmesh's connection_metrics switch at start-up: also report every open connection each --report-interval (default: off)",
  },
  reportInterval: {
    type: ReportInterval,
    placeholder: "<seconds>",
    description: "How often open connections are reported while connection metrics are on",
    default: 5,
  },
  adminAddr: {
    type: adminAddrFlag(true),
    placeholder: "<host:port>",
    description: `Serve Kmesh's admin API (kmeshctl monitoring/accesslog, /metrics) here; "" for none (default: ${DEFAULT_ADMIN_ADDR})`,
  },
  lockFile: {
    type: LockFile,
    placeholder: "<path>",
    description: "The lock that keeps a second agent from starting on this node",
    default: DEFAULT_LOCK_FILE,
  },
  logLevel: {
    type: LogLevel,
    placeholder: "<level>",
    description: `What the agent says on stderr: ${LOG_LEVELS.join(", ")}`,
    default: DEFAULT_LOG_LEVEL,
  },
  kubeletHost: {
    type: KubeletHost,
    placeholder: "<host>",
    description: "The kubelet to read pod names from, at https://<host>:10250/pods (default: $NODE_IP, else $HOST_IP, else 127.0.0.1)",
  },
  kubeletUrl: {
    type: KubeletUrl,
    placeholder: "<url>",
    description: "The kubelet's whole pod-list URL, instead of --kubelet-host; http://<host>:10255/pods for the read-only port (no token sent)",
  },
  kubeletTokenFile: {
    type: KubeletTokenFile,
    placeholder: "<path>",
    description: "Bearer token for the kubelet, read again every minute (default: the service-account token, when present)",
  },
  kubeletCaFile: {
    type: KubeletCaFile,
    placeholder: "<path>",
    description: "CA that signed the kubelet's certificate (default: the service-account ca.crt, when present)",
  },
  kubeletInsecureSkipTlsVerify: {
    type: Boolean,
    description: "Do not verify the kubelet's TLS certificate (many kubelets' are self-signed); says so on stderr",
  },
  kubeletRefresh: {
    type: KubeletRefresh,
    placeholder: "<seconds>",
    description: `How often the pod list is read (default: ${DEFAULT_REFRESH_S}); a line from an unknown local pod asks for it at once`,
  },
  kubeletHold: {
    type: KubeletHold,
    placeholder: "<seconds>",
    description: `How long a line from a pod not yet in the list may wait for it (default: ${DEFAULT_HOLD_S}; 0: never wait)`,
  },
  noKubelet: {
    type: Boolean,
    description: "Do not read the kubelet: every pod name and namespace is -",
  },
  kubeApi: {
    type: Boolean,
    description: "Watch Services, EndpointSlices and Pods through the API server (default: on in a cluster, from the service account)",
  },
  noKubeApi: {
    type: Boolean,
    description: "Do not use the API server: dst.service is the destination IP, remote pods are -",
  },
  kubeconfig: {
    type: Kubeconfig,
    placeholder: "<file>",
    description: "Reach the API server as this kubeconfig's current context says (token or client-certificate users); implies --kube-api",
  },
  clusterDomain: {
    type: ClusterDomain,
    placeholder: "<domain>",
    description: "The cluster's DNS domain, for service hostnames <name>.<namespace>.svc.<domain>",
    default: DEFAULT_CLUSTER_DOMAIN,
  },
  namespace: {
    type: [Namespace("namespace")] as const,
    placeholder: "<namespace>",
    description: "Only lines where either end is a pod of this namespace (repeatable)",
  },
  excludeNamespace: {
    type: [Namespace("exclude-namespace")] as const,
    placeholder: "<namespace>",
    description: "No lines where either end is a pod of this namespace (repeatable)",
  },
  pod: {
    type: [PodName] as const,
    placeholder: "<name>",
    description: "Only lines where either end is the pod of this name (repeatable)",
  },
  version: {
    type: Boolean,
    description: "Print the version and exit",
  },
};

/**
 * type-flag hands every token it does not know to this hook before storing it:
 * rejecting here, in argv order, means the first mistake is the one reported,
 * and cleye's own strictFlags handling (several lines, exit 1) is never reached.
 */
function rejectUnknown(
  knownFlags: readonly string[],
  onArgument: (argument: string) => UsageError,
): (type: "known-flag" | "unknown-flag" | "argument", flagOrArgument: string) => boolean {
  return (type, flagOrArgument) => {
    if (type === "argument") throw onArgument(flagOrArgument);
    if (type === "unknown-flag") {
      const written = flagOrArgument.length === 1 ? `-${flagOrArgument}` : `--${flagOrArgument}`;
      const suggestion = closestFlag(flagOrArgument, knownFlags);
      throw new UsageError(`unknown flag ${written}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`);
    }
    return false;
  };
}

// kmeshctl-style commands that drive a running agent over its admin API.
const clientFlags = {
  adminAddr: {
    type: adminAddrFlag(false),
    placeholder: "<host:port>",
    description: `The agent's admin API (default: ${DEFAULT_ADMIN_ADDR})`,
  },
};
const enableDisableFlag = (flag: string, description: string) => ({
  type: enableDisable(`--${flag}`),
  placeholder: "<enable|disable>",
  description,
});
// kmeshctl's spellings (camelCase); the kebab-case ones work too.
const monitoringFlags = {
  ...clientFlags,
  accesslog: enableDisableFlag("accesslog", "Access-log lines on or off"),
  connectionMetrics: enableDisableFlag("connectionMetrics", "Periodic reports of open connections on or off"),
  workloadMetrics: enableDisableFlag("workloadMetrics", "Workload metrics on or off (accepted; this agent exports none)"),
  all: enableDisableFlag("all", "Monitoring as a whole: every switch on, or everything off"),
};
const statusFlags = {
  ...clientFlags,
  json: { type: Boolean, description: "Print one JSON object instead of tables" },
};
// `check` tries what `run` would do: the same libbpf and kubelet flags.
const checkFlags = {
  libbpf: runFlags.libbpf,
  kubeletHost: runFlags.kubeletHost,
  kubeletUrl: runFlags.kubeletUrl,
  kubeletTokenFile: runFlags.kubeletTokenFile,
  kubeletCaFile: runFlags.kubeletCaFile,
  kubeletInsecureSkipTlsVerify: runFlags.kubeletInsecureSkipTlsVerify,
  noKubelet: { type: Boolean, description: "Do not try the kubelet (the agent runs without it: pod names are -)" },
  kubeApi: runFlags.kubeApi,
  noKubeApi: { type: Boolean, description: "Do not try the API server (the agent runs without it)" },
  kubeconfig: runFlags.kubeconfig,
  json: { type: Boolean, description: "Print one JSON object instead of lines" },
};

const COMMAND_NAMES = ["run", "accesslog", "monitoring", "status", "check"];
const knownFlags = (flags: object) => [...Object.keys(flags).flatMap((name) => [name, kebabCase(name)]), "help"];
const KNOWN_FLAGS = knownFlags(runFlags);
const unexpectedArgument = (argument: string) => new UsageError(`unexpected argument ${JSON.stringify(argument)}`);
/** Arguments are the command's business; unknown flags are still mistakes. */
const keepArguments =
  (known: readonly string[]) => (type: "known-flag" | "unknown-flag" | "argument", flagOrArgument: string) =>
    type === "argument" ? false : rejectUnknown(known, unexpectedArgument)(type, flagOrArgument);

function parseArgv(argv: string[]) {
  return cli(
    {
      name: PROGRAM_NAME,
      flags: runFlags,
      commands: [
        command({
          name: "run",
          flags: runFlags,
          help: { description: "Load the probe and write one access-log line per TCP connection (the default command)" },
          strictFlags: true,
          ignoreArgv: rejectUnknown(KNOWN_FLAGS, unexpectedArgument),
        }),
        command({
          name: "accesslog",
          flags: clientFlags,
          help: {
            description: "Turn a running agent's access log on or off (POST /accesslog, as `kmeshctl accesslog` does)",
            usage: [`${PROGRAM_NAME} accesslog <enable|disable> [--admin-addr <host:port>]`],
          },
          strictFlags: true,
          ignoreArgv: keepArguments(knownFlags(clientFlags)),
        }),
        command({
          name: "monitoring",
          flags: monitoringFlags,
          help: {
            description:
              "Switch a running agent's monitoring, as `kmeshctl monitoring` does: --all first, then --accesslog, " +
              "--workloadMetrics, --connectionMetrics; stops at the first refusal",
            usage: [
              `${PROGRAM_NAME} monitoring [--all <enable|disable>] [--accesslog <enable|disable>] ` +
                "[--workloadMetrics <enable|disable>] [--connectionMetrics <enable|disable>] [--admin-addr <host:port>]",
            ],
          },
          strictFlags: true,
          ignoreArgv: rejectUnknown(knownFlags(monitoringFlags), (argument) =>
            new UsageError(`unexpected argument ${JSON.stringify(argument)} (this command drives one agent: name it with --admin-addr)`),
          ),
        }),
        command({
          name: "status",
          flags: statusFlags,
          help: { description: "Print a running agent's switches and counters" },
          strictFlags: true,
          ignoreArgv: rejectUnknown(knownFlags(statusFlags), unexpectedArgument),
        }),
        command({
          name: "check",
          flags: checkFlags,
          help: {
            description:
              "Check that the agent can run on this node: kernel, BTF, bpf(), capabilities, cgroup v2, libbpf, a real load " +
              "of the probe, the kubelet. One line each with the fix; exit 0 only when nothing is missing",
          },
          strictFlags: true,
          ignoreArgv: rejectUnknown(knownFlags(checkFlags), unexpectedArgument),
        }),
      ],
      strictFlags: true,
      help: {
        version: VERSION,
        description:
          "One Kmesh-format access-log line for every TCP connection on this Linux node, from eBPF.\n" +
          "Without a command, runs `run`.",
        usage: [
          `${PROGRAM_NAME} [run] [flags...]`,
          `${PROGRAM_NAME} accesslog <enable|disable>`,
          `${PROGRAM_NAME} monitoring --accesslog|--connectionMetrics|--workloadMetrics|--all <enable|disable>`,
          `${PROGRAM_NAME} status [--json]`,
          `${PROGRAM_NAME} check [--json] [--no-kubelet]`,
        ],
        examples: [
          `sudo ${PROGRAM_NAME}`,
          `sudo ${PROGRAM_NAME} run --output json --duration 60`,
          `sudo ${PROGRAM_NAME} --ring-buffer-size 32M --max-connections 1048576`,
          `sudo ${PROGRAM_NAME} --connection-metrics --report-interval 10 --admin-addr [::1]:15200`,
          `${PROGRAM_NAME} monitoring --connectionMetrics enable`,
        ],
      },
      ignoreArgv: rejectUnknown(KNOWN_FLAGS, (argument) =>
        COMMAND_NAMES.includes(argument)
          ? new UsageError(`the command ${JSON.stringify(argument)} must come before any flag`)
          : new UsageError(
              `unknown command ${JSON.stringify(argument)} (expected ${COMMAND_NAMES.slice(0, -1).join(", ")} or ${COMMAND_NAMES.at(-1)})`,
            ),
      ),
    },
    undefined,
    // type-flag splices what it parses out of the array it is given: give it a copy.
    [...argv],
  );
}

// ── The result ───────────────────────────────────────────────────────────────

export type AdminAddressOption = v.InferOutput<typeof AdminAddressSchema>;

/** One POST of `monitoring`, in the order kmeshctl sends them. */
export interface SwitchRequest {
  path: SwitchPath;
  enable: boolean;
}

export type Invocation =
  | { command: "version" }
  | { command: "run"; options: RunOptions }
  | { command: "accesslog"; enable: boolean; adminAddr: AdminAddressOption }
  | { command: "monitoring"; requests: SwitchRequest[]; adminAddr: AdminAddressOption }
  | { command: "status"; json: boolean; adminAddr: AdminAddressOption }
  | { command: "check"; options: CheckOptions };

/** What `check` tries: the libbpf and kubelet settings `run` would use. */
export type CheckOptions = Pick<
  RunOptions,
  | "libbpf"
  | "kubeletHost"
  | "kubeletUrl"
  | "kubeletTokenFile"
  | "kubeletCaFile"
  | "kubeletInsecureSkipTlsVerify"
  | "noKubelet"
  | "kubeApi"
  | "noKubeApi"
  | "kubeconfig"
> & { json: boolean };

const defaultAdminAddress = (): AdminAddressOption => parseHostPort(DEFAULT_ADMIN_ADDR)!;

/**
 * type-flag hands a flag's type "" both for `--admin-addr ""` (which turns the
 * API off) and for a bare `--admin-addr` with nothing after it: only argv can
 * tell them apart.
 */
function rejectBareAdminAddr(argv: readonly string[]): void {
  if (argv[0] === "check") return; // no --admin-addr there: the unknown flag is the message
  argv.forEach((argument, i) => {
    if (argument !== "--admin-addr") return;
    const next = argv[i + 1];
    if (next === undefined || (next !== "" && next.startsWith("-"))) {
      throw new UsageError(
        ["accesslog", "monitoring", "status"].includes(argv[0] ?? "")
          ? "missing value for --admin-addr (expected host:port of a running agent, e.g. 127.0.0.1:15200)"
          : 'missing value for --admin-addr (expected host:port, or "" for no admin API)',
      );
    }
  });
}

/**
 * Reads the command line. Throws UsageError on any mistake. `--help` is left to
 * cleye, which prints the help to stdout and exits 0 without returning.
 */
export function parseCommandLine(argv: string[]): Invocation {
  rejectBareAdminAddr(argv);
  const parsed = parseArgv(argv);
  switch (parsed.command) {
    case "accesslog": {
      const args = [...parsed._];
      // kmeshctl takes pod names before the state; here --admin-addr names the one agent.
      const state = args.length > 1 && ["enable", "disable"].includes(args.at(-1)!) ? args.pop() : args.shift();
      if (args.length > 0) {
        throw new UsageError(`unexpected argument ${JSON.stringify(args[0])} (this command drives one agent: name it with --admin-addr)`);
      }
      if (state === undefined) throw new UsageError("missing argument: accesslog enable or accesslog disable");
      const enable = enableDisable("accesslog")(state);
      return { command: "accesslog", enable, adminAddr: parsed.flags.adminAddr ?? defaultAdminAddress() };
    }
    case "monitoring": {
      const { flags } = parsed;
      const requests: SwitchRequest[] = [];
      if (flags.all !== undefined) requests.push({ path: "/monitoring", enable: flags.all });
      if (flags.accesslog !== undefined) requests.push({ path: "/accesslog", enable: flags.accesslog });
      if (flags.workloadMetrics !== undefined) requests.push({ path: "/workload_metrics", enable: flags.workloadMetrics });
      if (flags.connectionMetrics !== undefined) requests.push({ path: "/connection_metrics", enable: flags.connectionMetrics });
      if (requests.length === 0) {
        throw new UsageError("nothing to switch: give --accesslog, --workloadMetrics, --connectionMetrics or --all, each enable or disable");
      }
      return { command: "monitoring", requests, adminAddr: flags.adminAddr ?? defaultAdminAddress() };
    }
    case "status":
      return { command: "status", json: parsed.flags.json === true, adminAddr: parsed.flags.adminAddr ?? defaultAdminAddress() };
    case "check": {
      const { json, ...given } = parsed.flags;
      const options = {
        libbpf: given.libbpf,
        kubeletHost: given.kubeletHost,
        kubeletUrl: given.kubeletUrl,
        kubeletTokenFile: given.kubeletTokenFile,
        kubeletCaFile: given.kubeletCaFile,
        kubeletInsecureSkipTlsVerify: given.kubeletInsecureSkipTlsVerify,
        noKubelet: given.noKubelet,
        kubeApi: given.kubeApi,
        noKubeApi: given.noKubeApi,
        kubeconfig: given.kubeconfig,
      };
      const conflict = kubeletFlagsConflict(options) ?? apiFlagsConflict(options);
      if (conflict !== null) throw new UsageError(conflict);
      return { command: "check", options: { ...options, json: json === true } };
    }
  }
  const { flags } = parsed;
  if (flags.version) return { command: "version" };
  const switches = startupSwitches({
    monitoring: flags.monitoring,
    accesslog: flags.accesslog,
    connectionMetrics: flags.connectionMetrics,
  });
  if (!switches.ok) throw new UsageError(switches.message);
  const nonEmpty = (values: string[]) => (values.length > 0 ? values : undefined);
  const kube = {
    kubeletHost: flags.kubeletHost,
    kubeletUrl: flags.kubeletUrl,
    kubeletTokenFile: flags.kubeletTokenFile,
    kubeletCaFile: flags.kubeletCaFile,
    kubeletInsecureSkipTlsVerify: flags.kubeletInsecureSkipTlsVerify,
    kubeletRefresh: flags.kubeletRefresh,
    kubeletHold: flags.kubeletHold,
    noKubelet: flags.noKubelet,
    kubeApi: flags.kubeApi,
    noKubeApi: flags.noKubeApi,
    kubeconfig: flags.kubeconfig,
    clusterDomain: flags.clusterDomain,
    namespace: nonEmpty(flags.namespace),
    excludeNamespace: nonEmpty(flags.excludeNamespace),
    pod: nonEmpty(flags.pod),
  };
  const apiConflict = apiFlagsConflict(kube);
  if (apiConflict !== null) throw new UsageError(apiConflict);
  // The filters need names: from the kubelet, or from an API server asked for by name.
  const namesFromApi = kube.kubeApi === true || kube.kubeconfig !== undefined;
  const conflict = kubeletFlagsConflict(namesFromApi ? { ...kube, namespace: undefined, excludeNamespace: undefined, pod: undefined } : kube);
  if (conflict !== null) throw new UsageError(conflict);
  // Each RunOptions field is named after its flag, so an issue's path names the flag to blame.
  const result = v.safeParse(RunOptionsSchema, {
    output: flags.output,
    duration: flags.duration,
    ringBufferSize: flags.ringBufferSize,
    maxConnections: flags.maxConnections,
    maxBufferedOutput: flags.maxBufferedOutput,
    libbpf: flags.libbpf,
    monitoring: flags.monitoring,
    accesslog: flags.accesslog,
    connectionMetrics: flags.connectionMetrics,
    reportInterval: flags.reportInterval,
    adminAddr: flags.adminAddr === undefined ? defaultAdminAddress() : flags.adminAddr,
    lockFile: flags.lockFile,
    logLevel: flags.logLevel,
    ...kube,
  });
  if (!result.success) {
    // The flag types already checked every value; this is the last word, not the usual path.
    const [issue] = result.issues;
    const field = v.getDotPath(issue);
    throw new UsageError(
      field === null ? v.summarize(result.issues).replaceAll("\n", "; ") : `invalid value for --${kebabCase(field)}: ${issue.message}`,
    );
  }
  return { command: "run", options: result.output };
}

// ── Small helpers ────────────────────────────────────────────────────────────

function kebabCase(camel: string): string {
  return camel.replaceAll(/\B([A-Z])/g, "-$1").toLowerCase();
}

/** The known flag a typo most likely meant: a unique prefix, or at most two edits away. */
function closestFlag(typed: string, known: readonly string[]): string | undefined {
  if (typed.length < 2) return undefined;
  const extending = known.filter((name) => name.startsWith(typed));
  if (extending.length === 1) return extending[0];
  let best: string | undefined;
  let bestDistance = 3;
  for (const name of known) {
    const distance = editDistance(typed, name);
    if (distance < bestDistance) [best, bestDistance] = [name, distance];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}
