// A reader that stops reading the agent's stdout must not stop the agent: it keeps draining the
// kernel (no record lost), holds lines up to --max-buffered-output, then drops them with a
// counter and one notice, and says so again when the reader has caught up; lines flow again.
//
// The agent's stdout is a FIFO read by `cat` into a file; the test stops `cat` (SIGSTOP) to stop
// the reading and resumes it (SIGCONT). Connections are made on loopback by this process.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Socket, TCPSocketListener } from "bun";
import { AGENT_BINARY, REPO_ROOT, agentUnavailableReason, parseTextLine, privateLockFile } from "./agent.ts";
import { netnsUnavailableReason, prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("slow reader", netnsUnavailableReason() ?? agentUnavailableReason());

const BOUND = 64 * 1024;

/** A loopback server that closes every connection at once, and a client making `n` of them. */
class Loopback {
  readonly server: TCPSocketListener<undefined>;
  constructor() {
    this.server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { open: (s) => void s.end(), data: () => undefined } });
  }
  get port(): number {
    return this.server.port;
  }
  /** `n` connections, `parallel` at a time, each closed once established. */
  async connect(n: number, parallel = 50): Promise<void> {
    for (let done = 0; done < n; done += parallel) {
      const batch = Math.min(parallel, n - done);
      await Promise.all(
        Array.from(
          { length: batch },
          () =>
            new Promise<void>((resolve, reject) => {
              Bun.connect({
                hostname: "127.0.0.1",
                port: this.port,
                socket: {
                  open: (s: Socket<undefined>) => void s.end(),
                  close: () => resolve(),
                  error: (_s, e) => reject(e),
                  connectError: (_s, e) => reject(e),
                  data: () => undefined,
                },
              }).catch(reject);
            }),
        ),
      );
    }
  }
  stop(): void {
    this.server.stop(true);
  }
}

describe.skipIf(!ready)("a slow reader of the agent's stdout", () => {
  let dir: string;
  let cat: Bun.Subprocess;
  let agent: Bun.Subprocess<"ignore", number, "pipe">;
  let stderr = "";
  let stderrDone: Promise<void>;

  const outFile = () => join(dir, "lines.txt");
  const lines = () => readFileSync(outFile(), "utf8").split("\n").slice(0, -1);
  /** Our lines: those of connections to `port` on loopback. */
  const linesTo = (port: number) => lines().filter((l) => l.includes(`dst.addr=127.0.0.1:${port},`));

  async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; agent stderr:\n${stderr}`);
      await Bun.sleep(25);
    }
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "kal-slow-reader-"));
    const fifo = join(dir, "stdout.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    cat = Bun.spawn(["sh", "-c", `exec cat < '${fifo}' > '${outFile()}'`], { stdout: "ignore", stderr: "inherit" });
    // Opening for writing waits for cat to open for reading; the agent gets its own copy of the fd.
    const fd = openSync(fifo, "w");
    agent = Bun.spawn(
      [AGENT_BINARY, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", privateLockFile(), "--max-buffered-output", "64K"],
      { cwd: REPO_ROOT, stdin: "ignore", stdout: fd, stderr: "pipe" },
    );
    closeSync(fd);
    stderrDone = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of agent.stderr) stderr += decoder.decode(chunk, { stream: true });
    })();
    await until("the agent to capture", () => stderr.includes("capturing TCP connections"));
  });

  afterAll(async () => {
    if (agent && agent.exitCode === null) agent.kill("SIGKILL");
    cat?.kill("SIGCONT");
    cat?.kill("SIGKILL");
    await agent?.exited;
    await cat?.exited;
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test("drops beyond the bound while the reader is stopped, loses nothing in the kernel, flows again after", async () => {
    const before = new Loopback();
    const during = new Loopback();
    const after = new Loopback();
    const duringPort = during.port;
    let made = 0;
    try {
      // Reading: every line arrives.
      await before.connect(20);
      await until("the lines of 20 connections", () => linesTo(before.port).length === 40);

      // Stopped: the pipe (64 KiB) fills, then the agent's own buffer (64 KiB), then lines go.
      // Connections come in small batches, as a node's would: the bound is about a reader that
      // is behind, not about a burst within one drain (that goes to the writer at once).
      cat.kill("SIGSTOP");
      while (!stderr.includes("output is not being read fast enough")) {
        if (made >= 5000) throw new Error(`no dropping notice after ${made} connections; agent stderr:\n${stderr}`);
        await during.connect(20);
        made += 20;
        await Bun.sleep(5);
      }
      // Well beyond the bound: 1,000 more connections, 2,000 lines of ~330 bytes.
      for (let i = 0; i < 50; i++) {
        await during.connect(20);
        made += 20;
        await Bun.sleep(5);
      }
      expect(stderr).toContain(`dropping lines beyond ${BOUND} buffered bytes`);
      // The agent is alive and draining while nobody reads: nothing more is queued than the bound.
      await Bun.sleep(500);
      expect(agent.exitCode).toBeNull();

      // Reading again: what was held comes out whole, the agent says it has recovered.
      cat.kill("SIGCONT");
      await until("the recovery notice", () => stderr.includes("output is being read again"));
      expect(stderr.match(/output is not being read fast enough/g)).toHaveLength(1);
      expect(stderr.match(/output is being read again; (\d+) lines dropped so far/)).not.toBeNull();

      // Lines flow again, all of them.
      await after.connect(100);
      await until("the lines of 100 connections after recovery", () => linesTo(after.port).length === 200);
    } finally {
      before.stop();
      during.stop();
      after.stop();
    }

    agent.kill("SIGTERM");
    expect(await agent.exited).toBe(0);
    await stderrDone;
    const summary = /stopped: (\d+) records read, (\d+) lines written, (\d+) records lost in the kernel, (\d+) lines dropped/.exec(stderr);
    expect(summary, stderr).not.toBeNull();
    const [read, written, lost, dropped] = summary!.slice(1).map(Number) as [number, number, number, number];
    expect(lost).toBe(0);
    expect(dropped).toBeGreaterThan(0);
    // Every record read became a line, written or dropped (no filters, no kubelet).
    expect(written + dropped).toBe(read);
    expect(Number(/output is being read again; (\d+) lines dropped so far/.exec(stderr)![1])).toBeLessThanOrEqual(dropped);

    // Whatever was written is whole lines, in order of time; some of the stopped period's are missing.
    await until("cat to write everything", () => lines().length >= written, 5000);
    const all = lines();
    expect(all.length).toBe(written);
    for (const line of all) parseTextLine(line);
    const duringLines = all.filter((l) => l.includes(`dst.addr=127.0.0.1:${duringPort},`)).length;
    expect(duringLines).toBeLessThan(2 * made);
    expect(duringLines).toBeGreaterThan(0);
  }, 60_000);
});
