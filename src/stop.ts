// How the long-running commands (`run`, `feed`) end: at SIGINT or SIGTERM, or when `run --duration`
// is up. They stop cleanly after it; main.ts exits.

/** Resolves at the first SIGINT or SIGTERM, or after `seconds` when given. */
export function untilStopped(seconds?: number): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      clearTimeout(timeout);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
    const timeout = seconds === undefined ? undefined : setTimeout(done, seconds * 1000);
  });
}
