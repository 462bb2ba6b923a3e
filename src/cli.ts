// The command line: one cleye declaration of every command, the flags of `run` and `check` derived
// from the table in options.ts, and what the parsed flags become (an Invocation). Nothing here
// prints or exits on a mistake: every mistake becomes a UsageError (errors.ts), which main.ts turns
// into one line on stderr and exit code 2.
import { cli, command, type Flags } from "cleye";
import * as v from "valibot";
import { parseHostPort, type HostPort } from "./address.ts";
import { GO_BOOL_SPELLINGS, parseGoBool } from "./admin/go-compat.ts";
import type { AdminTargetFlags, SwitchRequest } from "./admin/client.ts";
import type { AgentTarget } from "./commands/agents.ts";
import { startupSwitches } from "./admin/switches.ts";
import { UsageError } from "./errors.ts";
import {
  type CheckFlagName,
  type CheckOptions,
  DEFAULT_ADMIN_ADDR,
  DEFAULT_ADMIN_SOCKET,
  DEFAULT_FEED_CLIENT,
  FEED_FLAGS,
  type FeedFlagName,
  type FeedOptions,
  FeedOptionsSchema,
  FILTER_NAMES,
  type Filters,
  filtersOf,
  type FlagName,
  FLAGS,
  type FlagSpec as FlagDeclaration,
  HostPortSchema,
  PROGRAM_NAME,
  type RunOptions,
  RunOptionsSchema,
  SocketPathSchema,
  VERSION,
} from "./options.ts";

type FlagSpec = (typeof FLAGS)[FlagName] | (typeof FEED_FLAGS)[FeedFlagName];

export type Invocation =
  | { command: "version" }
  | { command: "run"; options: RunOptions }
  | { command: "accesslog"; enable: boolean; target: AgentTarget }
  | { command: "monitoring"; requests: SwitchRequest[]; target: AgentTarget }
  | { command: "status"; json: boolean; target: AgentTarget }
  /** set null: show the filters */
  | { command: "filter"; set: Filters | null; json: boolean; target: AgentTarget }
  | { command: "check"; options: CheckOptions }
  | { command: "feed"; options: FeedOptions };

// ── Flag types: text → checked value, or a UsageError naming the flag ────────

const kebabCase = (camel: string) => camel.replaceAll(/\B([A-Z])/g, "-$1").toLowerCase();

type ValueSpec = Pick<FlagDeclaration, "schema" | "read" | "expected" | "missing">;

/** A cleye type function: `read` turns the text into a candidate, the schema decides. */
function valueType(flag: string, { schema, read = (text) => text, expected, missing = expected }: ValueSpec): (text: string) => unknown {
  return (text) => {
    // type-flag passes "" both for `--flag=` and for a flag with no value after it.
    if (text === "") throw new UsageError(`missing value for --${flag} (expected ${missing})`);
    const result = v.safeParse(schema, read(text));
    if (!result.success) throw new UsageError(`invalid value for --${flag}: ${JSON.stringify(text)} (expected ${expected})`);
    return result.output;
  };
}

