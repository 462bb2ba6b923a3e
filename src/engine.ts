// The JavaScript engine's settings for the long-running commands (`run`, `feed`): no helper
// threads of the engine's own. The JIT compiles on the main thread, the collector marks with one
// thread, and no thread keeps heap blocks warm ahead of need. Each such thread holds memory of
// its own; without them the agent with 1,000 pods and 20,000 connections keeps about 2 MB less,
// at no cost a line (README, "Footprint").
//
// JavaScriptCore reads these only from its environment when the process starts. So the command
// executes its own binary once more (the same pid) with them added, before it loads anything
// else. A value already in the environment (an operator's) is kept.

/** The engine's settings, as environment variables. */
export const ENGINE_SETTINGS: Readonly<Record<string, string>> = {
  BUN_JSC_useConcurrentJIT: "0",
  BUN_JSC_numberOfGCMarkers: "1",
  BUN_JSC_useWarmUpMarkedBlocks: "0",
};

/** Runs this command again with ENGINE_SETTINGS in its environment, unless they are there already. */
export function restartWithEngineSettings(): void {
  const env = process.env;
  if (Object.keys(ENGINE_SETTINGS).every((name) => env[name] !== undefined)) return;
  // A compiled binary's argv[1] is its bundle's path inside the binary; from source, the script.
  const args = process.argv.slice(Bun.main.startsWith("/$bunfs/") ? 2 : 1);
  try {
    process.execve?.(process.execPath, [process.argv0, ...args], { ...ENGINE_SETTINGS, ...env });
  } catch {
    // The binary could not be executed again (replaced or removed since it started): the command
    // runs as it is, with the engine's defaults.
  }
}
