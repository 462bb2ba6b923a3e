// What a default run loads: the binary is built with --splitting (scripts/build), and code a run
// does not ask for stays in chunks it never loads (README, "Footprint"). Bundled here the same way:
// the chunks a default run loads are main's and the agent's, with what they import statically.
// The same bundle is then run with process.stdout and process.stderr trapped: Bun builds their
// streams, 2 MB, the moment either is read, and no command but --help needs them (src/output.ts).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { IS_ROOT, testIf } from "../support/require.ts";

const SRC = join(import.meta.dir, "../../src");
const TRAP = join(import.meta.dir, "../support/stdio-trap.ts");

/** Loaded only when a run's flags (or a cluster around) ask for them. */
const ON_DEMAND = [
  "node_modules/yaml/dist/index.js",
  "src/kernel/conntrack.ts",
  "src/kube/apiserver/source.ts",
  "src/kube/feed/client.ts",
  "src/sink/otlp/exporter.ts",
];

interface Output {
  inputs: Record<string, unknown>;
  imports: { path: string; kind: string }[];
}

let dir: string;
let outputs: Record<string, Output>;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kal-on-demand-"));
  const build = await Bun.build({ entrypoints: [join(SRC, "main.ts")], outdir: join(dir, "out"), splitting: true, format: "esm", target: "bun", metafile: true });
  expect(build.success).toBe(true);
  outputs = build.metafile!.outputs as Record<string, Output>;
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

test("a default run loads neither the YAML parser nor the optional parts of the agent", () => {
  // A path is relative to the working directory: node_modules may be a link to another tree's.
  const holds = (name: string, input: string) => Object.keys(outputs[name]!.inputs).some((path) => path === input || path.endsWith(`/${input}`));
  const holding = (input: string) => Object.keys(outputs).filter((name) => holds(name, input));
  const loaded = new Set<string>();
  const load = (name: string) => {
    if (loaded.has(name)) return;
    loaded.add(name);
    for (const imported of outputs[name]!.imports) if (imported.kind === "import-statement") load(imported.path);
  };
  for (const entry of [...holding("src/main.ts"), ...holding("src/agent.ts")]) load(entry);
  // Each is in the build, in a chunk of its own...
  expect(ON_DEMAND.map((input) => holding(input).length)).toEqual(ON_DEMAND.map(() => 1));
  // ...that a default run does not load.
  expect(ON_DEMAND.filter((input) => holding(input).some((name) => loaded.has(name)))).toEqual([]);
});

/** The bundle run with `args`, the streams trapped: its exit code and what read them. */
async function trapped(name: string, ...args: string[]): Promise<{ exitCode: number; stderr: string; reads: string }> {
  const trapFile = join(dir, `${name}.reads`);
  await using child = Bun.spawn([process.execPath, "--preload", TRAP, join(dir, "out", "main.js"), ...args], {
    // The bundle opens the BPF objects beside it (the binary carries them).
    cwd: join(dir, "out"),
    env: { ...process.env, STDIO_TRAP_FILE: trapFile },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
    timeout: 20_000,
    killSignal: "SIGKILL",
  });
  const [stderr, exitCode] = await Promise.all([new Response(child.stderr).text(), child.exited]);
  return { exitCode, stderr, reads: existsSync(trapFile) ? readFileSync(trapFile, "utf8") : "" };
}

test("--help reads process.stdout (the trap works)", async () => {
  const { reads } = await trapped("help", "--help");
  expect(reads).toStartWith("process.stdout, read");
});

test("--version, a usage error and a command that fails leave the streams alone", async () => {
  expect(await trapped("version", "--version")).toEqual({ exitCode: 0, stderr: "", reads: "" });
  expect(await trapped("usage", "--no-such-flag")).toEqual({ exitCode: 2, stderr: "kmesh-accesslog: unknown flag --no-such-flag\n", reads: "" });
  const status = await trapped("status", "status", "--admin-socket", join(dir, "none.sock"));
  expect({ exitCode: status.exitCode, reads: status.reads }).toEqual({ exitCode: 1, reads: "" });
  expect(status.stderr).toStartWith("kmesh-accesslog: no agent is listening on");
});

testIf(IS_ROOT, "a default run loads the probe as root")("a default run of 1 s (lines, stderr, its stop) leaves the streams alone", async () => {
  const run = await trapped("run", "run", "--duration", "1", "--admin-addr", "", "--lock-file", join(dir, "run.lock"));
  expect({ exitCode: run.exitCode, reads: run.reads }).toEqual({ exitCode: 0, reads: "" });
  expect(run.stderr).toContain("kmesh-accesslog: capturing TCP connections");
  expect(run.stderr).toContain("kmesh-accesslog: stopped: ");
});
