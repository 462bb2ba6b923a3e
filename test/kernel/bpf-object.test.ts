// The committed objects must be exactly what scripts/build-bpf.sh makes from
// the sources: nobody may change bpf/*.c or bpf/*.h without rebuilding them.
import { expect } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasCommand, testIf } from "../support/require.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const it = testIf(hasCommand("clang"), "clang is not installed (scripts/setup installs it)");

it("bpf/accesslog.bpf.o, bpf/conntrack.bpf.o and bpf/preemption.bpf.o are up to date with their sources", () => {
  const dir = mkdtempSync(join(tmpdir(), "kal-bpf-"));
  try {
    const build = Bun.spawnSync([join(ROOT, "scripts/build-bpf.sh"), dir], { stderr: "pipe" });
    expect(build.stderr.toString()).toBe("");
    expect(build.exitCode).toBe(0);
    for (const object of ["accesslog.bpf.o", "conntrack.bpf.o", "preemption.bpf.o"]) {
      const committed = readFileSync(join(ROOT, "bpf", object));
      const fresh = readFileSync(join(dir, object));
      if (!committed.equals(fresh)) {
        throw new Error(`bpf/${object} is stale: run scripts/build-bpf.sh and commit the object`);
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
