// Preloaded by bunfig.toml for every `bun test`: the run's cleanups (cleanup.ts) after the last test.
import { afterAll } from "bun:test";
import { runCleanups } from "./cleanup.ts";

afterAll(runCleanups);
