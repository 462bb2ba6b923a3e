// Loads the command line's parser (cli.ts, and with it cleye) without touching process.stdout
// when no help can be printed. cleye colours its help with ansis, which settles its colours as it
// is loaded: from process.stdout.isTTY unless FORCE_COLOR names a level, and touching
// process.stdout costs 2 MB (output.ts). The colours are for --help alone, so a command line that
// cannot ask for it has cleye loaded with FORCE_COLOR=1, set for the loading only.
import type * as Cli from "./cli.ts";

/**
 * Whether type-flag may find cleye's help flag in `argv`: `--help` (also `--help=…`) or `-h`, alone
 * or among other short flags. It may say yes when it cannot, never no when it can.
 */
export function mayAskForHelp(argv: readonly string[]): boolean {
  return argv.some((arg) => arg.startsWith("--help") || (/^-[^-]/.test(arg) && arg.includes("h")));
}

export async function loadCli(argv: readonly string[]): Promise<typeof Cli> {
  if (mayAskForHelp(argv)) return import("./cli.ts");
  const given = process.env.FORCE_COLOR;
  process.env.FORCE_COLOR = "1";
  try {
    return await import("./cli.ts");
  } finally {
    if (given === undefined) delete process.env.FORCE_COLOR;
    else process.env.FORCE_COLOR = given;
  }
}
