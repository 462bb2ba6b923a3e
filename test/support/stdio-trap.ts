// Preloaded (`bun --preload`) into a run of the program: process.stdout, process.stderr and
// process.stdin become getters that append who read them (the name, then the stack) to the file
// STDIO_TRAP_FILE names, and give undefined. They are replaced without being read: reading them
// would build the streams this is there to catch (src/output.ts).
import { appendFileSync } from "node:fs";

const file = process.env.STDIO_TRAP_FILE;
if (file === undefined) throw new Error("stdio-trap.ts: set STDIO_TRAP_FILE");
for (const name of ["stdout", "stderr", "stdin"]) {
  Object.defineProperty(process, name, {
    configurable: true,
    get() {
      appendFileSync(file, `process.${name}, read ${new Error().stack}\n`);
      return undefined;
    },
  });
}
