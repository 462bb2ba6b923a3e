// The command line's contract: a mistake is one line on stderr and exit code 2;
// --help and --version exit 0; good values reach RunOptions checked and typed.
// Mistakes are tested through `bun src/main.ts`, the way a user meets them
// (the compiled binary is someone else's build); good values in-process, so no
// agent starts.
import { runCli } from "../support/cli.ts";
import { describe, expect, test } from "bun:test";
import { parseCommandLine, type Invocation } from "../../src/cli.ts";
import packageJson from "../../package.json" with { type: "json" };

describe("a mistake is one line on stderr and exit code 2", () => {
  const cases: [args: string[], message: string][] = [
    [["--output", "xml"], 'invalid value for --output: "xml" (expected text or json)'],
    [["run", "--output=xml"], 'invalid value for --output: "xml" (expected text or json)'],
    [["--output"], "missing value for --output (expected text or json)"],
    [["--duration", "0"], 'invalid value for --duration: "0" (expected a positive number of seconds, at most 2147483)'],
    [["--duration=-1"], 'invalid value for --duration: "-1" (expected a positive number of seconds, at most 2147483)'],
    [["--duration", "ten"], 'invalid value for --duration: "ten" (expected a positive number of seconds, at most 2147483)'],
    [["--duration", "9999999"], 'invalid value for --duration: "9999999" (expected a positive number of seconds, at most 2147483)'],
    [["--ring-buffer-size", "5000"], 'invalid value for --ring-buffer-size: "5000" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "2048"], 'invalid value for --ring-buffer-size: "2048" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "2G"], 'invalid value for --ring-buffer-size: "2G" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--ring-buffer-size", "8X"], 'invalid value for --ring-buffer-size: "8X" (expected a power of two from 4K to 1G bytes, e.g. 8M)'],
    [["--max-connections", "0"], 'invalid value for --max-connections: "0" (expected a whole number from 1 to 16777216)'],
    [["--max-connections", "1.5"], 'invalid value for --max-connections: "1.5" (expected a whole number from 1 to 16777216)'],
    [["--outptu", "json"], "unknown flag --outptu (did you mean --output?)"],
    [["run", "--max-conections", "5"], "unknown flag --max-conections (did you mean --max-connections?)"],
    [["--bogus"], "unknown flag --bogus"],
    [["-x"], "unknown flag -x"],
    [["foo"], 'unknown command "foo" (expected run, accesslog, monitoring, status or check)'],
    [["run", "extra"], 'unexpected argument "extra"'],
    [["--output", "json", "run"], 'the command "run" must come before any flag'],
    // Several mistakes: the first one in argv order, still one line.
    [["--bogus", "--output", "xml", "--nope"], "unknown flag --bogus"],
    [["--output", "xml", "--bogus"], 'invalid value for --output: "xml" (expected text or json)'],
    // A value cannot break the one-line promise.
    [["--output", "a\nb"], 'invalid value for --output: "a\\nb" (expected text or json)'],
  ];

  test.concurrent.each(cases)("%j", async (args, message) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr, stdout }).toEqual({ exitCode: 2, stderr: `kmesh-accesslog: ${message}\n`, stdout: "" });
  });
});

describe("--help and --version", () => {
  const runFlags = ["--output <text|json>", "--duration <seconds>", "--ring-buffer-size <bytes>", "--max-connections <n>", "--version", "--help"];

  test.concurrent.each([[["--help"]], [["-h"]], [["run", "--help"]]])("%j lists run's flags and exits 0", async (args) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr }).toEqual({ exitCode: 0, stderr: "" });
    for (const flag of runFlags) expect(stdout).toContain(flag);
    expect(stdout).toContain(`v${packageJson.version}`);
  });

  test.concurrent("the top-level help names the run command", async () => {
    const { stdout } = await runCli("--help");
    expect(stdout).toMatch(/^\s+run\s+/m);
  });

  test.concurrent.each([[["--version"]], [["run", "--version"]]])("%j prints the package version", async (args) => {
    const { stdout, stderr, exitCode } = await runCli(...args);
    expect({ exitCode, stderr, stdout }).toEqual({ exitCode: 0, stderr: "", stdout: `${packageJson.version}\n` });
  });
});

describe("good values become RunOptions", () => {
  /** Defaults of the runtime-control flags (tested in admin-cli.test.ts). */
  const control = {
    monitoring: true,
    accesslog: undefined,
    connectionMetrics: undefined,
    reportInterval: 5,
    adminAddr: { host: "127.0.0.1", port: 15200 },
    lockFile: "/run/kmesh-accesslog/agent.lock",
    logLevel: "info",
    clusterDomain: "cluster.local",
  } as const;

  test("defaults", () => {
    expect(parseCommandLine([])).toEqual<Invocation>({
      command: "run",
      options: { output: "text", duration: undefined, ringBufferSize: 8 * 1024 * 1024, maxConnections: 262_144, ...control },
    });
    expect(parseCommandLine(["run"])).toEqual(parseCommandLine([]));
  });

  test("every flag, with and without the run command", () => {
    const args = ["--output", "json", "--duration=1.5", "--ring-buffer-size", "32M", "--max-connections", "1048576"];
    const expected: Invocation = {
      command: "run",
      options: { output: "json", duration: 1.5, ringBufferSize: 32 * 1024 * 1024, maxConnections: 1_048_576, ...control },
    };
    expect(parseCommandLine(args)).toEqual(expected);
    expect(parseCommandLine(["run", ...args])).toEqual(expected);
  });

  test.each([
    ["4096", 4096],
    ["4K", 4096],
    ["4k", 4096],
    ["4KiB", 4096],
    ["8M", 8 * 1024 * 1024],
    ["8MB", 8 * 1024 * 1024],
    ["16777216", 16 * 1024 * 1024],
    ["1G", 1024 * 1024 * 1024],
  ])("--ring-buffer-size %s is %d bytes", (text, bytes) => {
    const invocation = parseCommandLine(["--ring-buffer-size", text]);
    expect(invocation.command === "run" && invocation.options.ringBufferSize).toBe(bytes);
  });

  test("the last of a repeated flag wins", () => {
    const invocation = parseCommandLine(["--output", "json", "--output", "text"]);
    expect(invocation.command === "run" && invocation.options.output).toBe("text");
  });

  test("--version wins over the run options", () => {
    expect(parseCommandLine(["--output", "json", "--version"])).toEqual({ command: "version" });
  });
});
