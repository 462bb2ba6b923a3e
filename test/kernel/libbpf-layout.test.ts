// The option structs the agent hands libbpf are laid out by hand (src/kernel/libbpf.ts): every
// field it sets must be where libbpf's own headers put it, and the size it declares no larger than
// the struct (a newer libbpf's struct may be larger: it accepts the older size in `sz`). Checked by
// compiling offsetof/sizeof against the installed headers (libbpf-dev).
import { expect } from "bun:test";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BPF_ITER_ATTACH_OPTS, BPF_MAP_BATCH_OPTS, BPF_OBJECT_OPEN_OPTS, BPF_PROG_INFO, BPF_TEST_RUN_OPTS, type StructLayout } from "../../src/kernel/libbpf.ts";
import { hasCommand, testIf } from "../support/require.ts";

const STRUCTS: Record<string, StructLayout> = {
  bpf_object_open_opts: BPF_OBJECT_OPEN_OPTS,
  bpf_test_run_opts: BPF_TEST_RUN_OPTS,
  bpf_map_batch_opts: BPF_MAP_BATCH_OPTS,
  bpf_iter_attach_opts: BPF_ITER_ATTACH_OPTS,
  bpf_prog_info: BPF_PROG_INFO,
};

const it = testIf(
  hasCommand("clang") && existsSync("/usr/include/bpf/libbpf.h"),
  "needs clang and libbpf's headers (scripts/setup installs clang and libbpf-dev)",
);

/** { struct: { size, fields: { field: { offset, size } } } } as the C compiler lays them out. */
function compiledLayouts(): Record<string, { size: number; fields: Record<string, { offset: number; size: number }> }> {
  const dir = mkdtempSync(join(tmpdir(), "kal-libbpf-layout-"));
  try {
    const prints = Object.entries(STRUCTS).map(([name, layout]) => {
      const fields = Object.keys(layout.fields).map(
        (field) => `printf("\\"${field}\\":{\\"offset\\":%zu,\\"size\\":%zu},", offsetof(struct ${name}, ${field}), sizeof(((struct ${name} *)0)->${field}));`,
      );
      return [`printf("\\"${name}\\":{\\"size\\":%zu,\\"fields\\":{", sizeof(struct ${name}));`, ...fields, `printf("\\"\\":null}},");`].join("\n");
    });
    const source = join(dir, "layout.c");
    writeFileSync(
      source,
      ["#include <stddef.h>", "#include <stdio.h>", "#include <bpf/libbpf.h>", "#include <bpf/bpf.h>", "int main(void) {", 'printf("{");', ...prints, 'printf("\\"\\":null}");', "return 0; }"].join("\n"),
    );
    const binary = join(dir, "layout");
    const build = Bun.spawnSync(["clang", "-o", binary, source], { stderr: "pipe" });
    if (build.exitCode !== 0) throw new Error(`clang failed: ${build.stderr.toString()}`);
    const json = JSON.parse(Bun.spawnSync([binary]).stdout.toString()) as Record<string, unknown>;
    delete json[""];
    for (const struct of Object.values(json) as { fields: Record<string, unknown> }[]) delete struct.fields[""];
    return json as never;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

it("every option-struct field the agent sets is where libbpf's headers put it", () => {
  const compiled = compiledLayouts();
  for (const [name, layout] of Object.entries(STRUCTS)) {
    expect({ [name]: compiled[name]!.fields }).toEqual({ [name]: structuredClone(layout.fields) as never });
    expect(layout.size).toBeLessThanOrEqual(compiled[name]!.size);
  }
});
