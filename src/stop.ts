// How the long-running commands (`run`, `feed`) end: at SIGINT or SIGTERM, or when `run --duration`
// is up. They stop cleanly after it; main.ts exits.

/** Resolves at the first SIGINT or SIGTERM. */
export function untilStopped(): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      process.off("SIGINT", done);
      process.off("SIGTERM", done);
      resolve();
    };
    process.on("SIGINT", done);
    process.on("SIGTERM", done);
  });
}