/** A Kmesh-style switch: `--flag` or `--flag=true` turns it on, `--flag=false` off. */
function switchType(flag: string): (text: string) => boolean {
  return (text) => {
    if (text === "") return true;
    const value = parseGoBool(text);
    if (value === undefined) {
      throw new UsageError(`invalid value for --${flag}: ${JSON.stringify(text)} (expected true or false: ${GO_BOOL_SPELLINGS})`);
    }
    return value;
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

/** cleye's declaration of one flag of the table, for `run` or for `check`. */
function cleyeFlag(name: string, spec: FlagSpec, forCheck: boolean) {
  const flag = kebabCase(name);
  const description = forCheck && "check" in spec && typeof spec.check === "string" ? spec.check : spec.description;
  // Shown by cleye as "(default: …)"; a default that is not a plain value is in the description.
  const shownDefault = "default" in spec && typeof spec.default !== "object" ? { default: spec.default } : {};
  const placeholder = "placeholder" in spec ? { placeholder: spec.placeholder } : {};
  switch (spec.kind) {
    case "boolean":
      return { type: Boolean, description };
    case "switch":
      return { type: switchType(flag), placeholder: "[=true|false]", description, ...shownDefault };
    case "list":
      return { type: [valueType(flag, spec)], ...placeholder, description };
    case "value":
      return { type: valueType(flag, spec), ...placeholder, description, ...shownDefault };
  }
}

const TABLE = Object.entries(FLAGS) as [FlagName, FlagSpec][];
const runFlags: Flags = {
  ...Object.fromEntries(TABLE.map(([name, spec]) => [name, cleyeFlag(name, spec, false)])),
  version: { type: Boolean, description: "Print the version and exit" },
};
// `check` tries what `run` would do: the flags the table gives it.
const checkFlags: Flags = {
  ...Object.fromEntries(TABLE.filter(([, spec]) => "check" in spec).map(([name, spec]) => [name, cleyeFlag(name, spec, true)])),
  json: { type: Boolean, description: "Print one JSON object instead of lines" },
};

// kmeshctl-style commands that drive a running agent over its admin API.
const clientFlags = {
  adminAddr: {
    type: valueType("admin-addr", {
      schema: HostPortSchema,
      read: parseHostPort,
      expected: "host:port, e.g. 127.0.0.1:15200 or [::1]:15200",
      missing: "host:port of a running agent, e.g. 127.0.0.1:15200",
    }) as (text: string) => HostPort,
    placeholder: "<host:port>",
    description: `The agent's admin API over TCP (default: its Unix socket ${DEFAULT_ADMIN_SOCKET} when this user may use it, else ${DEFAULT_ADMIN_ADDR})`,
  },
  adminSocket: {
    type: valueType("admin-socket", {
      schema: SocketPathSchema,
      expected: "the absolute path of a running agent's Unix socket",
    }) as (text: string) => string,
    placeholder: "<path>",
    description: `The agent's admin API on its Unix socket (default: ${DEFAULT_ADMIN_SOCKET}, when this user may use it)`,
  },
  kubeconfig: {
    type: valueType("kubeconfig", { schema: v.pipe(v.string(), v.minLength(1)), expected: "a file path" }) as (text: string) => string,
    placeholder: "<file>",
    description: "Drive every agent pod of the DaemonSet (or the one named) through this kubeconfig's API server, by port-forward",
  },
  inCluster: {
    type: Boolean,
    description: "The same from a pod of the cluster, with its service account",
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
  workloadMetrics: enableDisableFlag("workloadMetrics", "Kmesh's TCP metrics (and their address, --metrics-addr) on or off"),
  all: enableDisableFlag("all", "Monitoring as a whole: every switch on, or everything off"),
};
const FEED_TABLE = Object.entries(FEED_FLAGS) as [FeedFlagName, FlagSpec][];
const feedFlags = Object.fromEntries(FEED_TABLE.map(([name, spec]) => [name, cleyeFlag(name, spec, false)])) as Flags;
const statusFlags = {
  ...clientFlags,
  json: { type: Boolean, description: "Print one JSON object instead of tables" },
};

// `filter set` takes the filter flags of `run`, with their meaning.
const filterFlags: Flags = {
  ...clientFlags,
  ...Object.fromEntries(FILTER_NAMES.map((name) => [name, cleyeFlag(name, FLAGS[name], false)])),
  json: { type: Boolean, description: "Print one JSON object per agent instead of a line" },
};

// ── The declaration ──────────────────────────────────────────────────────────

const COMMAND_NAMES = ["run", "accesslog", "monitoring", "status", "filter", "check", "feed"];
const knownFlags = (flags: object) => [...Object.keys(flags).flatMap((name) => [name, kebabCase(name)]), "help"];
const KNOWN_FLAGS = knownFlags(runFlags);
const unexpectedArgument = (argument: string) => new UsageError(`unexpected argument ${JSON.stringify(argument)}`);

/**
 * type-flag hands every token it does not know to this hook before storing it: rejecting here, in
 * argv order, means the first mistake is the one reported, and cleye's own strictFlags handling
 * (several lines, exit 1) is never reached.
 */
function rejectUnknown(
  known: readonly string[],
  onArgument: (argument: string) => UsageError,
): (type: "known-flag" | "unknown-flag" | "argument", flagOrArgument: string) => boolean {
  return (type, flagOrArgument) => {
    if (type === "argument") throw onArgument(flagOrArgument);
    if (type === "unknown-flag") {
      const written = flagOrArgument.length === 1 ? `-${flagOrArgument}` : `--${flagOrArgument}`;
      const suggestion = closestFlag(flagOrArgument, known);
      throw new UsageError(`unknown flag ${written}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`);
    }
    return false;
  };
}

/** Arguments are the command's business; unknown flags are still mistakes. */
const keepArguments =
  (known: readonly string[]) => (type: "known-flag" | "unknown-flag" | "argument", flagOrArgument: string) =>
    type === "argument" ? false : rejectUnknown(known, unexpectedArgument)(type, flagOrArgument);

/** A command whose unknown flags are mistakes; its arguments too, unless it keeps them (`[pod]`). */
function strictCommand<N extends string, F extends Flags>(name: N, flags: F, argv: "keep" | "reject", help: { description: string; usage?: string[] }) {
  const known = knownFlags(flags);
  return command({ name, flags, help, strictFlags: true, ignoreArgv: argv === "keep" ? keepArguments(known) : rejectUnknown(known, unexpectedArgument) });
}

function parseArgv(argv: string[]) {
  return cli(
    {
      name: PROGRAM_NAME,
      // `run` is the default command: the same flags work with or without the word.
      flags: runFlags,
      commands: [
        strictCommand("run", runFlags, "reject", { description: "Load the probe and write one access-log line per TCP connection (the default command)" }),
        strictCommand("accesslog", clientFlags, "keep", {
          description: "Turn a running agent's access log on or off (POST /accesslog, as `kmeshctl accesslog` does)",
          usage: [`${PROGRAM_NAME} accesslog [pod] <enable|disable> [--admin-addr <host:port> | --admin-socket <path> | --kubeconfig <file> | --in-cluster]`],
        }),
        strictCommand("monitoring", monitoringFlags, "keep", {
          description:
            "Switch a running agent's monitoring, as `kmeshctl monitoring` does: --all first, then --accesslog, " +
            "--workloadMetrics, --connectionMetrics; stops at the first refusal",
          usage: [
            `${PROGRAM_NAME} monitoring [pod] [--all <enable|disable>] [--accesslog <enable|disable>] ` +
              "[--workloadMetrics <enable|disable>] [--connectionMetrics <enable|disable>] [--admin-addr <host:port> | --admin-socket <path> | --kubeconfig <file> | --in-cluster]",
          ],
        }),
        strictCommand("status", statusFlags, "keep", { description: "Print a running agent's switches and counters (every agent pod's, one line each, with --kubeconfig or --in-cluster)" }),
        strictCommand("filter", filterFlags, "keep", {
          description:
            "Show a running agent's filters (GET /filters); `filter set` replaces them all with the filter flags given " +
            "(PUT /filters: a filter not given is none; `filter set` alone clears them)",
          usage: [
            `${PROGRAM_NAME} filter [pod] [--json] [--admin-addr <host:port> | --admin-socket <path> | --kubeconfig <file> | --in-cluster]`,
            `${PROGRAM_NAME} filter set [pod] [--port <port>]... [--exclude-namespace <namespace>]... [--cidr <network>]... [--direction <OUTBOUND|INBOUND>] [--failed-only] [--min-duration <seconds>] ...`,
          ],
        }),
        strictCommand("check", checkFlags, "reject", {
          description:
            "Check that the agent can run on this node: kernel, BTF, bpf(), capabilities, cgroup v2, libbpf, a real load " +
            "of the probe, the kubelet. One line each with the fix; exit 0 only when nothing is missing",
        }),
        strictCommand("feed", feedFlags, "reject", {
          description:
            "Serve agents (run --feed) the names of every pod and Service of the cluster, from one list and watch of the API server " +
            "(a Deployment of two replicas: scripts/deploy/30-feed.yaml)",
          usage: [`${PROGRAM_NAME} feed --tls-cert-file <path> --tls-key-file <path> [--listen <host:port>] [--allow-service-account <namespace:name>]`],
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
          `${PROGRAM_NAME} accesslog [pod] <enable|disable> [--admin-addr <host:port> | --admin-socket <path> | --kubeconfig <file> | --in-cluster]`,
          `${PROGRAM_NAME} monitoring [pod] --accesslog|--connectionMetrics|--workloadMetrics|--all <enable|disable>`,
          `${PROGRAM_NAME} status [pod] [--json]`,
          `${PROGRAM_NAME} filter [set [--port <port>] [--exclude-namespace <namespace>] ...]`,
          `${PROGRAM_NAME} check [--json] [--no-kubelet]`,
          `${PROGRAM_NAME} feed --tls-cert-file <path> --tls-key-file <path>`,
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

/** The value flags whose `""` means their off flag (`--admin-addr ""` is `--no-admin-api`). */
const EMPTY_MEANS_OFF = new Map(TABLE.flatMap(([name, spec]) => ("emptyIs" in spec ? [[`--${kebabCase(name)}`, `--${kebabCase(spec.emptyIs)}`]] : [])));

/**
 * `--admin-addr ""` (and `--admin-addr=`) is how --no-admin-api was spelled first, and still is;
 * `--admin-socket ""` and `--metrics-addr ""` likewise: type-flag hands the flag's type "" for it
 * and for a bare flag alike, so it is renamed before parsing. Only `run` takes them; elsewhere
 * --admin-addr and --admin-socket name a running agent.
 */
function spellEmptyAsOff(argv: readonly string[]): string[] {
  if (argv[0] !== "run" && COMMAND_NAMES.includes(argv[0] ?? "")) return [...argv];
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const off = EMPTY_MEANS_OFF.get(arg.endsWith("=") ? arg.slice(0, -1) : arg);
    if (off !== undefined && (arg.endsWith("=") || argv[i + 1] === "")) {
      out.push(off);
      if (!arg.endsWith("=")) i++;
    } else {
      out.push(arg);
    }
  }
  return out;
}

/** A flag counts as given unless absent, empty or set to its off value (false, 0). */
const isGiven = (value: unknown) =>
  value !== undefined && value !== false && value !== 0 && !(Array.isArray(value) && value.length === 0);

/**
 * The first contradiction among the given flags, in the table's order, as a usage message; null
 * when none. The filters need pod names: from the kubelet, or from an API server asked for by name.
 */
function conflict(given: Readonly<Record<string, unknown>>): string | null {
  const namesFromApi = given.kubeApi === true || given.kubeconfig !== undefined;
  for (const [name, spec] of TABLE) {
    if (!isGiven(given[name])) continue;
    if ("offWith" in spec && isGiven(given[spec.offWith]) && !("filter" in spec && namesFromApi)) {
      return `--${kebabCase(name)} needs ${FLAGS[spec.offWith].turnsOff}: it cannot be used with --${kebabCase(spec.offWith)}`;
    }
    if ("contradicts" in spec && isGiven(given[spec.contradicts])) {
      return `--${kebabCase(name)} and --${kebabCase(spec.contradicts)} contradict each other: give one of them`;
    }
    if ("needs" in spec && !isGiven(given[spec.needs])) {
      return `--${kebabCase(name)} needs --${kebabCase(spec.needs)}: without it, it has nothing to change`;
    }
  }
  if (given.output === "none" && !isGiven(given.otlpEndpoint)) {
    return "--output none writes no lines: give --otlp-endpoint to send the reports to a collector, or --output text or json";
  }
  return null;
}

/**
 * The agents a client command drives: with --kubeconfig or --in-cluster, every agent pod (or the
 * one named) through the API server; else the one --admin-addr or --admin-socket names, or this
 * node's (client.ts chooses when neither does).
 */
function agentTarget(flags: AdminTargetFlags & { kubeconfig?: string | undefined; inCluster?: boolean | undefined }, args: string[]): AgentTarget {
  const cluster = flags.kubeconfig !== undefined || flags.inCluster === true;
  if (flags.kubeconfig !== undefined && flags.inCluster === true) {
    throw new UsageError("--kubeconfig and --in-cluster contradict each other: give one of them");
  }
  if (flags.adminAddr !== undefined && flags.adminSocket !== undefined) {
    throw new UsageError("--admin-addr and --admin-socket both name the agent: give one of them");
  }
  const named = flags.adminAddr !== undefined ? "--admin-addr" : flags.adminSocket !== undefined ? "--admin-socket" : null;
  if (cluster && named !== null) {
    throw new UsageError(`${named} and --${flags.inCluster ? "in-cluster" : "kubeconfig"} contradict each other: ${named} names one agent, the other reaches the agent pods`);
  }
  if (args.length > (cluster ? 1 : 0)) {
    const argument = args[cluster ? 1 : 0]!;
    throw new UsageError(
      cluster
        ? `unexpected argument ${JSON.stringify(argument)} (name at most one agent pod)`
        : `unexpected argument ${JSON.stringify(argument)} (a pod name needs --kubeconfig or --in-cluster; without them, --admin-addr names the one agent)`,
    );
  }
  if (cluster) return { kind: "cluster", kubeconfig: flags.kubeconfig ?? null, pod: args[0] ?? null };
  return { kind: "local", flags: { adminAddr: flags.adminAddr, adminSocket: flags.adminSocket } };
}

/**
 * Reads the command line. Throws UsageError on any mistake. `--help` is left to cleye, which
 * prints the help to stdout and exits 0 without returning.
 */
export function parseCommandLine(argv: string[]): Invocation {
  const parsed = parseArgv(spellEmptyAsOff(argv));
  switch (parsed.command) {
    case "accesslog": {
      const args = [...parsed._];
      // kmeshctl takes the pod name before the state.
      const state = args.length > 1 && ["enable", "disable"].includes(args.at(-1)!) ? args.pop() : args.shift();
      if (state === undefined) throw new UsageError("missing argument: accesslog enable or accesslog disable");
      const enable = enableDisable("accesslog")(state);
      return { command: "accesslog", enable, target: agentTarget(parsed.flags, args) };
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
      return { command: "monitoring", requests, target: agentTarget(flags, [...parsed._]) };
    }
    case "status":
      return { command: "status", json: parsed.flags.json === true, target: agentTarget(parsed.flags, [...parsed._]) };
    case "filter": {
      const flags = parsed.flags as Record<string, unknown> & AdminTargetFlags & { kubeconfig?: string; inCluster?: boolean };
      const args = [...parsed._];
      const set = args[0] === "set";
      if (set) args.shift();
      const given = FILTER_NAMES.find((name) => isGiven(flags[name]));
      if (!set && given !== undefined) {
        throw new UsageError(`--${kebabCase(given)} changes the filters: write \`filter set\` before the flags (it replaces every filter)`);
      }
      const filters = set ? filtersOf(Object.fromEntries(FILTER_NAMES.map((name) => [name, flags[name]]))) : null;
      return { command: "filter", set: filters, json: flags.json === true, target: agentTarget(flags, args) };
    }
    case "check": {
      const flags = parsed.flags as Record<string, unknown>;
      const options = Object.fromEntries(TABLE.filter(([, spec]) => "check" in spec).map(([name]) => [name, flags[name]]));
      const mistake = conflict(options);
      if (mistake !== null) throw new UsageError(mistake);
      return { command: "check", options: { ...(options as Pick<RunOptions, CheckFlagName>), json: flags.json === true } };
    }
    case "feed":
      return { command: "feed", options: feedOptions(parsed.flags as Record<string, unknown>) };
  }
  const flags = parsed.flags as Record<string, unknown>;
  if (flags.version) return { command: "version" };
  const switches = startupSwitches({
    monitoring: flags.monitoring as boolean,
    accesslog: flags.accesslog as boolean | undefined,
    connectionMetrics: flags.connectionMetrics as boolean | undefined,
    workloadMetrics: flags.workloadMetrics as boolean | undefined,
  });
  if (!switches.ok) throw new UsageError(switches.message);
  const mistake = conflict(flags);
  if (mistake !== null) throw new UsageError(mistake);
  const options: Record<string, unknown> = {};
  for (const [name, spec] of TABLE) {
    const value = flags[name] ?? ("default" in spec ? spec.default : undefined);
    options[name] = spec.kind === "list" && !isGiven(value) ? undefined : value;
  }
  for (const [name, spec] of TABLE) if ("emptyIs" in spec && options[spec.emptyIs] === true) options[name] = null;
  // The flag types already checked every value; this is the last word, not the usual path.
  const result = v.safeParse(RunOptionsSchema, options);
  if (!result.success) {
    const [issue] = result.issues;
    const field = v.getDotPath(issue);
    throw new UsageError(
      field === null ? v.summarize(result.issues).replaceAll("\n", "; ") : `invalid value for --${kebabCase(field)}: ${issue.message}`,
    );
  }
  return { command: "run", options: result.output };
}

/** The feed's flags, checked; both TLS files are required. */
function feedOptions(flags: Record<string, unknown>): FeedOptions {
  for (const name of ["tlsCertFile", "tlsKeyFile"] as const) {
    if (flags[name] === undefined) throw new UsageError(`feed: --${kebabCase(name)} is required (the feed serves agents over TLS only)`);
  }
  const options: Record<string, unknown> = {};
  for (const [name, spec] of FEED_TABLE) options[name] = flags[name] ?? ("default" in spec ? spec.default : undefined);
  if (!isGiven(options.allowServiceAccount)) options.allowServiceAccount = [DEFAULT_FEED_CLIENT];
  const result = v.safeParse(FeedOptionsSchema, options);
  if (!result.success) throw new UsageError(`invalid value for --${kebabCase(v.getDotPath(result.issues[0]) ?? "?")}: ${result.issues[0].message}`);
  return result.output;
}

// ── Typos ────────────────────────────────────────────────────────────────────

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
