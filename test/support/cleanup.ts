/**
 * What must be undone when the test run ends, even after a test failed or forgot to dispose of
 * what it started (agents, network namespaces, lock directories). `bun test` runs no process
 * "exit" handlers, so bunfig.toml preloads test/support/preload.ts, whose afterAll runs these.
 */
const cleanups: (() => void)[] = [];

/** Registers `cleanup` to run once at the end of the test run. */
export function atRunEnd(cleanup: () => void): void {
  cleanups.push(cleanup);
}

/** Runs every registered cleanup once; one that throws does not stop the others. */
export function runCleanups(): void {
  for (const cleanup of cleanups.splice(0)) {
    try {
      cleanup();
    } catch (error) {
      console.warn(`test cleanup failed: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
}
