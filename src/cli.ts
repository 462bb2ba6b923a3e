// The command line: one cleye declaration of every command, the flags of `run`, `check` and `feed`
// derived from the tables in options.ts, and what the parsed flags become (an Invocation). Nothing
// here prints or exits on a mistake: every mistake becomes a UsageError (errors.ts), which main.ts
// turns into one line on stderr and exit code 2.
import { cli, command, type Flags } from "cleye";
import type { SwitchRequest } from "./admin/client.ts";
import { startupSwitches } from "./admin/switches.ts";
import { type AgentTarget, agentTarget, type TargetFlags, targetFlags } from "./commands/target.ts";
import { UsageError } from "./errors.ts";
import { closestFlag, enableDisable, type FlagTable, flagsOf, isGiven, kebabCase, refuseConflicts, spellEmptyAsOff, valuesOf } from "./flags.ts";
import {
  type CheckOptions,
  DEFAULT_FEED_CLIENT,
  FEED_FLAGS,
  type FeedOptions,
  FILTER_NAMES,
  type Filters,
  filtersOf,
  FLAGS,
  oneOf,
  PROGRAM_NAME,
  type RunOptions,
  VERSION,
} from "./options.ts";

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

const TABLE: FlagTable = Object.entries(FLAGS);
const CHECK_TABLE = TABLE.filter(([, spec]) => spec.check !== undefined);

const runFlags: Flags = { ...flagsOf(TABLE), version: { type: Boolean, description: "Print the version and exit" } };
// `check` tries what `run` would do: the flags the table gives it.
const checkFlags: Flags = { ...flagsOf(CHECK_TABLE, "check"), json: { type: Boolean, description: "Print one JSON object instead of lines" } };

/** kmeshctl's monitoring switches (camelCase; the kebab-case spellings work too), in the order they are sent. */
const SWITCHES = {
  all: { path: "/monitoring", description: "Monitoring as a whole: every switch on, or everything off" },
  accesslog: { path: "/accesslog", description: "Access-log lines on or off" },
  workloadMetrics: { path: "/workload_metrics", description: "Kmesh's TCP metrics (and their address, --metrics-addr) on or off" },
  connectionMetrics: { path: "/connection_metrics", description: "Periodic reports of open connections on or off" },
} as const;
const monitoringFlags = {
  ...targetFlags,
  ...Object.fromEntries(
    Object.entries(SWITCHES).map(([name, { description }]) => [name, { type: enableDisable(`--${name}`), placeholder: "<enable|disable>", description }]),
  ),
};
const statusFlags = { ...targetFlags, json: { type: Boolean, description: "Print one JSON object instead of tables" } };
// `filter set` takes the filter flags of `run`, with their meaning.
const filterFlags: Flags = {
  ...targetFlags,
  ...flagsOf(FILTER_NAMES.map((name) => [name, FLAGS[name]])),
  json: { type: Boolean, description: "Print one JSON object per agent instead of a line" },
};

// ── The declaration ──────────────────────────────────────────────────────────

const COMMAND_NAMES = ["run", "accesslog", "monitoring", "status", "filter", "check", "feed"];
const TARGET_USAGE = "[--admin-addr <host:port> | --admin-socket <path> | --kubeconfig <file> | --in-cluster]";
const ACCESSLOG_USAGE = `${PROGRAM_NAME} accesslog [pod] <enable|disable> ${TARGET_USAGE}`;
type IgnoreArgv = (type: "known-flag" | "unknown-flag" | "argument", flagOrArgument: string) => boolean;

/**
 * type-flag hands every token it does not know to this hook before storing it: rejecting here, in
 * argv order, means the first mistake is the one reported, and cleye's own strictFlags handling
 * (several lines, exit 1) is never reached. Arguments are kept for a command that takes them
 * (`[pod]`), else they are mistakes too.
 */
function rejectUnknown(flags: object, onArgument: ((argument: string) => UsageError) | "keep"): IgnoreArgv {
  const known = [...Object.keys(flags).flatMap((name) => [name, kebabCase(name)]), "help"];
  return (type, flagOrArgument) => {
    if (type === "argument") {
      if (onArgument === "keep") return false;
      throw onArgument(flagOrArgument);
    }
    if (type === "unknown-flag") {
      const written = flagOrArgument.length === 1 ? `-${flagOrArgument}` : `--${flagOrArgument}`;
      const suggestion = closestFlag(flagOrArgument, known);
      throw new UsageError(`unknown flag ${written}${suggestion ? ` (did you mean --${suggestion}?)` : ""}`);
    }
    return false;
  };
}

const unexpectedArgument = (argument: string) => new UsageError(`unexpected argument ${JSON.stringify(argument)}`);

/** A command whose unknown flags are mistakes; its arguments too, unless it keeps them (`[pod]`). */
function strictCommand<N extends string, F extends Flags>(name: N, flags: F, argv: "keep" | "reject", help: { description: string; usage?: string[] }) {
  return command({ name, flags, help, strictFlags: true, ignoreArgv: rejectUnknown(flags, argv === "keep" ? "keep" : unexpectedArgument) });
}

