// What a default run loads: the binary is built with --splitting (scripts/build), and code a run
// does not ask for stays in chunks it never loads (README, "Footprint"). Bundled here the same way,
// in memory: the chunks a default run loads are main's and the agent's, with what they import
// statically.
import { expect, test } from "bun:test";
import { join } from "node:path";

const SRC = join(import.meta.dir, "../../src");

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

test("a default run loads neither the YAML parser nor the optional parts of the agent", async () => {
  const build = await Bun.build({ entrypoints: [join(SRC, "main.ts")], splitting: true, format: "esm", target: "bun", metafile: true });
  expect(build.success).toBe(true);
  const outputs = build.metafile!.outputs as Record<string, Output>;
  const holding = (input: string) => Object.keys(outputs).filter((name) => input in outputs[name]!.inputs);
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
