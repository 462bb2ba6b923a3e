// The JavaScript engine's settings for the long-running commands (`run`, `feed`): the fewest
// helper threads of the engine's own. The JIT compiles on one worker thread, the collector marks
// with one thread, and no thread keeps heap blocks warm ahead of need. Each such thread holds
// memory of its own; without them the agent with 1,000 pods and 20,000 connections keeps 2-3 MB
// less. The JIT's one worker stays: compiling on the main thread stalls the drain while a cold
// line path compiles, and a burst of closes then overflows the ring buffer (README, "Footprint").
//
// JavaScriptCore reads these only from its environment when the process starts. So the command
// executes itself once more (the same pid, the same file and words: self.ts) with them added,
// before it loads anything else. A value already in the environment (an operator's) is kept.

import { sameCommand } from "./self.ts";

/** The engine's settings, as environment variables. */
export const ENGINE_SETTINGS: Readonly<Record<string, string>> = {
  BUN_JSC_minNumberOfWorklistThreads: "1",
  BUN_JSC_maxNumberOfWorklistThreads: "1",
  BUN_JSC_numberOfGCMarkers: "1",
  BUN_JSC_useWarmUpMarkedBlocks: "0",
};

/** Runs this command again with ENGINE_SETTINGS in its environment, unless they are there already. */
export function restartWithEngineSettings(): void {
  const env = process.env;
  if (Object.keys(ENGINE_SETTINGS).every((name) => env[name] !== undefined)) return;
  const command = sameCommand();
  try {
    if (command !== null) process.execve?.(command.file, command.argv, { ...ENGINE_SETTINGS, ...env });
  } catch {
    // It could not be executed again (no /proc, or exec refused): the command runs as it is, with
    // the engine's defaults.
  }
}
