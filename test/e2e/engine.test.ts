// The compiled agent runs with the engine's settings of src/engine.ts: it executes itself again
// (the same pid, the same arguments) with them in its environment, and of the engine's helper
// threads only one JIT worker is there (no second one, no second GC marker, no heap warm-up
// thread). An operator's own value for one of them is kept. It runs again what the kernel ran,
// with the same words: started through the dynamic loader (as on a noexec mount), through the
// loader again; its file removed since it started, that file all the same.
import { describe, expect, test } from "bun:test";
import { copyFileSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ENGINE_SETTINGS } from "../../src/engine.ts";
import { AGENT_BINARY, type Agent, agentUnavailableReason, dynamicLoader, startAgent } from "./agent.ts";
import { prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("engine settings", agentUnavailableReason());

/** The engine's helper threads, by the names it gives them. */
const ENGINE_THREADS = ["JITWorker", "HeapHelper", "JSCWarmUp"];
/** Every setting, as /proc/<pid>/environ has it, sorted. */
const ALL_SETTINGS = Object.entries(ENGINE_SETTINGS).map(([name, value]) => `${name}=${value}`).sort();

/** The agent's process, once it has started capturing (after any restart). */
async function started(agent: Agent) {
  await agent.waitForStderr((line) => line.includes("capturing TCP connections"));
  const proc = `/proc/${agent.pid}`;
  const split = (file: string) => readFileSync(`${proc}/${file}`, "utf8").split("\0").slice(0, -1);
  return {
    cmdline: split("cmdline"),
    engineEnv: split("environ").filter((entry) => entry.startsWith("BUN_JSC_")).sort(),
    threads: readdirSync(`${proc}/task`).map((tid) => readFileSync(`${proc}/task/${tid}/comm`, "utf8").trim()).sort(),
  };
}

describe.skipIf(!ready)("the engine's settings", () => {
  test("run executes itself again with them, its arguments unchanged; one JIT worker, no GC helper or warm-up thread", async () => {
    await using agent = startAgent({ args: ["--no-kubelet"] });
    const seen = await started(agent);
    expect(seen.cmdline).toEqual(agent.argv);
    expect(seen.engineEnv).toEqual(ALL_SETTINGS);
    // Which other threads exist by then depends on timing (mimalloc's scavenger, a thread of
    // Bun's own): only the engine's helpers are checked.
    expect(seen.threads.filter((name) => ENGINE_THREADS.includes(name))).toEqual(["JITWorker"]);
    expect((await agent.stop()).exitCode).toBe(0);
  });

  test("started through the dynamic loader, it runs itself again through the loader", async () => {
    await using agent = startAgent({ args: ["--no-kubelet"], prefix: [dynamicLoader()] });
    const seen = await started(agent);
    expect(seen.cmdline).toEqual(agent.argv);
    expect(seen.engineEnv).toEqual(ALL_SETTINGS);
    expect(seen.threads.filter((name) => ENGINE_THREADS.includes(name))).toEqual(["JITWorker"]);
    expect((await agent.stop()).exitCode).toBe(0);
  });

  test("its file removed since it started, it runs that file again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kal-engine-"));
    try {
      const binary = join(dir, "kmesh-accesslog");
      copyFileSync(AGENT_BINARY, binary);
      // The shell opens the file, removes it, and executes what it opened.
      const removeAndRun = ["bash", "-c", 'exec 3<"$0" && rm "$0" && exec /proc/self/fd/3 "$@"'];
      await using agent = startAgent({ args: ["--no-kubelet"], prefix: removeAndRun, binary });
      const seen = await started(agent);
      expect(readlinkSync(`/proc/${agent.pid}/exe`)).toBe(`${binary} (deleted)`);
      expect(seen.engineEnv).toEqual(ALL_SETTINGS);
      expect((await agent.stop()).exitCode).toBe(0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a value the operator set is kept, and the others are added", async () => {
    // One of ours set otherwise, and the JIT on the main thread: no worker at all, for less
    // memory (README, "Footprint").
    const env = { BUN_JSC_numberOfGCMarkers: "2", BUN_JSC_useConcurrentJIT: "0" };
    await using agent = startAgent({ args: ["--no-kubelet"], env });
    const seen = await started(agent);
    const ours = ALL_SETTINGS.filter((entry) => !entry.startsWith("BUN_JSC_numberOfGCMarkers="));
    expect(seen.engineEnv).toEqual([...ours, "BUN_JSC_numberOfGCMarkers=2", "BUN_JSC_useConcurrentJIT=0"].sort());
    expect(seen.threads).not.toContain("JITWorker");
    expect((await agent.stop()).exitCode).toBe(0);
  });
});
