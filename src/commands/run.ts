// `run`: the agent until SIGINT/SIGTERM or --duration. The agent owns the
// probe, the pod index, the sink and the admin server; this only hands it the
// checked options and passes its exit code back to main.
import { runAgent } from "../agent.ts";
import type { RunOptions } from "../options.ts";

export function runCommand(options: RunOptions): Promise<number> {
  return runAgent(options);
}
