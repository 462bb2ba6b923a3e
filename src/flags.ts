// The flag tables of options.ts as cleye flags, and back: each flag's type turns its text into the
// checked value or a UsageError naming the flag; the parsed flags become options, with the table's
// defaults and its rules (which flags cannot go together); a mistyped flag gets a suggestion.
import type { Flags } from "cleye";
import * as v from "valibot";
import { GO_BOOL_SPELLINGS, parseGoBool } from "./admin/go-compat.ts";
import { UsageError } from "./errors.ts";
import { FLAGS, type FlagSpec } from "./options.ts";

export type FlagTable = [name: string, spec: FlagSpec][];

export const kebabCase = (camel: string) => camel.replaceAll(/\B([A-Z])/g, "-$1").toLowerCase();

/** A cleye type function: `read` turns the text into a candidate, the schema decides. */
function valueType(flag: string, { schema, read = (text) => text, expected, missing = expected }: FlagSpec): (text: string) => unknown {
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
export function enableDisable(what: string): (text: string) => boolean {
  return (text) => {
    if (text === "enable") return true;
    if (text === "disable") return false;
    throw new UsageError(
      text === "" ? `missing value for ${what} (expected enable or disable)` : `invalid value for ${what}: ${JSON.stringify(text)} (expected enable or disable)`,
    );
  };
}

/** cleye's declaration of the table's flags; for `check`, with the descriptions they have there. */
export function flagsOf(table: FlagTable, command?: "check"): Flags {
  const flag = (name: string, spec: FlagSpec) => {
    const kebab = kebabCase(name);
    const description = command === "check" && typeof spec.check === "string" ? spec.check : spec.description;
    // Shown by cleye as "(default: …)"; a default that is not a plain value is in the description.
    const shownDefault = spec.default !== undefined && typeof spec.default !== "object" ? { default: spec.default } : {};
    const placeholder = spec.placeholder !== undefined ? { placeholder: spec.placeholder } : {};
    switch (spec.kind) {
      case "boolean":
        return { type: Boolean, description };
      case "switch":
        return { type: switchType(kebab), placeholder: "[=true|false]", description, ...shownDefault };
      case "list":
        return { type: [valueType(kebab, spec)] as [(text: string) => unknown], ...placeholder, description };
      case "value":
        return { type: valueType(kebab, spec), ...placeholder, description, ...shownDefault };
    }
  };
  return Object.fromEntries(table.map(([name, spec]) => [name, flag(name, spec)]));
}

/** A flag counts as given unless absent, empty or set to its off value (false, 0). */
export const isGiven = (value: unknown) =>
  value !== undefined && value !== false && value !== 0 && !(Array.isArray(value) && value.length === 0);

/** The table's flags as parsed, or their defaults; a list not given is undefined. */
export function valuesOf(table: FlagTable, flags: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const options: Record<string, unknown> = {};
  for (const [name, spec] of table) {
    const value = flags[name] ?? spec.default;
    options[name] = spec.kind === "list" && !isGiven(value) ? undefined : value;
  }
  return options;
}

/**
 * Throws the first contradiction among the given flags of `run` or `check`, in the table's order.
 * The filters need pod names: from the kubelet, or from an API server asked for by name.
 */
export function refuseConflicts(given: Readonly<Record<string, unknown>>): void {
  const namesFromApi = given.kubeApi === true || given.kubeconfig !== undefined;
  for (const [name, spec] of Object.entries(FLAGS) as FlagTable) {
    if (!isGiven(given[name])) continue;
    if (spec.offWith && isGiven(given[spec.offWith]) && !(spec.filter && namesFromApi)) {
      throw new UsageError(`--${kebabCase(name)} needs ${FLAGS[spec.offWith].turnsOff}: it cannot be used with --${kebabCase(spec.offWith)}`);
    }
    if (spec.contradicts && isGiven(given[spec.contradicts])) {
      throw new UsageError(`--${kebabCase(name)} and --${kebabCase(spec.contradicts)} contradict each other: give one of them`);
    }
    if (spec.needs && !isGiven(given[spec.needs])) {
      throw new UsageError(`--${kebabCase(name)} needs --${kebabCase(spec.needs)}: without it, it has nothing to change`);
    }
  }
  if (given.output === "none" && !isGiven(given.otlpEndpoint)) {
    throw new UsageError("--output none writes no lines: give --otlp-endpoint to send the reports to a collector, or --output text or json");
  }
}

/** `--admin-addr` → `--no-admin-api`: the value flags whose `""` means their off flag. */
const EMPTY_MEANS_OFF = new Map(
  Object.entries(FLAGS as Record<string, FlagSpec>).flatMap(([name, spec]) => (spec.emptyIs ? [[`--${kebabCase(name)}`, `--${kebabCase(spec.emptyIs)}`]] : [])),
);

/**
 * `--admin-addr ""` (and `--admin-addr=`) is how --no-admin-api was spelled first, and still is;
 * `--admin-socket ""` and `--metrics-addr ""` likewise: type-flag hands the flag's type "" for it
 * and for a bare flag alike, so `run`'s argv is respelled before parsing.
 */
export function spellEmptyAsOff(argv: readonly string[]): string[] {
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

/** The known flag a typo most likely meant: a unique prefix, or at most two edits away. */
export function closestFlag(typed: string, known: readonly string[]): string | undefined {
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
