// `accesslog enable|disable`: what `kmeshctl accesslog` did, against one agent or every agent pod
// (agents.ts): POST /accesslog?enable=true|false. One line per agent.
import { postSwitch } from "../admin/client.ts";
import { forEachAgent } from "./agents.ts";
import type { AgentTarget } from "./target.ts";

export function accesslogCommand(enable: boolean, target: AgentTarget): Promise<number> {
  return forEachAgent(target, async (target, where) => {
    await postSwitch(target, "/accesslog", enable, where);
    return `accesslog ${enable ? "enabled" : "disabled"} on ${where}`;
  });
}
