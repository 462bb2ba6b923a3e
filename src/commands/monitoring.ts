// `monitoring --all|--accesslog|--workloadMetrics|--connectionMetrics enable|disable`: what
// `kmeshctl monitoring` does, against one agent or every agent pod (agents.ts), in kmeshctl's order
// (--all first), each agent stopping at its first refusal. One line per agent: what it changed, or
// the refusal (after what it had changed before it).
import { AdminClientError, postSwitch, type SwitchRequest } from "../admin/client.ts";
import { forEachAgent } from "./agents.ts";
import type { AgentTarget } from "./target.ts";

export function monitoringCommand(requests: readonly SwitchRequest[], target: AgentTarget): Promise<number> {
  return forEachAgent(target, async (target, where) => {
    const done: string[] = [];
    for (const { path, enable } of requests) {
      try {
        await postSwitch(target, path, enable, where);
      } catch (error) {
        if (!(error instanceof AdminClientError) || done.length === 0) throw error;
        throw new AdminClientError(`${done.join(", ")} on ${where}; then ${error.message}`);
      }
      done.push(`${path === "/monitoring" ? "monitoring (every switch)" : path.slice(1)} ${enable ? "enabled" : "disabled"}`);
    }
    return `${done.join(", ")} on ${where}`;
  });
}
