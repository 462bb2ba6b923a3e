// The agent reads the kernel's ring buffer in place (src/kernel/ring-buffer.ts). Here the ring is
// filled to its last byte while the agent is stopped (SIGSTOP), then drained: exactly as many
// lines as the ring holds records, every one whole, the rest counted as lost; three times, so
// that the later fills wrap around the end of the data area. Each round's loss is said on stderr
// when it starts and, a second after the last record lost, when it has stopped, with its count.
//
// A refused connection to a closed loopback port is one record (OUTBOUND, ECONNREFUSED). A 16 KiB
// ring holds 107 records of 152 bytes (the record and the ring's 8-byte header): 16,264 bytes, the
// 120 left too few for one more. Other processes of the machine make records too; a round in
// which one of theirs lands between our two sentinel connections is made again.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { type Agent, agentUnavailableReason, startAgent } from "./agent.ts";
import { prerequisitesMet } from "./prereq.ts";

const ready = prerequisitesMet("ring buffer", agentUnavailableReason());

const RING_BYTES = 16 * 1024;
const RECORD_BYTES = 144 + 8;
const CAPACITY = Math.floor(RING_BYTES / RECORD_BYTES); // 107
const EXTRA = 20;
const ROUNDS = 3;

/** A loopback port nothing listens on (bound once, then closed). */
function closedPort(): number {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data: () => undefined } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/** One connection attempt that the kernel refuses. */
function refused(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    Bun.connect({
      hostname: "127.0.0.1",
      port,
      socket: {
        open: () => reject(new Error(`something listens on 127.0.0.1:${port}`)),
        connectError: () => resolve(),
        data: () => undefined,
      },
    }).catch(() => resolve());
  });
}

const LOSS_STARTS = /the kernel is losing records: the ring buffer \(16384 bytes\) is full; \d+ lost so far in this loss — fix: raise --ring-buffer-size/;
const LOSS_ENDS = /the kernel has stopped losing records: (\d+) were lost in this loss, (\d+) since the start — fix: raise --ring-buffer-size \(now 16384 bytes\)/;

/** The process's state letter from /proc (T: stopped). */
async function processState(pid: number): Promise<string> {
  const stat = await Bun.file(`/proc/${pid}/stat`).text();
  return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
}

describe.skipIf(!ready)("the ring buffer, read in place", () => {
  let agent: Agent;

  /** Waits for the `n`th stderr line matching `pattern`; returns it. */
  async function nthStderr(pattern: RegExp, n: number, timeoutMs = 10_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = agent.stderrLines.filter((l) => pattern.test(l));
      if (found.length >= n) return found[n - 1]!;
      if (Date.now() > deadline) throw new Error(`no stderr line number ${n} like ${pattern}:\n${agent.stderrLines.join("\n")}`);
      await Bun.sleep(20);
    }
  }

  beforeAll(async () => {
    agent = startAgent({ args: ["--no-kubelet", "--ring-buffer-size", "16K"] });
    // Capturing once a refused attempt shows up.
    const probe = closedPort();
    const deadline = Date.now() + 20_000;
    while (agent.filter((e) => e.dstPort === probe).length === 0) {
      if (Date.now() > deadline) throw new Error(`the agent does not capture: ${await agent.stop().then((r) => r.stderr)}`);
      await refused(probe);
      await Bun.sleep(50);
    }
  });

  afterAll(async () => {
    await agent?.[Symbol.asyncDispose]();
  });

  test(`a full ring (${CAPACITY} records) is drained exactly, round after round`, async () => {
    const target = closedPort();
    const sentinel = closedPort();
    let undisturbed = 0;
    let disturbed = 0;
    let sentinels = 0;
    let stranger = "";
    while (undisturbed < ROUNDS) {
      if (disturbed > 10) throw new Error(`lines not of this round's connections in every round, the last: ${stranger}`);
      // Everything before this round is out: the sentinel's line came.
      await refused(sentinel);
      await agent.waitForLines((e) => e.dstPort === sentinel, ++sentinels);
      const from = agent.lines.length;
      agent.proc.kill("SIGSTOP");
      try {
        while ((await processState(agent.pid)) !== "T") await Bun.sleep(1);
        for (let i = 0; i < CAPACITY + EXTRA; i++) await refused(target);
      } finally {
        agent.proc.kill("SIGCONT");
      }
      // The ring is full until the agent has read it; then it is read in order: once this
      // sentinel's line is out, so is everything before it.
      const deadline = Date.now() + 10_000;
      while (agent.lines.length - from < CAPACITY && Date.now() < deadline) await Bun.sleep(5);
      await refused(sentinel);
      await agent.waitForLines((e) => e.dstPort === sentinel, ++sentinels);
      const window = agent.entries.slice(agent.entries.findIndex((e) => e.raw === agent.lines[from]));
      const until = window.findIndex((e) => e.dstPort === sentinel);
      const between = window.slice(0, until);
      // The loss is said once when it starts and once when it has ended (1 s later).
      const rounds = undisturbed + disturbed + 1;
      const ended = LOSS_ENDS.exec(await nthStderr(LOSS_ENDS, rounds))!;
      expect(agent.stderrLines.filter((l) => LOSS_STARTS.test(l)).length).toBe(rounds);
      const other = between.find((e) => e.dstPort !== target);
      if (other !== undefined) {
        stranger = other.raw;
        disturbed++;
        continue;
      }
      expect(Number(ended[1])).toBe(EXTRA);
      expect(agent.malformed).toEqual([]);
      expect(between.length).toBe(CAPACITY);
      for (const e of between) {
        expect(e.direction).toBe("OUTBOUND");
        expect(e.error).toBe("ECONNREFUSED");
        expect(e.dstAddr).toBe("127.0.0.1");
        expect(e.sentBytes).toBe(0);
      }
      undisturbed++;
    }
    const { exitCode, stderr } = await agent.stop();
    expect(exitCode).toBe(0);
    const lost = Number(/(\d+) records lost in the kernel/.exec(stderr)?.[1]);
    // Each undisturbed round lost exactly its extra records; a disturbed one lost some too.
    if (disturbed === 0) expect(lost).toBe(ROUNDS * EXTRA);
    else expect(lost).toBeGreaterThanOrEqual(ROUNDS * EXTRA);
  }, 120_000);
});
