// The command line as tests meet it: in-process (parse only, no agent starts)
// or as `bun src/main.ts`, the way a user meets its messages and exit codes.
import { parseCommandLine } from "../../src/cli.ts";
import { UsageError } from "../../src/errors.ts";
import type { RunOptions } from "../../src/options.ts";

const REPO = new URL("../../", import.meta.url).pathname;

/** `run`'s options for these arguments; throws if they name another command. */
export function runOptions(...argv: string[]): RunOptions {
  const invocation = parseCommandLine(argv);
  if (invocation.command !== "run") throw new Error(`not run: ${invocation.command}`);
  return invocation.options;
}

/** The UsageError message these arguments give; throws if they give none. */
export function usageError(...argv: string[]): string {
  try {
    parseCommandLine(argv);
  } catch (error) {
    if (error instanceof UsageError) return error.message;
    throw error;
  }
  throw new Error("expected a usage error");
}

/** `bun src/main.ts <args>`: stdout, stderr and exit code. */
export function runCli(...args: string[]) {
  return runCliWith({ ...process.env, NO_COLOR: "1" }, args);
}

/** `bun src/main.ts <args>` with this environment. */
export async function runCliWith(env: Record<string, string | undefined>, args: string[]) {
  await using child = Bun.spawn([process.execPath, "src/main.ts", ...args], {
    cwd: REPO,
    env,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
    // A value that wrongly passes would start the agent: never let it run on.
    timeout: 20_000,
    killSignal: "SIGKILL",
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { stdout, stderr, exitCode };
}
