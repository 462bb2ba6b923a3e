// `monitoring --all|--accesslog|--workloadMetrics|--connectionMetrics
// enable|disable`: what `kmeshctl monitoring` does, against one agent, in
// kmeshctl's order (--all first), stopping at the first refusal. One line per
// switch changed.
import { chooseTarget, describeTarget, postSwitch, type AdminTargetFlags, type SwitchRequest } from "../admin/client.ts";

export async function monitoringCommand(requests: readonly SwitchRequest[], flags: AdminTargetFlags): Promise<number> {
  const target = chooseTarget(flags);
  for (const { path, enable } of requests) {
    await postSwitch(target, path, enable);
    const what = path === "/monitoring" ? "monitoring (every switch)" : path.slice(1);
    process.stdout.write(`${what} ${enable ? "enabled" : "disabled"} on ${describeTarget(target)}\n`);
  }
  return 0;
}
