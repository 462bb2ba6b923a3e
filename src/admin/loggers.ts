// Kmesh's /debug/loggers, which `kmeshctl log` drives: the agent's --log-level as Kmesh's logger
// "default", read and set at run time, with Kmesh's answers (docs/admin-api.md). The levels are
// logrus's, whose names differ from ours in one place (warn is "warning"); panic and fatal set
// error (nothing here is said at those two levels), trace sets debug.
import type { LogLevel } from "../log.ts";
import { concatBytes, goError, goQueryGet, goText as sniffed } from "./go-compat.ts";

export const LOGGERS_PATH = "/debug/loggers";
export const LOGGER_NAME = "default";

/** What /debug/loggers needs from the agent. */
export interface LoggerBackend {
  logLevel(): LogLevel;
  setLogLevel(level: LogLevel): void;
}

const LOGRUS_NAMES: Readonly<Record<LogLevel, string>> = { error: "error", warn: "warning", info: "info", debug: "debug" };
const FROM_LOGRUS: Readonly<Record<string, LogLevel>> = {
  panic: "error",
  fatal: "error",
  error: "error",
  warn: "warn",
  warning: "warn",
  info: "info",
  debug: "debug",
  trace: "debug",
};

const utf8 = new TextEncoder();
const unknownLogger = (name: Uint8Array) => sniffed(concatBytes(utf8.encode("\tlogger "), name, utf8.encode(" does not exist\n")), 400);
const invalidBody = (why: string) => sniffed(`\tInvalid request body format: ${why}\n`, 400);

export function handleLoggers(backend: LoggerBackend, method: string, rawQuery: string, body: Uint8Array): Response {
  if (method === "GET") {
    const name = goQueryGet(rawQuery, "name");
    if (name.length === 0) return sniffed(JSON.stringify([LOGGER_NAME], null, 4), 200);
    if (new TextDecoder().decode(name) !== LOGGER_NAME || name.some((b) => b >= 0x80)) return unknownLogger(name);
    return sniffed(JSON.stringify({ name: LOGGER_NAME, level: LOGRUS_NAMES[backend.logLevel()] }, null, 4), 200);
  }
  if (method !== "POST") return goError("Method Not Allowed", 405);
  const info = loggerInfo(body);
  if (typeof info === "string") return invalidBody(info);
  // logrus.ParseLevel first, then the logger, as Kmesh does.
  const level = FROM_LOGRUS[info.level.toLowerCase()];
  if (level === undefined) return invalidBody(`not a valid logrus Level: ${JSON.stringify(info.level)}`);
  if (info.name !== LOGGER_NAME) return unknownLogger(utf8.encode(info.name));
  backend.setLogLevel(level);
  return sniffed("OK", 200);
}

/**
 * The body as Go's json.Unmarshal fills Kmesh's LoggerInfo{Name, Level}: an object whose keys
 * match the fields without regard to case (the last one wins), other keys ignored, null leaving a
 * field empty; else the reason, in Go's words where they are simple.
 */
function loggerInfo(body: Uint8Array): { name: string; level: string } | string {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: false }).decode(body));
  } catch (error) {
    return body.length === 0 ? "unexpected end of JSON input" : `not JSON: ${(error as Error).message}`;
  }
  const info = { name: "", level: "" };
  if (json === null) return info;
  if (typeof json !== "object" || Array.isArray(json)) {
    return `json: cannot unmarshal ${goJsonType(json)} into Go value of type status.LoggerInfo`;
  }
  for (const [key, value] of Object.entries(json)) {
    const field = key.toLowerCase();
    if (field !== "name" && field !== "level") continue;
    if (value === null) continue;
    if (typeof value !== "string") return `json: cannot unmarshal ${goJsonType(value)} into Go struct field LoggerInfo.${field} of type string`;
    info[field] = value;
  }
  return info;
}

function goJsonType(value: unknown): string {
  if (Array.isArray(value)) return "array";
  if (typeof value === "boolean") return "bool";
  return typeof value === "object" ? "object" : typeof value;
}
