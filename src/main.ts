// Entry point: read the command line, run the command, and turn whatever went wrong into one
// message and an exit code (errors.ts). This is the only place that does.
import type { Invocation } from "./cli.ts";
import { restartWithEngineSettings } from "./engine.ts";
import { EXIT_FAILURE, ExitError } from "./errors.ts";
import { loadCli } from "./load-cli.ts";
import { PROGRAM_NAME, VERSION } from "./options.ts";
import { writeStderr, writeStdout } from "./output.ts";

async function dispatch(invocation: Invocation): Promise<number> {
  switch (invocation.command) {
    case "version":
      writeStdout(`${VERSION}\n`);
      return 0;
    // Each command is loaded only when needed: --help, --version and a wrong flag never touch
    // bun:ffi or libbpf, so they work on any machine.
    case "run":
      restartWithEngineSettings();
      return (await import("./agent.ts")).runAgent(invocation.options);
    case "accesslog":
      return (await import("./commands/accesslog.ts")).accesslogCommand(invocation.enable, invocation.target);
    case "monitoring":
      return (await import("./commands/monitoring.ts")).monitoringCommand(invocation.requests, invocation.target);
    case "filter":
      return (await import("./commands/filter.ts")).filterCommand(invocation.set, invocation.json, invocation.target);
    case "status":
      return (await import("./commands/status.ts")).statusCommand(invocation.json, invocation.target);
    case "check":
      return (await import("./commands/check.ts")).checkCommand(invocation.options);
    case "feed":
      restartWithEngineSettings();
      return (await import("./commands/feed.ts")).feedCommand(invocation.options);
  }
}

/** The one line an error is said in (without the program name). */
function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  return error instanceof ExitError && error.context !== null ? `${error.context}: ${error.message}` : error.message;
}

let exitCode: number;
try {
  const argv = process.argv.slice(2);
  exitCode = await dispatch((await loadCli(argv)).parseCommandLine(argv));
} catch (error) {
  writeStderr(`${PROGRAM_NAME}: ${describe(error)}\n`);
  exitCode = error instanceof ExitError ? error.exitCode : EXIT_FAILURE;
}
// Exit explicitly: the command has finished and cleaned up; a forgotten timer or
// socket must not keep a finished run (e.g. --duration) alive.
process.exit(exitCode);
