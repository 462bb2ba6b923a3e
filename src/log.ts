// Diagnostics on stderr, one line each, filtered by --log-level. stdout is
// for access-log lines only.
import { LOG_LEVELS, PROGRAM_NAME } from "./options.ts";

export type LogLevel = (typeof LOG_LEVELS)[number];

export interface Logger {
  error(message: string): void;
  warn(message: string): void;
  info(message: string): void;
  debug(message: string): void;
  readonly level: LogLevel;
}

const PREFIX = `${PROGRAM_NAME}: `;

export function createLogger(level: LogLevel, write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  const rank = LOG_LEVELS.indexOf(level);
  const at = (lineLevel: LogLevel) =>
    LOG_LEVELS.indexOf(lineLevel) <= rank
      ? (message: string) => write(`${PREFIX}${lineLevel === "debug" ? "debug: " : ""}${message}\n`)
      : () => undefined;
  return { level, error: at("error"), warn: at("warn"), info: at("info"), debug: at("debug") };
}
