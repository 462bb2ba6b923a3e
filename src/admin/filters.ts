// GET and PUT /filters: the filters of the reports (src/accesslog/filters.ts) read and replaced at
// run time. Ours, not Kmesh's. The body is JSON, checked with the schema the flags are checked with
// (options.ts); a bad one is a 400 naming the field and what it takes, and changes nothing. PUT
// replaces every filter: a field left out is no filter. Who may PUT is the access gate's business.
import * as v from "valibot";
import { FILTER_NAMES, type FilterName, type Filters, FiltersSchema, FLAGS } from "../options.ts";
import { goError } from "./go-compat.ts";

export const FILTERS_PATH = "/filters";

/** What /filters needs from the agent. */
export interface FiltersBackend {
  filters(): Filters;
  /** Applies them from the next report on; throws FiltersRefused when the agent cannot. */
  setFilters(next: Filters): void;
}

/** PUT /filters asked for what this agent cannot do; the message says why and what to do. */
export class FiltersRefused extends Error {
  override name = "FiltersRefused";
}

const json = (filters: Filters) => new Response(`${JSON.stringify(filters)}\n`, { status: 200, headers: { "Content-Type": "application/json" } });
const refuse = (why: string) => goError(`invalid filters: ${why}; nothing was changed`, 400);

export function handleFilters(backend: FiltersBackend, method: string, body: Uint8Array): Response {
  if (method === "GET" || method === "HEAD") return json(backend.filters());
  if (method !== "PUT") return goError("Method Not Allowed", 405, "GET, HEAD, PUT");
  const parsed = parseFilters(body);
  if (typeof parsed === "string") return refuse(parsed);
  try {
    backend.setFilters(parsed);
  } catch (error) {
    if (error instanceof FiltersRefused) return refuse(error.message);
    throw error;
  }
  return json(parsed);
}

const EXAMPLE = '{"port": [80, 443], "excludeNamespace": ["kube-system"]}';

/** The filters of a PUT body, or why it is not (the field, what it takes). */
export function parseFilters(body: Uint8Array): Filters | string {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder().decode(body));
  } catch (error) {
    return `${body.length === 0 ? "the body is empty" : `the body is not JSON (${(error as Error).message})`}: send a JSON object such as ${EXAMPLE}`;
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return `the body is ${Array.isArray(value) ? "an array" : value === null ? "null" : `a ${typeof value}`}: send a JSON object such as ${EXAMPLE}`;
  }
  const unknown = Object.keys(value).find((key) => !(FILTER_NAMES as string[]).includes(key));
  if (unknown !== undefined) return `unknown field ${JSON.stringify(unknown)}: the fields are ${FILTER_NAMES.join(", ")}`;
  const result = v.safeParse(FiltersSchema, value);
  if (result.success) return result.output;
  const issue = result.issues[0];
  const path = issue.path ?? [];
  const name = path[0]?.key as FilterName;
  const spec = FLAGS[name];
  const index = path[1]?.key;
  const field = typeof index === "number" ? `${name}[${index}]` : name;
  const expected =
    spec.kind === "list"
      ? typeof index === "number"
        ? spec.expected
        : `a list, each item ${spec.expected}; [] for none`
      : spec.kind === "boolean"
        ? "true or false"
        : `${spec.expected}; null for none`;
  return `${field}: ${JSON.stringify(issue.input) ?? "nothing"} is not valid (expected ${expected})`;
}

/** The filters that are set, as the flags that would set them (`--port 80 --port 443 --exclude-namespace kube-system`); "" for none. */
export function describeFilters(filters: Filters): string {
  const flag = (name: FilterName) => `--${name.replaceAll(/([A-Z])/g, "-$1").toLowerCase()}`;
  const words: string[] = [];
  for (const name of FILTER_NAMES) {
    const value = filters[name];
    if (Array.isArray(value)) for (const item of value) words.push(`${flag(name)} ${String(item)}`);
    else if (value === true) words.push(flag(name));
    else if (value !== null && value !== false && value !== 0) words.push(`${flag(name)} ${String(value)}`);
  }
  return words.join(" ");
}
