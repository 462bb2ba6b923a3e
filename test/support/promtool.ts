// Prometheus's own checker of exposition text, `promtool check metrics`: on PATH, or the copy
// scripts/setup takes from Debian's prometheus package into the cache.
import { existsSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

const CACHED = join(process.env.XDG_CACHE_HOME || join(homedir(), ".cache"), "kmesh-accesslog", "promtool", "promtool");

/** promtool's path, or null when scripts/setup has not provided one. */
export function promtoolPath(): string | null {
  return Bun.which("promtool") ?? (existsSync(CACHED) ? CACHED : null);
}

/** `promtool check metrics` of `text`: its exit code and what it said (problems, one per line). */
export function checkMetrics(text: string): { exitCode: number | null; output: string } {
  const promtool = promtoolPath();
  if (promtool === null) throw new Error("promtool is missing: run scripts/setup");
  const result = Bun.spawnSync([promtool, "check", "metrics"], { stdin: new TextEncoder().encode(text), stdout: "pipe", stderr: "pipe" });
  return { exitCode: result.exitCode, output: `${result.stdout.toString()}${result.stderr.toString()}` };
}
