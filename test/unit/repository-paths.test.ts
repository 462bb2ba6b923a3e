// Paths of this repository that src/ names in messages, help and comments (the deploy files, docs/,
// scripts/, tests) must exist: a renamed file otherwise leaves users and readers a dead pointer.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";

const ROOT = join(import.meta.dir, "../..");
const NAMED = /\b(?:scripts|docs|test)\/[\w./-]*\w\/?/g;

test("every scripts/, docs/ and test/ path named in src/ exists", () => {
  const files = readdirSync(join(ROOT, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
  const missing: string[] = [];
  for (const file of files) {
    for (const path of readFileSync(join(ROOT, "src", file), "utf8").match(NAMED) ?? []) {
      if (!existsSync(join(ROOT, path))) missing.push(`src/${file}: ${path}`);
    }
  }
  expect(missing).toEqual([]);
});
