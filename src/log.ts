// Diagnostics on stderr, one line each, filtered by --log-level (and by the admin API's
// /debug/loggers at run time). stdout is for access-log lines only.
import { LOG_LEVELS, PROGRAM_NAME } from "./options.ts";

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  /** What is said now: this level and the more severe ones. */
  readonly level: LogLevel;
  setLevel(level: LogLevel): void;
}

const PREFIX = `${PROGRAM_NAME}: `;

export function createLogger(level: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
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