function parseArgv(argv: string[]) {
  return cli(
    {
      name: PROGRAM_NAME,
      // `run` is the default command: the same flags work with or without the word.
      flags: runFlags,
      commands: [
        strictCommand("run", runFlags, "reject", { description: "Load the probe and write one access-log line per TCP connection (the default command)" }),
        strictCommand("accesslog", targetFlags, "keep", {
          description: "Turn a running agent's access log on or off (POST /accesslog, as `kmeshctl accesslog` does)",
          usage: [ACCESSLOG_USAGE],
        }),
        strictCommand("monitoring", monitoringFlags, "keep", {
          description:
            "Switch a running agent's monitoring, as `kmeshctl monitoring` does: --all first, then --accesslog, " +
            "--workloadMetrics, --connectionMetrics; stops at the first refusal",
          usage: [
            `${PROGRAM_NAME} monitoring [pod] [--all <enable|disable>] [--accesslog <enable|disable>] ` +
              `[--workloadMetrics <enable|disable>] [--connectionMetrics <enable|disable>] ${TARGET_USAGE}`,
          ],
        }),
        strictCommand("status", statusFlags, "keep", { description: "Print a running agent's switches and counters (every agent pod's, one line each, with --kubeconfig or --in-cluster)" }),
        strictCommand("filter", filterFlags, "keep", {
          description:
            "Show a running agent's filters (GET /filters); `filter set` replaces them all with the filter flags given " +
            "(PUT /filters: a filter not given is none; `filter set` alone clears them)",
          usage: [
            `${PROGRAM_NAME} filter [pod] [--json] ${TARGET_USAGE}`,
            `${PROGRAM_NAME} filter set [pod] [--port <port>]... [--exclude-namespace <namespace>]... [--cidr <network>]... [--direction <OUTBOUND|INBOUND>] [--failed-only] [--min-duration <seconds>] ...`,
          ],
        }),
        strictCommand("check", checkFlags, "reject", {
          description:
            "Check that the agent can run on this node: kernel, BTF, bpf(), capabilities, cgroup v2, libbpf, a real load " +
            "of the probe, the kubelet. One line each with the fix; exit 0 only when nothing is missing",
        }),
        strictCommand("feed", flagsOf(Object.entries(FEED_FLAGS)), "reject", {
          description:
            "Serve agents (run --feed) the names of every pod and Service of the cluster, from one list and watch of the API server " +
            "(a Deployment of two replicas: scripts/deploy/feed/)",
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
          ACCESSLOG_USAGE,
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
      ignoreArgv: rejectUnknown(runFlags, (argument) =>
        COMMAND_NAMES.includes(argument)
          ? new UsageError(`the command ${JSON.stringify(argument)} must come before any flag`)
          : new UsageError(`unknown command ${JSON.stringify(argument)} (expected ${oneOf(COMMAND_NAMES)})`),
      ),
    },
    undefined,
    // type-flag splices what it parses out of the array it is given: give it a copy.
    [...argv],
  );
}

/**
 * Reads the command line. Throws UsageError on any mistake. `--help` is left to cleye, which
 * prints the help to stdout and exits 0 without returning.
 */
export function parseCommandLine(argv: string[]): Invocation {
  // Only `run` takes `--admin-addr ""`; elsewhere --admin-addr and --admin-socket name a running agent.
  const parsed = parseArgv(argv[0] !== "run" && COMMAND_NAMES.includes(argv[0] ?? "") ? argv : spellEmptyAsOff(argv));
  const flags = parsed.flags as Record<string, unknown> & TargetFlags;
  const args = [...parsed._];
  switch (parsed.command) {
    case "accesslog": {
      // kmeshctl takes the pod name before the state.
      const state = args.length > 1 && ["enable", "disable"].includes(args.at(-1)!) ? args.pop() : args.shift();
      if (state === undefined) throw new UsageError("missing argument: accesslog enable or accesslog disable");
      const enable = enableDisable("accesslog")(state);
      return { command: "accesslog", enable, target: agentTarget(flags, args) };
    }
    case "monitoring": {
      const requests = Object.entries(SWITCHES).flatMap(([name, { path }]) => (flags[name] === undefined ? [] : [{ path, enable: flags[name] as boolean }]));
      if (requests.length === 0) {
        throw new UsageError("nothing to switch: give --accesslog, --workloadMetrics, --connectionMetrics or --all, each enable or disable");
      }
      return { command: "monitoring", requests, target: agentTarget(flags, args) };
    }
    case "status":
      return { command: "status", json: flags.json === true, target: agentTarget(flags, args) };
    case "filter": {
      const set = args[0] === "set";
      if (set) args.shift();
      const given = FILTER_NAMES.find((name) => isGiven(flags[name]));
      if (!set && given !== undefined) {
        throw new UsageError(`--${kebabCase(given)} changes the filters: write \`filter set\` before the flags (it replaces every filter)`);
      }
      return { command: "filter", set: set ? filtersOf(flags as Record<string, unknown>) : null, json: flags.json === true, target: agentTarget(flags, args) };
    }
    case "check": {
      const options = Object.fromEntries(CHECK_TABLE.map(([name]) => [name, flags[name]]));
      refuseConflicts(options);
      return { command: "check", options: { ...options, json: flags.json === true } as CheckOptions };
    }
    case "feed": {
      for (const name of ["tlsCertFile", "tlsKeyFile"]) {
        if (flags[name] === undefined) throw new UsageError(`feed: --${kebabCase(name)} is required (the feed serves agents over TLS only)`);
      }
      const options = valuesOf(Object.entries(FEED_FLAGS), flags);
      return { command: "feed", options: { ...options, allowServiceAccount: options.allowServiceAccount ?? [DEFAULT_FEED_CLIENT] } as FeedOptions };
    }
  }
  if (flags.version) return { command: "version" };
  // Every value was checked by its flag's type (flags.ts); the defaults are the table's.
  const options = valuesOf(TABLE, flags);
  const switches = startupSwitches(options as RunOptions);
  if (!switches.ok) throw new UsageError(switches.message);
  refuseConflicts(flags);
  for (const [name, spec] of TABLE) if (spec.emptyIs && options[spec.emptyIs] === true) options[name] = null;
  return { command: "run", options: options as RunOptions };
}
