// `monitoring --all|--accesslog|--workloadMetrics|--connectionMetrics
// enable|disable`: what `kmeshctl monitoring` does, against one agent, in
// kmeshctl's order (--all first), stopping at the first refusal. One line per
// switch changed.
import { formatHostPort, type HostPort } from "../address.ts";
import { postSwitch, type SwitchRequest } from "../admin/client.ts";

export async function monitoringCommand(requests: readonly SwitchRequest[], adminAddr: HostPort): Promise<number> {
  for (const { path, enable } of requests) {
    await postSwitch(adminAddr, path, enable);
    const what = path === "/monitoring" ? "monitoring (every switch)" : path.slice(1);
    process.stdout.write(`${what} ${enable ? "enabled" : "disabled"} on ${formatHostPort(adminAddr)}\n`);
  }
  return 0;
}
