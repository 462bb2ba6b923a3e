// The whole command line: one cleye declaration, the flag types that check
// each value as it is read, and the valibot schema that is the type of a run's
// options. Nothing here prints or exits on a mistake: every mistake becomes a
// UsageError, and main.ts turns it into one line on stderr and exit code 2.
import { cli, command } from "cleye";
import * as v from "valibot";
import packageJson from "../package.json" with { type: "json" };

export const PROGRAM_NAME = "kmesh-accesslog";
export const VERSION: string = packageJson.version;

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
  /** A libbpf shared object to use instead of the system's libbpf.so.1. */
  libbpf: v.optional(LibbpfPathSchema),
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

const LibbpfPath = flagType("libbpf", "the path of a libbpf shared object", (text) => text, LibbpfPathSchema);

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
  libbpf: {
    type: LibbpfPath,
    placeholder: "<path>",
    description: "Use this libbpf shared object instead of the system's libbpf.so.1",
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

const COMMAND_NAMES = ["run"];
const KNOWN_FLAGS = [...Object.keys(runFlags).map(kebabCase), "help"];

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
          ignoreArgv: rejectUnknown(KNOWN_FLAGS, (argument) => new UsageError(`unexpected argument ${JSON.stringify(argument)}`)),
        }),
      ],
      strictFlags: true,
      help: {
        version: VERSION,
        description:
          "One Kmesh-format access-log line for every TCP connection on this Linux node, from eBPF.\n" +
          "Without a command, runs `run`.",
        usage: [`${PROGRAM_NAME} [run] [flags...]`],
        examples: [
          `sudo ${PROGRAM_NAME}`,
          `sudo ${PROGRAM_NAME} run --output json --duration 60`,
          `sudo ${PROGRAM_NAME} --ring-buffer-size 32M --max-connections 1048576`,
        ],
      },
      ignoreArgv: rejectUnknown(KNOWN_FLAGS, (argument) =>
        COMMAND_NAMES.includes(argument)
          ? new UsageError(`the command ${JSON.stringify(argument)} must come before any flag`)
          : new UsageError(`unknown command ${JSON.stringify(argument)} (expected ${COMMAND_NAMES.join(" or ")})`),
      ),
    },
    undefined,
    // type-flag splices what it parses out of the array it is given: give it a copy.
    [...argv],
  );
}

// ── The result ───────────────────────────────────────────────────────────────

export type Invocation = { command: "version" } | { command: "run"; options: RunOptions };

/**
 * Reads the command line. Throws UsageError on any mistake. `--help` is left to
 * cleye, which prints the help to stdout and exits 0 without returning.
 */
export function parseCommandLine(argv: string[]): Invocation {
  const { flags } = parseArgv(argv);
  if (flags.version) return { command: "version" };
  // Each RunOptions field is named after its flag, so an issue's path names the flag to blame.
  const result = v.safeParse(RunOptionsSchema, {
    output: flags.output,
    duration: flags.duration,
    ringBufferSize: flags.ringBufferSize,
    maxConnections: flags.maxConnections,
    libbpf: flags.libbpf,
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
