// What GET /version answers: the fields of Kmesh's version.Info (so that
// `kmeshctl version` and anything parsing Kmesh's answer keep working), plus
// which program and process answered, so that a second agent, or the CLI, can
// name the one already running.
import { PROGRAM_NAME, VERSION } from "../options.ts";

const GO_ARCH: Record<string, string> = { x64: "amd64", arm64: "arm64", ia32: "386", arm: "arm" };

export function versionInfo() {
  return {
    gitVersion: VERSION,
    gitCommit: "unknown",
    gitTreeState: "unknown",
    buildDate: "unknown",
    // Kmesh's field name; here the JavaScript runtime's version, e.g. `bun1.4.5`.
    goVersion: `bun${Bun.version}`,
    compiler: "bun",
    platform: `${process.platform}/${GO_ARCH[process.arch] ?? process.arch}`,
    program: PROGRAM_NAME,
    pid: process.pid,
  };
}

export type VersionInfo = ReturnType<typeof versionInfo>;
