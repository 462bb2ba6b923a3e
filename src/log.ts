// Diagnostics on stderr, one line each, filtered by --log-level (and by the admin API's
// /debug/loggers at run time). stdout is for access-log lines only.
import { LOG_LEVELS, PROGRAM_NAME } from "./options.ts";
import { writeStderr } from "./output.ts";

export type LogLevel = (typeof LOG_LEVELS)[number];
export type Logger = ReturnType<typeof createLogger>;

const PREFIX = `${PROGRAM_NAME}: `;

export function createLogger(level: LogLevel, write: (line: string) => void = writeStderr) {
  let current = level;
  let rank = LOG_LEVELS.indexOf(level);
  const at = (lineLevel: LogLevel) => {
    const lineRank = LOG_LEVELS.indexOf(lineLevel);
    const prefix = `${PREFIX}${lineLevel === "debug" ? "debug: " : ""}`;
    return (message: string) => {
      if (lineRank <= rank) write(`${prefix}${message}\n`);
    };
  };
  return {
    /** What is said now: this level and the more severe ones. */
    get level() {
      return current;
    },
    setLevel(next: LogLevel) {
      current = next;
      rank = LOG_LEVELS.indexOf(next);
    },
    error: at("error"),
    warn: at("warn"),
    info: at("info"),
    debug: at("debug"),
  };
}
