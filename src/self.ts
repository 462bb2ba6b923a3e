// How to run this program again as the kernel started it. The file is /proc/self/exe: the very
// file that runs, even if an upgrade has put another at its path since. The words before the
// program's own arguments are those of /proc/self/cmdline: the binary's name, or the dynamic
// loader's and the binary's when it was started as `ld-linux-x86-64.so.2 <binary>` (how a binary
// on a noexec mount is run; process.execPath is then the loader), or `bun src/main.ts`.
import { readFileSync } from "node:fs";

const SELF_EXE = "/proc/self/exe";

/** Whether this is the compiled binary (its bundle inside it), not Bun running src/main.ts. */
const compiled = () => Bun.main.startsWith("/$bunfs/");

/**
 * The words of the kernel's command line before the program's own arguments (process.argv from
 * its third word on). null when /proc does not tell (not mounted), or its words end otherwise.
 */
function launcher(): string[] | null {
  let words: string[];
  try {
    words = readFileSync("/proc/self/cmdline", "utf8").split("\0").slice(0, -1);
  } catch {
    return null;
  }
  const args = process.argv.slice(2);
  const length = words.length - args.length;
  if (length < 1 || args.some((arg, i) => words[length + i] !== arg)) return null;
  return words.slice(0, length);
}

/** The file and the words (argv[0] first) that run this program again with the same arguments; null when not known. */
export function sameCommand(): { file: string; argv: string[] } | null {
  const words = launcher();
  return words === null ? null : { file: SELF_EXE, argv: [...words, ...process.argv.slice(2)] };
}

/**
 * The words that start the runtime itself, to which Bun's own arguments (`-e <script>`) are
 * added: the compiled binary runs as Bun when BUN_BE_BUN=1 is set; from source it is Bun.
 */
export function runtimeCommand(): string[] {
  const words = compiled() ? launcher() : null;
  return words === null ? [process.execPath] : [SELF_EXE, ...words.slice(1)];
}
