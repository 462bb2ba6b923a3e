// A reader that stops reading the agent's stdout must not stop the agent: it keeps draining the
// kernel (no record lost), holds lines up to --max-buffered-output, then drops them with a
// counter and one notice, and says so again when the reader has caught up; lines flow again.
// A reader that goes away (`run | head`) ends the run: one line says so, exit 0; stdout that
// cannot be written (a full disk: /dev/full) ends it with exit 1 and the reason.
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

describe.skipIf(!ready)("a reader of the agent's stdout that goes away", () => {
  test("`run | head -n 4`: four whole lines, one line on stderr, the agent stops by itself with exit 0", async () => {
    const dir = mkdtempSync(join(tmpdir(), "kal-gone-reader-"));
    const out = join(dir, "head.txt");
    const fifo = join(dir, "stdout.fifo");
    expect(Bun.spawnSync(["mkfifo", fifo]).exitCode).toBe(0);
    const loopback = new Loopback();
    let agent: Bun.Subprocess<"ignore", number, "pipe"> | null = null;
    const head = Bun.spawn(["sh", "-c", `exec head -n 4 < '${fifo}' > '${out}'`], { stdout: "ignore", stderr: "inherit" });
    try {
      const fd = openSync(fifo, "w"); // waits for head to open it
      agent = Bun.spawn([AGENT_BINARY, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", privateLockFile()], {
        cwd: REPO_ROOT,
        stdin: "ignore",
        stdout: fd,
        stderr: "pipe",
      });
      closeSync(fd);
      const stderrText = new Response(agent.stderr).text();
      // Connections until the agent has stopped on its own (head took 4 lines and left).
      for (let i = 0; i < 200 && agent.exitCode === null; i++) {
        await loopback.connect(10);
        await Bun.sleep(50);
      }
      expect(await agent.exited).toBe(0);
      expect(await head.exited).toBe(0);
      const stderr = await stderrText;
      expect(stderr.match(/stdout's reader has gone \(EPIPE\): stopping/g), stderr).toHaveLength(1);
      // nothing but the agent's own lines: no stack of an error nobody caught
      for (const line of stderr.split("\n").slice(0, -1)) expect(line, stderr).toStartWith("kmesh-accesslog: ");
      const summary = /stopped: (\d+) records read, (\d+) lines written, (\d+) records lost in the kernel, (\d+) lines dropped/.exec(stderr);
      expect(summary, stderr).not.toBeNull();
      const [read, written, lost, dropped] = summary!.slice(1).map(Number) as [number, number, number, number];
      expect([lost, written + dropped]).toEqual([0, read]);
      expect(written).toBeGreaterThanOrEqual(4);
      expect(dropped).toBeGreaterThan(0);
      const lines = readFileSync(out, "utf8").split("\n");
      expect(lines).toHaveLength(5); // four and the empty text after the last newline
      expect(lines[4]).toBe("");
      for (const line of lines.slice(0, 4)) parseTextLine(line);
    } finally {
      loopback.stop();
      if (agent !== null && agent.exitCode === null) agent.kill("SIGKILL");
      head.kill("SIGKILL");
      await agent?.exited;
      await head.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  test("`run > /dev/full`: the agent stops at its first line with exit 1, saying why and how many lines it dropped", async () => {
    const loopback = new Loopback();
    const full = openSync("/dev/full", "w");
    const agent = Bun.spawn([AGENT_BINARY, "run", "--no-kubelet", "--admin-addr", "", "--lock-file", privateLockFile()], {
      cwd: REPO_ROOT,
      stdin: "ignore",
      stdout: full,
      stderr: "pipe",
    });
    closeSync(full);
    try {
      const stderrText = new Response(agent.stderr).text();
      for (let i = 0; i < 100 && agent.exitCode === null; i++) {
        await loopback.connect(1);
        await Bun.sleep(50);
      }
      expect(await agent.exited).toBe(1);
      const stderr = (await stderrText).split("\n").slice(0, -1);
      const summary = /stopped: (\d+) records read, (\d+) lines written, (\d+) records lost in the kernel, (\d+) lines dropped/.exec(stderr.at(-2) ?? "");
      expect(summary, stderr.join("\n")).not.toBeNull();
      const [read, written, lost, dropped] = summary!.slice(1).map(Number);
      expect([written, lost, dropped]).toEqual([0, 0, read]);
      expect(stderr.at(-1)).toBe(
        'kmesh-accesslog: cannot write access-log lines to stdout: ENOSPC: no space left on device, write: the agent stopped; the lines it could not write are counted in "lines dropped"',
      );
    } finally {
      loopback.stop();
      if (agent.exitCode === null) agent.kill("SIGKILL");
      await agent.exited;
    }
  }, 60_000);
});
