// `accesslog enable|disable`: what `kmeshctl accesslog` did, against one agent or every agent pod
// (agents.ts): POST /accesslog?enable=true|false. One line per agent.
import { postSwitch } from "../admin/client.ts";
import { type AgentTarget, forEachAgent } from "./agents.ts";

export function accesslogCommand(enable: boolean, target: AgentTarget): Promise<number> {
  return forEachAgent(target, async (target, where) => {
    await postSwitch(target, "/accesslog", enable, where);
    return `accesslog ${enable ? "enabled" : "disabled"} on ${where}`;
  });
}
