// Entry point: read the command line, run the command, and turn whatever went
// wrong into one message and an exit code. This is the only place that does.
//   0  done    1  the command failed    2  the command line was wrong
import { UsageError, parseCommandLine, type Invocation } from "./cli.ts";
import { PROGRAM_NAME, VERSION } from "./options.ts";

const EXIT_FAILURE = 1;
const EXIT_USAGE = 2;

async function dispatch(invocation: Invocation): Promise<number> {
  switch (invocation.command) {
    case "version":
      process.stdout.write(`${VERSION}\n`);
      return 0;
    case "run": {
      // Loaded only when needed: --help, --version and a wrong flag never touch
      // bun:ffi or libbpf, so they work on any machine.
      const { runCommand } = await import("./commands/run.ts");
      return runCommand(invocation.options);
    }
    case "accesslog": {
      const { accesslogCommand } = await import("./commands/accesslog.ts");
      return accesslogCommand(invocation.enable, invocation.adminAddr);
    }
    case "monitoring": {
      const { monitoringCommand } = await import("./commands/monitoring.ts");
      return monitoringCommand(invocation.requests, invocation.adminAddr);
    }
    case "status": {
      const { statusCommand } = await import("./commands/status.ts");
      return statusCommand(invocation.json, invocation.adminAddr);
    }
    case "check": {
      const { checkCommand } = await import("./commands/check.ts");
      return checkCommand(invocation.options);
    }
  }
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

let exitCode: number;
try {
  exitCode = await dispatch(parseCommandLine(process.argv.slice(2)));
} catch (error) {
  process.stderr.write(`${PROGRAM_NAME}: ${describe(error)}\n`);
  exitCode = error instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
}
// Exit explicitly: the command has finished and cleaned up; a forgotten timer or
// socket must not keep a finished run (e.g. --duration) alive.
process.exit(exitCode);
