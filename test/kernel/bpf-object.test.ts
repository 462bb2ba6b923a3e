// The committed object must be exactly what scripts/build-bpf.sh makes from
// the sources: nobody may change bpf/*.c or bpf/*.h without rebuilding it.
import { expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasCommand, testIf } from "../support/require.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const it = testIf(hasCommand("clang"), "clang is not installed (scripts/setup installs it)");

it("bpf/accesslog.bpf.o is up to date with its sources", () => {
  const dir = mkdtempSync(join(tmpdir(), "kal-bpf-"));
  try {
    const rebuilt = join(dir, "accesslog.bpf.o");
    const build = Bun.spawnSync([join(ROOT, "scripts/build-bpf.sh"), rebuilt], { stderr: "pipe" });
    expect(build.stderr.toString()).toBe("");
    expect(build.exitCode).toBe(0);
    const committed = readFileSync(join(ROOT, "bpf/accesslog.bpf.o"));
    const fresh = readFileSync(rebuilt);
    if (!committed.equals(fresh)) {
      throw new Error("bpf/accesslog.bpf.o is stale: run scripts/build-bpf.sh and commit the object");
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
