// Preloaded by bunfig.toml for every `bun test`: tracefs mounted when missing; the run's cleanups
// (cleanup.ts) after the last test.
import { afterAll } from "bun:test";
import { existsSync } from "node:fs";
import { runCleanups } from "./cleanup.ts";
import { IS_ROOT } from "./require.ts";

// tracefs where a node's systemd mounts it at boot: libbpf finds the syscall tracepoints (the
// accept() programs) there, and a fresh VM may not have it. Left mounted, as a node has it.
if (IS_ROOT && !existsSync("/sys/kernel/tracing/events")) Bun.spawnSync(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"]);

afterAll(runCleanups);
