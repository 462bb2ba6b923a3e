// `filter`: a running agent's filters (GET /filters), and `filter set [--port 80 ...]`, which
// replaces them all (PUT /filters: a filter not given is none), against one agent or every agent
// pod (agents.ts). One line per agent: the filters, written as the flags that set them.
import { getFilters, putFilters } from "../admin/client.ts";
import { describeFilters } from "../admin/filters.ts";
import type { Filters } from "../options.ts";
import { forEachAgent } from "./agents.ts";
import type { AgentTarget } from "./target.ts";

/** `set` null: show them. */
export function filterCommand(set: Filters | null, json: boolean, target: AgentTarget): Promise<number> {
  return forEachAgent(target, async (target, where) => {
    const filters = set === null ? await getFilters(target, where) : await putFilters(target, set, where);
    if (json) return JSON.stringify({ agent: where, filters });
    const text = describeFilters(filters) || "none (every report is written)";
    return `${set === null ? "filters" : "filters set"} on ${where}: ${text}`;
  });
}
